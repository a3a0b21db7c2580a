#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, without Docker or kind: the control
# plane of hack/control-plane.sh plus kube-scheduler, a private containerd with runc and a
# bridge CNI network, and a kubelet, all as host processes. charts/tidemark is installed from
# locally built images, so the chart's own DaemonSet serves tidemark PVCs to ordinary pods.
#
# Usage: bash hack/local-cluster.sh up|down|kubeconfig|env|status|images [--dir DIR]
#   up          start whatever is not running yet and install the chart; idempotent. Prints
#               progress (with timings) on stderr and the admin kubeconfig path on stdout.
#   down        stop everything `up` started, by pid; unmount what it mounted; remove its
#               network, cgroups and state; put back the kernel settings the kubelet changes
#   kubeconfig  print the admin kubeconfig path
#   env         print `export` lines (KUBECONFIG, PATH with kubectl and helm)
#   status      each process with its pid and RSS, and the cluster's total
#   images      print the image references that `up` imports
# State: --dir, else $TIDEMARK_LOCAL_DIR, else /tmp/tidemark-local (control plane in
# DIR/control-plane, kubelet root DIR/kubelet, tidemark's store DIR/store).
#
# Images (imported into the private containerd, imagePullPolicy Never; nothing is pulled):
#   tidemark.local/tidemark:dev-<hash>     hack/build-image.sh, from the built checkout (the
#                                          hash names its inputs: dist/src, bin, the lockfile)
#   tidemark.local/busybox:1               Debian's busybox-static: a small general-purpose
#                                          image for test pods (sh, dd, md5sum, sha256sum, ...)
#   tidemark.local/pause:1                 the pod sandbox image (hack/pause)
#   tidemark.local/csi-registrar:standin   hack/registrar, the stand-in for node-driver-registrar
#   tidemark.local/csi-provisioner:v6.4.0, csi-snapshotter:v8.7.0, csi-resizer:v2.3.0
#                                          the sidecars from hack/build-k8s.sh, one static binary each
#
# Needs root, Go (only for the first build), and the Debian packages containerd, runc,
# containernetworking-plugins, iptables, conntrack, socat, ebtables and busybox-static
# (bash hack/setup.sh installs them). Settings this machine needs are in the comments below.
# Environment: TIDEMARK_LOCAL_NODE (node name, default tidemark-local),
# TIDEMARK_LOCAL_POD_CIDR (default 10.244.0.0/24).
set -euo pipefail

prog=local-cluster
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
log() { echo "$prog: [$(since)] $*" >&2; }
die() { echo "$prog: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; }

t_start=$SECONDS
since() { printf '%3d s' "$((SECONDS - t_start))"; }

# shellcheck source-path=SCRIPTDIR source=lib/processes.sh
. "$here/lib/processes.sh"
parse_command_and_dir "${TIDEMARK_LOCAL_DIR:-/tmp/tidemark-local}" "$@"
dir="${dir%/}"

node="${TIDEMARK_LOCAL_NODE:-tidemark-local}"
pod_cidr="${TIDEMARK_LOCAL_POD_CIDR:-10.244.0.0/24}"
node_ip="${pod_cidr%.*}.1" # the bridge's address: the pods' gateway and the node's InternalIP
bridge=tidemark0
namespace=tidemark-system
release=tidemark
cp_dir="$dir/control-plane"
kubeconfig="$cp_dir/admin.kubeconfig"
pki="$cp_dir/pki"
kubelet_dir="$dir/kubelet"
ctrd_dir="$dir/containerd"
ctrd_sock="$ctrd_dir/containerd.sock"
cni_dir="$dir/cni"
store_dir="$dir/store"
image_dir="$dir/images"
marker="$dir/.tidemark-local-cluster"
cache="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/local-cluster"
# Processes this script starts itself (the control plane's are hack/control-plane.sh's).
components=(containerd kube-scheduler kubelet)
# The kernel settings the kubelet changes (setupKernelTunables) and the bridge plugin's
# ip_forward; `up` records them before the first kubelet start and `down` puts them back.
sysctls=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)

images=(
  tidemark.local/tidemark:dev-HASH
  tidemark.local/busybox:1
  tidemark.local/pause:1
  tidemark.local/csi-registrar:standin
  tidemark.local/csi-provisioner:v6.4.0
  tidemark.local/csi-snapshotter:v8.7.0
  tidemark.local/csi-resizer:v2.3.0
)

bin_dir() { cat "$dir/bin-dir" 2>/dev/null || echo "${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/k8s/bin"; }
kctl() { "$(bin_dir)/kubectl" --kubeconfig "$kubeconfig" "$@"; }
ctr_() { ctr --address "$ctrd_sock" -n k8s.io "$@"; }

# ---- processes (hack/lib/processes.sh: pid files, alive, start_process, wait_for, free_port)

start() { start_process "$@"; } # name binary args...

stop_pid() { # description pid: TERM, up to 10 s, then KILL
  local what="$1" pid="$2" _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.2
  done
  log "$what (pid $pid) did not stop on TERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}
rss_mib() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- images

# A minimal OCI image archive: one layer made of DIR, an entrypoint, PATH. Reproducible (fixed
# times, sorted entries, root ownership), in the layout that `ctr images import` reads
# (the same as hack/build-image.sh writes for the tidemark image).
oci_archive() { # rootfs out ref entrypoint-json
  local rootfs="$1" out="$2" ref="$3" entrypoint="$4" work layer diff_id layer_digest config config_digest manifest manifest_digest
  work="$(mktemp -d)"
  mkdir -p "$work/oci/blobs/sha256"
  layer="$work/layer.tar"
  tar --create --file "$layer" --directory "$rootfs" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 .
  diff_id="$(sha256sum "$layer" | cut -d' ' -f1)"
  gzip -n -6 "$layer"
  layer_digest="$(sha256sum "$layer.gz" | cut -d' ' -f1)"
  mv "$layer.gz" "$work/oci/blobs/sha256/$layer_digest"
  config="$work/config.json"
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Entrypoint":%s,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$entrypoint" "$diff_id" >"$config"
  config_digest="$(sha256sum "$config" | cut -d' ' -f1)"
  cp "$config" "$work/oci/blobs/sha256/$config_digest"
  manifest="$work/manifest.json"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
    "$config_digest" "$(stat -c %s "$config")" "$layer_digest" "$(stat -c %s "$work/oci/blobs/sha256/$layer_digest")" >"$manifest"
  manifest_digest="$(sha256sum "$manifest" | cut -d' ' -f1)"
  cp "$manifest" "$work/oci/blobs/sha256/$manifest_digest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$(stat -c %s "$manifest")" "$ref" "$ref" >"$work/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  mkdir -p "$(dirname "$out")"
  tar --create --file "$out.tmp" --directory "$work/oci" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 oci-layout index.json blobs
  mv -f "$out.tmp" "$out"
  rm -rf "$work"
}

# One static binary as the whole image, at /NAME.
binary_image() { # binary ref out [name]
  local work name="${4:-$(basename "$1")}"
  work="$(mktemp -d)"
  mkdir -p "$work/tmp" "$work/etc"
  chmod 1777 "$work/tmp"
  install -m 0755 "$1" "$work/$name"
  printf 'root:x:0:0:root:/:/nonexistent\n' >"$work/etc/passwd"
  oci_archive "$work" "$3" "$2" "[\"/$name\"]"
  rm -rf "$work"
}

# Key of a set of inputs: an image is rebuilt when the key of its inputs changed.
inputs_key() { # paths...
  { for f in "$@"; do
      if [ -d "$f" ]; then find "$f" -type f -print0 | sort -z | xargs -0 sha256sum; else sha256sum "$f"; fi
    done; } | sha256sum | cut -c1-16
}

# The small Go programs (hack/registrar, hack/pause), static, cached outside the clone.
go_binary() { # name -> prints the binary path
  local name="$1" src="$here/$1" key out
  key="$(inputs_key "$src")"
  out="$cache/bin/$name-$key"
  if [ ! -x "$out" ]; then
    command -v go >/dev/null 2>&1 || die "Go is needed to build hack/$name (once; then it is cached)"
    mkdir -p "$cache/bin"
    log "building hack/$name (Go, static)"
    (cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w' -o "$out.tmp" .) >&2
    mv -f "$out.tmp" "$out"
    find "$cache/bin" -name "$name-*" ! -name "$name-$key" -delete
  fi
  echo "$out"
}

build_images() {
  local t0=$SECONDS bin key b v
  bin="$(bin_dir)"
  mkdir -p "$cache/images"
  # The sidecars: one static binary each (built with CGO off by hack/build-k8s.sh).
  for b in csi-provisioner csi-snapshotter csi-resizer; do
    v="$(cat "$bin/$b.version")"
    key="$(inputs_key "$bin/$b")"
    [ -f "$cache/images/$b-$key.tar" ] || binary_image "$bin/$b" "tidemark.local/$b:$v" "$cache/images/$b-$key.tar"
    ln -sfn "$cache/images/$b-$key.tar" "$image_dir/$b.tar"
  done
  local pause registrar
  pause="$(go_binary pause)"
  registrar="$(go_binary registrar)"
  # The key covers this script too: the image's layout is written here.
  key="$(inputs_key "$pause" "$0")"
  [ -f "$cache/images/pause-$key.tar" ] || binary_image "$pause" tidemark.local/pause:1 "$cache/images/pause-$key.tar" pause
  ln -sfn "$cache/images/pause-$key.tar" "$image_dir/pause.tar"
  key="$(inputs_key "$registrar" "$0")"
  [ -f "$cache/images/registrar-$key.tar" ] || binary_image "$registrar" tidemark.local/csi-registrar:standin "$cache/images/registrar-$key.tar" registrar
  ln -sfn "$cache/images/registrar-$key.tar" "$image_dir/registrar.tar"

  # busybox: Debian's static binary and a link per applet.
  local busybox=/bin/busybox work applet
  [ -x "$busybox" ] || die "$busybox is missing (apt-get install busybox-static)"
  # Debian's other busybox package puts a dynamically linked one at the same path.
  case "$(ldd "$busybox" 2>&1 || true)" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) die "$busybox is dynamically linked; the image needs busybox-static" ;;
  esac
  key="$(inputs_key "$busybox")"
  if [ ! -f "$cache/images/busybox-$key.tar" ]; then
    work="$(mktemp -d)"
    mkdir -p "$work/bin" "$work/sbin" "$work/usr/bin" "$work/usr/sbin" "$work/etc" "$work/tmp" "$work/root"
    chmod 1777 "$work/tmp"
    install -m 0755 "$busybox" "$work/bin/busybox"
    for applet in $("$busybox" --list-full); do
      [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$work/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/etc/group"
    oci_archive "$work" "$cache/images/busybox-$key.tar" tidemark.local/busybox:1 '["/bin/sh"]'
    rm -rf "$work"
  fi
  ln -sfn "$cache/images/busybox-$key.tar" "$image_dir/busybox.tar"

  # tidemark: hack/build-image.sh from the built checkout (npm run build when dist/ is missing).
  if [ ! -d "$root/dist/src" ]; then
    log "building the checkout (npm run build)"
    (cd "$root" && npm run build >&2)
  fi
  key="$(inputs_key "$root/dist/src" "$root/bin" "$root/package-lock.json" "$here/image.list" "$here/build-image.sh")"
  # The tag names the inputs, so that `up` after a rebuild rolls the DaemonSet to the new image.
  echo "dev-$key" >"$dir/tidemark-tag"
  if [ ! -f "$cache/images/tidemark-$key.tar" ]; then
    log "building the tidemark image (hack/build-image.sh)"
    bash "$here/build-image.sh" --out "$cache/images/tidemark-$key.tar" --tag "tidemark.local/tidemark:dev-$key" >"$dir/logs/build-image.log" 2>&1 ||
      { tail -n 20 "$dir/logs/build-image.log" >&2; die "hack/build-image.sh failed (log: $dir/logs/build-image.log)"; }
    find "$cache/images" -name 'tidemark-*.tar' ! -name "tidemark-$key.tar" -delete
  fi
  ln -sfn "$cache/images/tidemark-$key.tar" "$image_dir/tidemark.tar"
  log "images ready ($((SECONDS - t0)) s)"
}

import_images() {
  local t0=$SECONDS a target stamp n=0
  for a in "$image_dir"/*.tar; do
    target="$(readlink -f "$a")"
    stamp="$image_dir/.imported-$(basename "$target")"
    [ -f "$stamp" ] && continue
    ctr_ images import --no-unpack=false "$target" >/dev/null 2>"$dir/logs/import.log" ||
      { cat "$dir/logs/import.log" >&2; die "ctr images import $target failed"; }
    rm -f "$image_dir/.imported-$(basename "$a" .tar)"-* 2>/dev/null || true
    touch "$stamp"
    n=$((n + 1))
  done
  log "images imported into the private containerd ($n new, $((SECONDS - t0)) s)"
}

# ---- machine state that `down` must put back

record_machine() {
  [ ! -f "$dir/machine.saved" ] || return 0
  {
    local s
    for s in "${sysctls[@]}"; do echo "sysctl $s=$(sysctl -n "$s")"; done
    for s in /var/lib/cni /var/log/containers /var/log/pods /run/netns /var/run/netns /run/containerd /run/containerd/s /run/containerd/fifo; do
      [ -e "$s" ] && echo "existed $s"
    done
    for s in /sys/fs/cgroup/*/kubepods; do [ -e "$s" ] && echo "existed $s"; done
    for s in /run/netns/*; do [ -e "$s" ] && echo "netns ${s##*/}"; done
    losetup -a 2>/dev/null | sed 's/:.*//; s/^/loop /'
    local t
    for t in filter nat mangle; do
      iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1 == "-N" { print "chain " t " " $2 }'
    done
  } >"$dir/machine.saved.tmp"
  mv -f "$dir/machine.saved.tmp" "$dir/machine.saved"
}

# ---- up

preflight() {
  [ "$(id -u)" -eq 0 ] || die "run as root (the kubelet and containerd need it)"
  local t
  for t in containerd containerd-shim-runc-v2 runc ctr iptables openssl curl; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (bash hack/setup.sh, or apt-get install containerd runc iptables)"
  done
  for t in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$t" ] || die "the CNI plugins are missing (apt-get install containernetworking-plugins)"
  done
  # Another kubelet on the machine would fight over the same cgroups.
  for t in /sys/fs/cgroup/*/kubepods; do
    if [ -e "$t" ] && ! grep -q "^existed $t\$" "$dir/machine.saved" 2>/dev/null && ! alive kubelet; then
      die "$t exists: another kubelet runs (or ran) on this machine"
    fi
    break
  done
}

start_containerd() {
  alive containerd && return 0
  local t0=$SECONDS
  mkdir -p "$ctrd_dir/root" "$ctrd_dir/state" "$ctrd_dir/opt"
  # Its own socket, root and state (never the machine's containerd). restrict_oom_score_adj:
  # these VMs withhold CAP_SYS_RESOURCE, and without it every sandbox fails ("can't get final
  # child's PID from pipe: EOF"). cgroupfs (no systemd cgroups): the layout is cgroup v1.
  cat >"$ctrd_dir/config.toml" <<EOF
version = 2
root = "$ctrd_dir/root"
state = "$ctrd_dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$ctrd_sock"

[ttrpc]
  address = "$ctrd_dir/containerd.sock.ttrpc"

[debug]
  address = "$ctrd_dir/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd_dir/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "tidemark.local/pause:1"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$ctrd_dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni_dir/net.d"
    max_conf_num = 1
EOF
  start containerd "$(command -v containerd)" --config "$ctrd_dir/config.toml" --log-level warn
  wait_for containerd 30 "containerd's socket" ctr --address "$ctrd_sock" version
  log "containerd up on $ctrd_sock ($((SECONDS - t0)) s)"
}

# The pods' bridge, made here rather than by the CNI plugin at the first pod, because it also
# carries the node's address: the kubelet refuses a loopback node IP, and the gateway address
# is reachable from the API server (logs, exec, proxy), from pods and from hostNetwork pods,
# while nothing listens on the machine's outside interfaces.
make_bridge() {
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip -4 addr show dev "$bridge" | grep -q "inet $node_ip/" || ip addr add "$node_ip/${pod_cidr#*/}" dev "$bridge"
  ip link set "$bridge" up
}

write_cni() {
  mkdir -p "$cni_dir/net.d" "$cni_dir/ipam"
  # No ipMasq and no portmap: nothing is written to the machine's iptables; pods reach the node
  # (and so the API server through the tidemark pod's hostNetwork) but not the outside.
  cat >"$cni_dir/net.d/10-tidemark.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tidemark-local",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$cni_dir/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
}

# The kubelet's client certificate (CN=system:node:NODE, O=system:nodes: the Node authorizer
# and NodeRestriction know it) and the scheduler's, signed by the control plane's CA.
sign_client() { # name subject
  [ -f "$dir/pki/$1.crt" ] && return 0
  mkdir -p "$dir/pki"
  chmod 700 "$dir/pki"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$dir/pki/$1.ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/pki/$1.key" \
    -subj "$2" -out "$dir/pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$dir/pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$dir/pki/$1.ext" -out "$dir/pki/$1.crt" 2>/dev/null
  rm -f "$dir/pki/$1.csr" "$dir/pki/$1.ext"
}
write_kubeconfig() { # file user cert-name
  local server
  server="$(sed -n 's/^ *server: //p' "$kubeconfig" | head -n 1)"
  cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidemark
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$dir/pki/$3.crt")
    client-key-data: $(base64 -w0 <"$dir/pki/$3.key")
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

start_scheduler() {
  alive kube-scheduler && return 0
  local t0=$SECONDS
  sign_client scheduler "/CN=system:kube-scheduler"
  write_kubeconfig "$dir/scheduler.kubeconfig" system:kube-scheduler scheduler
  # shellcheck source=/dev/null
  . "$dir/ports.env"
  start kube-scheduler "$(bin_dir)/kube-scheduler" --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-skip-lookup --client-ca-file "$pki/ca.crt" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
  wait_for kube-scheduler 60 "kube-scheduler /healthz" curl -sfk --max-time 2 "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  log "kube-scheduler healthy ($((SECONDS - t0)) s)"
}

start_kubelet() {
  alive kubelet && return 0
  local t0=$SECONDS
  sign_client kubelet "/O=system:nodes/CN=system:node:$node"
  write_kubeconfig "$dir/kubelet.kubeconfig" "system:node:$node" kubelet
  mkdir -p "$kubelet_dir" "$dir/pod-logs"
  # shellcheck source=/dev/null
  . "$dir/ports.env"
  # failCgroupV1/failSwapOn/cgroupfs: this machine's cgroup v1 layout. Listening on loopback
  # only, with client certificates (the API server's kubelet client) and webhook authorization.
  # The eviction thresholds are low: a test machine's disk is often fuller than 90 %.
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: "unix://$ctrd_sock"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: "$dir/pod-logs"
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerNode: true
rotateCertificates: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
evictionPressureTransitionPeriod: 10s
maxPods: 60
volumePluginDir: "$kubelet_dir/volumeplugins"
EOF
  start kubelet "$(bin_dir)/kubelet" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$kubelet_dir" --cert-dir "$dir/pki/kubelet-serving" \
    --hostname-override "$node" --node-ip "$node_ip" --v 1
  wait_for kubelet 60 "the kubelet's /healthz" curl -sf --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  log "kubelet healthy ($((SECONDS - t0)) s)"
}

node_ready() { [ "$(kctl get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; }

install_chart() {
  local t0=$SECONDS
  # shellcheck source=/dev/null
  . "$dir/ports.env"
  # shellcheck source=/dev/null
  . "$cp_dir/ports.env"
  # hostNetwork with the API server on loopback (no kube-proxy here), the local images,
  # fuse attach (no nbd module in this kernel), the node's paths under DIR. The snapshot CRDs
  # and a distributed snapshot-controller come from hack/control-plane.sh.
  cat >"$dir/values.yaml" <<EOF
image:
  tidemark: {repository: tidemark.local/tidemark, tag: "$(cat "$dir/tidemark-tag")", pullPolicy: Never}
  csiProvisioner: {repository: tidemark.local/csi-provisioner, tag: v6.4.0, pullPolicy: Never}
  csiSnapshotter: {repository: tidemark.local/csi-snapshotter, tag: v8.7.0, pullPolicy: Never}
  csiResizer: {repository: tidemark.local/csi-resizer, tag: v2.3.0, pullPolicy: Never}
  nodeDriverRegistrar: {repository: tidemark.local/csi-registrar, tag: standin, pullPolicy: Never}
node:
  kubeletDir: "$kubelet_dir"
  storeDir: "$store_dir"
  attach: fuse
  hostNetwork: true
  kubernetesService: {host: "127.0.0.1", port: "$APISERVER_PORT"}
  metrics: {host: "$node_ip", port: $METRICS_PORT}
  resyncInterval: 10
registrar:
  healthPort: $REGISTRAR_HEALTH_PORT
provisioner:
  capacity: {pollInterval: 10s}
snapshotCRDs: {install: false}
snapshotController: {enabled: false}
EOF
  "$(bin_dir)/helm" upgrade --install "$release" "$root/charts/tidemark" --kubeconfig "$kubeconfig" \
    --namespace "$namespace" --create-namespace -f "$dir/values.yaml" >"$dir/logs/helm.log" 2>&1 ||
    { cat "$dir/logs/helm.log" >&2; die "helm upgrade --install failed"; }
  log "chart installed (helm, $((SECONDS - t0)) s); waiting for the DaemonSet"
  wait_for "" 300 "the DaemonSet to be ready" kctl -n "$namespace" rollout status daemonset "$release-node" --timeout 5s
  wait_for "" 30 "the StorageClass" kctl get storageclass tidemark
  wait_for "" 60 "the driver's registration with the kubelet" \
    sh -c "'$(bin_dir)/kubectl' --kubeconfig '$kubeconfig' get csinode '$node' -o jsonpath='{.spec.drivers[*].name}' | grep -q csi.tidemark.dev"
  log "DaemonSet ready, StorageClass tidemark exists, csi.tidemark.dev registered on $node ($((SECONDS - t0)) s)"
}

up() {
  preflight
  if [ -d "$dir" ] && [ ! -f "$marker" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir exists and is not a local-cluster state directory; choose another --dir"
  fi
  mkdir -p "$dir/logs" "$dir/pids" "$image_dir"
  touch "$marker"
  exec 9>"$dir/.lock"
  flock 9
  record_machine

  local bin
  log "Kubernetes binaries from hack/build-k8s.sh (cached; a cold build takes ~30 min on 2 cores; log: $dir/logs/build-k8s.log)"
  bin="$(bash "$here/build-k8s.sh" kubelet kube-scheduler kubectl helm csi-provisioner csi-snapshotter csi-resizer 2>"$dir/logs/build-k8s.log")" ||
    { tail -n 20 "$dir/logs/build-k8s.log" >&2; die "hack/build-k8s.sh failed"; }
  echo "$bin" >"$dir/bin-dir"
  log "Kubernetes binaries in $bin"

  if [ ! -f "$dir/ports.env" ]; then
    local name port
    for name in SCHEDULER_PORT KUBELET_PORT KUBELET_HEALTHZ_PORT METRICS_PORT REGISTRAR_HEALTH_PORT; do
      free_port
      echo "$name=$port"
    done >"$dir/ports.env.tmp"
    mv -f "$dir/ports.env.tmp" "$dir/ports.env"
  fi

  # The control plane: etcd, kube-apiserver, kube-controller-manager, the snapshot CRDs and a
  # snapshot-controller with --enable-distributed-snapshotting.
  # 9>&-: the processes it starts must not hold this script's lock.
  bash "$here/control-plane.sh" up --dir "$cp_dir" >/dev/null 2>"$dir/logs/control-plane.log" 9>&- ||
    { tail -n 20 "$dir/logs/control-plane.log" >&2; die "hack/control-plane.sh up failed (log: $dir/logs/control-plane.log)"; }
  log "control plane up ($cp_dir)"
  start_scheduler

  build_images
  write_cni
  make_bridge
  start_containerd
  import_images
  start_kubelet
  wait_for kubelet 120 "node $node to be Ready" node_ready
  log "node $node Ready"
  install_chart
  log "up in $(since): export KUBECONFIG=$kubeconfig"
  echo "$kubeconfig"
}

# ---- down

# Our mounts, deepest first: everything under DIR (pod volumes, CSI staging and publish mounts,
# containerd's rootfs and shm mounts, the kubelet's rshared bind of its own root).
our_mounts() { awk -v d="$dir/" '{ gsub(/\\040/, " ", $5); if (index($5 "/", d) == 1) print $5 }' /proc/self/mountinfo | sort -r -u; }

unmount_all() {
  local m n=0 pass
  for pass in 1 2 3 4 5; do
    [ -n "$(our_mounts)" ] || break
    while IFS= read -r m; do
      [ -n "$m" ] || continue
      umount "$m" 2>/dev/null || { [ "$pass" -lt 3 ] || umount -l "$m" 2>/dev/null; } || true
      n=$((n + 1))
    done < <(our_mounts)
  done
  [ -z "$(our_mounts)" ] || log "WARNING: still mounted: $(our_mounts | tr '\n' ' ')"
  [ "$n" -eq 0 ] || log "unmounted $n mounts under $dir"
}

# Loop devices of tidemark's fuse attach (a loop over nbdfuse's file) that appeared since
# `up`. A tidemark pod that dies with volumes attached (a restart, a rollout, `down` itself)
# leaves its loops behind, backed by a FUSE file whose mount went with the pod: losetup shows
# them as "/nbd". Their backing file under the store, or that, identifies them.
detach_loops() {
  local line dev n=0
  while IFS= read -r line; do
    dev="${line%%:*}"
    grep -qx "loop $dev" "$dir/machine.saved" 2>/dev/null && continue
    case "$line" in *"($store_dir/"* | *"(/nbd)"*) losetup -d "$dev" 2>/dev/null && n=$((n + 1)) ;; esac
  done < <(losetup -a 2>/dev/null)
  [ "$n" -eq 0 ] || log "detached $n loop devices"
}

# Lets the kubelet and the driver tear the pods down (CSI unpublish/unstage, CNI DEL, sandbox
# removal) while everything still runs. Best effort, bounded in time.
drain() {
  alive kubelet || return 0
  [ -f "$kubeconfig" ] || return 0
  kctl get --raw /readyz >/dev/null 2>&1 || return 0
  local t0=$SECONDS ns
  # Workloads first (they would recreate their pods), then their pods, then the driver.
  for ns in $(kctl get ns -o 'jsonpath={.items[*].metadata.name}' 2>/dev/null); do
    case "$ns" in kube-system | kube-public | kube-node-lease | "$namespace") continue ;; esac
    kctl -n "$ns" delete deployment,statefulset,replicaset,daemonset,job,cronjob --all --wait=false >/dev/null 2>&1 || true
    kctl -n "$ns" delete pod --all --wait=false >/dev/null 2>&1 || true
  done
  kctl wait pod --all -A --for=delete --timeout=60s --field-selector "metadata.namespace!=$namespace" >/dev/null 2>&1 || true
  kctl delete pvc --all -A --wait=false >/dev/null 2>&1 || true
  kctl wait pv --all --for=delete --timeout=30s >/dev/null 2>&1 || true
  "$(bin_dir)/helm" uninstall "$release" --kubeconfig "$kubeconfig" -n "$namespace" --wait --timeout 60s >/dev/null 2>&1 || true
  kctl wait pod --all -A --for=delete --timeout=60s >/dev/null 2>&1 || true
  # Sandboxes go a little after their pods: give the kubelet's pod workers a moment.
  for _ in $(seq 1 20); do
    [ -n "$(ctr_ tasks ls -q 2>/dev/null)" ] || break
    sleep 0.5
  done
  log "pods removed through the API ($((SECONDS - t0)) s)"
}

down() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  if [ ! -d "$dir" ]; then log "nothing to do ($dir does not exist)"; return 0; fi
  [ -f "$marker" ] || die "$dir has no $(basename "$marker"); not touching a directory this script did not make"

  drain
  if alive kubelet; then stop_pid kubelet "$(pid_of kubelet)"; fi
  # Whatever the kubelet left: kill each container's processes through containerd, then the
  # tasks, containers and sandboxes go with containerd's own state.
  if alive containerd; then
    local id n=0
    for id in $(ctr_ tasks ls -q 2>/dev/null); do
      ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
      n=$((n + 1))
    done
    sleep 1
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    [ "$n" -eq 0 ] || log "killed $n containers left by the kubelet"
  fi
  # The shims of our containerd (they outlive it): identified by our socket on their command line.
  local pid
  for pid in $(pgrep -f -- "-address $ctrd_sock" 2>/dev/null || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "containerd-shim.* -address $ctrd_sock "; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if alive containerd; then stop_pid containerd "$(pid_of containerd)"; fi
  if alive kube-scheduler; then stop_pid kube-scheduler "$(pid_of kube-scheduler)"; fi

  unmount_all
  detach_loops

  # Network: the bridge, the network namespaces made since `up`, kubelet's iptables chains.
  ip link show "$bridge" >/dev/null 2>&1 && ip link del "$bridge" && log "removed the $bridge bridge"
  local saved="$dir/machine.saved" ns t chain
  if [ -f "$saved" ]; then
    for ns in /run/netns/cni-*; do
      [ -e "$ns" ] || continue
      ns="${ns##*/}"
      case "$ns" in cni-*) grep -qx "netns $ns" "$saved" || { umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; } ;; esac
    done
    for t in filter nat mangle; do
      for chain in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
        grep -qx "chain $t $chain" "$saved" && continue
        # The rules that jump to it, then the chain.
        iptables -t "$t" -S 2>/dev/null | awk -v c="$chain" '$1 == "-A" && $0 ~ (" -j " c "( |$)") { $1 = "-D"; print }' |
          while read -r -a rule; do iptables -t "$t" "${rule[@]}" 2>/dev/null || true; done
        iptables -t "$t" -F "$chain" 2>/dev/null || true
        iptables -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
    if command -v ip6tables >/dev/null 2>&1; then
      for t in filter nat mangle; do
        for chain in $(ip6tables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-KUBELET-CANARY/ { print $2 }'); do
          ip6tables -t "$t" -X "$chain" 2>/dev/null || true
        done
      done
    fi
    # Kernel settings.
    local line key value
    while IFS= read -r line; do
      case "$line" in sysctl\ *) line="${line#sysctl }"; key="${line%%=*}"; value="${line#*=}"
        [ "$(sysctl -n "$key" 2>/dev/null)" = "$value" ] || sysctl -q -w "$key=$value" >/dev/null || log "WARNING: could not restore $key=$value" ;;
      esac
    done <"$saved"
    log "kernel settings restored ($(grep -c '^sysctl ' "$saved") of them)"
    # cgroups the kubelet made (pods' first, deepest first).
    local cg
    for cg in /sys/fs/cgroup/*/kubepods; do
      [ -d "$cg" ] || continue
      grep -qx "existed $cg" "$saved" && continue
      find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ ! -d "$cg" ] || log "WARNING: could not remove $cg"
    done
    # Directories the runtime made outside DIR, when they were not there before and are empty
    # (or only hold CNI's cache of our pods).
    local p
    for p in /var/lib/cni /var/log/containers /var/log/pods /run/containerd/fifo /run/containerd/s /run/containerd; do
      [ -e "$p" ] || continue
      grep -qx "existed $p" "$saved" && continue
      case "$p" in
        /var/lib/cni) rm -rf /var/lib/cni/results /var/lib/cni/networks/tidemark-local; find /var/lib/cni -depth -type d -empty -delete 2>/dev/null || true ;;
        /var/log/containers)
          # The kubelet's links to our pods' logs (in DIR/pod-logs).
          for l in /var/log/containers/*; do
            case "$(readlink "$l" 2>/dev/null)" in "$dir/pod-logs/"*) rm -f "$l" ;; esac
          done
          rmdir /var/log/containers 2>/dev/null || true ;;
        *) rmdir "$p" 2>/dev/null || true ;;
      esac
    done
  fi

  bash "$here/control-plane.sh" down --dir "$cp_dir" 2>>"$dir/logs/control-plane.log" >/dev/null || log "WARNING: control-plane.sh down failed"
  if [ -n "$(our_mounts)" ]; then
    log "WARNING: mounts remain under $dir; keeping it"
  else
    rm -rf "$dir"
  fi
  log "down"
}

status() {
  local c pid total=0 r
  for c in "${components[@]}"; do
    if alive "$c"; then
      pid="$(pid_of "$c")"; r="$(rss_mib "$pid")"; total=$((total + r))
      echo "$c pid $pid rss $r MiB"
    else
      echo "$c not running"
    fi
  done
  bash "$here/control-plane.sh" status --dir "$cp_dir" 2>/dev/null || true
  for c in "$cp_dir"/pids/*.pid; do
    [ -f "$c" ] && total=$((total + $(rss_mib "$(cat "$c")")))
  done
  # Pods: the shims and everything in the kubepods cgroups.
  local shims=0 pods=0
  for pid in $(pgrep -f -- "-address $ctrd_sock" 2>/dev/null || true); do shims=$((shims + $(rss_mib "$pid"))); done
  [ ! -r /sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes ] ||
    pods=$(($(cat /sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes) / 1048576))
  echo "containerd shims rss $shims MiB; pods (kubepods cgroup, page cache included) $pods MiB"
  echo "total: processes $((total + shims)) MiB rss + pods $pods MiB"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  kubeconfig)
    [ -f "$kubeconfig" ] || die "no cluster in $dir (run: bash hack/local-cluster.sh up)"
    echo "$kubeconfig"
    ;;
  env)
    printf 'export KUBECONFIG=%q\n' "$kubeconfig"
    # shellcheck disable=SC2016
    printf 'export PATH=%q:"$PATH"\n' "$(bin_dir)"
    ;;
  status) status ;;
  images) printf '%s\n' "${images[@]}" ;;
  *) usage; exit 2 ;;
esac
