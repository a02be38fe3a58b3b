#!/usr/bin/env bash
# The Xen lane: Debian's Xen 4.17 hypervisor booted by QEMU, Debian 12's kernel as its PV
# dom0 with xenstored, xenconsoled and xl, brought up as xencommons does; then a command
# runs in dom0. Guests are PV domUs `xl create`d from /etc/xen/images (the same kernel,
# and a busybox initrd whose /init is tests/lanes/guest-init). No NIC: all traffic stays
# between dom0 and its guests.
#
#   tests/lanes/xen.sh [-f SRC[:DST]]... [-t SECONDS] -- COMMAND...
#
# -f and the exit code as in kernel.sh. In dom0: xenbr0 does not exist yet, nothing
# serves DHCP; COMMAND sets up what it tests.
set -euo pipefail
LANE=xen
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

lane_args 900 "$@"

need_tools depmod:kmod cpio:cpio zstd:zstd xz:xz-utils strip:binutils gzip:gzip ip:iproute2 nft:nftables dnsmasq:dnsmasq-base
find_qemu
debian_kernel
XEN_PKGS=(xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils libxentoolcore1
  libxentoollog1 libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
  libxenhypfs1 libxenstore4 libxenmisc4.17 libyajl2)
fetch busybox-static "${XEN_PKGS[@]}"
# QEMU's multiboot loader takes no gzip.
XEN=$CACHE/xen-4.17-amd64
[ -s "$XEN" ] || { gunzip -c "$ROOT/boot/xen-4.17-amd64.gz" > "$XEN.part" && mv "$XEN.part" "$XEN"; }

# A guest: busybox, netfront, and our /init.
guest_initrd() {
  local img; img=$(mktemp -d /var/tmp/vifnet-lane-guest.XXXXXX)
  usr_merge "$img"; mkdir -p "$img"/{proc,sys,dev,bb}
  cp "$ROOT/bin/busybox" "$img/bb/busybox"
  cp "$ROOT/lib/modules/$KVER/kernel/drivers/net/xen-netfront.ko" "$img/"
  cp "$HERE/guest-init" "$img/init"; chmod +x "$img/init"
  ( cd "$img" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet ) | gzip -1 > "$1"
  rm -rf "$img"
}

BASE=$CACHE/xen-$KVER-$(cat "$HERE/lib.sh" "$0" "$HERE/guest-init" | sha1sum | cut -c1-10).cpio.zst
if [ ! -f "$BASE" ]; then
  say "building $BASE"
  img=$(mktemp -d /var/tmp/vifnet-lane-img.XXXXXX)
  skeleton "$img"
  for p in "${XEN_PKGS[@]:1}"; do dpkg-deb -x "$(ls -t "$DEBS/${p}"_*.deb | head -1)" "$img"; done
  rm -rf "${img:?}"/usr/share/{doc,man} "${img:?}/boot"
  # The host libraries the Xen tools link against (uuid, ...), resolved in the image.
  for b in "$img"/usr/lib/xen-4.17/bin/* "$img"/usr/bin/xenstore*; do
    head -c4 "$b" 2>/dev/null | grep -q ELF || continue
    LD_LIBRARY_PATH=$img/usr/lib/x86_64-linux-gnu put_libs "$img" "$b"
  done
  for b in xl xenstored xenconsoled xen-init-dom0; do ln -sf "/usr/lib/xen-4.17/bin/$b" "$img/usr/sbin/$b"; done
  put_modules "$img" xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback \
    dummy bridge br_netfilter veth tun nf_tables \
    'kernel/net/netfilter/nft_*.ko' 'kernel/net/ipv4/netfilter/nft_*.ko' 'kernel/net/ipv6/netfilter/nft_*.ko' \
    'kernel/net/bridge/netfilter/*.ko' 'kernel/net/netfilter/nf_conntrack*.ko' 'kernel/net/netfilter/nf_nat*.ko'
  mkdir -p "$img/etc/xen/images"
  cp "$VMLINUZ" "$img/etc/xen/images/vmlinuz"
  guest_initrd "$img/etc/xen/images/guest.gz"
  { init_prologue; cat <<'EOF'
hostname dom0
say() { echo "@@dom0 $(cut -d' ' -f1 /proc/uptime)s $*" > /dev/console; }
# What xencommons does on a real dom0.
modprobe -a xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback || say "modprobe failed"
mount -t xenfs xenfs /proc/xen
mkdir -p /var/run/xen /var/run/xenstored /var/lib/xenstored /var/lib/xen /var/log/xen/console
xenstored --pid-file /var/run/xenstored.pid || say "xenstored failed"
xen-init-dom0 > /var/log/xen/xen-init-dom0.log 2>&1 || say "xen-init-dom0 failed"
xenconsoled --pid-file=/var/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
say "toolstack up"
# Xen owns COM1 (the console); the command's output goes to COM2.
stty -F /dev/ttyS1 raw -echo
cd /t
/usr/bin/dash /t/run > /dev/ttyS1 2>&1 < /dev/null
rc=$?
say "done"
echo "@@rc=$rc@@" > /dev/console
poweroff -f
EOF
  } | store_base "$img" "$BASE"
fi

run_initrd "$BASE"
: > "$WORK/out"
set +e
# -smap,-smep: with them TCG kills a PV dom0 at its first exception. bootscrub=false: Xen
# would touch all of the VM's memory at boot.
boot "$LIMIT" -cpu max,-smap,-smep -m 1024 \
  -serial "file:$WORK/console" -serial "file:$WORK/out" \
  -kernel "$XEN" \
  -append "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M dom0_max_vcpus=1 bootscrub=false loglvl=warning guest_loglvl=warning" \
  -initrd "$VMLINUZ console=hvc0 earlyprintk=xen quiet panic=-1,$WORK/initrd"
rc=$?
set -e
cat "$WORK/out"
exit $rc
