#!/usr/bin/env bash
# Builds what hack/kernel-tests.sh boots under qemu: a Debian kernel that has the nbd module
# (this machine's kernel may not), and a small initramfs (static busybox, the kernel modules
# the guest needs, and guest-init.sh as /init). The guest then mounts the host's root
# filesystem read-only over 9p and runs the host's own Node, tidemark and tools in a chroot.
#
#   hack/build-guest.sh          prints the directory holding vmlinuz and initrd.img
#
# GUEST_KERNEL    Debian package version, e.g. 6.12.117+deb12-amd64 or 6.1.0-57-amd64
#                 (default: the newest linux-image-6.12.N+deb12-amd64 apt knows, else the
#                 newest 6.1.0-N-amd64). 6.12 has cachestat(2) (Linux 6.5), so the guest's
#                 daemon sends read replies from the image file as a production node would.
# TIDEMARK_CACHE  cache root (default ${XDG_CACHE_HOME:-~/.cache}/tidemark), shared by clones
#
# Needs apt-get, dpkg-deb, depmod and modprobe (kmod), cpio and /bin/busybox (busybox-static).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/guest"
mkdir -p "$cache"

kernel="${GUEST_KERNEL:-}"
if [ -z "$kernel" ]; then
  newest() {
    local pattern
    for pattern in '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' '^linux-image-6\.1\.0-[0-9]+-amd64$'; do
      apt-cache search --names-only "$pattern" | awk '{print $1}' | sort -V | tail -1 | sed 's/^linux-image-//' | grep . && return
    done
    return 0
  }
  kernel="$(newest)"
  if [ -z "$kernel" ]; then
    apt-get update -qq >&2 || true
    kernel="$(newest)"
  fi
  [ -n "$kernel" ] || { echo "build-guest: apt knows no linux-image-6.12.N+deb12-amd64 or 6.1.0-N-amd64 package; run apt-get update" >&2; exit 1; }
fi
out="$cache/$kernel"
# The initramfs depends on guest-init.sh: rebuilt when it changes.
stamp="$(sha256sum hack/guest-init.sh | cut -c1-16)"
if [ -f "$out/initrd.img" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-guest.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "linux-image-$kernel" >/dev/null 2>&1) || {
  echo "build-guest: apt-get download linux-image-$kernel failed" >&2
  exit 1
}
dpkg-deb -x "$work"/linux-image-*.deb "$work/pkg"
depmod -b "$work/pkg" "$kernel"

# Load order with dependencies, without loading anything on this host.
root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,host,lib/modules}
: >"$root/modules.order"
for module in virtio_pci virtio_net 9pnet_virtio 9p nbd ext4 loop; do
  modprobe -d "$work/pkg" -S "$kernel" --show-depends "$module" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  name="$(basename "$ko")"
  case "$name" in
    *.xz) xz -dc "$ko" >"$root/lib/modules/${name%.xz}"; name="${name%.xz}" ;;
    *) cp "$ko" "$root/lib/modules/$name" ;;
  esac
  echo "$name" >>"$root/modules.order"
done
cp /bin/busybox "$root/bin/busybox"
cp hack/guest-init.sh "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox"

mkdir -p "$out.new"
cp "$work/pkg/boot/vmlinuz-$kernel" "$out.new/vmlinuz"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$out.new/initrd.img"
echo "$stamp" >"$out.new/stamp"
rm -rf "$out"
mv "$out.new" "$out"
echo "$out"
