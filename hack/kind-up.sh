#!/usr/bin/env bash
# A kind cluster with tidemark installed from charts/tidemark, for machines with Docker.
#
# Usage:
#   bash hack/kind-up.sh [--name NAME] [--workers N] [--oci] [--attach auto|kernel|fuse]
#   bash hack/kind-up.sh down [--name NAME]
#
#   --name     cluster name (default tidemark)
#   --workers  worker nodes besides the control plane (default 0: one node that runs everything)
#   --oci      build the image with hack/build-image.sh (no Docker build) and load the archive
#   --attach   force how volumes attach; default: kernel when the host has (or can load) the
#              nbd module, fuse (nbdfuse + loop) otherwise
#
# What it does:
#   1. loads the nbd and fuse modules on the host when it can (kind nodes share the host's
#      kernel), or says that the nbdfuse path will be used;
#   2. creates the cluster; every node mounts the host's /dev (NBD, loop and FUSE devices
#      appear there) and /lib/modules, a host directory as /var/lib/kubelet with Bidirectional
#      propagation (mounts the driver makes must reach the kubelet and the pods, as in
#      TopoLVM's e2e setup), and a host directory as tidemark's store;
#   3. builds the image (docker build, or --oci) and loads it into the nodes;
#   4. helm-installs the chart with the snapshot CRDs and a snapshot-controller running
#      --enable-distributed-snapshotting (kind ships neither), and waits for the node pods.
# Then run: bash hack/kind-e2e.sh --name NAME
#
# Needs docker, kind, kubectl and helm (kubectl and helm may come from hack/build-k8s.sh's
# cache), and root or sudo for modprobe and for making the kubelet directories shared mounts.
# Host state lives in ${TIDEMARK_KIND_DIR:-/tmp/tidemark-kind}/NAME; `down` removes it.
# NOT verified by CI: the CI machines have no Docker engine (CI runs bash -n and shellcheck).
set -euo pipefail

prog=kind-up
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
log() { echo "$prog: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cmd=up
if [ "${1:-}" = down ] || [ "${1:-}" = up ]; then cmd="$1"; shift; fi
name=tidemark
workers=0
oci=false
attach=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --oci) oci=true; shift ;;
    --attach) attach="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$workers" in '' | *[!0-9]*) die "--workers takes a number" ;; esac
case "$attach" in "" | auto | kernel | fuse) ;; *) die "--attach is auto, kernel or fuse" ;; esac

data="${TIDEMARK_KIND_DIR:-/tmp/tidemark-kind}/$name"
namespace=tidemark-system
release=tidemark
image_ref=docker.io/library/tidemark:dev
context="kind-$name"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
as_root() { "${sudo_cmd[@]}" "$@"; }

cache_bin="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/k8s/bin"
find_tool() { # name -> path (PATH first, then the build cache)
  if command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  elif [ -x "$cache_bin/$1" ]; then
    echo "$cache_bin/$1"
  else
    return 1
  fi
}

kind_bin="${KIND:-$(find_tool kind || true)}"
[ -n "$kind_bin" ] || die "kind is not installed (https://kind.sigs.k8s.io: go install sigs.k8s.io/kind@latest)"

nodes() { # the kind node names of the cluster
  "$kind_bin" get nodes --name "$name"
}

# ---- down

if [ "$cmd" = down ]; then
  if "$kind_bin" get clusters | grep -qx "$name"; then
    "$kind_bin" delete cluster --name "$name"
  fi
  if [ -d "$data" ]; then
    # Unmount what `up` bind-mounted (and anything a node left below it), deepest first.
    while read -r target; do
      as_root umount -l "$target" 2>/dev/null || true
    done < <(findmnt -rn -o TARGET | grep "^$data/" | sort -r)
    as_root rm -rf "$data"
  fi
  log "cluster $name deleted"
  exit 0
fi

# ---- up: tools

docker_bin="${DOCKER:-$(find_tool docker || true)}"
[ -n "$docker_bin" ] || die "docker is not installed; kind needs a Docker engine"
"$docker_bin" info >/dev/null 2>&1 || die "the Docker engine does not answer ($docker_bin info failed)"
kubectl_bin="${KUBECTL:-$(find_tool kubectl || true)}"
[ -n "$kubectl_bin" ] || kubectl_bin="$(bash "$here/build-k8s.sh" kubectl)/kubectl"
helm_bin="${HELM:-$(find_tool helm || true)}"
[ -n "$helm_bin" ] || helm_bin="$(bash "$here/build-k8s.sh" helm)/helm"
kubectl() { "$kubectl_bin" --context "$context" "$@"; }

# ---- 1. kernel modules

if [ -z "$attach" ]; then
  if [ -e /sys/module/nbd ] || as_root modprobe nbd nbds_max=32 2>/dev/null; then
    attach=kernel
    log "the nbd module is loaded: volumes attach through the kernel NBD client (/dev/nbdN)"
  else
    attach=fuse
    log "the nbd module is not available on this host: volumes attach through nbdfuse + a loop device (the nbdfuse path)"
  fi
fi
if [ "$attach" != kernel ]; then
  [ -e /dev/fuse ] || as_root modprobe fuse 2>/dev/null || die "/dev/fuse is missing and the fuse module cannot be loaded; the nbdfuse path needs it"
  [ -e /dev/loop-control ] || as_root modprobe loop 2>/dev/null || die "/dev/loop-control is missing and the loop module cannot be loaded"
fi

# ---- 2. the cluster

node_names=("$name-control-plane")
for i in $(seq 1 "$workers"); do
  if [ "$i" -eq 1 ]; then node_names+=("$name-worker"); else node_names+=("$name-worker$i"); fi
done

# A host directory mounted with Bidirectional propagation must itself be a shared mount.
make_shared() { # dir
  mkdir -p "$1"
  if [ "$(findmnt -n -o PROPAGATION --target "$1" | head -n 1)" != shared ]; then
    if ! findmnt -rn -o TARGET | grep -qx "$1"; then as_root mount --bind "$1" "$1"; fi
    as_root mount --make-rshared "$1"
  fi
}

if "$kind_bin" get clusters | grep -qx "$name"; then
  log "cluster $name exists; reusing it"
else
  mkdir -p "$data"
  config="$data/kind-config.yaml"
  {
    echo "# Written by hack/kind-up.sh"
    echo "kind: Cluster"
    echo "apiVersion: kind.x-k8s.io/v1alpha4"
    echo "name: $name"
    echo "nodes:"
    for node in "${node_names[@]}"; do
      make_shared "$data/$node/kubelet"
      mkdir -p "$data/$node/store"
      role=worker
      [ "$node" != "$name-control-plane" ] || role=control-plane
      echo "  - role: $role"
      echo "    extraMounts:"
      echo "      - {hostPath: /dev, containerPath: /dev}"
      echo "      - {hostPath: /lib/modules, containerPath: /lib/modules, readOnly: true}"
      echo "      - {hostPath: $data/$node/kubelet, containerPath: /var/lib/kubelet, propagation: Bidirectional}"
      echo "      - {hostPath: $data/$node/store, containerPath: /var/lib/tidemark}"
    done
  } >"$config"
  log "creating cluster $name (${#node_names[@]} node(s))"
  "$kind_bin" create cluster --name "$name" --config "$config" --wait 120s
fi

# ---- 3. the image

if $oci; then
  archive="$data/tidemark.oci.tar"
  (cd "$root" && npm run build >/dev/null)
  as_root bash "$here/build-image.sh" --out "$archive" --tag "$image_ref"
  "$kind_bin" load image-archive "$archive" --name "$name"
else
  "$docker_bin" build -t "$image_ref" "$root"
  "$kind_bin" load docker-image "$image_ref" --name "$name"
fi

# ---- 4. the chart

kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The node pods are privileged.
kubectl label namespace "$namespace" --overwrite pod-security.kubernetes.io/enforce=privileged >/dev/null

snapshot_crds=true
if kubectl get crd volumesnapshots.snapshot.storage.k8s.io >/dev/null 2>&1 &&
  ! kubectl get crd volumesnapshots.snapshot.storage.k8s.io -o jsonpath='{.metadata.labels.helm\.sh/chart}' 2>/dev/null | grep -q .; then
  # Someone installed them by other means: leave them alone.
  snapshot_crds=false
fi

"$helm_bin" --kube-context "$context" upgrade --install "$release" "$root/charts/tidemark" \
  --namespace "$namespace" \
  --set image.tidemark.repository="${image_ref%:*}" \
  --set image.tidemark.tag="${image_ref##*:}" \
  --set image.tidemark.pullPolicy=Never \
  --set node.attach="$attach" \
  --set snapshotCRDs.install="$snapshot_crds" \
  --set snapshotController.enabled=true \
  --set snapshotController.replicas=1 \
  --wait --timeout 10m

kubectl -n "$namespace" rollout status "daemonset/$release-node" --timeout 5m
for node in $(nodes); do
  # Nodes with the control-plane taint run no node pod (with workers present).
  if kubectl get node "$node" -o jsonpath='{.spec.taints[*].key}' | grep -q node-role.kubernetes.io/control-plane; then continue; fi
  for _ in $(seq 1 60); do
    if kubectl get csinode "$node" -o jsonpath='{.spec.drivers[*].name}' 2>/dev/null | grep -qw csi.tidemark.dev; then break; fi
    sleep 2
  done
  kubectl get csinode "$node" -o jsonpath='{.spec.drivers[*].name}' | grep -qw csi.tidemark.dev ||
    die "csi.tidemark.dev did not register on node $node (kubectl -n $namespace logs ds/$release-node -c node-driver-registrar)"
done
log "tidemark is running on cluster $name (context $context, attach=$attach)"
log "next: bash hack/kind-e2e.sh --name $name"
