"""tests/k8s_validate.py: the offline manifest checks pass a good manifest set and catch each broken variant.

The good set (tests/data/k8s/good.yaml) holds one document of every kind `corral k8s render` emits.
Each broken variant changes one thing and must produce its expected error, so the helper cannot pass
everything; each restricted-profile variant must be refused by check_restricted and only by it.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import k8s_validate as K

GOOD = Path(__file__).parent / "data" / "k8s" / "good.yaml"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def good() -> list[dict]:
    return K.load_yaml(GOOD)


def _doc(docs: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, (kind, name, [K._name(d) for d in docs])
    return matches[0]


def test_good_set_has_every_rendered_kind(good):
    kinds = {d["kind"] for d in good}
    assert kinds == {"RuntimeClass", "ConfigMap", "Deployment", "Service", "Pod", "NetworkPolicy",
                     "SandboxTemplate", "SandboxWarmPool"}


def test_good_set_is_valid_for_every_supported_version(good):
    assert K.VERSIONS == ("1.25.0", "1.31.0", "1.37.0")
    assert K.validate(good) == []


def test_good_set_meets_restricted(good):
    assert K.restricted_errors(good) == []
    # every pod template was looked at: the Pod, the proxy Deployment and the SandboxTemplate
    assert [K._name(d) for d in good if K.pod_specs(d)] == [
        "Deployment corral-proxy", "Pod corral-agent", "SandboxTemplate corral-agent"]


# --- schema: (id, [(kind, name)], mutate(doc), expected error line) --------------------------------

def _set(path: str, value):
    def mutate(doc):
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value
    return mutate


def _delete(path: str):
    def mutate(doc):
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[last]
    return mutate


ALL = "(1.25, 1.31, 1.37)"
SCHEMA_CASES = [
    ("typo_in_container_field", ("Pod", "corral-agent"),
     _set("spec.containers.0.securityContext.readOnlyRootFilesytem", True),
     "Pod corral-agent: spec.containers[0].securityContext: Additional properties are not allowed "
     f"('readOnlyRootFilesytem' was unexpected) {ALL}"),
    ("wrong_type_run_as_user", ("Pod", "corral-agent"),
     _set("spec.securityContext.runAsUser", "thousand"),
     f"Pod corral-agent: spec.securityContext.runAsUser: 'thousand' is not of type 'integer', 'null' {ALL}"),
    ("missing_required_handler", ("RuntimeClass", "gvisor"), _delete("handler"),
     f"RuntimeClass gvisor: 'handler' is a required property {ALL}"),
    ("missing_required_container_name", ("Deployment", "corral-proxy"),
     _delete("spec.template.spec.containers.0.name"),
     f"Deployment corral-proxy: spec.template.spec.containers[0]: 'name' is a required property {ALL}"),
    ("deployment_replicas_as_string", ("Deployment", "corral-proxy"), _set("spec.replicas", "2"),
     f"Deployment corral-proxy: spec.replicas: '2' is not of type 'integer', 'null' {ALL}"),
    ("service_port_as_name", ("Service", "corral-proxy"), _set("spec.ports.0.port", "proxy"),
     f"Service corral-proxy: spec.ports[0].port: 'proxy' is not of type 'integer' {ALL}"),
    ("networkpolicy_typo", ("NetworkPolicy", "corral-agent-egress"),
     _set("spec.egress.0.to.0.podselector", {}),
     "NetworkPolicy corral-agent-egress: spec.egress[0].to[0]: Additional properties are not allowed "
     f"('podselector' was unexpected) {ALL}"),
    ("configmap_data_not_string", ("ConfigMap", "corral-policy"), lambda d: d["data"].update({"policy.json": 1}),
     f"ConfigMap corral-policy: data.policy.json: 1 is not of type 'string', 'null' {ALL}"),
    ("unknown_builtin_kind", ("ConfigMap", "corral-policy"), _set("kind", "ConfigMapp"),
     f"ConfigMapp corral-policy: no schema for kind 'ConfigMapp' apiVersion 'v1' {ALL}"),
    ("unknown_api_version", ("RuntimeClass", "gvisor"), _set("apiVersion", "node.k8s.io/v2"),
     f"RuntimeClass gvisor: no schema for kind 'RuntimeClass' apiVersion 'node.k8s.io/v2' {ALL}"),
    ("field_newer_than_oldest_version", ("Pod", "corral-agent"),
     _set("spec.securityContext.appArmorProfile", {"type": "RuntimeDefault"}),
     "Pod corral-agent: spec.securityContext: Additional properties are not allowed "
     "('appArmorProfile' was unexpected) (1.25)"),
    ("sandboxtemplate_unknown_spec_field", ("SandboxTemplate", "corral-agent"), _set("spec.warmPool", 3),
     "SandboxTemplate corral-agent: spec: Additional properties are not allowed ('warmPool' was unexpected) (crd)"),
    ("sandboxtemplate_metadata_typo", ("SandboxTemplate", "corral-agent"), _set("metadata.nmae", "x"),
     "SandboxTemplate corral-agent: metadata: Additional properties are not allowed ('nmae' was unexpected) (crd)"),
    ("sandboxtemplate_bad_enum", ("SandboxTemplate", "corral-agent"),
     _set("spec.networkPolicyManagement", "Off"),
     "SandboxTemplate corral-agent: spec.networkPolicyManagement: 'Off' is not one of ['Managed', 'Unmanaged'] (crd)"),
    ("sandboxtemplate_pod_typo", ("SandboxTemplate", "corral-agent"),
     _set("spec.podTemplate.spec.containers.0.securityContext.runAsUsr", 1),
     "SandboxTemplate corral-agent: spec.podTemplate.spec.containers[0].securityContext: Additional properties "
     "are not allowed ('runAsUsr' was unexpected) (crd)"),
    ("sandboxtemplate_pod_field_newer_than_oldest", ("SandboxTemplate", "corral-agent"),
     _set("spec.podTemplate.spec.securityContext.appArmorProfile", {"type": "RuntimeDefault"}),
     "SandboxTemplate corral-agent: spec.podTemplate.spec.securityContext: Additional properties are not "
     "allowed ('appArmorProfile' was unexpected) (as a Pod) (1.25)"),
    ("sandboxtemplate_missing_pod_template", ("SandboxTemplate", "corral-agent"), _delete("spec.podTemplate"),
     "SandboxTemplate corral-agent: spec: 'podTemplate' is a required property (crd)"),
    ("sandboxtemplate_wrong_version", ("SandboxTemplate", "corral-agent"),
     _set("apiVersion", "extensions.agents.x-k8s.io/v1"),
     "SandboxTemplate corral-agent: no agent-sandbox schema for kind 'SandboxTemplate' apiVersion "
     "'extensions.agents.x-k8s.io/v1'"),
    ("warmpool_missing_template_ref", ("SandboxWarmPool", "corral-agent"), _delete("spec.sandboxTemplateRef"),
     "SandboxWarmPool corral-agent: spec: 'sandboxTemplateRef' is a required property (crd)"),
    ("warmpool_negative_replicas", ("SandboxWarmPool", "corral-agent"), _set("spec.replicas", -1),
     "SandboxWarmPool corral-agent: spec.replicas: -1 is less than the minimum of 0 (crd)"),
    ("warmpool_kind_in_core_group", ("SandboxWarmPool", "corral-agent"),
     _set("apiVersion", "agents.x-k8s.io/v1beta1"),
     "SandboxWarmPool corral-agent: no agent-sandbox schema for kind 'SandboxWarmPool'"),
]


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_broken_manifest_is_refused(good, case):
    _, (kind, docname), mutate, expected = case
    docs = copy.deepcopy(good)
    doc = _doc(docs, kind, docname)
    mutate(doc)
    errors = K.validate(docs)
    assert any(e.startswith(expected) for e in errors), "\n".join(errors)
    # the break is the only problem: nothing else in the set was reported
    assert all(e.startswith(f"{kind} {docname}") or e.startswith(doc["kind"]) for e in errors), errors


def test_document_without_kind_is_refused(good):
    docs = copy.deepcopy(good) + [{"apiVersion": "v1", "metadata": {"name": "x"}}, "just a string"]
    assert K.validate(docs) == [
        "document 9 (<no kind> x): apiVersion and kind must be strings (-)",
        "document 10 (document of type str): apiVersion and kind must be strings (-)",
    ]


def test_every_problem_of_an_agent_sandbox_doc_is_listed(good):
    docs = [copy.deepcopy(_doc(good, "SandboxWarmPool"))]
    docs[0]["spec"].update(replicas="3", surge=1)
    assert K.validate(docs) == [
        "SandboxWarmPool corral-agent: spec: Additional properties are not allowed ('surge' was unexpected) (crd)",
        "SandboxWarmPool corral-agent: spec.replicas: '3' is not of type 'integer' (crd)",
    ]


def test_an_unbundled_version_is_an_error_not_a_pass(good):
    errors = K.validate([_doc(good, "RuntimeClass")], versions=("1.99.0", "1.24.0"))
    assert [e.split(" has ")[1] for e in errors] == ["no schemas for 1.99.0 (1.99)", "no schemas for 1.24.0 (1.24)"]


# --- Pod Security Standards "restricted" ----------------------------------------------------------

def _ctr(spec, i=0, field="containers"):
    return spec[field][i].setdefault("securityContext", {})


# (id, mutate(pod spec), expected error, without the "Pod corral-agent: spec." prefix)
RESTRICTED_CASES = [
    ("run_as_user_0_in_container", lambda s: _ctr(s).update(runAsUser=0),
     "containers[0].securityContext.runAsUser: 0 (must be non-zero)"),
    ("run_as_user_0_in_pod", lambda s: s["securityContext"].update(runAsUser=0),
     "securityContext.runAsUser: 0 (must be non-zero)"),
    ("run_as_non_root_missing", lambda s: s["securityContext"].pop("runAsNonRoot"),
     "containers[0].securityContext.runAsNonRoot: None (must be true here or in the pod's securityContext"),
    ("run_as_non_root_false_in_container", lambda s: _ctr(s).update(runAsNonRoot=False),
     "containers[0].securityContext.runAsNonRoot: False (must be true"),
    ("host_path_volume", lambda s: s["volumes"].append({"name": "sock", "hostPath": {"path": "/run/corral"}}),
     "volumes[3].hostPath: 'sock' (volume type not allowed; restricted allows configMap, csi,"),
    ("nfs_volume", lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "nfs", "path": "/"}}),
     "volumes[3].nfs: 'n' (volume type not allowed"),
    ("capability_added", lambda s: _ctr(s)["capabilities"].update(add=["NET_ADMIN"]),
     "containers[0].securityContext.capabilities.add: 'NET_ADMIN' (only NET_BIND_SERVICE may be added)"),
    ("capabilities_not_dropped", lambda s: _ctr(s)["capabilities"].update(drop=["NET_RAW"]),
     "containers[0].securityContext.capabilities.drop: ['NET_RAW'] (must include ALL)"),
    ("seccomp_unconfined", lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}),
     "securityContext.seccompProfile.type: 'Unconfined' (must be RuntimeDefault or Localhost)"),
    ("seccomp_unconfined_in_container", lambda s: _ctr(s).update(seccompProfile={"type": "Unconfined"}),
     "containers[0].securityContext.seccompProfile.type: 'Unconfined' (must be RuntimeDefault or Localhost)"),
    ("seccomp_unset", lambda s: s["securityContext"].pop("seccompProfile"),
     "containers[0].securityContext.seccompProfile: None (seccompProfile.type RuntimeDefault or Localhost must be set"),
    ("privilege_escalation_unset", lambda s: _ctr(s).pop("allowPrivilegeEscalation"),
     "containers[0].securityContext.allowPrivilegeEscalation: None (must be false)"),
    ("privileged", lambda s: _ctr(s).update(privileged=True),
     "containers[0].securityContext.privileged: True (privileged containers are not allowed)"),
    ("host_network", lambda s: s.update(hostNetwork=True), "hostNetwork: True (host namespaces are not allowed)"),
    ("host_pid", lambda s: s.update(hostPID=True), "hostPID: True (host namespaces are not allowed)"),
    ("host_ipc", lambda s: s.update(hostIPC=True), "hostIPC: True (host namespaces are not allowed)"),
    ("host_port", lambda s: s["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 8080}]),
     "containers[0].ports[0].hostPort: 8080 (host ports are not allowed)"),
    ("proc_mount_unmasked", lambda s: _ctr(s).update(procMount="Unmasked"),
     "containers[0].securityContext.procMount: 'Unmasked' (must be Default)"),
    ("unsafe_sysctl", lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
     "securityContext.sysctls[0].name: 'kernel.msgmax' (not a safe sysctl)"),
    ("selinux_type", lambda s: _ctr(s).update(seLinuxOptions={"type": "spc_t"}),
     "containers[0].securityContext.seLinuxOptions.type: 'spc_t' (must be one of"),
    ("selinux_user", lambda s: s["securityContext"].update(seLinuxOptions={"user": "system_u"}),
     "securityContext.seLinuxOptions.user: 'system_u' (custom SELinux users/roles are not allowed)"),
    ("apparmor_unconfined", lambda s: _ctr(s).update(appArmorProfile={"type": "Unconfined"}),
     "containers[0].securityContext.appArmorProfile.type: 'Unconfined' (must be RuntimeDefault or Localhost)"),
    ("windows_host_process", lambda s: s["securityContext"].update(windowsOptions={"hostProcess": True}),
     "securityContext.windowsOptions.hostProcess: True (HostProcess containers are not allowed)"),
    ("init_container_unhardened", lambda s: s["initContainers"][0].pop("securityContext"),
     "initContainers[0].securityContext.allowPrivilegeEscalation: None (must be false)"),
    ("ephemeral_container_as_root",
     lambda s: s.update(ephemeralContainers=[dict(copy.deepcopy(s["containers"][0]), name="debug")])
     or _ctr(s, 0, "ephemeralContainers").update(runAsUser=0),
     "ephemeralContainers[0].securityContext.runAsUser: 0 (must be non-zero)"),
]


@pytest.mark.parametrize("case", RESTRICTED_CASES, ids=[c[0] for c in RESTRICTED_CASES])
def test_restricted_profile_violation_is_refused(good, case):
    _, mutate, expected = case
    docs = copy.deepcopy(good)
    mutate(_doc(docs, "Pod")["spec"])
    errors = K.restricted_errors(docs)
    assert any(e.startswith(f"Pod corral-agent: spec.{expected}") for e in errors), "\n".join(errors)
    assert all(e.startswith("Pod corral-agent: ") for e in errors), errors


@pytest.mark.parametrize("mutate", [
    lambda s: _ctr(s)["capabilities"].update(add=["NET_BIND_SERVICE"]),
    lambda s: s["securityContext"].update(sysctls=[{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]),
    lambda s: (s["securityContext"].pop("seccompProfile"),
               [c["securityContext"].update(seccompProfile={"type": "Localhost", "localhostProfile": "corral.json"})
                for c in s["initContainers"] + s["containers"]]),
    lambda s: (s["securityContext"].pop("runAsNonRoot"),
               [c["securityContext"].update(runAsNonRoot=True) for c in s["initContainers"] + s["containers"]]),
    lambda s: _ctr(s).update(seLinuxOptions={"type": "container_t", "level": "s0:c1,c2"}, procMount="Default"),
], ids=["net_bind_service", "safe_sysctl", "seccomp_per_container", "non_root_per_container", "selinux_level"])
def test_what_restricted_allows_passes(good, mutate):
    docs = copy.deepcopy(good)
    mutate(_doc(docs, "Pod")["spec"])
    assert K.restricted_errors(docs) == []
    assert K.validate([_doc(docs, "Pod")]) == []


def test_apparmor_annotation_unconfined_is_refused(good):
    docs = copy.deepcopy(good)
    dep = _doc(docs, "Deployment")
    dep["spec"]["template"]["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/proxy": "unconfined"}
    assert K.restricted_errors(docs) == [
        "Deployment corral-proxy: metadata.annotations[container.apparmor.security.beta.kubernetes.io/proxy]: "
        "'unconfined' (AppArmor must be runtime/default or localhost/*)"]


def test_templates_of_deployment_and_sandboxtemplate_are_checked(good):
    docs = copy.deepcopy(good)
    _doc(docs, "Deployment")["spec"]["template"]["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    tpl = _doc(docs, "SandboxTemplate")["spec"]["podTemplate"]["spec"]
    tpl["containers"][0]["securityContext"]["runAsUser"] = 0
    assert K.restricted_errors(docs) == [
        "Deployment corral-proxy: spec.template.spec.volumes[2].hostPath: 'h' (volume type not allowed; restricted "
        "allows configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret)",
        "SandboxTemplate corral-agent: spec.podTemplate.spec.containers[0].securityContext.runAsUser: 0 "
        "(must be non-zero)",
    ]


# --- the kubernetes-validate CLI, with no network at all --------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "kubernetes-validate"
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing")
    return subprocess.run(["unshare", "-rn", str(exe), *args], capture_output=True, text=True, timeout=120)


def test_cli_validates_good_set_offline():
    out = _cli("--strict", "-k", "1.37.0", str(GOOD))
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("runtimeclass/gvisor", "configmap/corral-policy", "deployment/corral-proxy",
                 "service/corral-proxy", "pod/corral-agent", "networkpolicy/corral-agent-egress",
                 "networkpolicy/corral-proxy"):
        assert f"passed for resource {name} against version 1.37" in out.stdout, out.stdout
    # the CLI only knows built-in kinds: the CRDs are a warning there, which is why k8s_validate has its own
    assert "Couldn't find schema for kind SandboxTemplate" in out.stdout, out.stdout


def test_cli_refuses_a_typo_offline(tmp_path):
    docs = K.load_yaml(GOOD)
    _doc(docs, "Pod")["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    out = _cli("--strict", "-k", "1.25.0", str(bad))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "'readOnlyRootFilesytem' was unexpected" in out.stdout, out.stdout


# --- the schema generator ------------------------------------------------------------------------

def _generator():
    spec = importlib.util.spec_from_file_location("agent_sandbox_schemas", ROOT / "scripts" / "agent-sandbox-schemas.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [size]
            properties:
              size: {anyOf: [{type: integer}, {type: string}], x-kubernetes-int-or-string: true}
              count: {type: integer, format: int32, nullable: true}
              tags: {type: array, items: {type: string}, x-kubernetes-list-type: set}
              free: {type: object, x-kubernetes-preserve-unknown-fields: true}
              labels: {type: object, additionalProperties: {type: string}}
  - name: v0
    served: false
    storage: false
    schema: {openAPIV3Schema: {type: object}}
"""


def test_generator_makes_strict_schemas(tmp_path):
    src = tmp_path / "src"
    (src / "k8s" / "crds").mkdir(parents=True)
    (src / "k8s" / "crds" / "widgets.yaml").write_text(CRD)
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "crd"], check=True)
    out = tmp_path / "out"
    assert _generator().main([str(src), str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert list(index["schemas"]) == ["example.com/v1 Widget"]  # v0 is not served
    schema = json.loads((out / "widget-example.com-v1.json").read_text())
    spec = schema["properties"]["spec"]
    assert schema["additionalProperties"] is False and spec["additionalProperties"] is False
    assert spec["properties"]["size"] == {"type": ["integer", "string"]}
    assert spec["properties"]["count"]["type"] == ["integer", "null"]
    assert spec["properties"]["count"]["maximum"] == 2**31 - 1
    assert spec["properties"]["tags"]["uniqueItems"] is True
    assert "additionalProperties" not in spec["properties"]["free"]
    assert not any("x-kubernetes" in k for k in json.dumps(schema).split('"'))

    import jsonschema
    v = jsonschema.Draft202012Validator(schema)
    ok = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
          "spec": {"size": "1Gi", "count": None, "tags": ["a"], "free": {"any": 1}, "labels": {"a": "b"}}}
    assert list(v.iter_errors(ok)) == []
    for bad in ({"kind": "Gadget"}, {"apiVersion": "example.com/v2"}, {"metadata": {"nmae": "w"}},
                {"spec": {"size": 1, "extra": 1}}, {"spec": {"size": 1, "tags": ["a", "a"]}},
                {"spec": {"size": 1.5}}, {"spec": {}}):
        assert list(v.iter_errors({**ok, **bad})), bad


def test_committed_schemas_are_valid_json_schemas():
    import jsonschema
    index = json.loads((K.AGENT_SANDBOX_DIR / "index.json").read_text())
    assert index["source"]["repository"] == "https://github.com/kubernetes-sigs/agent-sandbox"
    assert {k.split(" ")[1] for k in index["schemas"]} == {"Sandbox", "SandboxTemplate", "SandboxClaim",
                                                            "SandboxWarmPool"}
    for entry in index["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(json.loads((K.AGENT_SANDBOX_DIR / entry["file"]).read_text()))
