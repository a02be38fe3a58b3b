#!/usr/bin/env bash
# The kernel lane: runs a command in Debian 12's own kernel (with the dummy, 8021q and
# bonding modules this machine's kernel lacks, and module autoload), booted by QEMU from
# an initramfs made here. No NIC: nothing in the VM can reach any network.
#
#   tests/lanes/kernel.sh [-f SRC[:DST]]... [-t SECONDS] -- COMMAND...
#
# -f puts a host file into the VM, at DST or at its own path (a test binary then finds
# the vifnet that cargo compiled into it). COMMAND runs under /bin/sh with its stdout
# and stderr passed through; the exit code is COMMAND's (124: timed out, 125: the lane
# itself failed).
set -euo pipefail
LANE=kernel
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

lane_args 600 "$@"

need_tools depmod:kmod cpio:cpio zstd:zstd xz:xz-utils strip:binutils ip:iproute2 nft:nftables dnsmasq:dnsmasq-base
find_qemu
debian_kernel
fetch busybox-static

# The base image, rebuilt when this lane's scripts change.
BASE=$CACHE/kernel-$KVER-$(cat "$HERE/lib.sh" "$0" | sha1sum | cut -c1-10).cpio.zst
if [ ! -f "$BASE" ]; then
  say "building $BASE"
  img=$(mktemp -d /var/tmp/vifnet-lane-img.XXXXXX)
  skeleton "$img"
  put_modules "$img" dummy 8021q bonding bridge br_netfilter veth tun macvlan nf_tables \
    'kernel/net/netfilter/nft_*.ko' 'kernel/net/ipv4/netfilter/nft_*.ko' 'kernel/net/ipv6/netfilter/nft_*.ko' \
    'kernel/net/bridge/netfilter/*.ko' 'kernel/net/netfilter/nf_conntrack*.ko' 'kernel/net/netfilter/nf_nat*.ko'
  { init_prologue; cat <<'EOF'
hostname kernel-lane
# ttyS1 carries the command's stdout, ttyS2 its stderr; the exit code goes to the console.
stty -F /dev/ttyS1 raw -echo; stty -F /dev/ttyS2 raw -echo
cd /t
/usr/bin/dash /t/run > /dev/ttyS1 2> /dev/ttyS2 < /dev/null
echo "@@rc=$?@@" > /dev/console
poweroff -f
EOF
  } | store_base "$img" "$BASE"
fi

run_initrd "$BASE"
: > "$WORK/out"; : > "$WORK/err"
set +e
boot "$LIMIT" -cpu max -m 1024 \
  -serial "file:$WORK/console" -serial "file:$WORK/out" -serial "file:$WORK/err" \
  -kernel "$VMLINUX" -initrd "$WORK/initrd" -append "console=ttyS0 quiet panic=-1"
rc=$?
set -e
cat "$WORK/out"; cat "$WORK/err" >&2
exit $rc
