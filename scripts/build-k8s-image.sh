#!/bin/sh
# Build the image corral's Kubernetes manifests run (`corral k8s render --image/--proxy-image`)
# without any registry: the cached Debian test root filesystem (scripts/build-test-image.sh
# --debian: bash, python3 3.11, git, curl, ca-certificates) plus corral and its runtime
# dependencies only (pathspec, h11, cryptography and theirs; no test or dev extras), copied out
# of the Python environment that runs this script. `corral` is on PATH; /etc/passwd names uid
# 65532 (the proxy, `nonroot`) and uid 1000 (the agent, `agent`).
#
# Idempotent: the image carries the label corral.k8s.key, the hash of what goes in (corral's
# sources, the dependencies' installed files, the base image's key); a matching image is kept.
#
# usage: scripts/build-k8s-image.sh [--name NAME] [--python PY] [-- PODMAN GLOBAL OPTIONS...]
#   --name NAME   the image name (default localhost/corral:dev)
#   --python PY   the interpreter whose site-packages hold corral's dependencies (default: the
#                 repository's .venv/bin/python, else python3); it must be CPython 3.11 like the
#                 image's (compiled wheels such as cryptography's are copied as they are)
# Podman's store follows the environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF) or the global
# options given after `--` (e.g. --root DIR --runroot DIR), as in scripts/build-test-image.sh.
set -eu

name=localhost/corral:dev
repo=$(cd "$(dirname "$0")/.." && pwd)
python=
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "build-k8s-image.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python=$repo/.venv/bin/python; else python=python3; fi
fi
base=localhost/corral-test:debian
"$repo/scripts/build-test-image.sh" --debian -- "$@"
base_key=$(podman "$@" image inspect --format '{{index .Labels "corral.test.key"}}' "$base")

work=$(mktemp -d "${TMPDIR:-/var/tmp}/corral-k8s-image.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/ctx/site"

# Stage corral's sources and the installed files of its runtime dependencies; print the content key.
key=$("$python" - "$repo" "$work/ctx" "$base_key" <<'EOF'
import hashlib, importlib.metadata as md, os, re, shutil, sys
from pathlib import Path

repo, ctx, base_key = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if sys.version_info[:2] != (3, 11):
    sys.exit(f"build-k8s-image.sh: {sys.executable} is Python {sys.version.split()[0]}; the image's python3 is 3.11 "
             "(fix: --python PATH-TO-A-3.11-INTERPRETER with corral's dependencies installed)")
site = ctx / "site"
h = hashlib.sha256(f"v1\0{base_key}\0".encode())

def put(src: Path, rel: str) -> None:
    dst = site / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    h.update(rel.encode() + b"\0" + src.read_bytes() + b"\0")

for path in sorted((repo / "src").rglob("*")):
    if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
        put(path, str(path.relative_to(repo / "src")))
seen, todo = set(), ["pathspec", "h11", "cryptography"]
while todo:
    name = todo.pop()
    norm = re.sub(r"[-_.]+", "-", name).lower()
    if norm in seen:
        continue
    seen.add(norm)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        sys.exit(f"build-k8s-image.sh: {name} is not installed for {sys.executable} "
                 "(fix: pip install -e . in that environment, or --python another interpreter)")
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        todo.append(re.match(r"[A-Za-z0-9_.-]+", spec.strip()).group(0))
    for f in sorted(dist.files or [], key=str):
        if f.parts[0].startswith("..") or "__pycache__" in f.parts or f.suffix == ".pyc" or str(f).endswith(".dist-info/RECORD"):
            continue
        src = Path(dist.locate_file(f))
        if src.is_file():
            put(src, str(f))
print(h.hexdigest()[:16])
EOF
)

have=$(podman "$@" image inspect --format '{{index .Labels "corral.k8s.key"}}' "$name" 2>/dev/null || true)
if [ "$have" = "$key" ]; then
    exit 0
fi

# Byte code made now (same CPython as the image's): the root filesystem is read-only at run time.
"$python" -m compileall -q -j 0 "$work/ctx/site" >/dev/null
cat > "$work/ctx/corral" <<'EOF'
#!/usr/bin/python3 -s
import sys
sys.path.insert(0, "/usr/lib/corral/site")
from corral.cli import main
raise SystemExit(main())
EOF
cat > "$work/ctx/Containerfile" <<EOF
FROM $base
COPY site /usr/lib/corral/site
COPY corral /usr/local/bin/corral
LABEL corral.k8s.key=$key
EOF
# No RUN step (nothing runs in a build container): the passwd and group lines are made here.
tarball=$("$repo/scripts/build-test-image.sh" --debian --cached)
tar -xOf "$tarball" ./etc/passwd > "$work/ctx/passwd"
tar -xOf "$tarball" ./etc/group > "$work/ctx/group"
grep -q '^nonroot:' "$work/ctx/passwd" || echo 'nonroot:x:65532:65532:corral proxy:/tmp:/usr/sbin/nologin' >> "$work/ctx/passwd"
grep -q '^agent:' "$work/ctx/passwd" || echo 'agent:x:1000:1000:agent:/home/agent:/bin/bash' >> "$work/ctx/passwd"
grep -q '^nonroot:' "$work/ctx/group" || echo 'nonroot:x:65532:' >> "$work/ctx/group"
grep -q '^agent:' "$work/ctx/group" || echo 'agent:x:1000:' >> "$work/ctx/group"
cat >> "$work/ctx/Containerfile" <<'EOF'
COPY passwd /etc/passwd
COPY group /etc/group
EOF
chmod -R a+rX "$work/ctx"
chmod 0755 "$work/ctx/corral"
podman "$@" build --quiet --pull=never --network none --layers=false -t "$name" -f "$work/ctx/Containerfile" \
    "$work/ctx" >/dev/null
