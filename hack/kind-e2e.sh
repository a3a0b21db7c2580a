#!/usr/bin/env bash
# The user scenario, through kubectl only, on a cluster made by hack/kind-up.sh (or any
# cluster where the chart runs with the snapshot CRDs and a distributed snapshot-controller).
#
# Usage: bash hack/kind-e2e.sh [--name NAME | --context CONTEXT] [--keep]
#   --name     the kind cluster (context kind-NAME; default tidemark)
#   --context  any kubectl context instead
#   --keep     leave the test namespace behind (it is deleted at the end otherwise)
#
# The scenario, each step checked by content hashes read back inside pods:
#   1. a PVC of the chart's StorageClass and a pod writing 8 MiB to it (state A);
#   2. a RecoveryPoint of the claim (phase Recorded) and a VolumeSnapshot (readyToUse);
#   3. the pod overwrites the data (state B);
#   4. a new PVC with the VolumeSnapshot as dataSource holds state A;
#   5. a VolumeRestore of the RecoveryPoint into a new claim holds state A;
#   6. with the pod gone, a VolumeRestore in place returns the claim to state A, and a
#      VolumeRestore to the time after step 3 returns it to state B;
#   7. the claim is expanded with kubectl patch; after the pod restarts (expansion is
#      OFFLINE) the filesystem shows the new size. With several nodes this step needs the
#      claim on the node whose csi-resizer holds the leader lease (charts/tidemark/README.md,
#      "Resizing"); on kind-up.sh's default single node it always is.
# Every pod is pinned to the node of the first one: volumes and snapshots live on one node,
# and a PVC restored from a VolumeSnapshot must be consumed there.
# The pods run the tidemark image itself (bash, coreutils), which kind-up.sh loaded, so
# nothing is pulled from a registry.
#
# NOT verified by CI: the CI machines have no Docker engine (CI runs bash -n and shellcheck).
set -euo pipefail

prog=kind-e2e
log() { echo "$prog: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

context=kind-tidemark
keep=false
while [ "$#" -gt 0 ]; do
  case "$1" in
    --name) context="kind-$2"; shift 2 ;;
    --context) context="$2"; shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

here="$(cd "$(dirname "$0")" && pwd)"
cache_bin="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/k8s/bin"
kubectl_bin="${KUBECTL:-$(command -v kubectl || true)}"
[ -n "$kubectl_bin" ] || kubectl_bin="$cache_bin/kubectl"
[ -x "$kubectl_bin" ] || kubectl_bin="$(bash "$here/build-k8s.sh" kubectl)/kubectl"
kubectl() { "$kubectl_bin" --context "$context" "$@"; }

ns="tidemark-e2e-$(date +%s)"
storage_class="${TIDEMARK_STORAGE_CLASS:-tidemark}"
snapshot_class="${TIDEMARK_SNAPSHOT_CLASS:-tidemark}"
image="${TIDEMARK_IMAGE:-docker.io/library/tidemark:dev}"
node=""
t0=$SECONDS

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    log "state at the failure (namespace $ns):"
    kubectl -n "$ns" get pvc,pods,volumesnapshots,recoverypoints,volumerestores -o wide >&2 || true
    kubectl -n "$ns" get events --sort-by=.lastTimestamp >&2 2>/dev/null | tail -n 30 >&2 || true
  fi
  if $keep; then
    log "namespace $ns kept"
  else
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# Waits until `kubectl get KIND NAME -o jsonpath=PATH` prints VALUE.
wait_value() { # kind name jsonpath value timeout-seconds
  local deadline=$((SECONDS + $5)) got=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    got="$(kubectl -n "$ns" get "$1" "$2" -o "jsonpath=$3" 2>/dev/null || true)"
    [ "$got" = "$4" ] && return 0
    sleep 2
  done
  die "$1/$2: $3 is '$got', not '$4', after $5 s"
}

claim() { # name size [dataSource-kind dataSource-name]
  local source=""
  if [ -n "${3:-}" ]; then
    source="  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: $3, name: $4}"
  fi
  kubectl -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1}
spec:
  storageClassName: $storage_class
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: $2}}
$source
YAML
}

# A string as a JSON (and so YAML) double-quoted scalar.
quoted() {
  local s="${1//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

# A pod that runs SCRIPT with the claim mounted at /data, pinned to $node once it is known.
pod() { # name claim script
  local pin=""
  # nodeSelector, not nodeName: the scheduler must still run, because it is what picks the
  # node of a WaitForFirstConsumer claim (the selected-node annotation).
  [ -z "$node" ] || pin="  nodeSelector: {kubernetes.io/hostname: $node}"
  kubectl -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
$pin
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: $image
      imagePullPolicy: IfNotPresent
      command: [bash, -c, $(quoted "$3")]
      volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: $2}}]
YAML
}

# Runs SCRIPT in a one-shot pod on the claim and prints its output.
run_on() { # claim script
  local name="run-$RANDOM"
  pod "$name" "$1" "$2"
  wait_value pod "$name" '{.status.phase}' Succeeded 300
  kubectl -n "$ns" logs "$name"
  kubectl -n "$ns" delete pod "$name" --wait=true >/dev/null
}

hash_of() { # claim -> sha256 of /data/file
  run_on "$1" 'sha256sum /data/file | cut -d" " -f1'
}

kubectl create namespace "$ns" >/dev/null
log "namespace $ns on context $context"

# 1. A claim and a writer.
claim data 256Mi
pod writer data 'dd if=/dev/urandom of=/data/file bs=1M count=8 status=none && sync && sha256sum /data/file | cut -d" " -f1 && sleep 3600'
kubectl -n "$ns" wait --for=condition=Ready pod/writer --timeout=300s >/dev/null
node="$(kubectl -n "$ns" get pod writer -o jsonpath='{.spec.nodeName}')"
state_a=""
for _ in $(seq 1 60); do
  state_a="$(kubectl -n "$ns" logs writer 2>/dev/null | head -n 1)"
  [ -z "$state_a" ] || break
  sleep 2
done
[ -n "$state_a" ] || die "the writer printed no hash"
wait_value pvc data '{.status.phase}' Bound 60
log "1. claim data bound on node $node, state A ${state_a:0:12}"

# 2. A RecoveryPoint and a VolumeSnapshot of state A.
kubectl -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: tidemark.dev/v1alpha1
kind: RecoveryPoint
metadata: {name: point-a}
spec: {claims: [data], consistency: Filesystem}
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap-a}
spec:
  volumeSnapshotClassName: $snapshot_class
  source: {persistentVolumeClaimName: data}
YAML
wait_value recoverypoint point-a '{.status.phase}' Recorded 120
wait_value volumesnapshot snap-a '{.status.readyToUse}' true 180
log "2. RecoveryPoint point-a recorded, VolumeSnapshot snap-a ready"

# 3. Damage.
kubectl -n "$ns" exec writer -- bash -c 'dd if=/dev/urandom of=/data/file bs=1M count=8 conv=notrunc status=none && sync'
state_b="$(kubectl -n "$ns" exec writer -- bash -c 'sha256sum /data/file | cut -d" " -f1')"
[ "$state_b" != "$state_a" ] || die "the overwrite did not change the data"
sleep 2
time_b="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
sleep 2
log "3. data overwritten: state B ${state_b:0:12}"

# 4. A new claim from the VolumeSnapshot.
claim from-snapshot 256Mi VolumeSnapshot snap-a
got="$(hash_of from-snapshot)"
[ "$got" = "$state_a" ] || die "claim from-snapshot holds ${got:0:12}, not state A"
log "4. claim from-snapshot (dataSource snap-a) holds state A"

# 5. A VolumeRestore of the RecoveryPoint into a new claim.
kubectl -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: tidemark.dev/v1alpha1
kind: VolumeRestore
metadata: {name: to-new-claim}
spec: {claim: data, source: {recoveryPointName: point-a}, newClaimName: data-at-a}
YAML
wait_value volumerestore to-new-claim '{.status.phase}' Succeeded 300
got="$(hash_of data-at-a)"
[ "$got" = "$state_a" ] || die "claim data-at-a holds ${got:0:12}, not state A"
log "5. VolumeRestore to-new-claim made claim data-at-a with state A"

# 6. In place: to the RecoveryPoint, then forward to the time after the damage.
kubectl -n "$ns" delete pod writer --wait=true >/dev/null
kubectl -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: tidemark.dev/v1alpha1
kind: VolumeRestore
metadata: {name: rewind}
spec: {claim: data, source: {recoveryPointName: point-a}}
YAML
wait_value volumerestore rewind '{.status.phase}' Succeeded 300
got="$(hash_of data)"
[ "$got" = "$state_a" ] || die "claim data holds ${got:0:12} after the in-place restore, not state A"
kubectl -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: tidemark.dev/v1alpha1
kind: VolumeRestore
metadata: {name: forward}
spec: {claim: data, source: {time: "$time_b"}}
YAML
wait_value volumerestore forward '{.status.phase}' Succeeded 300
got="$(hash_of data)"
[ "$got" = "$state_b" ] || die "claim data holds ${got:0:12} after the restore to $time_b, not state B"
log "6. in place: back to state A (RecoveryPoint), then to state B ($time_b)"

# 7. Expansion (offline: the filesystem grows when the volume is next staged).
kubectl -n "$ns" patch pvc data --type merge -p '{"spec":{"resources":{"requests":{"storage":"512Mi"}}}}' >/dev/null
deadline=$((SECONDS + 300))
size=0
while [ "$SECONDS" -lt "$deadline" ]; do
  size="$(run_on data 'df --output=size -B1M /data | tail -n 1 | tr -d " "')"
  [ "$size" -gt 400 ] && break
  sleep 5
done
[ "$size" -gt 400 ] || die "the filesystem of claim data is ${size} MiB after expanding to 512Mi"
wait_value pvc data '{.status.capacity.storage}' 512Mi 300
log "7. claim data expanded to 512Mi (filesystem ${size} MiB)"

log "PASSED in $((SECONDS - t0)) s"
