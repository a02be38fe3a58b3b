# shellcheck shell=bash
# What both VM lanes share (sourced by kernel.sh and xen.sh): a cache of Debian packages
# outside the repository, QEMU, the Debian kernel, and initramfs building.
#
# Everything fetched comes from the machine's own Debian mirror with `apt-get download`
# and is unpacked under $VIFNET_LANE_CACHE (default /var/tmp/vifnet-lanes); the first
# run fills it (about 100 MB), later runs reuse it. Nothing is installed system-wide but
# small host tools (kmod, cpio, zstd, file, xz-utils) when they are missing.

CACHE=${VIFNET_LANE_CACHE:-/var/tmp/vifnet-lanes}
DEBS=$CACHE/debs      # the .deb files as downloaded
ROOT=$CACHE/root      # all of them unpacked (dpkg-deb -x), the source of every image
STAMPS=$CACHE/stamps  # one empty file per package unpacked
mkdir -p "$DEBS" "$ROOT" "$STAMPS"

T0=${EPOCHREALTIME/./}
say() {
  local us=$(( ${EPOCHREALTIME/./} - T0 ))
  printf '[%s %3d.%02ds] %s\n' "$LANE" $((us / 1000000)) $((us % 1000000 / 10000)) "$*" >&2
}
die() { say "error: $*"; exit 125; }

# Host tools the image building needs, as command:package.
need_tools() {
  local want=() spec
  for spec in "$@"; do command -v "${spec%%:*}" >/dev/null || want+=("${spec#*:}"); done
  [ ${#want[@]} -eq 0 ] && return
  say "apt-get install ${want[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null; } \
    || die "cannot install ${want[*]}"
}

# Downloads and unpacks packages into $ROOT, each once.
fetch() {
  local todo=() p deb
  for p in "$@"; do [ -e "$STAMPS/$p" ] || todo+=("$p"); done
  [ ${#todo[@]} -eq 0 ] && return
  say "apt-get download ${todo[*]}"
  ( cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${todo[@]}" >/dev/null 2>&1 ) \
    || { apt-get update -qq && ( cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${todo[@]}" >/dev/null ); } \
    || die "apt-get download ${todo[*]} failed"
  for p in "${todo[@]}"; do
    deb=$(ls -t "$DEBS/${p}"_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || die "no .deb for $p"
    dpkg-deb -x "$deb" "$ROOT" && : > "$STAMPS/$p"
  done
}

# The kernel Debian 12 ships (what linux-image-amd64 depends on): sets KVER, VMLINUZ
# (the bzImage, for Xen's dom0 and domU) and VMLINUX (the bare ELF, which QEMU boots
# through its PVH note in half the time: no real-mode setup, no xz under emulation).
debian_kernel() {
  local pkg
  pkg=$(cat "$STAMPS/.kernel" 2>/dev/null) || true
  if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)
    [ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -1); }
    [ -n "$pkg" ] || die "cannot tell which kernel linux-image-amd64 is"
    echo "$pkg" > "$STAMPS/.kernel"
  fi
  fetch "$pkg"
  KVER=${pkg#linux-image-}
  VMLINUZ=$ROOT/boot/vmlinuz-$KVER
  VMLINUX=$CACHE/vmlinux-$KVER
  if [ ! -s "$VMLINUX" ]; then
    # The bzImage carries the ELF as an xz stream; xz stops at its end.
    local at
    at=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$VMLINUZ" | head -1 | cut -d: -f1)
    [ -n "$at" ] || die "no xz payload in $VMLINUZ"
    xz -dc --single-stream < <(tail -c +$((at + 1)) "$VMLINUZ") > "$VMLINUX.part" || die "cannot unpack $VMLINUZ"
    mv "$VMLINUX.part" "$VMLINUX"
  fi
  # The .deb ships no modules.dep: without it there is no module autoload.
  [ -f "$ROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$ROOT" "$KVER"
}

# QEMU: the system's if there is one, else Debian's unpacked into the cache (installing
# qemu-system-x86 would replace the machine's qemu-utils from backports). Sets QEMU and
# QEMU_DIRS (its firmware search path).
find_qemu() {
  QEMU_DIRS=()
  if QEMU=$(command -v qemu-system-x86_64); then return; fi
  if [ ! -e "$STAMPS/qemu-system-x86" ]; then
    # What installing it would bring, plus the firmware it needs in any case.
    fetch $(apt-get install -s --no-install-recommends qemu-system-x86 2>/dev/null | sed -n 's/^Inst \([^ ]*\).*/\1/p') \
      qemu-system-data seabios ipxe-qemu qemu-system-x86
  fi
  QEMU=$ROOT/usr/bin/qemu-system-x86_64
  export LD_LIBRARY_PATH=$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  QEMU_DIRS=(-L "$ROOT/usr/share/qemu" -L "$ROOT/usr/share/seabios")
  "$QEMU" --version >/dev/null || die "the unpacked QEMU does not run"
}

# Copies a file into an image at DST (default: the same path), with the shared libraries
# an ELF needs. Our own ELFs are stripped on the way: the image stays small.
put() {
  local img=$1 src=$2 dst=${3:-$2}
  mkdir -p "$img$(dirname "$dst")"
  cp -L "$src" "$img$dst"
  head -c4 "$src" | grep -q ELF || return 0
  case $src in */target/*) strip --strip-debug "$img$dst" 2>/dev/null || true ;; esac
  put_libs "$img" "$src"
}

# The host's shared libraries an ELF needs that the image lacks. Libraries the image has
# already (e.g. unpacked from a .deb) are found through $LD_LIBRARY_PATH, if set.
put_libs() {
  local img=$1 elf=$2 lib
  for lib in $(ldd "$elf" 2>/dev/null | grep -o '/[^ )]*' | grep -v "^$img/"); do
    [ -e "$img$lib" ] || { mkdir -p "$img$(dirname "$lib")"; cp -L "$lib" "$img$lib"; }
  done
}

# Kernel modules by name (or by path glob under the module tree), with what they depend
# on, and a modules.dep for the image so that the kernel's autoload finds them.
put_modules() {
  local img=$1 spec f; shift
  local tree=$ROOT/lib/modules/$KVER
  for spec in "$@"; do
    case $spec in
      */*) (cd "$tree" && ls $spec 2>/dev/null) | sed 's|.*/||; s|\.ko$||' ;;
      *) echo "$spec" ;;
    esac
  done | sort -u | while read -r spec; do
    modprobe -d "$ROOT" -S "$KVER" --show-depends "$spec" 2>/dev/null | sed -n 's/^insmod \([^ ]*\).*/\1/p'
  done | sort -u | while read -r f; do
    mkdir -p "$img$(dirname "${f#"$ROOT"}")"
    cp "$f" "$img${f#"$ROOT"}"
  done
  mkdir -p "$img/lib/modules/$KVER"
  cp "$tree"/modules.builtin* "$tree"/modules.order "$img/lib/modules/$KVER/"
  depmod -b "$img" "$KVER"
}

# The merged-/usr links. Every archive appended to an initramfs carries them too: the
# kernel's unpacker would otherwise replace the link /lib by a directory lib/.
usr_merge() {
  mkdir -p "$1"/usr/{bin,sbin,lib,lib64}
  local d; for d in bin sbin lib lib64; do ln -sfn "usr/$d" "$1/$d"; done
}

# Packs a directory as a zstd newc cpio padded to 512 bytes, so archives concatenate.
pack() {
  local dir=$1 out=$2 size
  ( cd "$dir" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) | zstd -q -T0 -3 > "$out"
  size=$(stat -c %s "$out")
  [ $((size % 512)) -eq 0 ] || head -c $((512 - size % 512)) /dev/zero >> "$out"
}

# A small root for the VMs: busybox for the shell tools, but dash as /bin/sh and the
# host's real ip, nft, dnsmasq, kmod and coreutils: Debian's static busybox runs its
# own applets in preference to $PATH, and `ip` there would be busybox's.
skeleton() {
  local img=$1 b
  usr_merge "$img"
  mkdir -p "$img"/{proc,sys,dev,tmp,run,etc,root,t,bb,var/lib/misc,var/run,var/log}
  cp "$ROOT/bin/busybox" "$img/bb/busybox"
  for b in ip bridge nft dnsmasq kmod; do put "$img" "$(command -v $b)" "/usr/sbin/$b"; done
  for b in modprobe insmod lsmod depmod; do ln -sf kmod "$img/usr/sbin/$b"; done
  put "$img" /usr/bin/dash /usr/bin/dash
  ln -sf dash "$img/usr/bin/sh"
  for b in timeout env setsid cat sleep; do put "$img" "$(command -v $b)" "/usr/bin/$b"; done
  # glibc loads libgcc_s at thread exit (xl aborts without it; so would Rust's tests).
  put "$img" /lib/x86_64-linux-gnu/libgcc_s.so.1
  cp /etc/protocols /etc/services "$img/etc/" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n' > "$img/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$img/etc/group"
  echo 'hosts: files' > "$img/etc/nsswitch.conf"
  echo '127.0.0.1 localhost' > "$img/etc/hosts"
}

# The start of every /init: filesystems, module autoload, device nodes of modules not
# loaded yet (/dev/net/tun), as systemd-tmpfiles would make them on a real host.
init_prologue() {
  cat <<'EOF'
#!/bb/busybox sh
/bb/busybox --install -s /bb
export PATH=/usr/sbin:/usr/bin:/bb HOME=/root
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
# devtmpfs has no /dev/stdin & co. (udev makes them on a real host; nft -f uses them)
ln -s /proc/self/fd /dev/fd; ln -s fd/0 /dev/stdin; ln -s fd/1 /dev/stdout; ln -s fd/2 /dev/stderr
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
# /tmp and /run stay on the (writable) initramfs: a checkout under /tmp brings its test
# binaries to the same paths, and a tmpfs mounted there would hide them.
mkdir -p /run/netns /run/lock
echo /usr/sbin/modprobe > /proc/sys/kernel/modprobe
while read -r _ path dev; do
  [ -n "$path" ] || continue
  mkdir -p "/dev/${path%/*}"; kind=${dev%%[0-9]*}; nums=${dev#?}
  [ -e "/dev/$path" ] || mknod "/dev/$path" "$kind" "${nums%:*}" "${nums#*:}"
done < "/lib/modules/$(uname -r)/modules.devname"
/usr/sbin/ip link set lo up
EOF
}

# Makes IMG, with its /init read from stdin, the cached base image BASE, and drops the
# older base images of the same lane.
store_base() {
  local img=$1 base=$2
  cat > "$img/init"; chmod +x "$img/init"
  pack "$img" "$base.part" && mv "$base.part" "$base"
  rm -rf "$img"
  find "$CACHE" -maxdepth 1 -name "$LANE-*.cpio.zst" ! -name "${base##*/}" -delete
}

# The command line both lanes take: -f SRC[:DST]... -t SECONDS -- COMMAND...; sets FILES,
# LIMIT (default $1) and COMMAND (one string for the VM's /bin/sh).
lane_args() {
  LIMIT=$1; shift
  FILES=()
  while [ $# -gt 0 ]; do
    case $1 in
      -f) FILES+=("$2"); shift 2 ;;
      -t) LIMIT=$2; shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] || die "usage: $LANE.sh [-f SRC[:DST]]... [-t SECONDS] -- COMMAND..."
  COMMAND=$(printf '%q ' "$@")
}

# The initramfs of one run, $WORK/initrd: the cached base image, then the files and the
# command (in a work dir removed on exit).
run_initrd() {
  WORK=$(mktemp -d "/tmp/vifnet-lane-$LANE.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  payload "$WORK/payload.cpio.zst" "$COMMAND" "${FILES[@]}"
  cat "$1" "$WORK/payload.cpio.zst" > "$WORK/initrd"
}

# The per-run archive: files given as SRC[:DST] (DST defaults to SRC's own path, so a
# test binary finds what cargo compiled into it) and the command to run.
payload() {
  local out=$1 cmd=$2 spec src dst; shift 2
  local dir; dir=$(mktemp -d "$WORK/payload.XXXXXX")
  usr_merge "$dir"; mkdir -p "$dir/t"
  for spec in "$@"; do
    src=${spec%%:*}; dst=${spec#*:}; [ "$dst" = "$spec" ] && dst=$(readlink -f "$src")
    put "$dir" "$src" "$dst"
  done
  printf '%s\n' "$cmd" > "$dir/t/run"
  pack "$dir" "$out"
}

# Runs QEMU until it powers off or the time is up, then returns the exit code the guest
# printed as @@rc=N@@ on the console (124: timed out, 125: no code, e.g. a panic).
# While it runs, a line every 10 s says how long and what the console last said.
boot() {
  local limit=$1; shift
  local t=${EPOCHREALTIME/./} rc qrc=0 pid ticks=0 last newest
  timeout -k 5 "$limit" "$QEMU" "${QEMU_DIRS[@]}" -accel tcg,thread=multi -smp 2 \
    -display none -monitor none -no-reboot -nic none "$@" > "$WORK/qemu.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.2
    if (( ++ticks % 50 == 0 )); then
      # The serial port written to last: the tests' stdout or stderr, or the console.
      newest=$(ls -t "$WORK"/out "$WORK"/err "$WORK"/console 2>/dev/null | head -1)
      last=$(tr -d '\r' < "${newest:-/dev/null}" | grep -a -v '^\s*$' | tail -1 | cut -c1-100)
      say "VM running $((ticks / 5)) s: ${last:-booting}"
    fi
  done
  wait "$pid" || qrc=$?
  t=$(( ${EPOCHREALTIME/./} - t ))
  rc=$(tr -d '\r' < "$WORK/console" | sed -n 's/.*@@rc=\([0-9]*\)@@.*/\1/p' | tail -1)
  say "VM ran $((t / 1000000)).$((t % 1000000 / 100000)) s, exit ${rc:-none}"
  if [ -z "$rc" ]; then
    [ $qrc -eq 124 ] && { say "timed out after ${limit}s"; rc=124; } || rc=125
    tr -d '\r' < "$WORK/console" | tail -40 >&2
    cat "$WORK/qemu.log" >&2
  fi
  return "$rc"
}
