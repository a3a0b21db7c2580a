#!/usr/bin/env bash
# Prepares a fresh Debian machine for tidemark: the host tools the daemon and its tests run
# (from apt) and the npm packages, including the Node 24 binary that npm scripts use.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# tool -> Debian package that provides it
declare -A tools=(
  [qemu-io]=qemu-utils [qemu-img]=qemu-utils [qemu-nbd]=qemu-utils
  [nbdkit]=nbdkit [nbdinfo]=libnbd-bin [nbdcopy]=libnbd-bin [nbdfuse]=libnbd-bin
  [nbd-client]=nbd-client [fusermount3]=fuse3 [mkfs.ext4]=e2fsprogs [mkfs.xfs]=xfsprogs
  [losetup]=mount [fallocate]=util-linux [blkid]=util-linux [fincore]=util-linux-extra [shellcheck]=shellcheck
  # hack/local-cluster.sh: a private containerd with runc, bridge CNI, the kubelet's helpers,
  # and the static busybox of its test image.
  [containerd]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
  [conntrack]=conntrack [socat]=socat [iptables]=iptables [ebtables]=ebtables
  [/bin/busybox]=busybox-static
  # hack/build-k8s.sh and hack/control-plane.sh: module metadata, certificates, health checks.
  [jq]=jq [openssl]=openssl [curl]=curl
  # bench/nbd.ts: fio's nbd engine, the client that keeps 64 writes in flight.
  [fio]=fio
  # hack/kernel-tests.sh: a Debian kernel with nbd.ko under qemu, its initramfs built here.
  [qemu-system-x86_64]=qemu-system-x86 [depmod]=kmod [cpio]=cpio
)
missing=()
for tool in "${!tools[@]}"; do
  case "$tool" in
    /*) [ -x "$tool" ] || missing+=("${tools[$tool]}") ;; # a path: packages that put nothing in PATH
    *) command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] || missing+=("${tools[$tool]}") ;;
  esac
done
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing ${packages[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
# The kernel-test guest (a Debian kernel package and an initramfs), cached outside the clone.
echo "setup: kernel-test guest in $(bash hack/build-guest.sh)"
# Test peers built with Go, cached outside the clone (~/.cache/tidemark) for later runs.
if command -v go >/dev/null 2>&1; then
  echo "setup: csi-sanity at $(bash hack/build-csi-sanity.sh)"
  # The control-plane tests' Kubernetes components and CSI sidecars (a cold build takes about
  # 30 minutes on 2 cores; later runs reuse the cache).
  echo "setup: Kubernetes binaries in $(bash hack/build-k8s.sh)"
  # And what hack/local-cluster.sh adds to them (a node: kubelet, scheduler, resizer).
  echo "setup: local-cluster binaries in $(bash hack/build-k8s.sh kubelet kube-scheduler csi-resizer)"
else
  echo "setup: WARNING: Go is missing, so csi-sanity cannot be built; install Go >= 1.25 (https://go.dev/dl). Under CI=true its test fails." >&2
fi
echo "setup: done ($(node_modules/.bin/node --version))"
