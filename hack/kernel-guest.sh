#!/usr/bin/env bash
# Runs inside the kernel-test guest (see hack/guest-init.sh), in a chroot of the host's root:
# the kernel NBD scenarios, then their results are in OUT/results.
#
#   hack/kernel-guest.sh OUT
set -uo pipefail
out="$1"
echo "kernel-guest: $(uname -r), nbd module $(test -d /sys/module/nbd && echo loaded || echo missing)"
exec node_modules/.bin/node dist/test/kernel/guest-scenarios.js "$out"
