#!/bin/sh
# Build corral's test images without any registry, imported into podman. Idempotent and cached:
# the image carries a label with the hash of its inputs; a matching image is kept.
#
#   (default)  a busybox-static root filesystem (sh, id, cat, nc, wget, ...), imported as
#              localhost/corral-test:busybox (0.3 s).
#   --debian   a Debian bookworm root filesystem made by mmdebstrap (bash, python3, git, curl,
#              util-linux, procps, ...: what the conformance suite's scripts use), imported as
#              localhost/corral-test:debian. The tarball is cached by its key in $CACHE
#              (default /var/tmp, mode 0644: other users import the same file); making it needs
#              root (mmdebstrap) and deb.debian.org, about 20 s; importing it takes a few seconds.
#
# usage: scripts/build-test-image.sh [--debian] [--tar FILE] [--name NAME] [-- PODMAN GLOBAL OPTIONS...]
#   --tar FILE   only write the root filesystem tarball (no podman needed)
#   --cached     --debian: only make the cached tarball (if missing) and print its path
#   --name NAME  the image name (default localhost/corral-test:busybox or :debian)
# Podman's store follows the environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF) or the
# global options given after `--` (e.g. --root DIR --runroot DIR).
# Needs: busybox-static (apt-get install busybox-static), or mmdebstrap for --debian; podman
# for the import.
set -eu

name=
tar_only=
cached_only=
flavour=busybox
while [ $# -gt 0 ]; do
    case "$1" in
        --tar) tar_only=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --debian) flavour=debian; shift ;;
        --cached) cached_only=1; shift ;;
        --) shift; break ;;
        *) echo "build-test-image.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
name=${name:-localhost/corral-test:$flavour}

if [ "$flavour" = debian ]; then
    suite=bookworm
    mirror=http://deb.debian.org/debian
    packages=bash,python3,git,curl,ca-certificates,util-linux,procps,coreutils
    version=1  # bump when the options below change
    key=$(printf '%s\n' "$version" "$suite" "$mirror" "$packages" "$(uname -m)" | sha256sum | cut -c1-16)
    cache=${CACHE:-/var/tmp}
    tarball=$cache/corral-test-debian-$key.tar
    if [ -z "$tar_only$cached_only" ]; then
        have=$(podman "$@" image inspect --format '{{index .Labels "corral.test.key"}}' "$name" 2>/dev/null || true)
        if [ "$have" = "$key" ]; then
            exit 0
        fi
    fi
    if [ -e "$tarball" ] && owner=$(stat -c %u "$tarball") && [ "$owner" != 0 ] && [ "$owner" != "$(id -u)" ]; then
        echo "build-test-image.sh: $tarball belongs to uid $owner, not to root or you: not used" \
             "(fix: remove it, then run \`sudo scripts/build-test-image.sh --debian\`)" >&2
        exit 1
    fi
    if [ ! -s "$tarball" ]; then
        if ! command -v mmdebstrap >/dev/null 2>&1; then
            echo "build-test-image.sh: --debian needs mmdebstrap (fix: apt-get install mmdebstrap)" >&2
            exit 1
        fi
        if [ "$(id -u)" != 0 ]; then
            echo "build-test-image.sh: $tarball is missing and making it needs root (fix: run" \
                 "\`sudo scripts/build-test-image.sh --debian\` once; other users then import that file)" >&2
            exit 1
        fi
        part=$(mktemp "$cache/corral-test-debian-$key.XXXXXX")
        trap 'rm -f "$part"' EXIT INT TERM
        # Documentation, manual pages and translations left out: a smaller tarball imports faster.
        mmdebstrap --quiet --mode=root --format=tar --variant=essential --include="$packages" \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            "$suite" "$part" "$mirror" >&2
        chmod 0644 "$part"
        mv -f "$part" "$tarball"  # atomic: a concurrent build or import sees the whole file or none
        trap - EXIT INT TERM
    fi
    if [ -n "$cached_only" ]; then
        echo "$tarball"
        exit 0
    fi
    if [ -n "$tar_only" ]; then
        cp "$tarball" "$tar_only"
        exit 0
    fi
    podman "$@" import --quiet --change "LABEL corral.test.key=$key" --change 'CMD ["/bin/bash"]' \
        "$tarball" "$name" >/dev/null
    exit 0
fi

busybox=
for cand in /bin/busybox /usr/bin/busybox; do
    if [ -x "$cand" ] && file -L "$cand" 2>/dev/null | grep -q 'statically linked'; then busybox=$cand; break; fi
    if [ -x "$cand" ] && ! ldd "$cand" >/dev/null 2>&1; then busybox=$cand; break; fi
done
if [ -z "$busybox" ]; then
    echo "build-test-image.sh: a static busybox is needed (fix: apt-get install busybox-static)" >&2
    exit 1
fi

version=1  # bump when the layout below changes
key=$( (echo "$version"; sha256sum "$busybox") | sha256sum | cut -c1-16)

if [ -z "$tar_only" ]; then
    have=$(podman "$@" image inspect --format '{{index .Labels "corral.test.key"}}' "$name" 2>/dev/null || true)
    if [ "$have" = "$key" ]; then
        exit 0
    fi
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/corral-test-image.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/dev" "$root/sys" "$root/run" \
         "$root/root" "$root/home" "$root/var/tmp" "$root/workspace" "$root/usr/bin" "$root/sbin"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
: > "$root/etc/hosts"
: > "$root/etc/resolv.conf"
echo corral-test > "$root/etc/hostname"

if [ -n "$tar_only" ]; then
    tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$tar_only" .
    exit 0
fi
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
podman "$@" import --quiet --change "LABEL corral.test.key=$key" --change 'CMD ["/bin/sh"]' \
    "$work/rootfs.tar" "$name" >/dev/null
