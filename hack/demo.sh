#!/usr/bin/env bash
# The tidemark demo: a daemon on a scratch store, one volume, a snapshot, a marker, some
# damage, and a rewind to the marker that is checked byte for byte.
#
#   npm run demo                                  # builds, then runs this script
#   bash hack/demo.sh                             # after `npm run build`
#   TIDEMARK_DEMO_STORE=/some/dir bash hack/demo.sh   # keep the store afterwards
#
# Exits 0 when the rewound volume matches what it held at the marker, non-zero otherwise.
# The volumes "demo" and "demo-copy" in $TIDEMARK_DEMO_STORE are replaced on each run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tidemark_bin="$here/bin/tidemark"
if [ ! -f "$here/dist/src/cli/main.js" ]; then
  echo "demo: $here/dist is missing; run \`npm run build\` first (or \`npm run demo\`)" >&2
  exit 1
fi

if [ -t 1 ]; then bold=$'\033[1m'; green=$'\033[32m'; red=$'\033[31m'; plain=$'\033[0m'; else bold=; green=; red=; plain=; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tidemark-demo-work.XXXXXX")
if [ -n "${TIDEMARK_DEMO_STORE:-}" ]; then
  store=$TIDEMARK_DEMO_STORE
  keep_store=true
else
  store="$work/store"
  keep_store=false
fi
daemon_pid=

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$work/daemon.log" ]; then
    echo "--- last lines of the daemon log ---" >&2
    tail -n 20 "$work/daemon.log" >&2 || true
  fi
  rm -rf "$work"
  if [ "$keep_store" = true ]; then echo "(store kept at $store)"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# Shows the command, then runs it against the demo daemon.
tm() {
  printf '%s$ tidemark %s%s\n' "$bold" "$*" "$plain"
  "$tidemark_bin" --store "$store" "$@"
}
# Runs quietly: for the demo's own bookkeeping.
tm_quiet() { "$tidemark_bin" --store "$store" "$@"; }
sum() { sha256sum "$1" | cut -c1-16; }

say "Starting a tidemark daemon on $store"
mkdir -p "$store"
"$tidemark_bin" serve --store "$store" --node-id demo-node 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 1 150); do
  if tm_quiet status >/dev/null 2>&1; then break; fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "demo: the daemon exited before it was ready" >&2
    exit 1
  fi
  sleep 0.1
done
tm status

for old in demo-copy demo; do
  if tm_quiet volume info "$old" >/dev/null 2>&1; then
    echo "(removing the volume \"$old\" left by an earlier demo run)"
    tm_quiet volume delete "$old" --force >/dev/null
  fi
done

say "1. Create a 64 MiB volume. Every write to it goes through a journal first."
tm volume create demo --size 64Mi --retention-age 7d

say "2. Write 4 MiB of application data, and take a nightly snapshot."
head -c $((4 * 1024 * 1024)) /dev/urandom >"$work/app.bin"
tm volume write demo --offset 0 --file "$work/app.bin"
tm snapshot create demo nightly

say "3. The day goes on: 1 MiB of orders is written at 8 MiB."
head -c $((1024 * 1024)) /dev/urandom >"$work/orders.bin"
tm volume write demo --offset 8Mi --file "$work/orders.bin"

say "4. Before a risky migration, record a marker: a named point in the journal."
tm marker create before-migration --volume demo
tm_quiet volume read demo >"$work/good.img"
echo "the volume now has sha256 $(sum "$work/good.img")..."

say "5. The migration goes wrong: it zeroes 2 MiB at 1 MiB and scribbles over the orders."
head -c $((2 * 1024 * 1024)) /dev/zero | tm volume write demo --offset 1Mi
head -c $((512 * 1024)) /dev/urandom | tm volume write demo --offset 8Mi
tm_quiet volume read demo >"$work/damaged.img"
echo "the volume now has sha256 $(sum "$work/damaged.img")... (damaged)"

say "6. What changed since the nightly snapshot? (changed-block tracking)"
tm diff demo --base nightly

say "7. The markers of the volume:"
tm marker list demo

say "8. Rewind the volume to the marker: only the blocks written after it are rewritten."
tm restore demo --marker before-migration

say "9. Check: read the volume back and compare it with what it held at the marker."
tm_quiet volume read demo >"$work/rewound.img"
echo "at the marker: $(sum "$work/good.img")...   after the rewind: $(sum "$work/rewound.img")..."
if ! cmp -s "$work/good.img" "$work/rewound.img"; then
  echo "${red}FAILED: the rewound volume differs from the volume at the marker${plain}" >&2
  cmp "$work/good.img" "$work/rewound.img" >&2 || true
  exit 1
fi
echo "${green}identical, byte for byte${plain}"

say "10. The marker can also become a new volume, leaving the original as it is."
tm restore demo --marker before-migration --to demo-copy
tm_quiet volume read demo-copy >"$work/copy.img"
if ! cmp -s "$work/good.img" "$work/copy.img"; then
  echo "${red}FAILED: the copy differs from the volume at the marker${plain}" >&2
  exit 1
fi
tm volume list

say "Stopping the daemon"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
echo "${green}demo passed${plain}"
