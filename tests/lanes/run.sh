#!/usr/bin/env bash
# Runs the project's test binaries in the VM lanes (what `make test` calls after the
# tests on this machine's kernel):
#
#   tests/lanes/run.sh kernel   tests/kernel.rs (all, ignored ones too) and tests/takeover.rs
#                               in Debian 12's kernel: one VM boot
#   tests/lanes/run.sh xen      tests/xen.rs in dom0 of a real Xen 4.17: one Xen boot
#   tests/lanes/run.sh          both
#
# A new scenario is a #[test] in one of those files; nothing here changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
LANES=${*:-kernel xen}

# Builds the test binaries and prints the path of each one named.
test_binaries() {
  local args=() t
  for t in "$@"; do args+=(--test "$t"); done
  cargo test --locked --no-run --message-format=json "${args[@]}" 2>/dev/null \
    | grep -o '"executable":"[^"]*/deps/[^"]*"' | cut -d'"' -f4
}

VIFNET=$(pwd)/target/debug/vifnet
rc=0
for lane in $LANES; do
  case $lane in
    kernel)
      mapfile -t bins < <(test_binaries kernel takeover)
      files=(-f "$VIFNET")
      cmd='export VIFNET_LANE=kernel RUST_BACKTRACE=1; status=0'
      for b in "${bins[@]}"; do
        files+=(-f "$b")
        cmd+="; $b --include-ignored --test-threads=1 || status=1"
      done
      cmd+='; exit $status'
      tests/lanes/kernel.sh "${files[@]}" -- sh -c "$cmd" || rc=1
      ;;
    xen)
      mapfile -t bins < <(test_binaries xen)
      # The package, if `make test-package` built it, for the test that installs it in dom0.
      deb=()
      [ -n "${VIFNET_DEB:-}" ] && [ -f "$VIFNET_DEB" ] && deb=(-f "$VIFNET_DEB:/t/vifnet.deb")
      tests/lanes/xen.sh -f "$VIFNET" -f "${bins[0]}" "${deb[@]}" -- env VIFNET_LANE=xen RUST_BACKTRACE=1 "${bins[0]}" --include-ignored --test-threads=1 || rc=1
      ;;
    *) echo "run.sh: no lane $lane (kernel, xen)" >&2; exit 2 ;;
  esac
done
exit $rc
