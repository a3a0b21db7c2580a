#!/usr/bin/env bash
# Copies the snapshot API CRDs (VolumeSnapshot*, VolumeGroupSnapshot*) of
# kubernetes-csi/external-snapshotter into the chart's snapshot-crds subchart, unchanged.
# Run it after changing SNAPSHOT_CRDS_VERSION (or EXTERNAL_SNAPSHOTTER_VERSION); then bump the
# subchart's version and the dependency in charts/tidemark/Chart.yaml to match.
#
# Usage: bash hack/sync-snapshot-crds.sh
# The files come from the Go module (hack/build-k8s.sh snapshot-crds), not from the network
# directly, so they are the ones the control-plane tests run against.
set -euo pipefail

prog=sync-snapshot-crds
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
dest="$root/charts/tidemark/charts/snapshot-crds/crds"

bin="$(bash "$here/build-k8s.sh" snapshot-crds)"
src="$(dirname "$bin")/crds"
version="$(cat "$src/.version")"

shopt -s nullglob
files=("$src"/*.yaml)
[ "${#files[@]}" -gt 0 ] || { echo "$prog: ERROR: no CRDs in $src" >&2; exit 1; }

mkdir -p "$dest"
rm -f "$dest"/*.yaml
for f in "${files[@]}"; do
  install -m 0644 "$f" "$dest/"
done
echo "$prog: ${#files[@]} CRDs of external-snapshotter $version copied to ${dest#"$root"/}" >&2
chart_version="$(sed -n 's/^version: //p' "$root/charts/tidemark/charts/snapshot-crds/Chart.yaml")"
if [ "v$chart_version" != "$version" ]; then
  echo "$prog: NOTE: the subchart says version $chart_version; set it (and the dependency in charts/tidemark/Chart.yaml) to ${version#v}" >&2
fi
