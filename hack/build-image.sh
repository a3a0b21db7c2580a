#!/usr/bin/env bash
# Builds tidemark's container image without Docker, as an OCI image archive that
# `ctr -n k8s.io images import`, `kind load image-archive`, podman and skopeo accept. The
# Dockerfile runs the same script (stage-app and rootfs), so both images hold the same files.
#
# Usage:
#   bash hack/build-image.sh [--out FILE] [--tag REF] [--rootfs DIR]
#       the whole image from the built checkout (run `npm run build` first). Defaults:
#       --out dist/image/tidemark-<version>.oci.tar, --tag ghcr.io/tidemark/tidemark:<version>
#       (the chart's default image; a name without a registry becomes docker.io/library/NAME,
#       which is what the kubelet asks containerd for). --rootfs keeps the root filesystem in
#       DIR for a look.
#   bash hack/build-image.sh stage-app DIR [--from CHECKOUT]
#       only the application: the `file` entries of hack/image.list, the production
#       node_modules and the Node binary, laid out as the image has them under DIR
#   bash hack/build-image.sh rootfs DIR --app STAGED
#       only the root filesystem: the Debian packages of hack/image.list and their
#       dependencies, extracted into DIR, plus an application staged by stage-app
#
# Needs: a Debian host or container of the release the image is for (its apt sources give
# the packages: apt-get download, dpkg-deb), npm for stage-app, tar, gzip, sha256sum. Runs
# as root so that the files keep root ownership (or under fakeroot).
set -euo pipefail

prog=build-image
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
list="$here/image.list"
app_prefix=opt/tidemark

log() { echo "$prog: $*" >&2; }

# Temporary directories, removed on exit whatever happens.
tmp_dirs=()
cleanup() { [ "${#tmp_dirs[@]}" -eq 0 ] || rm -rf "${tmp_dirs[@]}"; }
trap cleanup EXIT
new_tmp() { # sets $tmp_dir
  tmp_dir="$(mktemp -d)"
  tmp_dirs+=("$tmp_dir")
}
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# ---- the list

entries() { # kind: prints the values of that kind, one a line
  awk -v kind="$1" '$1 == kind { sub(/^[^ ]+ +/, ""); print }' "$list"
}

# ---- stage-app

# Copies the application as the image has it under /opt/tidemark, plus /usr/local/bin/node.
stage_app() { # dest from
  local dest="$1" from="$2" f
  [ -f "$from/package.json" ] || die "$from has no package.json"
  [ -d "$from/dist/src" ] || die "$from/dist/src is missing: run npm run build first"
  command -v npm >/dev/null 2>&1 || die "npm is needed to select the production node_modules"
  mkdir -p "$dest/$app_prefix" "$dest/usr/local/bin"
  while IFS= read -r f; do
    [ -e "$from/$f" ] || die "$f (hack/image.list) is missing in $from"
    mkdir -p "$dest/$app_prefix/$(dirname "$f")"
    cp -a "$from/$f" "$dest/$app_prefix/$f"
  done < <(entries file)

  # Node 24: the binary of the `node` npm package the lockfile pins, as every npm script uses.
  local node_bin
  node_bin="$(readlink -f "$from/node_modules/node/bin/node" 2>/dev/null || true)"
  [ -n "$node_bin" ] || node_bin=/nonexistent
  [ -x "$node_bin" ] || die "no Node binary at $from/node_modules/node/bin/node: run npm ci first"
  install -m 0755 "$node_bin" "$dest/usr/local/bin/node"

  # Production dependencies: a copy of node_modules pruned of devDependencies (npm prune works
  # offline from package-lock.json), without the `node` package, whose binary is installed above.
  local work
  new_tmp
  work="$tmp_dir"
  cp "$from/package.json" "$from/package-lock.json" "$work/"
  cp -a "$from/node_modules" "$work/"
  (cd "$work" && PATH="$(dirname "$node_bin"):$PATH" npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  rm -rf "$work/node_modules/node" "$work/node_modules/.bin/node" "$work/node_modules/.package-lock.json"
  # Type declarations and source maps of dependencies: only compilers and debuggers read them.
  find "$work/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete
  # koffi ships prebuilt addons for every platform; the image needs only its own (linux_x64).
  if [ -d "$work/node_modules/koffi/build/koffi" ]; then
    find "$work/node_modules/koffi/build/koffi" -mindepth 1 -maxdepth 1 ! -name linux_x64 -exec rm -rf {} +
    rm -rf "$work/node_modules/koffi/src" "$work/node_modules/koffi/vendor" "$work/node_modules/koffi/doc"
  fi
  cp -a "$work/node_modules" "$dest/$app_prefix/"
  log "application staged in $dest ($(du -sh "$dest" | cut -f1); node $("$dest/usr/local/bin/node" --version))"
}

# ---- rootfs

# The Debian packages: those listed plus their Depends/Pre-Depends, as apt resolves them on an
# empty system, with the `skip` packages (and what only they need) treated as present.
resolve_packages() { # work -> prints package names
  local work="$1" status="$1/status" p version stanza
  : >"$status"
  while IFS= read -r p; do
    version="$(apt-cache policy "$p" | awk '/Candidate:/ { print $2 }')"
    case "$version" in "" | "(none)") die "skip $p: apt knows no such package" ;; esac
    stanza="$(apt-cache show "$p=$version" | awk 'NF == 0 { exit } /^(Package|Version|Architecture|Multi-Arch|Provides):/')"
    printf '%s\nStatus: install ok installed\n\n' "$stanza" >>"$status"
  done < <(entries skip)
  mapfile -t wanted < <(entries deb)
  [ "${#wanted[@]}" -gt 0 ] || die "hack/image.list lists no deb"
  apt-get -s -o Dir::State::status="$status" -o APT::Install-Recommends=false \
    -o APT::Install-Suggests=false install "${wanted[@]}" 2>"$work/apt.err" |
    awk '/^Inst / { print $2 }' || { cat "$work/apt.err" >&2; die "apt could not resolve the packages"; }
}

build_rootfs() { # dest app
  local dest="$1" app="$2" work pkgs p d
  for p in apt-get dpkg-deb; do
    command -v "$p" >/dev/null 2>&1 || die "$p is needed: build on Debian (or in the Dockerfile's debian stage)"
  done
  [ -x "$app/usr/local/bin/node" ] || die "$app holds no staged application (run: bash hack/build-image.sh stage-app DIR)"
  if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then die "$dest is not empty"; fi
  mkdir -p "$dest"
  new_tmp
  work="$tmp_dir"

  local release
  release="$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
  mapfile -t pkgs < <(resolve_packages "$work")
  [ "${#pkgs[@]}" -gt 0 ] || die "apt resolved no packages; run apt-get update"
  log "${#pkgs[@]} Debian packages from ${release:-this system}'s apt sources"

  # The .deb files, kept in a cache outside the clone and checked against the SHA256 that apt's
  # (signed) package lists give, so that a rebuild downloads only what changed.
  local cache uri file _size hash missing=()
  cache="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/image-debs"
  mkdir -p "$cache" "$work/debs"
  apt-get download --print-uris "${pkgs[@]}" 2>"$work/download.err" >"$work/uris" ||
    { cat "$work/download.err" >&2; die "apt-get download --print-uris failed"; }
  while read -r uri file _size hash; do
    [ -n "$uri" ] || continue
    # The package name is what comes before the first _ of its file name.
    if [ ! -f "$cache/$file" ] || [ "SHA256:$(sha "$cache/$file")" != "$hash" ]; then missing+=("${file%%_*}"); fi
  done <"$work/uris"
  if [ "${#missing[@]}" -gt 0 ]; then
    log "downloading ${#missing[@]} of ${#pkgs[@]} packages into $cache"
    # apt's sandbox user may not write there: download as ourselves.
    (cd "$cache" && apt-get download -o APT::Sandbox::User="$(id -un)" "${missing[@]}" >/dev/null 2>"$work/download.err") ||
      { cat "$work/download.err" >&2; die "apt-get download failed"; }
  fi
  while read -r uri file _size hash; do
    [ -n "$uri" ] || continue
    [ "SHA256:$(sha "$cache/$file")" = "$hash" ] || die "$cache/$file does not match its SHA256 in apt's lists"
    cp "$cache/$file" "$work/debs/"
  done <"$work/uris"

  mkdir -p "$dest/var/lib/dpkg"
  : >"$dest/var/lib/dpkg/status"
  for p in "$work/debs/"*.deb; do
    dpkg-deb -x "$p" "$dest"
    # A status database, so that image scanners see what is installed.
    { dpkg-deb -f "$p" | sed '/^Package:/a Status: install ok installed'; echo; } >>"$dest/var/lib/dpkg/status"
  done

  # Merged /usr, as Debian installs it: /bin, /sbin and /lib are links into /usr.
  for d in bin sbin lib lib64; do
    if [ -d "$dest/$d" ] && [ ! -L "$dest/$d" ]; then
      mkdir -p "$dest/usr/$d"
      cp -a "$dest/$d/." "$dest/usr/$d/"
      rm -rf "${dest:?}/$d"
    fi
    [ -e "$dest/usr/$d" ] && ln -sfn "usr/$d" "$dest/$d"
  done

  # What a running daemon never reads.
  rm -rf "$dest/usr/share/doc" "$dest/usr/share/man" "$dest/usr/share/info" "$dest/usr/share/locale" \
    "$dest/usr/share/lintian" "$dest/usr/share/bug" "$dest/usr/share/bash-completion" "$dest/etc/init.d" \
    "$dest/usr/share/zsh"

  # The files a Debian base would provide: root's account, a /tmp, the loader cache.
  mkdir -p "$dest/etc" "$dest/root" "$dest/run" "$dest/var/tmp"
  install -d -m 1777 "$dest/tmp"
  printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$dest/etc/passwd"
  printf 'root:x:0:\ndisk:x:6:\nnogroup:x:65534:\n' >"$dest/etc/group"
  [ -e "$dest/etc/os-release" ] || cp /etc/os-release "$dest/etc/os-release"

  cp -a "$app/." "$dest/"
  check_tools "$dest"
  log "root filesystem in $dest ($(du -sh "$dest" | cut -f1))"
}

# Every `tool` of the list is in the image's PATH, and the loader finds each of its libraries.
check_tools() { # rootfs
  local rootfs="$1" tool found dir missing loader
  loader="$rootfs/lib64/ld-linux-x86-64.so.2"
  local path_value
  path_value="$(entries env | sed -n 's/^PATH=//p')"
  for tool in $(entries tool); do
    found=""
    IFS=: read -r -a dirs <<<"$path_value"
    for dir in "${dirs[@]}"; do
      if [ -x "$rootfs$dir/$tool" ] || [ -L "$rootfs$dir/$tool" ]; then found="$dir/$tool"; break; fi
    done
    [ -n "$found" ] || die "the image has no $tool in its PATH"
    # Libraries: ask the image's own loader, run against the image's library directories.
    if [ -x "$loader" ] && [ "$(uname -m)" = x86_64 ]; then
      missing="$("$loader" --library-path "$rootfs/usr/lib/x86_64-linux-gnu:$rootfs/usr/lib" --list "$rootfs$(readlink -f "$rootfs$found" | sed "s|^$rootfs||")" 2>&1 | grep 'not found' || true)"
      [ -z "$missing" ] || die "$tool in the image lacks libraries: $missing"
    fi
  done
  log "all $(entries tool | wc -l) tools of hack/image.list are in the image, with their libraries"
}

# ---- the OCI archive


write_oci() { # rootfs out ref
  local rootfs="$1" out="$2" ref="$3" work epoch layer_tar layer_gz diff_id layer_digest
  new_tmp
  work="$tmp_dir"
  mkdir -p "$work/oci/blobs/sha256"
  # Reproducible: fixed times, sorted entries, numeric root ownership.
  epoch="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}"
  layer_tar="$work/layer.tar"
  tar --create --file "$layer_tar" --directory "$rootfs" --sort=name --numeric-owner \
    --owner=0 --group=0 --mtime="@$epoch" --xattrs --exclude=./dev --exclude=./proc --exclude=./sys .
  diff_id="$(sha "$layer_tar")"
  layer_gz="$work/layer.tar.gz"
  gzip -n -6 <"$layer_tar" >"$layer_gz"
  layer_digest="$(sha "$layer_gz")"
  mv "$layer_gz" "$work/oci/blobs/sha256/$layer_digest"

  local entrypoint env_json created arch config config_digest manifest manifest_digest
  entrypoint="$(entries entrypoint)"
  env_json="$(entries env | sed 's/.*/"&"/' | paste -sd, -)"
  created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
  case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
    amd64 | x86_64) arch=amd64 ;;
    arm64 | aarch64) arch=arm64 ;;
    *) arch="$(dpkg --print-architecture)" ;;
  esac
  config="$work/config.json"
  printf '{"architecture":"%s","os":"linux","created":"%s","config":{"Entrypoint":["%s"],"Env":[%s],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"hack/build-image.sh"}]}' \
    "$arch" "$created" "$entrypoint" "$env_json" "$diff_id" "$created" >"$config"
  config_digest="$(sha "$config")"
  cp "$config" "$work/oci/blobs/sha256/$config_digest"

  manifest="$work/manifest.json"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
    "$config_digest" "$(size "$config")" "$layer_digest" "$(size "$work/oci/blobs/sha256/$layer_digest")" >"$manifest"
  manifest_digest="$(sha "$manifest")"
  cp "$manifest" "$work/oci/blobs/sha256/$manifest_digest"

  # containerd names the imported image after io.containerd.image.name; other tools read
  # org.opencontainers.image.ref.name.
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$(size "$manifest")" "$arch" "$ref" "$ref" >"$work/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"

  mkdir -p "$(dirname "$out")"
  tar --create --file "$out.tmp" --directory "$work/oci" --sort=name --numeric-owner --owner=0 --group=0 \
    --mtime="@$epoch" oci-layout index.json blobs
  mv -f "$out.tmp" "$out"
  log "wrote $out ($(du -h "$out" | cut -f1); $ref, manifest sha256:$manifest_digest)"
}

# ---- main

[ -f "$list" ] || die "$list is missing"
cmd=image
case "${1:-}" in
  stage-app | rootfs) cmd="$1"; shift ;;
  -h | --help) usage; exit 0 ;;
esac

case "$cmd" in
  stage-app)
    [ "$#" -ge 1 ] || die "usage: bash hack/build-image.sh stage-app DIR [--from CHECKOUT]"
    dest="$1"; shift
    from="$root"
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --from) from="$2"; shift 2 ;;
        *) die "unknown argument '$1'" ;;
      esac
    done
    stage_app "$dest" "$from"
    ;;
  rootfs)
    [ "$#" -ge 1 ] || die "usage: bash hack/build-image.sh rootfs DIR --app STAGED"
    dest="$1"; shift
    app=""
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --app) app="$2"; shift 2 ;;
        *) die "unknown argument '$1'" ;;
      esac
    done
    [ -n "$app" ] || die "rootfs needs --app STAGED (from: bash hack/build-image.sh stage-app STAGED)"
    build_rootfs "$dest" "$app"
    ;;
  image)
    version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$root/package.json" | head -n 1)"
    out="$root/dist/image/tidemark-$version.oci.tar"
    ref="ghcr.io/tidemark/tidemark:$version"
    keep=""
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --out) out="$2"; shift 2 ;;
        --tag) ref="$2"; shift 2 ;;
        --rootfs) keep="$2"; shift 2 ;;
        *) usage; die "unknown argument '$1'" ;;
      esac
    done
    case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
    # The name the kubelet asks containerd for: an image without a registry is docker.io's.
    case "${ref%%/*}" in
      *.* | *:* | localhost) [[ "$ref" == */* ]] || ref="docker.io/library/$ref" ;;
      *) if [[ "$ref" == */* ]]; then ref="docker.io/$ref"; else ref="docker.io/library/$ref"; fi ;;
    esac
    [ "$(id -u)" -eq 0 ] || log "WARNING: not root: files in the image keep your ownership; run as root or under fakeroot"
    t0=$SECONDS
    new_tmp
    tmp="$tmp_dir"
    stage_app "$tmp/app" "$root"
    rootfs="${keep:-$tmp/rootfs}"
    build_rootfs "$rootfs" "$tmp/app"
    write_oci "$rootfs" "$out" "$ref"
    log "done in $((SECONDS - t0)) s"
    ;;
esac
