#!/usr/bin/env bash
# Install corral and everything it needs on a fresh Debian/Ubuntu machine, into ./.venv.
# Then show the sandbox at work on the built-in default policy.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # bubblewrap: the sandbox; nftables: the redirect that sends every connection of the
  # sandbox to corral's proxy; publicsuffix: to refuse allowances like "*.co.uk";
  # python3-venv: PEP 668 wants a venv; git, util-linux (setpriv, nsenter), passwd (useradd),
  # curl, dnsutils, iputils-ping, python3-requests, python3-pip, nodejs (npm): the test suite drives real clients,
  # as root and as an unprivileged user.
  $SUDO apt-get install -y -qq bubblewrap nftables publicsuffix python3 python3-venv git util-linux \
    passwd curl dnsutils iputils-ping python3-requests python3-pip nodejs ca-certificates >/dev/null
  # The other walls (--backend runc|crun|gvisor|podman): the OCI runtimes, catatonit as the
  # containers' pid 1, podman with what rootless podman needs; the OCI runtime-spec JSON schema
  # (the tests validate every rendered config.json against it); mmdebstrap for the test image.
  $SUDO apt-get install -y -qq --no-install-recommends runc crun runsc catatonit podman conmon uidmap \
    slirp4netns fuse-overlayfs netavark golang-github-opencontainers-specs-dev mmdebstrap busybox-static >/dev/null
fi

# The Debian interpreter lives outside /root, so unprivileged test users can run the venv too.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,k8s]'
scripts/install-runsc.sh .venv/libexec/corral || echo "corral: gVisor from bookworm-backports could not be installed; --backend gvisor uses the runsc on PATH"
# Byte-compile now: corral starts for every command an agent runs (and PYTHONDONTWRITEBYTECODE
# may be set), so never pay compilation at run time.
.venv/bin/python -m compileall -q src >/dev/null

echo "corral installed in $(pwd)/.venv; demo on the built-in default policy:"
mkdir -p "${HOME}/.ssh"
demo_key="${HOME}/.ssh/corral-demo-key"
[ -e "$demo_key" ] || { echo "not-a-real-key" > "$demo_key"; created_demo=1; }
set +e
.venv/bin/corral run -- sh -c "echo \"inside: \$(id -un), TMPDIR=\$TMPDIR\"; cat '$demo_key' || echo 'reading ~/.ssh was refused, as it should be'; touch /etc/corral-demo 2>&1 || true"
set -e
[ "${created_demo:-0}" = 1 ] && rm -f "$demo_key"
# corral never edits shell rc files; it says how to put itself on PATH.
echo
echo "to run plain \`corral\`: ln -s \"$(pwd)/.venv/bin/corral\" ~/.local/bin/   (or add $(pwd)/.venv/bin to PATH)"
exit 0
