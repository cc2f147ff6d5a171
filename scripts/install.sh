#!/bin/sh
# Installs and uninstalls polldrop; `make install` and `make uninstall` call
# it. Every file written and every directory created is recorded in a
# manifest, so that uninstall removes exactly what install wrote: no more
# (directories that existed before stay), no less (a reinstall keeps the
# records of the directories an older install created). A reinstall also
# removes the files the older install wrote and this one does not, such as
# a library spec that no longer exists: the generator would find it, and
# the library would not have its code.
#
#   scripts/install.sh install MANIFEST [--to DIR MODE FILE...]...
#   scripts/install.sh uninstall MANIFEST
#
# DIR and MANIFEST are the final paths (under PREFIX); DESTDIR, from the
# environment, is prepended to every path written or removed, and the
# manifest records paths without it.
set -eu
export LC_ALL=C   # one collation for sort and comm
destdir=${DESTDIR:-}
cmd=$1
manifest=$2
shift 2

case $manifest in
/*) ;;
*) echo "install.sh: the install paths must be absolute: $manifest" >&2; exit 1 ;;
esac

records=$(mktemp)
old=$(mktemp)
trap 'rm -f "$records" "$records.f" "$old"' EXIT

# Creates DIR (a final path) one component at a time, recording each new one.
mkdir_recorded() {
    [ -d "$destdir$1" ] && return 0
    # DESTDIR itself is the caller's: made if missing, never recorded.
    if [ "$1" = / ]; then
        mkdir -p -- "$destdir/"
        return 0
    fi
    mkdir_recorded "$(dirname -- "$1")"
    mkdir -- "$destdir$1"
    printf 'd %s\n' "$1" >>"$records"
}

install_files() {
    if [ -f "$destdir$manifest" ]; then
        # The directories an earlier install created are still ours.
        grep '^d ' "$destdir$manifest" >>"$records" || true
        grep '^f ' "$destdir$manifest" >"$old" || true
    fi
    mkdir_recorded "$(dirname -- "$manifest")"
    while [ $# -gt 0 ]; do
        [ "$1" = --to ] || { echo "install.sh: expected --to, got $1" >&2; exit 1; }
        dir=$2 mode=$3
        shift 3
        case $dir in
        /*) ;;
        *) echo "install.sh: the install paths must be absolute: $dir" >&2; exit 1 ;;
        esac
        mkdir_recorded "$dir"
        while [ $# -gt 0 ] && [ "$1" != --to ]; do
            # Two processes a file (make install installs about eighty).
            dest=$dir/${1##*/}
            # Through a temporary and a rename: a running polldrop-gen or a
            # build reading the old file never sees half of the new one.
            install -m "$mode" -T -- "$1" "$destdir$dest.tmp$$"
            mv -f -- "$destdir$dest.tmp$$" "$destdir$dest"
            printf 'f %s\n' "$dest" >>"$records"
            shift
        done
    done
    printf 'f %s\n' "$manifest" >>"$records"
    # Files of the earlier install that this one did not write go.
    grep '^f ' "$records" | sort -u >"$records.f"
    sort -u "$old" | comm -23 - "$records.f" | while IFS= read -r line; do
        rm -f -- "$destdir${line#? }"
    done
    rm -f "$records.f"
    # Files first, then directories deepest first: the order uninstall needs.
    { grep '^f ' "$records" | sort -u; grep '^d ' "$records" | sort -u -r; } \
        >"$destdir$manifest.tmp$$"
    mv -f -- "$destdir$manifest.tmp$$" "$destdir$manifest"
}

uninstall_files() {
    if [ ! -f "$destdir$manifest" ]; then
        echo "polldrop: nothing to uninstall: no $destdir$manifest" >&2
        return 0
    fi
    cp -- "$destdir$manifest" "$records"
    while IFS= read -r line; do
        path=$destdir${line#? }
        case $line in
        "f "*) rm -f -- "$path" ;;
        # A directory someone else has put files in since stays.
        "d "*) rmdir -- "$path" 2>/dev/null || true ;;
        esac
    done <"$records"
}

case $cmd in
install) install_files "$@" ;;
uninstall) uninstall_files ;;
*) echo "usage: install.sh install|uninstall MANIFEST [--to DIR MODE FILE...]..." >&2; exit 2 ;;
esac
