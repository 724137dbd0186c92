#!/usr/bin/env bash
# gVisor's runsc, the newest build Debian offers (bookworm-backports), into DIR (corral's own
# copy: `--backend gvisor` looks there first). bookworm's own runsc (2022) mis-reports stat on
# directories ("ls: cannot access '/tmp': Invalid argument"). The system's apt sources are
# left untouched: a private list is used for the one download.
set -euo pipefail
dest=${1:?usage: install-runsc.sh DIR}
[ -x "$dest/runsc" ] && exit 0
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
  command -v runsc >/dev/null && exit 0  # newer releases ship a recent runsc themselves
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
echo "deb http://deb.debian.org/debian bookworm-backports main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
          -o APT::Sandbox::User=root -qq)
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$work" && apt-get "${apt_opts[@]}" download runsc >/dev/null)
dpkg-deb -x "$work"/runsc_*.deb "$work/x"
mkdir -p "$dest"
install -m 0755 "$work/x/usr/bin/runsc" "$dest/runsc"
echo "installed $("$dest/runsc" --version | head -1) in $dest"
