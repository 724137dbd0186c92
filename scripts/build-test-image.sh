#!/bin/sh
# Build corral's test image without any registry: a busybox-static root filesystem (sh, id,
# cat, nc, wget, ...), imported into podman as localhost/corral-test:busybox. Idempotent and
# cached: the image carries a label with the hash of its inputs; a matching image is kept.
#
# usage: scripts/build-test-image.sh [--tar FILE] [--name NAME] [-- PODMAN GLOBAL OPTIONS...]
#   --tar FILE   only write the root filesystem tarball (no podman needed)
#   --name NAME  the image name (default localhost/corral-test:busybox)
# Podman's store follows the environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF) or the
# global options given after `--` (e.g. --root DIR --runroot DIR).
# Needs: busybox-static (apt-get install busybox-static), podman for the import.
set -eu

name=localhost/corral-test:busybox
tar_only=
while [ $# -gt 0 ]; do
    case "$1" in
        --tar) tar_only=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "build-test-image.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

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
