"""Offline validation of corral's Kubernetes manifests (a test helper; no cluster, no network).

Two questions, answered separately:
- validate(docs): is each document a well-formed object of its kind? Built-in kinds go through
  kubernetes-validate in strict mode (unknown fields are errors) for every version in VERSIONS;
  the agent-sandbox kinds go through the strict JSON Schemas generated from their CRDs
  (tests/data/agent-sandbox, scripts/agent-sandbox-schemas.py). A kind without a schema is an error.
- check_restricted(pod_spec): does a pod spec meet the Pod Security Standards "restricted" profile?
  Schema validation cannot say (runAsUser: 0 is a valid integer), so every control of the profile
  (kubernetes.io/docs/concepts/security/pod-security-standards) is checked here, field by field.

Both return a list of one-line error strings; an empty list means valid.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import VersionNotSupportedError

# The oldest and newest Kubernetes schemas kubernetes-validate 1.37 bundles, and one in between.
VERSIONS = ("1.25.0", "1.31.0", "1.37.0")

AGENT_SANDBOX_DIR = Path(__file__).parent / "data" / "agent-sandbox"

# --- Pod Security Standards, "restricted" (which includes "baseline"), as data ---------------------

# Volume sources the restricted profile allows (any other key of a volume besides "name" is refused).
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                "persistentVolumeClaim", "projected", "secret"})
ADD_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
# Baseline's safe sysctls (the 1.29+ list; the kubelet's newer additions are not in the profile).
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"

# Where each workload kind keeps its pod template: path to the template (holding metadata + spec).
POD_TEMPLATE_PATHS = {
    "Pod": (),
    "Deployment": ("spec", "template"), "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"), "DaemonSet": ("spec", "template"), "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Sandbox": ("spec", "podTemplate"), "SandboxTemplate": ("spec", "podTemplate"),
}


def load_yaml(path: str | Path) -> list[dict]:
    """The non-empty documents of a multi-document YAML file."""
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _path(parts: Iterable) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _name(doc: object) -> str:
    if not isinstance(doc, dict):
        return f"document of type {type(doc).__name__}"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return f"{doc.get('kind', '<no kind>')} {meta.get('name', '<no name>')}"


def _mm(version: str) -> str:
    return ".".join(version.split(".")[:2])


# --- schema validation -----------------------------------------------------------------------------

@cache
def _agent_sandbox_schemas() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    index = json.loads((AGENT_SANDBOX_DIR / "index.json").read_text())
    out = {}
    for key, entry in index["schemas"].items():
        api_version, kind = key.split(" ")
        schema = json.loads((AGENT_SANDBOX_DIR / entry["file"]).read_text())
        out[(api_version, kind)] = jsonschema.Draft202012Validator(schema)
    return out


def _agent_sandbox_groups() -> set[str]:
    return {api.split("/")[0] for api, _ in _agent_sandbox_schemas()}


def _builtin(doc: dict, version: str, prefix: tuple = ()) -> list[tuple[str, str]]:
    """(path, message) of the problem kubernetes-validate finds (it reports the best-matching one)."""
    try:
        used = kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [(_path(prefix + tuple(e.path)), e.message)]
    except kubernetes_validate.SchemaNotFoundError:
        return [("", f"no schema for kind {doc.get('kind')!r} apiVersion {doc.get('apiVersion')!r}")]
    except (VersionNotSupportedError, IndexError):  # IndexError: older than every bundled version
        used = None
    if used != _mm(version):
        return [("", f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for {version}")]
    return []


def _crd(doc: dict) -> list[tuple[str, str]]:
    validator = _agent_sandbox_schemas().get((doc.get("apiVersion"), doc.get("kind")))
    if validator is None:
        return [("", f"no agent-sandbox schema for kind {doc.get('kind')!r} apiVersion {doc.get('apiVersion')!r}"
                     f" (have: {', '.join(sorted(f'{a} {k}' for a, k in _agent_sandbox_schemas()))})")]
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [(_path(e.absolute_path), e.message) for e in errors]


def validate(docs: list[dict], versions: Iterable[str] = VERSIONS) -> list[str]:
    """One line per problem: "Pod corral-agent: spec.containers[0]...: <message> (1.25, 1.31)".

    The versions in parentheses are the Kubernetes versions whose schema the problem was found with
    ("crd" for the agent-sandbox schemas). The pod template inside a Sandbox/SandboxTemplate is also
    checked as a Pod against every Kubernetes version (the CRD's PodSpec is only one version's).
    """
    versions = tuple(versions)
    found: dict[tuple[str, str, str], list[str]] = {}

    def note(name: str, problems: list[tuple[str, str]], version: str) -> None:
        for path, message in problems:
            found.setdefault((name, path, message), []).append(version)

    for i, doc in enumerate(docs):
        name = _name(doc)
        if not isinstance(doc, dict) or not isinstance(doc.get("apiVersion"), str) \
                or not isinstance(doc.get("kind"), str):
            note(f"document {i} ({name})", [("", "apiVersion and kind must be strings")], "-")
            continue
        if doc["apiVersion"].split("/")[0] in _agent_sandbox_groups():
            note(name, _crd(doc), "crd")
            template = _get(doc, POD_TEMPLATE_PATHS.get(doc["kind"]))
            if isinstance(template, dict) and isinstance(template.get("spec"), dict):
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "template"},
                       "spec": copy.deepcopy(template["spec"])}
                for version in versions:
                    note(name, [(f"spec.podTemplate.{p}" if p else p, f"{m} (as a Pod)")
                                for p, m in _builtin(pod, version)], _mm(version))
            continue
        for version in versions:
            note(name, _builtin(doc, version), _mm(version))
    return [f"{name}: {path + ': ' if path else ''}{message} ({', '.join(vs)})"
            for (name, path, message), vs in found.items()]


# --- Pod Security Standards "restricted" ----------------------------------------------------------

def _get(obj: object, path: tuple | None) -> object:
    if path is None:
        return None
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def check_restricted(pod_spec: dict, annotations: dict | None = None, where: str = "spec") -> list[str]:
    """Every way pod_spec (and its pod's annotations) breaks the PSS "restricted" profile."""
    errs: list[str] = []

    def bad(path: str, value: object, rule: str) -> None:
        errs.append(f"{where}.{path}: {value!r} ({rule})")

    psc = pod_spec.get("securityContext") or {}
    for ns in HOST_NAMESPACES:
        if pod_spec.get(ns):
            bad(ns, pod_spec[ns], "host namespaces are not allowed")
    for i, vol in enumerate(pod_spec.get("volumes") or []):
        for source in set(vol) - {"name"} - RESTRICTED_VOLUMES:
            bad(f"volumes[{i}].{source}", vol.get("name"),
                f"volume type not allowed; restricted allows {', '.join(sorted(RESTRICTED_VOLUMES))}")
    for i, sysctl in enumerate(psc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            bad(f"securityContext.sysctls[{i}].name", sysctl.get("name"), "not a safe sysctl")
    for key, value in (annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" \
                and not str(value).startswith("localhost/"):
            errs.append(f"metadata.annotations[{key}]: {value!r} (AppArmor must be runtime/default or localhost/*)")
    _check_context(psc, "securityContext", bad)

    pod_nonroot = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type") in SECCOMP_TYPES
    if "runAsUser" in psc and psc["runAsUser"] == 0:
        bad("securityContext.runAsUser", 0, "must be non-zero")
    if psc.get("runAsNonRoot") is False:
        bad("securityContext.runAsNonRoot", False, "must be true")
    if not (pod_spec.get("containers") or []):
        bad("containers", pod_spec.get("containers"), "a pod needs at least one container")

    for field in CONTAINER_LISTS:
        for i, ctr in enumerate(pod_spec.get(field) or []):
            at = f"{field}[{i}].securityContext"
            sc = ctr.get("securityContext") or {}
            if sc.get("privileged"):
                bad(f"{at}.privileged", sc["privileged"], "privileged containers are not allowed")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad(f"{at}.allowPrivilegeEscalation", sc.get("allowPrivilegeEscalation"), "must be false")
            if sc.get("runAsNonRoot") is False or (not pod_nonroot and sc.get("runAsNonRoot") is not True):
                bad(f"{at}.runAsNonRoot", sc.get("runAsNonRoot"),
                    "must be true here or in the pod's securityContext (and never false)")
            if "runAsUser" in sc and sc["runAsUser"] == 0:
                bad(f"{at}.runAsUser", 0, "must be non-zero")
            if not pod_seccomp and "seccompProfile" not in sc:
                bad(f"{at}.seccompProfile", None,
                    "seccompProfile.type RuntimeDefault or Localhost must be set here or in the pod's securityContext")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                bad(f"{at}.capabilities.drop", caps.get("drop"), "must include ALL")
            for cap in caps.get("add") or []:
                if cap not in ADD_CAPABILITIES:
                    bad(f"{at}.capabilities.add", cap, "only NET_BIND_SERVICE may be added")
            if sc.get("procMount", "Default") not in (None, "Default"):
                bad(f"{at}.procMount", sc["procMount"], "must be Default")
            _check_context(sc, at, bad)
            for j, port in enumerate(ctr.get("ports") or []):
                if port.get("hostPort"):
                    bad(f"{field}[{i}].ports[{j}].hostPort", port["hostPort"], "host ports are not allowed")
    return errs


def _check_context(sc: dict, at: str, bad) -> None:
    """The controls that read the same way at pod and container level."""
    seccomp = (sc.get("seccompProfile") or {})
    if "seccompProfile" in sc and seccomp.get("type") not in SECCOMP_TYPES:
        bad(f"{at}.seccompProfile.type", seccomp.get("type"), "must be RuntimeDefault or Localhost")
    apparmor = sc.get("appArmorProfile") or {}
    if "appArmorProfile" in sc and apparmor.get("type") not in APPARMOR_TYPES:
        bad(f"{at}.appArmorProfile.type", apparmor.get("type"), "must be RuntimeDefault or Localhost")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        bad(f"{at}.seLinuxOptions.type", selinux["type"], f"must be one of {sorted(SELINUX_TYPES)}")
    for key in ("user", "role"):
        if selinux.get(key):
            bad(f"{at}.seLinuxOptions.{key}", selinux[key], "custom SELinux users/roles are not allowed")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        bad(f"{at}.windowsOptions.hostProcess", True, "HostProcess containers are not allowed")


def pod_specs(doc: dict) -> list[tuple[str, dict, dict]]:
    """(path of the spec, pod spec, pod annotations) of each pod template in a manifest."""
    path = POD_TEMPLATE_PATHS.get(doc.get("kind")) if isinstance(doc, dict) else None
    template = doc if path == () else _get(doc, path)
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        return []
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    return [(_path(path + ("spec",)), template["spec"], annotations)]


def restricted_errors(docs: list[dict]) -> list[str]:
    """check_restricted over every pod template of docs, each line prefixed with "Kind name: "."""
    return [f"{_name(doc)}: {err}" for doc in docs for where, spec, ann in pod_specs(doc)
            for err in check_restricted(spec, ann, where)]
