#!/bin/busybox sh
# /init of the kernel-test guest (built into its initramfs by hack/build-guest.sh). Loads the
# modules, mounts the host's root filesystem read-only over 9p (tag "hostroot") with a tmpfs
# on /tmp and /run, mounts the clone, the cache and the writable output directory (tag "out")
# at the paths they have on the host, and runs one command in a chroot of the host's root:
#
#   tidemark.run=SCRIPT  tidemark.out=DIR  tidemark.cwd=DIR  tidemark.cache=DIR
#
# (kernel command line; the cache is the host's tidemark cache, for the csi-sanity binary).
#
# The command's exit status lands in DIR/guest-exit. PID 1 must never exit (the kernel
# panics), so the guest powers itself off at the end.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
run="$(arg tidemark.run)"
out="$(arg tidemark.out)"
cwd="$(arg tidemark.cwd)"
cache="$(arg tidemark.cache)"

while read -r module; do
  case "$module" in
    nbd.ko) insmod "/lib/modules/$module" nbds_max=16 ;;
    *) insmod "/lib/modules/$module" ;;
  esac
done </modules.order

ip link set lo up
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host || {
  echo "guest: cannot mount the host's root over 9p" >/dev/console
  poweroff -f
}
for fs in tmp run; do mount -t tmpfs -o mode=1777 tmpfs "/host/$fs"; done
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
# The clone (tag "repo") and the tidemark cache (tag "cache") again at their own paths: under
# /tmp they would be hidden by the tmpfs.
for share in "repo:$cwd" "cache:$cache"; do
  mkdir -p "/host${share#*:}" 2>/dev/null
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose "${share%%:*}" "/host${share#*:}"
done
mkdir -p "/host$out"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out "/host$out"

echo "guest: up after $(cut -d' ' -f1 /proc/uptime) s; running $run" >/dev/console
chroot /host /usr/bin/env -i HOME=/tmp PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TMPDIR=/tmp CI="${CI:-}" TIDEMARK_CACHE="$cache" \
  /bin/bash -c "cd '$cwd' && exec /bin/bash '$run' '$out'" </dev/console >/dev/console 2>&1
echo "$?" >"/host$out/guest-exit"
sync
umount "/host$out" 2>/dev/null
poweroff -f
