#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, as host processes, for tidemark's tests:
# etcd, kube-apiserver, kube-controller-manager and snapshot-controller (with the snapshot CRDs).
# No kubelet: this is for API-level tests (provisioning, snapshots, RBAC, charts).
#
# Usage: bash hack/control-plane.sh up|down|kubeconfig|env|status [--dir DIR]
#   up          start whatever is not running yet; prints the admin kubeconfig path on stdout
#   down        stop every recorded process (TERM, then KILL) and remove the state directory
#   kubeconfig  print the admin kubeconfig path
#   env         print `export` lines: KUBECONFIG, TIDEMARK_K8S_BIN and PATH
#   status      print each process with its pid and RSS
# State directory: --dir, else $TIDEMARK_CP_DIR, else /tmp/tidemark-cp. It holds pki/, logs/NAME.log,
# pids/NAME.pid, ports.env and admin.kubeconfig. Binaries come from hack/build-k8s.sh (cached
# outside the clone), never from the host's PATH, so a CI machine needs no kubectl installed.
set -euo pipefail

prog=control-plane
here="$(cd "$(dirname "$0")" && pwd)"
log() { echo "$prog: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  echo "usage: bash hack/control-plane.sh up|down|kubeconfig|env|status [--dir DIR]" >&2
}

# shellcheck source-path=SCRIPTDIR source=lib/processes.sh
. "$here/lib/processes.sh"
parse_command_and_dir "${TIDEMARK_CP_DIR:-/tmp/tidemark-cp}" "$@"

pki="$dir/pki"
kubeconfig="$dir/admin.kubeconfig"
# Marks a directory as ours, so that `down` never removes a directory it did not create.
marker="$dir/.tidemark-control-plane"
# Start order; `down` stops them in reverse.
components=(etcd kube-apiserver kube-controller-manager snapshot-controller)
service_cidr=10.0.0.0/24
service_ip=10.0.0.1 # the first address of service_cidr: the `kubernetes` Service

default_bin_dir() { echo "${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/k8s/bin"; }
bin_dir() { cat "$dir/bin-dir" 2>/dev/null || default_bin_dir; }

t_start=$SECONDS
since() { echo "$((SECONDS - t_start)) s"; }

# ---- processes (hack/lib/processes.sh: pid files, alive, start_process, wait_for, free_port)

start() { # name args...: a component from the build cache
  local name="$1"; shift
  start_process "$name" "$(bin_dir)/$name" "$@"
}

# ---- certificates

openssl_quiet() { openssl "$@" 2>/dev/null || { openssl "$@"; die "openssl $1 failed"; }; }

# Signs a leaf certificate with the cluster CA. usage: serverAuth or clientAuth.
sign() { # name subject usage [subjectAltName]
  local name="$1" subject="$2" usage="$3" san="${4:-}" ext
  ext="$pki/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$ext"
  openssl_quiet req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$pki/$name.key" \
    -subj "$subject" -out "$pki/$name.csr"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$pki/$name.crt"
  rm -f "$pki/$name.csr" "$ext"
}

make_pki() {
  [ ! -f "$pki/.done" ] || return 0
  local t0=$SECONDS
  rm -rf "$pki"
  mkdir -p "$pki"
  chmod 700 "$pki"
  # ECDSA P-256 keys: generated in milliseconds where RSA takes ~0.3 s each.
  openssl_quiet req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" \
    -days 3650 -sha256 -subj "/CN=tidemark-control-plane-ca"
  sign apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$service_ip,DNS:localhost,DNS:$(hostname),DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # etcd speaks TLS with client-certificate auth, even on loopback: on a shared machine
  # anyone who reaches an open etcd owns the cluster.
  # clientAuth too: etcd's built-in gRPC gateway dials etcd itself with this certificate.
  sign etcd-server "/CN=etcd" serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
  sign apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth
  sign admin "/O=system:masters/CN=tidemark-admin" clientAuth
  sign controller-manager "/CN=system:kube-controller-manager" clientAuth
  kubelet_client_cert
  # RSA for the ServiceAccount keys: RS256 is what every token consumer accepts.
  openssl_quiet genrsa -out "$pki/sa.key" 2048
  openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
  touch "$pki/.done"
  log "certificates made in $pki ($((SECONDS - t0)) s)"
}

# The API server's client certificate for kubelets (logs, exec, port-forward), for clusters
# that add a kubelet (hack/local-cluster.sh). Also made for a pki from before it existed.
kubelet_client_cert() {
  [ ! -f "$pki/apiserver-kubelet-client.crt" ] || return 0
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() { # file user-name cert-name
  # Certificates are embedded so that the file can be copied anywhere (into a pod, a container).
  cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidemark
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$pki/$3.crt")
    client-key-data: $(b64 "$pki/$3.key")
contexts:
- name: $2@tidemark
  context:
    cluster: tidemark
    user: $2
current-context: $2@tidemark
EOF
  chmod 600 "$1.tmp"
  mv -f "$1.tmp" "$1"
}

# ---- up

curl_api() { # path
  curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}
curl_etcd_health() {
  curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/apiserver-etcd-client.crt" \
    --key "$pki/apiserver-etcd-client.key" "https://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

kctl() { "$(bin_dir)/kubectl" --kubeconfig "$kubeconfig" "$@"; }

all_up() {
  local c
  for c in "${components[@]}"; do alive "$c" || return 1; done
  [ -f "$dir/ports.env" ] || return 1
  # shellcheck source=/dev/null
  . "$dir/ports.env"
  [ "$(curl_api /readyz)" = ok ]
}

up() {
  if all_up; then
    log "already up ($dir, apiserver https://127.0.0.1:$APISERVER_PORT)"
    echo "$kubeconfig"
    return 0
  fi
  command -v openssl >/dev/null 2>&1 || die "openssl is needed (apt-get install openssl)"
  command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
  if [ -d "$dir" ] && [ ! -f "$marker" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir exists and is not a control-plane state directory; choose another --dir"
  fi
  mkdir -p "$dir"
  touch "$marker"
  # Two `up`s at once (parallel test workers) would pick different ports and start twins.
  if command -v flock >/dev/null 2>&1; then
    exec 8>"$dir/.lock"
    flock 8
    if all_up; then
      log "already up ($dir, apiserver https://127.0.0.1:$APISERVER_PORT)"
      echo "$kubeconfig"
      return 0
    fi
  fi

  local bin t0
  bin="$(bash "$here/build-k8s.sh" etcd kube-apiserver kube-controller-manager kubectl snapshot-controller snapshot-crds)"
  echo "$bin" >"$dir/bin-dir"
  log "binaries in $bin ($(since))"

  # Ports are chosen once and kept, because the certificates' users (kubeconfigs, flags) name
  # them; a restarted component comes back where its clients expect it.
  if [ ! -f "$dir/ports.env" ]; then
    local name port
    for name in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT CONTROLLER_MANAGER_PORT; do
      free_port
      echo "$name=$port"
    done >"$dir/ports.env.tmp"
    mv -f "$dir/ports.env.tmp" "$dir/ports.env"
  fi
  # shellcheck source=/dev/null
  . "$dir/ports.env"

  make_pki
  kubelet_client_cert
  write_kubeconfig "$kubeconfig" tidemark-admin admin
  write_kubeconfig "$dir/controller-manager.kubeconfig" system:kube-controller-manager controller-manager

  if ! alive etcd; then
    t0=$SECONDS
    # --unsafe-no-fsync: a throwaway test store; fsync latency would only slow every test write.
    start etcd --name tidemark --data-dir "$dir/etcd" \
      --listen-client-urls "https://127.0.0.1:$ETCD_PORT" --advertise-client-urls "https://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "tidemark=http://127.0.0.1:$ETCD_PEER_PORT" \
      --cert-file "$pki/etcd-server.crt" --key-file "$pki/etcd-server.key" \
      --client-cert-auth --trusted-ca-file "$pki/ca.crt" \
      --unsafe-no-fsync --log-level warn
    wait_for etcd 30 "etcd /health" curl_etcd_health
    log "etcd healthy on 127.0.0.1:$ETCD_PORT ($((SECONDS - t0)) s, at $(since))"
  fi

  if ! alive kube-apiserver; then
    t0=$SECONDS
    start kube-apiserver \
      --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address 127.0.0.1 \
      --etcd-servers "https://127.0.0.1:$ETCD_PORT" --etcd-cafile "$pki/ca.crt" \
      --etcd-certfile "$pki/apiserver-etcd-client.crt" --etcd-keyfile "$pki/apiserver-etcd-client.key" \
      --service-cluster-ip-range "$service_cidr" \
      --authorization-mode Node,RBAC \
      --client-ca-file "$pki/ca.crt" \
      --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
      --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
      --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
      --kubelet-preferred-address-types InternalIP,ExternalIP,Hostname \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
      --allow-privileged=true \
      --profiling=false
    wait_for kube-apiserver 90 "kube-apiserver /readyz" curl_api /readyz
    log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT ($((SECONDS - t0)) s, at $(since))"
  fi

  if ! alive kube-controller-manager; then
    t0=$SECONDS
    # The three cloud controllers only log that no cloud provider exists (KEP-2395).
    # --authentication-skip-lookup: the apiserver has no front proxy (requestheader) CA, and
    # looking it up would log an error every few seconds.
    start kube-controller-manager \
      --kubeconfig "$dir/controller-manager.kubeconfig" \
      --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
      --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
      --client-ca-file "$pki/ca.crt" --authentication-skip-lookup \
      --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" --cert-dir "$pki/controller-manager-serving" \
      --controllers '*,-service-lb-controller,-cloud-node-lifecycle-controller,-node-route-controller' \
      --use-service-account-credentials \
      --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
      --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
      --service-cluster-ip-range "$service_cidr" \
      --leader-elect=false
    wait_for kube-controller-manager 60 "kube-controller-manager /healthz" \
      curl -sfk --max-time 2 "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"
    log "kube-controller-manager healthy ($((SECONDS - t0)) s, at $(since))"
  fi

  t0=$SECONDS
  # The ServiceAccount controller makes it; pods (and `kubectl create token`) need it.
  wait_for kube-controller-manager 60 "the default ServiceAccount" kctl -n default get serviceaccount default
  log "default ServiceAccount exists ($((SECONDS - t0)) s, at $(since))"

  t0=$SECONDS
  local crds
  crds="$(dirname "$(bin_dir)")/crds"
  # Server-side apply: idempotent, and the CRDs are too big for the client-side annotation
  # to be worth carrying.
  kctl apply --server-side --force-conflicts -f "$crds" >/dev/null
  kctl wait --for condition=Established --timeout 60s -f "$crds" >/dev/null
  log "snapshot CRDs established ($((SECONDS - t0)) s, at $(since))"

  if ! alive snapshot-controller; then
    t0=$SECONDS
    start snapshot-controller --kubeconfig "$kubeconfig" \
      --enable-distributed-snapshotting --leader-election=false
    # It has no health endpoint without leader election; its first informer sync shows it works.
    wait_for snapshot-controller 30 "snapshot-controller to start" \
      grep -qi 'caches populated\|starting snapshot controller' "$dir/logs/snapshot-controller.log"
    log "snapshot-controller running ($((SECONDS - t0)) s, at $(since))"
  fi

  log "up in $(since): KUBECONFIG=$kubeconfig"
  echo "$kubeconfig"
}

# ---- down

down() {
  local c pid pids=() i
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    c="${components[$i]}"
    if alive "$c"; then
      pid="$(pid_of "$c")"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$c:$pid")
    fi
  done
  # Up to 5 s for a clean exit (etcd closing its store), then KILL.
  local deadline=$((SECONDS + 5)) left
  while :; do
    left=()
    for c in "${pids[@]}"; do
      if alive "${c%%:*}"; then left+=("$c"); fi
    done
    if [ "${#left[@]}" -eq 0 ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 0.2
  done
  for c in "${left[@]}"; do
    log "${c%%:*} (pid ${c#*:}) did not stop on TERM; killing it"
    kill -KILL "${c#*:}" 2>/dev/null || true
  done
  if [ -d "$dir" ]; then
    if [ -f "$marker" ]; then
      rm -rf "$dir"
    else
      die "$dir has no $(basename "$marker"); not removing a directory this script did not make"
    fi
  fi
  log "down ($(since))"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  kubeconfig)
    [ -f "$kubeconfig" ] || die "no control plane in $dir (run: bash hack/control-plane.sh up)"
    echo "$kubeconfig"
    ;;
  env)
    printf 'export KUBECONFIG=%q\n' "$kubeconfig"
    printf 'export TIDEMARK_K8S_BIN=%q\n' "$(bin_dir)"
    # shellcheck disable=SC2016 # $PATH is for the shell that evaluates these lines
    printf 'export PATH=%q:"$PATH"\n' "$(bin_dir)"
    ;;
  status)
    for c in "${components[@]}"; do
      if alive "$c"; then
        pid="$(pid_of "$c")"
        echo "$c pid $pid rss $(awk '/^VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$pid/status")"
      else
        echo "$c not running"
      fi
    done
    ;;
  *) usage; exit 2 ;;
esac
