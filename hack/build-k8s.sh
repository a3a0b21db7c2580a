#!/usr/bin/env bash
# Builds the Kubernetes pieces that tidemark's control-plane tests run against (etcd, the
# kube-* commands, the CSI sidecars, snapshot-controller, helm) and copies the snapshot CRDs.
#
# Usage: bash hack/build-k8s.sh [COMPONENT...]
#   components: etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
#               kube-proxy csi-provisioner csi-snapshotter snapshot-controller csi-resizer helm
#               snapshot-crds
#   none given: the control-plane test set (etcd kube-apiserver kube-controller-manager kubectl
#               csi-provisioner csi-snapshotter snapshot-controller helm snapshot-crds)
# Prints the bin directory on stdout; progress goes to stderr.
#
# Why from source: these machines reach the Go module proxy but no release downloads and no
# container registry, so everything is compiled from modules. A cold build of the default set
# takes ~25-30 min on 2 cores, so the results live in a cache OUTSIDE the clone, shared by every
# clone and CI run on the machine:
#   ${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-~/.cache}/tidemark}/k8s/{bin,src,crds}
# A binary is rebuilt only when its version stamp (bin/NAME.version) differs from the wanted one.
#
# Versions (override with the environment variables):
#   KUBERNETES_VERSION (v1.35.4)  ETCD_VERSION (v3.6.16)  EXTERNAL_PROVISIONER_VERSION (v6.4.0)
#   EXTERNAL_SNAPSHOTTER_VERSION (v8.7.0)  EXTERNAL_RESIZER_VERSION (v2.3.0)  HELM_VERSION (v3.22.0)
#   SNAPSHOT_CRDS_VERSION (defaults to EXTERNAL_SNAPSHOTTER_VERSION)
set -euo pipefail

prog=build-k8s
log() { echo "$prog: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

all_components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy
  csi-provisioner csi-snapshotter snapshot-controller csi-resizer helm snapshot-crds)
default_components=(etcd kube-apiserver kube-controller-manager kubectl csi-provisioner csi-snapshotter
  snapshot-controller helm snapshot-crds)

usage() {
  echo "usage: bash hack/build-k8s.sh [COMPONENT...]" >&2
  echo "components: ${all_components[*]}" >&2
  echo "default:    ${default_components[*]}" >&2
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac

cache="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/k8s"
bin_dir="$cache/bin"
src_dir="$cache/src"
crd_dir="$cache/crds"

# One wrapper module per upstream module ("group"); a group's commands share one compile.
declare -A group_module=(
  [kubernetes]=k8s.io/kubernetes
  [etcd]=go.etcd.io/etcd/server/v3
  [external-provisioner]=github.com/kubernetes-csi/external-provisioner/v6
  [external-snapshotter]=github.com/kubernetes-csi/external-snapshotter/v8
  [external-resizer]=github.com/kubernetes-csi/external-resizer/v2
  [helm]=helm.sh/helm/v3
)
declare -A group_version=(
  [kubernetes]="${KUBERNETES_VERSION:-v1.35.4}"
  [etcd]="${ETCD_VERSION:-v3.6.16}"
  [external-provisioner]="${EXTERNAL_PROVISIONER_VERSION:-v6.4.0}"
  [external-snapshotter]="${EXTERNAL_SNAPSHOTTER_VERSION:-v8.7.0}"
  [external-resizer]="${EXTERNAL_RESIZER_VERSION:-v2.3.0}"
  [helm]="${HELM_VERSION:-v3.22.0}"
)
# The order groups are built in: the quick ones first, so that a broken setup shows up early.
group_order=(etcd helm kubernetes external-provisioner external-snapshotter external-resizer)

declare -A component_group=() component_package=()
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy; do
  component_group[$c]=kubernetes
  component_package[$c]=k8s.io/kubernetes/cmd/$c
done
component_group[etcd]=etcd
component_package[etcd]=go.etcd.io/etcd/server/v3 # etcd's main package is the module root
component_group[csi-provisioner]=external-provisioner
component_package[csi-provisioner]=github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner
component_group[csi-snapshotter]=external-snapshotter
component_package[csi-snapshotter]=github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter
component_group[snapshot-controller]=external-snapshotter
component_package[snapshot-controller]=github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller
component_group[csi-resizer]=external-resizer
component_package[csi-resizer]=github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer
component_group[helm]=helm
component_package[helm]=helm.sh/helm/v3/cmd/helm
component_group[snapshot-crds]=snapshot-crds
snapshot_crds_version="${SNAPSHOT_CRDS_VERSION:-${group_version[external-snapshotter]}}"

# ---- arguments
if [ "$#" -eq 0 ]; then
  set -- "${default_components[@]}"
fi
declare -A wanted=()
for c in "$@"; do
  if [ -z "${component_group[$c]+x}" ]; then
    usage
    die "unknown component '$c'"
  fi
  wanted[$c]=1
done

start_all=$SECONDS
elapsed() { echo "$((SECONDS - $1)) s"; }

is_fresh() { # component version
  [ -x "$bin_dir/$1" ] && [ "$(cat "$bin_dir/$1.version" 2>/dev/null)" = "$2" ]
}

# Version that a wrapper pins for modules the upstream go.mod replaces with a local directory
# (kubernetes' staging modules, etcd's sibling modules, the snapshotter's ./client): these are
# published from the same commit under the tag printed here.
sibling_version() { # group
  local v="${group_version[$1]}"
  case "$1" in
    kubernetes) echo "v0.${v#v1.}" ;; # k8s.io/kubernetes v1.X.Y <-> k8s.io/<staging> v0.X.Y
    *) echo "$v" ;;
  esac
}

# `go install k8s.io/kubernetes/cmd/...@vX` is refused because kubernetes' go.mod has replace
# lines (to ./staging/...), and replace lines only count in the main module. So each upstream
# module gets a tiny main module of our own that requires it, repeats its replace lines (turning
# local-directory ones into published versions) and lists every command as a `tool`, so that
# `go mod tidy` records go.sum entries for all of them even when only some are built today.
prepare_wrapper() { # group
  local g="$1" mod="${group_module[$1]}" ver="${group_version[$1]}"
  local dir="$src_dir/$g" stamp="$src_dir/$g/.tidemark-wrapper"
  if [ -f "$dir/go.mod" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod@$ver" ]; then
    return 0
  fi
  local t0=$SECONDS
  log "preparing wrapper module $dir for $mod $ver ..."
  rm -rf "$dir"
  mkdir -p "$dir"
  local upstream_mod
  upstream_mod="$(cd "$dir" && "$go_cmd" mod download -json "$mod@$ver" | jq -r '.GoMod // empty')" ||
    die "cannot download $mod@$ver from the module proxy"
  [ -n "$upstream_mod" ] || die "no go.mod for $mod@$ver"

  local -a edits=("-require=$mod@$ver")
  local old new newver required sib
  sib="$(sibling_version "$g")"
  while IFS=$'\t' read -r old new newver; do
    if [ -n "$newver" ]; then
      edits+=("-replace=$old=$new@$newver")
      continue
    fi
    # A local-directory replace of a module upstream does not require is a guard
    # (etcd's "=> ./FORBIDDEN_DEPENDENCY"); it has nothing to point at here.
    required="$("$go_cmd" mod edit -json "$upstream_mod" | jq -r --arg p "$old" '.Require[]? | select(.Path == $p) | .Path')"
    [ -n "$required" ] || continue
    edits+=("-replace=$old=$old@$sib")
  done < <("$go_cmd" mod edit -json "$upstream_mod" |
    jq -r '.Replace[]? | select(.Old.Version == null) | [.Old.Path, .New.Path, (.New.Version // "")] | @tsv')
  local c
  for c in "${!component_group[@]}"; do
    [ "${component_group[$c]}" = "$g" ] && edits+=("-tool=${component_package[$c]}")
  done
  (
    cd "$dir"
    "$go_cmd" mod init "tidemark.local/k8s-build/$g" >/dev/null 2>&1
    "$go_cmd" mod edit "${edits[@]}"
    "$go_cmd" mod tidy >&2
  ) || die "go mod tidy failed in $dir"
  echo "$mod@$ver" >"$stamp"
  log "wrapper for $mod $ver ready in $(elapsed "$t0")"
}

version_ldflags() { # group
  local g="$1" v="${group_version[$1]}" x=() p major minor cgv
  case "$g" in
    kubernetes)
      # What kubernetes' hack/lib/version.sh stamps; without it --version says v0.0.0-master.
      major="${v#v}"; major="${major%%.*}"
      minor="${v#v*.}"; minor="${minor%%.*}"
      for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        x+=("-X $p.gitVersion=$v" "-X $p.gitMajor=$major" "-X $p.gitMinor=$minor" "-X $p.gitTreeState=clean")
      done
      ;;
    external-provisioner | external-snapshotter | external-resizer)
      x+=("-X main.version=$v") ;; # what csi release-tools stamps
    helm)
      # helm's Makefile also stamps the Kubernetes version it was built against, which
      # `helm template` reports as .Capabilities.KubeVersion.
      cgv="$(cd "$src_dir/$g" && "$go_cmd" list -m -f '{{.Version}}' k8s.io/client-go)"
      cgv="${cgv#v0.}"
      x+=("-X helm.sh/helm/v3/internal/version.version=$v" "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${cgv%%.*}"
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${cgv%%.*}")
      ;;
    etcd) ;; # etcd's version is a constant in go.etcd.io/etcd/api/v3/version
  esac
  echo "${x[*]-}"
}

verify_binary() { # component version
  local c="$1" v="$2" out
  local -a args=(--version)
  case "$c" in
    kubectl) args=(version --client) ;;
    helm) args=(version) ;;
  esac
  out="$("$bin_dir/$c" "${args[@]}" 2>&1)" || die "$bin_dir/$c ${args[*]} failed: $out"
  # etcd prints "3.6.16" without the v.
  case "$out" in
    *"${v#v}"*) ;;
    *) die "$bin_dir/$c ${args[*]} does not report $v: $out" ;;
  esac
}

build_group() { # group component...
  local g="$1"; shift
  local v="${group_version[$g]}" c t0=$SECONDS tmp ldflags
  prepare_wrapper "$g"
  local -a pkgs=()
  for c in "$@"; do pkgs+=("${component_package[$c]}"); done
  tmp="$(mktemp -d "$bin_dir/.build.XXXXXX")"
  tmp_dirs+=("$tmp")
  # With one package -o names the file (etcd's package path ends in /v3); with several, go build
  # names each binary after its cmd/<name> directory, which is the component name.
  local out="$tmp/"
  [ "${#pkgs[@]}" -eq 1 ] && out="$tmp/$1"
  ldflags="-s -w $(version_ldflags "$g")"
  log "building $* $v ..."
  # CGO_ENABLED=0: static binaries, so that they can later be copied into scratch images.
  (cd "$src_dir/$g" && CGO_ENABLED=0 "$go_cmd" build -trimpath -ldflags "$ldflags" -o "$out" "${pkgs[@]}") ||
    die "go build of $* $v failed"
  # Move in, then stamp: a stamp never describes a binary that was not fully written.
  for c in "$@"; do
    mv -f "$tmp/$c" "$bin_dir/$c"
    verify_binary "$c" "$v"
    echo "$v" >"$bin_dir/$c.version"
  done
  rm -rf "$tmp"
  log "built $* $v in $(elapsed "$t0")"
}

crds_fresh() {
  [ "$(cat "$crd_dir/.version" 2>/dev/null)" = "$snapshot_crds_version" ] && compgen -G "$crd_dir/*.yaml" >/dev/null
}

copy_snapshot_crds() {
  local v="$snapshot_crds_version" mod=github.com/kubernetes-csi/external-snapshotter/client/v8 dir f
  log "copying snapshot CRDs from $mod $v ..."
  dir="$(cd "$cache" && "$go_cmd" mod download -json "$mod@$v" | jq -r '.Dir // empty')" ||
    die "cannot download $mod@$v"
  [ -d "$dir/config/crd" ] || die "$mod@$v has no config/crd"
  rm -f "$crd_dir"/*.yaml
  for f in "$dir"/config/crd/*.yaml; do
    case "$(basename "$f")" in kustomization.yaml) continue ;; esac
    # Module-cache files are read-only; the copies need not be.
    install -m 0644 "$f" "$crd_dir/"
  done
  echo "$v" >"$crd_dir/.version"
}

# Go, jq and the build lock are needed only when something is missing from the cache: a
# machine with a filled cache runs this in a fraction of a second, Go or not.
go_cmd=""
prepare_build() {
  [ -z "$go_cmd" ] || return 0
  # /usr/local/go/bin is where the official tarball goes; CI shells do not always have it on PATH.
  go_cmd="${GO:-go}"
  if ! command -v "$go_cmd" >/dev/null 2>&1; then
    if [ -x /usr/local/go/bin/go ]; then
      go_cmd=/usr/local/go/bin/go
    else
      log "ERROR: go is not installed (nor on PATH): install Go 1.26 or newer (https://go.dev/dl); the components are compiled from the Go module proxy"
      exit 127
    fi
  fi
  # `go mod edit -tool` needs 1.24; the modules themselves declare go 1.26, which an older go
  # would try to satisfy by downloading a toolchain.
  local minor
  minor="$("$go_cmd" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  if ! [ "$minor" -ge 24 ] 2>/dev/null; then
    die "$("$go_cmd" version) is too old; Go 1.26 or newer is needed"
  fi
  command -v jq >/dev/null 2>&1 || die "jq is needed (apt-get install jq)"
  mkdir -p "$bin_dir" "$src_dir" "$crd_dir"
  # Two harnesses starting at once must not build into the same wrapper and bin together.
  # The caller re-checks the stamps after this, since the other build may have made them.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.lock"
    if ! flock -n 9; then
      log "another build-k8s is running; waiting for it"
      flock 9
    fi
  fi
  # Leftovers of a build that was killed (the lock is ours, so no build is using them).
  rm -rf "$bin_dir"/.build.*
}

tmp_dirs=()
cleanup() { [ "${#tmp_dirs[@]}" -eq 0 ] || rm -rf "${tmp_dirs[@]}"; }
trap cleanup EXIT

stale_components() { # group: prints the wanted components of the group that need a build
  local c
  for c in "${all_components[@]}"; do
    if [ -z "${wanted[$c]+x}" ] || [ "${component_group[$c]}" != "$1" ]; then continue; fi
    is_fresh "$c" "${group_version[$1]}" || echo "$c"
  done
}

for g in "${group_order[@]}"; do
  mapfile -t todo < <(stale_components "$g")
  if [ "${#todo[@]}" -gt 0 ]; then
    prepare_build
    mapfile -t todo < <(stale_components "$g")
  fi
  for c in "${all_components[@]}"; do
    if [ -n "${wanted[$c]+x}" ] && [ "${component_group[$c]}" = "$g" ] && [[ " ${todo[*]} " != *" $c "* ]]; then
      log "$c ${group_version[$g]} is cached"
    fi
  done
  [ "${#todo[@]}" -eq 0 ] || build_group "$g" "${todo[@]}"
done
if [ -n "${wanted[snapshot-crds]+x}" ]; then
  if crds_fresh; then
    log "snapshot-crds $snapshot_crds_version is cached"
  else
    prepare_build
    crds_fresh || copy_snapshot_crds
  fi
fi

log "done in $(elapsed "$start_all")"
echo "$bin_dir"
