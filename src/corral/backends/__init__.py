"""Backends: the walls a Plan can be enforced behind, as pure renderers.

Each backend turns the backend-neutral Plan (`sandbox/plan.py`) into what its wall runs (a
bwrap argv, an OCI config.json, a container engine's command line) and says, field by field,
what it enforces of the plan (`report.Report`). Only the launcher (`sandbox/launch.py` and
its per-kind helpers) touches the OS with what they render.

    bwrap            bubblewrap + seccomp (cBPF): the default, the fastest
    runc, crun       OCI runtimes, image-less bundle (the host's view, read-only) or --image
    gvisor           runsc: the same bundle behind a user-space kernel
    podman, docker   a container engine running an image, the guide's hardened flags
    landlock         no namespaces: Landlock + seccomp, for hosts that refuse user namespaces
    auto             not a wall: bwrap when it works here, else (allowed) the weaker
                     landlock wall, else a refusal naming the fix (auto.py decides)
"""

from __future__ import annotations

from .._values import frozen

NAMES = ("bwrap", "runc", "crun", "gvisor", "podman", "docker", "landlock")
KINDS = {"bwrap": "bwrap", "runc": "oci", "crun": "oci", "gvisor": "oci", "podman": "container", "docker": "container",
         "landlock": "landlock"}


@frozen
class Backend:
    name: str  # one of NAMES
    kind: str  # "bwrap" | "oci" | "container" | "landlock": the renderer module

    def module(self):
        import importlib

        return importlib.import_module(f"{__name__}.{self.kind}")

    def report(self, plan, facts, limits=None):
        """The enforcement report of `plan` on this backend, given the host `facts`."""
        return self.module().report(self.name, plan, facts, limits)


def unknown(name) -> str:
    """Why `name` is not a backend, with the fix."""
    if name == "k8s":
        return ("Kubernetes is not a wall corral starts on this machine: render the policy as manifests with "
                "`corral k8s render --settings FILE --image IMAGE` (docs/kubernetes.md)")
    if isinstance(name, str) and name.lower() in ("k8s", "kubernetes", "kube", "agent-sandbox"):
        return ('unknown backend; a policy meant for Kubernetes says backend = "k8s" and is rendered with '
                "`corral k8s render` (docs/kubernetes.md)")
    return f"unknown backend; expected one of {', '.join(NAMES)} or auto"


def get(name: str, source: str = "<cli>", key: str = "--backend") -> Backend:
    if name not in KINDS:
        from ..errors import PolicyError

        raise PolicyError(source, key, name, unknown(name))
    return Backend(name, KINDS[name])


def select(name: str | None, policy) -> Backend:
    """The backend a run uses: the command line's, else the policy's (`backend = ...`)."""
    if name is not None:
        return get(name)
    bp = policy.backend
    return get(bp.name, bp.origin or "<policy>", "backend")
