#!/usr/bin/env bash
# Generates the TypeScript types of the gRPC messages from the protos, with
# proto-loader-gen-types (a bin of @grpc/proto-loader, the loader the daemon uses at run time):
#
#   src/csi/csi.proto    -> src/csi/generated/
#   src/api/admin.proto  -> src/api/generated/
#
# The generator is given the same options as PROTO_LOADER_OPTIONS in src/util/grpc.ts, so the
# generated `__Output` types are what a handler really receives (test/hack/gen-types.test.ts
# checks that the two agree, and that the checked-in files are current).
#
# Usage: bash hack/gen-types.sh [--check | --print-flags]
#   --check        generate into a temporary directory and compare with the checked-in files;
#                  exit 1 and show the difference when they disagree
#   --print-flags  print the generator's options, one a line, and exit
# GEN_TYPES_ROOT names another tree to read the protos from and write (or check) the types in
# (the tests use a copy); the generator always comes from this repository's node_modules.
set -euo pipefail

prog=gen-types
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
root="${GEN_TYPES_ROOT:-$repo}"

# keepCase: false is the generator's default, so it has no flag here.
flags=(--longs=String --enums=String --defaults --oneofs --grpcLib=@grpc/grpc-js --importFileExtension=.js)

# proto file : output directory, both relative to src/.
targets=(csi/csi.proto:csi/generated api/admin.proto:api/generated)

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  --print-flags) printf '%s\n' "${flags[@]}"; exit 0 ;;
  -h | --help) echo "usage: bash hack/gen-types.sh [--check | --print-flags]" >&2; exit 0 ;;
  *) echo "$prog: unknown argument '$1'" >&2; exit 2 ;;
esac

generator="$repo/node_modules/.bin/proto-loader-gen-types"
if [ ! -x "$generator" ]; then
  echo "$prog: $generator is missing; run npm install" >&2
  exit 1
fi
# The generator's own shebang runs `node`; the project's Node comes first.
export PATH="$repo/node_modules/.bin:$PATH"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Generates every target into $tmp/<output directory>. The generator runs in the proto's own
# directory with the bare file name, so that the "Original file" comment it writes does not
# depend on where the tree lives.
for target in "${targets[@]}"; do
  proto="${target%%:*}"
  dir="$(dirname "$proto")"
  if [ ! -f "$root/src/$proto" ]; then
    echo "$prog: $root/src/$proto is missing" >&2
    exit 1
  fi
  (cd "$root/src/$dir" && "$generator" "${flags[@]}" --outDir="$tmp/${target#*:}" "$(basename "$proto")") >"$tmp/log" 2>&1 || {
    cat "$tmp/log" >&2
    echo "$prog: generating types from src/$proto failed" >&2
    exit 1
  }
done

stale=false
for target in "${targets[@]}"; do
  out="${target#*:}"
  if $check; then
    if ! diff -ru "$root/src/$out" "$tmp/$out" >"$tmp/diff" 2>&1; then
      cat "$tmp/diff"
      echo "$prog: src/$out is not what src/${target%%:*} generates" >&2
      stale=true
    fi
  else
    rm -rf "${root:?}/src/$out"
    cp -r "$tmp/$out" "$root/src/$out"
    echo "$prog: wrote src/$out from src/${target%%:*}" >&2
  fi
done

if $stale; then
  echo "$prog: the generated types are stale; run: npm run gen:types" >&2
  exit 1
fi
if $check; then echo "$prog: the generated types are current" >&2; fi
