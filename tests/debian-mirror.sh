#!/usr/bin/env bash
# A partial Debian bookworm mirror that the tests control, signed with a key
# made for it, so apt and mmdebstrap use it as they use a real one.
#
#   tests/debian-mirror.sh create DIR        the mirror (downloads once; an
#                                            existing one is left as it is,
#                                            bumps included: remove DIR/archive
#                                            to start again from the download)
#   tests/debian-mirror.sh copy DIR NEWDIR   a copy to change (pool hardlinked)
#   tests/debian-mirror.sh bump DIR PACKAGE  PACKAGE at a higher version, re-signed
#
# DIR holds:
#   debs/      the .debs downloaded once (kept: a second `create` is instant)
#   gnupg/     the throwaway signing key (never served)
#   key.gpg    its public key, for `[signed-by=DIR/key.gpg]`
#   archive/   what is served over HTTP: pool/main/*.deb and
#              dists/bookworm/{InRelease,Release,Release.gpg,main/binary-ARCH/Packages{,.gz}}
#
# The mirror has exactly the .debs that `mmdebstrap --variant=essential` needs
# for the base and the compiler (layers/base/packages, layers/compiler/packages),
# for the host architecture, at the versions the download source had, in a
# single suite `bookworm` with a single component `main`. It has no
# bookworm-updates nor bookworm-security suites: their newer versions, if the
# source had them, are in `bookworm` itself. It has no sources, no
# Contents, no translations, no other architecture.
#
# The download goes through mmdebstrap with ASSEMBLE_DEBIAN_MIRROR when set
# (the same value assemble takes), else with mmdebstrap's default mirrors
# (bookworm, bookworm-updates, bookworm-security), as `assemble base` does.
#
# Using it: serve DIR/archive over HTTP (python3 -m http.server --bind
# 127.0.0.1 PORT --directory DIR/archive), then
#   ASSEMBLE_DEBIAN_MIRROR='deb [signed-by=DIR/key.gpg] http://127.0.0.1:PORT/ bookworm main'
#
# Needs: mmdebstrap (create, first time only), apt-utils (apt-ftparchive),
# gpg, dpkg-deb, gzip. Safe to run twice; nothing is left half-written
# (work happens under a temporary name, then a rename).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
component=main
arch=$(dpkg --print-architecture)

usage() {
    echo "usage: tests/debian-mirror.sh create DIR | copy DIR NEWDIR | bump DIR PACKAGE" >&2
    exit 2
}

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "$1 is not installed: run .ci/setup (Debian package: $2)" >&2
        exit 1
    }
}

package_list() {
    sed -e 's/#.*//' "$1" | tr -s ' \t' '\n\n' | sed '/^$/d'
}

# The gpg of this mirror; its agent is stopped when the script exits.
gpg_home=
mirror_gpg() {
    gpg --homedir "$gpg_home" --batch --quiet --no-tty "$@"
}
stop_agent() {
    if [ -n "$gpg_home" ] && [ -d "$gpg_home" ]; then
        gpgconf --homedir "$gpg_home" --kill gpg-agent 2>/dev/null || true
    fi
}
trap stop_agent EXIT

# Downloads the .debs into DIR/debs, unless the package lists are unchanged.
download() {
    local dir=$1 stamp=$2
    if [ "$(cat "$dir/debs/.complete" 2>/dev/null)" = "$stamp" ]; then
        return
    fi
    need mmdebstrap mmdebstrap
    local base compiler
    base=$(package_list "$here/../layers/base/packages" | xargs)
    compiler=$(package_list "$here/../layers/compiler/packages" | xargs)
    rm -rf "$dir/debs.tmp"
    mkdir -p "$dir/debs.tmp"
    # mmdebstrap installs the essential set, then each customize hook asks
    # the same apt, with the same configuration and from the same state, to
    # download what `--include` would install: the base's packages, then the
    # compiler's. So the .debs are exactly those of both builds, with no
    # guess about apt's choices. --skip=essential/unlink keeps the essential
    # .debs in the apt cache.
    local mirror=()
    if [ -n "${ASSEMBLE_DEBIAN_MIRROR:-}" ]; then
        mirror=("$ASSEMBLE_DEBIAN_MIRROR")
    fi
    local get='APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get --yes -qq --download-only install'
    if ! mmdebstrap --quiet --mode=unshare --variant=essential \
        --skip=essential/unlink --skip=download/empty \
        --customize-hook="$get $base" \
        --customize-hook="$get $base $compiler" \
        --customize-hook="sync-out /var/cache/apt/archives $dir/debs.tmp" \
        "$suite" /dev/null "${mirror[@]}" < /dev/null; then
        echo "mmdebstrap could not download the mirror's packages (see above)" >&2
        exit 1
    fi
    rm -rf "$dir/debs.tmp/partial" "$dir/debs.tmp/lock"
    echo "$stamp" > "$dir/debs.tmp/.complete"
    rm -rf "$dir/debs"
    mv "$dir/debs.tmp" "$dir/debs"
}

# A new signing key in DIR/gnupg and its public part in DIR/key.gpg.
make_key() {
    local dir=$1
    if [ -s "$dir/key.gpg" ] && [ -d "$dir/gnupg" ]; then
        return
    fi
    rm -rf "$dir/gnupg" "$dir/key.gpg"
    mkdir -m 0700 "$dir/gnupg"
    gpg_home=$dir/gnupg
    mirror_gpg --passphrase '' --pinentry-mode loopback \
        --quick-generate-key 'assemble test mirror <test-mirror@assemble.invalid>' ed25519 sign never
    mirror_gpg --export --output "$dir/key.gpg.tmp"
    mv "$dir/key.gpg.tmp" "$dir/key.gpg"
}

# Writes Packages, Packages.gz, Release (dated EPOCH), InRelease, Release.gpg
# for the pool of ARCHIVE, signed with the key of DIR.
write_indexes() {
    local dir=$1 archive=$2 epoch=$3
    need apt-ftparchive apt-utils
    gpg_home=$dir/gnupg
    local dists=$archive/dists/$suite
    local bin=$dists/$component/binary-$arch
    mkdir -p "$bin"
    # Relative paths: apt-ftparchive writes Filename: as given.
    (cd "$archive" && apt-ftparchive packages "pool/$component") > "$bin/Packages.tmp"
    mv "$bin/Packages.tmp" "$bin/Packages"
    gzip -9n < "$bin/Packages" > "$bin/Packages.gz.tmp"
    mv "$bin/Packages.gz.tmp" "$bin/Packages.gz"
    local date
    date=$(LC_ALL=C date -u -d "@$epoch" '+%a, %d %b %Y %H:%M:%S UTC')
    # apt-ftparchive dates the Release with the clock; the date is set here
    # so that a bump is always newer, even within the same second.
    (cd "$dists" && apt-ftparchive \
        -o APT::FTPArchive::Release::Origin=assemble-test \
        -o APT::FTPArchive::Release::Label=assemble-test \
        -o APT::FTPArchive::Release::Suite=$suite \
        -o APT::FTPArchive::Release::Codename=$suite \
        -o APT::FTPArchive::Release::Architectures="$arch" \
        -o APT::FTPArchive::Release::Components=$component \
        -o APT::FTPArchive::Release::Description="partial $suite mirror of the assemble tests" \
        release .) | sed "s/^Date: .*/Date: $date/" > "$dists/Release.tmp"
    mv "$dists/Release.tmp" "$dists/Release"
    rm -f "$dists/InRelease.tmp" "$dists/Release.gpg.tmp"
    mirror_gpg --digest-algo SHA512 --clearsign --output "$dists/InRelease.tmp" "$dists/Release"
    mirror_gpg --digest-algo SHA512 --armor --detach-sign --output "$dists/Release.gpg.tmp" "$dists/Release"
    mv "$dists/InRelease.tmp" "$dists/InRelease"
    mv "$dists/Release.gpg.tmp" "$dists/Release.gpg"
    # Files dated with the Release: an HTTP server's Last-Modified moves with
    # every new state, so If-Modified-Since never hides a bump.
    find "$dists" -type f -exec touch -d "@$epoch" {} +
}

create() {
    local dir=$1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local stamp
    stamp=$( (echo "$arch $suite ${ASSEMBLE_DEBIAN_MIRROR:-}"; cat "$here/../layers/base/packages" \
        "$here/../layers/compiler/packages") | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$dir/.complete" 2>/dev/null)" = "$stamp" ] && [ -d "$dir/archive" ]; then
        return
    fi
    download "$dir" "$stamp"
    make_key "$dir"
    rm -rf "$dir/archive.tmp"
    mkdir -p "$dir/archive.tmp/pool/$component"
    ln "$dir"/debs/*.deb "$dir/archive.tmp/pool/$component/"
    write_indexes "$dir" "$dir/archive.tmp" "$(date +%s)"
    rm -rf "$dir/archive"
    mv "$dir/archive.tmp" "$dir/archive"
    echo "$stamp" > "$dir/.complete"
}

# A copy of a mirror to bump: the pool's .debs are hardlinks (a bump replaces
# a file, it never writes into one), the rest is copied.
copy() {
    local src=$1 dst=$2
    [ -f "$src/.complete" ] || { echo "$src is not a mirror made by create" >&2; exit 2; }
    rm -rf "$dst.tmp"
    mkdir -p "$dst.tmp/archive"
    cp -a "$src/gnupg" "$src/key.gpg" "$dst.tmp/"
    cp -al "$src/archive/pool" "$dst.tmp/archive/" 2>/dev/null \
        || cp -a "$src/archive/pool" "$dst.tmp/archive/"   # another file system
    cp -a "$src/archive/dists" "$dst.tmp/archive/"
    cp "$src/.complete" "$dst.tmp/.complete"
    rm -rf "$dst"
    mv "$dst.tmp" "$dst"
}

# Rebuilds PACKAGE's .deb with `+assembleN` appended to its version.
bump() {
    local dir=$1 package=$2
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/.complete" ] || { echo "$dir is not a mirror made by create" >&2; exit 2; }
    local pool=$dir/archive/pool/$component
    local old
    old=$(find "$pool" -maxdepth 1 -name "${package}_*.deb" | head -1)
    if [ -z "$old" ] || [ "$(dpkg-deb -f "$old" Package)" != "$package" ]; then
        echo "the mirror in $dir has no package $package" >&2
        exit 2
    fi
    local version new_version n
    version=$(dpkg-deb -f "$old" Version)
    if [[ $version =~ ^(.*)\+assemble([0-9]+)$ ]]; then
        n=$((BASH_REMATCH[2] + 1))
        new_version="${BASH_REMATCH[1]}+assemble$n"
    else
        new_version="$version+assemble1"
    fi
    local work
    work=$(mktemp -d "$dir/bump.XXXXXX")
    dpkg-deb -R "$old" "$work/root"
    sed -i "s/^Version: .*/Version: $new_version/" "$work/root/DEBIAN/control"
    local owner=()
    # As a normal user, -R cannot keep the files' owners: they are root's.
    [ "$(id -u)" -eq 0 ] || owner=(--root-owner-group)
    local pkg_arch
    pkg_arch=$(dpkg-deb -f "$old" Architecture)
    local file_version=${new_version#*:}
    dpkg-deb "${owner[@]}" -b "$work/root" "$work/${package}_${file_version}_${pkg_arch}.deb" >/dev/null
    mv "$work/${package}_${file_version}_${pkg_arch}.deb" "$pool/"
    rm -f "$old"
    rm -rf "$work"
    # The new Release is dated later than the old one, and never in the
    # future, which apt refuses ("not valid yet"): within the old one's
    # second, wait for the next.
    local previous
    previous=$(date -d "$(sed -n 's/^Date: //p' "$dir/archive/dists/$suite/Release")" +%s)
    while [ "$(date +%s)" -le "$previous" ]; do sleep 0.1; done
    write_indexes "$dir" "$dir/archive" "$(date +%s)"
    echo "$package $version -> $new_version"
}

case "${1:-}" in
    create) [ $# -eq 2 ] || usage; create "$2" ;;
    copy) [ $# -eq 3 ] || usage; copy "$2" "$3" ;;
    bump) [ $# -eq 3 ] || usage; bump "$2" "$3" ;;
    *) usage ;;
esac
