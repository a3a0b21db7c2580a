#!/usr/bin/env bash
# The kernel NBD tier: boots a Debian kernel that has nbd.ko under qemu (software emulation,
# TCG: this machine's kernel has no nbd module, and KVM cannot boot that kernel here), with
# the host's root filesystem over 9p, and runs test/kernel/guest-scenarios.ts there against
# the real kernel nbd driver: staging over netlink, a SIGKILLed daemon under a writer, an
# outage past the dead-connection timeout, online expansion, csi-sanity's Node specs.
#
#   hack/kernel-tests.sh        prints the results; exits 1 when a scenario fails
#
# KERNEL_TESTS_OUT      where to keep the guest's logs (default: a new temporary directory)
# KERNEL_TESTS_TIMEOUT  seconds before the guest is killed (default 2400)
# Needs root, qemu-system-x86_64, and `npm run build` first.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f dist/test/kernel/guest-scenarios.js ] || { echo "kernel-tests: run npm run build first" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "kernel-tests: qemu-system-x86_64 is missing (apt-get install qemu-system-x86)" >&2; exit 2; }
guest="$(bash hack/build-guest.sh)"
cache="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}"
mkdir -p "$cache"
out="${KERNEL_TESTS_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tidemark-kernel.XXXXXX")}"
mkdir -p "$out"
echo "kernel-tests: guest $(basename "$guest"), logs in $out" >&2

# Under TCG with two CPUs the guest kernel has been seen to oops while patching its own code
# at boot (int3 in sched_clock_cpu, 2026-12-03, Linux 6.12.118), before any test ran. Such a
# boot is tried once more, and said so; a panic after the guest script started is a failure.
for attempt in 1 2; do
  rm -f "$out/results" "$out/guest-exit"
  started=$SECONDS
  status=0
  timeout "${KERNEL_TESTS_TIMEOUT:-2400}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 3072 \
    -nographic -no-reboot -serial "file:$out/console.log" -monitor none \
    -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" \
    -append "console=ttyS0 panic=-1 loglevel=4 tidemark.run=$PWD/hack/kernel-guest.sh tidemark.out=$out tidemark.cwd=$PWD tidemark.cache=$cache${CI:+ CI=$CI}" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$PWD,mount_tag=repo,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$cache,mount_tag=cache,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$out,mount_tag=out,security_model=none" </dev/null >"$out/qemu.log" 2>&1 || status=$?
  echo "kernel-tests: guest ran $((SECONDS - started)) s (qemu exit $status)" >&2
  if [ ! -s "$out/results" ] && [ "$attempt" = 1 ] && grep -q 'Kernel panic' "$out/console.log" && ! grep -q '^kernel-guest:' "$out/console.log"; then
    echo "kernel-tests: the guest kernel panicked while booting, before the tests; booting it once more. From its console:" >&2
    grep -m 3 -E 'Oops|RIP|Kernel panic' "$out/console.log" >&2 || true
    cp "$out/console.log" "$out/console.boot-panic.log"
    continue
  fi
  break
done

if [ ! -s "$out/results" ]; then
  echo "kernel-tests: the guest reported no results; its console:" >&2
  tail -n 60 "$out/console.log" >&2 || true
  exit 1
fi
cat "$out/results"
if grep -q '^not ok' "$out/results" || [ "$(cat "$out/guest-exit" 2>/dev/null)" != 0 ]; then exit 1; fi
