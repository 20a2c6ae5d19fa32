#!/usr/bin/env bash
# Makes (once) and reuses a Debian testing chroot that holds llama.cpp's llama-server and
# test-llama-archs, plus a tiny random-weight llama model made by test-llama-archs. The
# end-to-end tests run real llama-server from it (tests/e2e/llama_server.test.mjs).
#
# Usage: scripts/llama-chroot.sh [build]   make what is missing, print "chroot=DIR model=PATH"
#        scripts/llama-chroot.sh status    print the paths and exit 0 if ready, exit 3 if not
#        scripts/llama-chroot.sh exec CMD…  run CMD inside the chroot (exec: same pid)
#        scripts/llama-chroot.sh remove    delete the cached chroot
#
# Cache: $DROVER_LLAMA_CHROOT (default /var/cache/drover/llama-chroot), outside the repo so
# every later run and worktree reuses it. Creation is atomic: debootstrap fills a temp dir
# beside the cache, a marker file is written last, and the dir is renamed into place; a run
# that is cut short leaves only a temp dir that the next run deletes. The model is made the
# same way (temp dir, then rename). The Debian mirror is read from this machine's apt sources
# (one-line .list and deb822 .sources files); DROVER_DEBIAN_MIRROR overrides it. Needs root.
set -euo pipefail

ROOT=${DROVER_LLAMA_CHROOT:-/var/cache/drover/llama-chroot}
SUITE=${DROVER_LLAMA_SUITE:-testing}
PKGS=(llama.cpp-tools llama.cpp-tests)
MARKER=.drover-chroot-ready
MODEL_DIR=/opt/drover-model           # inside the chroot
MODEL_MARKER=.drover-model-ready

log() { echo "llama-chroot: $*" >&2; }
die() { echo "llama-chroot: $*" >&2; exit 1; }

# Prints the first Debian (non-security) mirror URI from apt's sources.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '
            $1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                uri = $i; suite = $(i + 1)
                if (uri ~ /-security\/?$/ || suite ~ /security/) next
                if (uri !~ /\/debian\/?$/) next
                print uri; exit
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822: paragraphs separated by blank lines; field names are case-insensitive.
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && suites !~ /security/) {
                    n = split(uris, u, " ")
                    for (k = 1; k <= n; k++)
                        if (u[k] !~ /-security\/?$/ && u[k] ~ /\/debian\/?$/) { print u[k]; found = 1; exit }
                }
                types = uris = suites = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                line = $0; key = tolower(line); sub(/:.*/, "", key)
                val = line; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { if (!found) flush() }' "$f"
    done
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

# Unmounts anything left mounted under $1 (debootstrap mounts /proc and /sys while it works).
unmount_under() {
    local dir=$1 m
    [ -d "$dir" ] || return 0
    # deepest first
    awk -v d="$(realpath "$dir")" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

DEBOOTSTRAP_PGID=
stop_debootstrap() {
    [ -n "$DEBOOTSTRAP_PGID" ] || return 0
    kill -TERM -- "-$DEBOOTSTRAP_PGID" 2>/dev/null || true
    wait "$DEBOOTSTRAP_PGID" 2>/dev/null || true
    DEBOOTSTRAP_PGID=
}

remove_dir() {
    unmount_under "$1"
    rm -rf --one-file-system "$1"
}

# test-llama-archs is not on PATH: Debian ships it in /usr/libexec/<triplet>/llama.cpp-tests/.
# Prints its path inside the chroot rooted at $1.
archs_tool() {
    local f
    for f in "$1"/usr/libexec/*/llama.cpp-tests/test-llama-archs "$1"/usr/bin/test-llama-archs; do
        [ -x "$f" ] && { echo "${f#"$1"}"; return 0; }
    done
    return 0
}

model_path() {
    # test-llama-archs -a llama -o DIR writes llama-dense.gguf and llama-moe.gguf (random
    # weights, 128-token vocabulary, 256-token context, F32); the tests use the dense one.
    local f=$ROOT$MODEL_DIR/llama-dense.gguf
    [ -f "$f" ] && echo "${f#"$ROOT"}"
    return 0
}

is_ready() {
    [ -f "$ROOT/$MARKER" ] && [ -f "$ROOT$MODEL_DIR/$MODEL_MARKER" ] && [ -n "$(model_path)" ]
}

build_chroot() {
    [ -f "$ROOT/$MARKER" ] && return 0
    [ "$(id -u)" = 0 ] || die "building the chroot needs root"
    ensure_debootstrap
    local parent mirror tmp t0
    parent=$(dirname "$ROOT")
    mkdir -p "$parent"
    # Leftovers of an interrupted run are never taken as ready.
    for tmp in "$ROOT".tmp.*; do [ -e "$tmp" ] && { log "removing leftover $tmp"; remove_dir "$tmp"; }; done
    if [ -e "$ROOT" ]; then log "removing incomplete $ROOT"; remove_dir "$ROOT"; fi
    mirror=${DROVER_DEBIAN_MIRROR:-$(debian_mirror | head -1)}
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*.list,.d/*.sources}; set DROVER_DEBIAN_MIRROR"
    tmp=$(mktemp -d "$ROOT.tmp.XXXXXX")
    t0=$(date +%s)
    log "debootstrap $SUITE into $tmp from the machine's Debian mirror (${PKGS[*]})"
    # debootstrap runs in its own process group so that a signal to us stops all of it
    # (it is a shell script whose dpkg and wget children would otherwise go on writing).
    setsid debootstrap --variant=minbase --include="$(IFS=,; echo "${PKGS[*]}")" \
        "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1 &
    DEBOOTSTRAP_PGID=$!
    trap 'stop_debootstrap; remove_dir "'"$tmp"'"; rm -f "'"$tmp"'.log"' EXIT
    trap 'exit 130' INT TERM
    wait "$DEBOOTSTRAP_PGID" ||
        { DEBOOTSTRAP_PGID=; tail -30 "$tmp.log" >&2; die "debootstrap failed"; }
    DEBOOTSTRAP_PGID=
    rm -f "$tmp.log"
    unmount_under "$tmp"
    # Drop what the tests never read: apt's downloaded .debs and lists, docs and locales.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* \
        "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/locale/*
    chroot "$tmp" sh -c 'command -v llama-server' >/dev/null || die "llama-server missing in the chroot"
    [ -n "$(archs_tool "$tmp")" ] || die "test-llama-archs missing in the chroot"
    date -u +%FT%TZ >"$tmp/$MARKER"
    mv -T "$tmp" "$ROOT"
    trap - EXIT INT TERM
    log "chroot ready in $(( $(date +%s) - t0 ))s, $(du -sh --one-file-system "$ROOT" | cut -f1)"
}

build_model() {
    [ -f "$ROOT$MODEL_DIR/$MODEL_MARKER" ] && [ -n "$(model_path)" ] && return 0
    local tmp_in t0
    rm -rf "$ROOT$MODEL_DIR" "$ROOT$MODEL_DIR".tmp.*
    tmp_in=$MODEL_DIR.tmp.$$
    mkdir -p "$ROOT$tmp_in"
    t0=$(date +%s)
    log "making a tiny random-weight llama model with test-llama-archs"
    chroot "$ROOT" "$(archs_tool "$ROOT")" -a llama -s 42 -o "$tmp_in" >"$ROOT$tmp_in.log" 2>&1 ||
        { tail -30 "$ROOT$tmp_in.log" >&2; rm -rf "$ROOT$tmp_in" "$ROOT$tmp_in.log"; die "test-llama-archs failed"; }
    rm -f "$ROOT$tmp_in.log"
    [ -f "$ROOT$tmp_in/llama-dense.gguf" ] ||
        { rm -rf "$ROOT$tmp_in"; die "test-llama-archs wrote no llama-dense.gguf"; }
    date -u +%FT%TZ >"$ROOT$tmp_in/$MODEL_MARKER"
    mv -T "$ROOT$tmp_in" "$ROOT$MODEL_DIR"
    log "model ready in $(( $(date +%s) - t0 ))s, $(du -sh "$ROOT$MODEL_DIR" | cut -f1)"
}

print_paths() { echo "chroot=$ROOT model=$(model_path)"; }

# Two runs at once (two test files, two worktrees) build once: the second waits for the first.
lock() {
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$ROOT.lock"
    flock -w 1800 9 || die "timed out waiting for $ROOT.lock"
}

case "${1:-build}" in
build)
    lock
    build_chroot
    build_model
    print_paths
    ;;
status)
    if is_ready; then print_paths; else echo "not ready: $ROOT" >&2; exit 3; fi
    ;;
exec)
    shift
    [ -f "$ROOT/$MARKER" ] || { echo "llama-chroot: not built: $ROOT" >&2; exit 3; }
    exec chroot "$ROOT" "$@"
    ;;
remove)
    lock
    remove_dir "$ROOT"
    ;;
-h | --help | help)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    ;;
*)
    die "unknown command '$1' (build, status, exec, remove)"
    ;;
esac
