#!/usr/bin/env bash
# Builds csi-sanity from kubernetes-csi/csi-test (the newest v5 release, or $CSI_TEST_VERSION)
# into $TIDEMARK_CACHE/bin (default: ${XDG_CACHE_HOME:-~/.cache}/tidemark/bin, outside the
# clone so that every later clone and CI run on the machine reuses it) and prints its path on
# stdout. A binary already built for that version is reused. Needs Go >= 1.25 and the Go
# module proxy (or a filled module cache).
set -euo pipefail
cd "$(dirname "$0")/.."

version="${CSI_TEST_VERSION:-v5.6.0}"
cache="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}"
bin="$cache/bin/csi-sanity"
stamp="$cache/bin/csi-sanity.version"

if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build-csi-sanity: go is not installed; install Go 1.25 or newer (https://go.dev/dl, or apt-get install golang-go where it is new enough)" >&2
  exit 127
fi

mkdir -p "$cache/bin"
echo "build-csi-sanity: building csi-sanity $version with $(go version)" >&2
GOBIN="$cache/bin" GOFLAGS="${GOFLAGS:-} -mod=mod" go install "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$version" >&2
echo "$version" >"$stamp"
echo "$bin"
