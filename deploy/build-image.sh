#!/usr/bin/env bash
# Builds the GridKV server image (deploy/Dockerfile, FROM scratch).
#
#     deploy/build-image.sh [TAG]        # default tag gridkv:latest
#     deploy/build-image.sh --binary     # only build the static binary and
#                                        # print its path on stdout
#
# 1. Builds a static `gridkv` on the host: the host's musl target if it is
#    installed (`rustup target list --installed`), otherwise the host's glibc
#    target with `-C target-feature=+crt-static`. The explicit --target puts
#    it under target/<triple>/release/, so it does not invalidate the normal
#    target/release build. GRIDKV_BIN=<path> skips the build and packs that
#    binary instead (it must be static).
# 2. Stages a build context holding only the binary and nsswitch.conf (the
#    repository root would send target/ to the daemon) and runs docker build.
#
# Cargo's output goes to stderr; stdout carries only what --binary prints.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

die() {
    echo "build-image: error: $*" >&2
    exit 1
}

binary_only=0
tag=gridkv:latest
case "${1:-}" in
--binary) binary_only=1 ;;
-h | --help)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
-*) die "unknown option $1 (see --help)" ;;
*) tag=$1 ;;
esac

is_static() {
    # A static executable has no program interpreter: ldd says so.
    ldd "$1" 2>&1 | grep -qE 'statically linked|not a dynamic executable'
}

build_binary() {
    if [ -n "${GRIDKV_BIN:-}" ]; then
        [ -x "$GRIDKV_BIN" ] || die "GRIDKV_BIN=$GRIDKV_BIN is not an executable"
        echo "$GRIDKV_BIN"
        return
    fi
    local host musl target
    host=$(rustc -vV | sed -n 's/^host: //p')
    [ -n "$host" ] || die "cannot tell the host target from 'rustc -vV'"
    musl=${host/-gnu/-musl}
    if [ "$musl" != "$host" ] && command -v rustup >/dev/null 2>&1 &&
        rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        target=$musl
        echo "build-image: building $target (static by default)" >&2
        cargo build --release -p gridkv-server --target "$target" >&2
    else
        target=$host
        echo "build-image: building $target with crt-static (no musl target installed)" >&2
        RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
            cargo build --release -p gridkv-server --target "$target" >&2
    fi
    local dir=${CARGO_TARGET_DIR:-target}
    [[ $dir == /* ]] || dir=$root/$dir
    echo "$dir/$target/release/gridkv"
}

bin=$(build_binary)
is_static "$bin" || die "$bin is not statically linked: it cannot run in a scratch image"

if [ "$binary_only" -eq 1 ]; then
    echo "$bin"
    exit 0
fi

command -v docker >/dev/null 2>&1 || die "docker is not installed"
ctx=$(mktemp -d "${TMPDIR:-/tmp}/gridkv-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/gridkv"
cp deploy/nsswitch.conf "$ctx/nsswitch.conf"
# An empty /certs owned by the image's user: a named volume mounted there
# starts with that owner, so the one-shot `gridkv cert` service (running
# as that user, not root) can write the certificates into it.
mkdir "$ctx/certs"
echo "build-image: docker build -t $tag ($(du -h "$ctx/gridkv" | cut -f1) binary)" >&2
# The legacy builder prints a deprecation notice when buildx is absent; the
# Dockerfile needs nothing from BuildKit, so either builder works.
old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
docker build -f deploy/Dockerfile -t "$tag" "$ctx" >&2
new=$(docker image inspect -f '{{.Id}}' "$tag")
# The image this tag named before is left untagged: drop it (unless a
# container still uses it), so rebuilds do not pile up.
if [ -n "$old" ] && [ "$old" != "$new" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
fi
echo "build-image: built $tag (${new:7:12})" >&2
