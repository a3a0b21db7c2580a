#!/usr/bin/env bash
# Runs csi-sanity (kubernetes-csi/csi-test) against a real `tidemark serve` (engine, NBD
# server, admin API and CSI services) on a temporary store, once per access type (mount,
# then block), each time on a fresh store. Node specs stage for real: NBD attach (kernel nbd
# where the module is loaded, nbdfuse + loop otherwise), mkfs, mount, bind mounts. Needs root.
#
#   hack/csi-sanity.sh [extra csi-sanity flags]
#
# CSI_SANITY_FOCUS         ginkgo focus regex (default: every spec)
# CSI_SANITY_ACCESS_TYPES  default "mount block"
# TIDEMARK_CACHE           where hack/build-csi-sanity.sh keeps the binary
#                          (default ${XDG_CACHE_HOME:-~/.cache}/tidemark, shared by clones)
# CSI_SANITY_START_TIMEOUT  seconds the daemon may take to become ready (default 30)
# KEEP=1                   keep the work directory (daemon logs, csi-sanity output, JUnit)
#
# Prints per access type one line "csi-sanity (TYPE): N passed, N failed, N skipped, ..."
# and the reason of every skipped spec; exits non-zero when a spec fails. Needs
# `npm run build` first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f dist/src/cli/main.js ]; then
  echo "csi-sanity: dist/src/cli/main.js is missing; run npm run build first" >&2
  exit 2
fi
sanity="$(bash hack/build-csi-sanity.sh)"

work="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-sanity.XXXXXX")"
pid=""
stop_daemon() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  pid=""
}
# What a failed spec left staged: mounts under the work directory, their loop devices and
# FUSE mounts. Without this a failure leaves the machine with busy devices.
release_host_state() {
  local dir="$1" dev
  awk -v d="$dir/" 'index($5, d) == 1 && $0 !~ / - fuse/ {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for dev in /sys/block/loop*; do
    if grep -q "^$dir/" "$dev/loop/backing_file" 2>/dev/null; then losetup -d "/dev/$(basename "$dev")" 2>/dev/null || true; fi
  done
  awk -v d="$dir/" 'index($5, d) == 1 && $0 ~ / - fuse/ {print $5}' /proc/self/mountinfo | while read -r m; do fusermount3 -u -z "$m" 2>/dev/null || true; done
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  stop_daemon
  release_host_state "$work"
  if [ "${KEEP:-}" = 1 ]; then echo "csi-sanity: work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# ControllerModifyVolume specs use mutable parameters the plugin accepts; with
# CSI_SANITY_PARAMETERS=none they run as csi-sanity's default configuration does, without any.
mutable=()
if [ "${CSI_SANITY_PARAMETERS:-project}" != none ]; then
  printf 'retentionAge: "24h"\n' >"$work/mutable.yaml"
  mutable=(--csi.testvolumemutableparameters "$work/mutable.yaml")
fi
focus="${CSI_SANITY_FOCUS:-}"
# Seconds a daemon may take to start (slow under emulation, as in hack/kernel-tests.sh).
start_timeout="${CSI_SANITY_START_TIMEOUT:-30}"
overall=0

run_one() {
  local type="$1" dir="$work/$1"
  shift
  mkdir -p "$dir"
  local endpoint="unix://$dir/csi.sock"
  TIDEMARK_LOG_LEVEL="${TIDEMARK_LOG_LEVEL:-info}" bin/tidemark --store "$dir/store" serve --node-id sanity-node --csi-endpoint "$endpoint" \
    >"$dir/daemon.out" 2>"$dir/daemon.log" &
  pid=$!
  local waited
  for waited in $(seq 1 "$((start_timeout * 10))"); do
    grep -q 'tidemark daemon ready' "$dir/daemon.log" 2>/dev/null && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "csi-sanity ($type): tidemark serve did not start:" >&2
      cat "$dir/daemon.log" >&2
      return 1
    fi
    sleep 0.1
  done
  grep -q 'tidemark daemon ready' "$dir/daemon.log" || { echo "csi-sanity ($type): tidemark serve did not become ready in ${start_timeout}s" >&2; return 1; }
  echo "csi-sanity ($type): daemon ready after $((waited / 10)) s" >&2

  local status=0
  "$sanity" \
    --csi.endpoint "$endpoint" \
    --csi.mountdir "$dir/target" \
    --csi.stagingdir "$dir/staging" \
    --csi.testvolumeaccesstype "$type" \
    --csi.testvolumesize 67108864 \
    --csi.testvolumeexpandsize 134217728 \
    "${mutable[@]}" \
    ${focus:+--ginkgo.focus "$focus"} \
    --ginkgo.junit-report "$dir/junit.xml" \
    --ginkgo.no-color \
    "$@" >"$dir/sanity.out" 2>&1 || status=$?
  stop_daemon
  release_host_state "$dir"

  if [ ! -f "$dir/junit.xml" ]; then
    cat "$dir/sanity.out" >&2
    echo "csi-sanity ($type): no report was written (exit status $status)" >&2
    return 1
  fi
  # One <testcase> per spec, status passed|failed|skipped|pending|...; specs outside the focus
  # are skipped with the bare message "skipped" (ginkgo's filter, not a runtime Skip).
  count() { { grep -o "<testcase [^>]*status=\"$1\"" "$dir/junit.xml" || true; } | wc -l; }
  local passed failed reasons unfocused skipped pending
  passed=$(count passed)
  failed=$(($(count failed) + $(count panicked) + $(count interrupted) + $(count timedout) + $(count aborted)))
  reasons="$({ grep -o '<skipped message="[^"]*"' "$dir/junit.xml" || true; } | sed -e 's/^<skipped message="//' -e 's/"$//' -e "s/&#39;/'/g" -e 's/&quot;/"/g')"
  unfocused=$({ printf '%s\n' "$reasons" | grep -cx 'skipped'; } || true)
  skipped=$(($(count skipped) - unfocused))
  pending=$(count pending)
  echo "csi-sanity ($type): $passed passed, $failed failed, $skipped skipped, $pending pending (disabled in csi-test itself), $unfocused specs not in focus"
  { printf '%s\n' "$reasons" | grep -vx -e 'skipped' -e 'pending' -e '' || true; } | sort | uniq -c | sed 's/^ */  skipped /'
  if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
    { grep -E '^\s*\[FAIL\]|FAIL!' "$dir/sanity.out" || true; } | head -40 >&2
    echo "csi-sanity ($type): failures (exit status $status); rerun with KEEP=1 for the full output and the daemon log" >&2
    return 1
  fi
}

for type in ${CSI_SANITY_ACCESS_TYPES:-mount block}; do
  run_one "$type" "$@" || overall=1
done
exit "$overall"
