#!/usr/bin/env python3
"""Generate strict, standalone JSON Schemas (draft 2020-12) from the kubernetes-sigs/agent-sandbox CRDs.

The tests validate corral's rendered SandboxTemplate / SandboxWarmPool offline against these files
(tests/k8s_validate.py); built-in kinds go through kubernetes-validate instead.

Usage:
    scripts/agent-sandbox-schemas.py SOURCE [OUT_DIR]

SOURCE is a clone of https://github.com/kubernetes-sigs/agent-sandbox (a work tree or a bare git dir;
the CRDs are read from k8s/crds/ at HEAD). OUT_DIR defaults to tests/data/agent-sandbox.

Rules of the conversion (each CRD, each served version's openAPIV3Schema):
- strict like kubernetes-validate --strict: every object that declares `properties` and has neither
  `additionalProperties` nor `x-kubernetes-preserve-unknown-fields: true` gets `additionalProperties: false`;
  an object with no properties at all accepts nothing (the API server prunes/rejects such fields), except
  `metadata`, which becomes a strict ObjectMeta (controller-gen leaves it as a bare object);
- `apiVersion` and `kind` are pinned with `const` and required;
- `x-kubernetes-int-or-string` -> `type: [integer, string]`; `nullable: true` adds "null" to the type;
  `format: int32|int64` adds the range bounds; `x-kubernetes-list-type: set` -> `uniqueItems: true`;
  the other `x-kubernetes-*` extensions (map keys, map type, CEL validations that compare with the old
  object) cannot be checked on one document and are dropped.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

CRD_DIR = "k8s/crds"
REPO_URL = "https://github.com/kubernetes-sigs/agent-sandbox"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

_STR = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": _STR}

# ObjectMeta as the API server accepts it on create (k8s.io/apimachinery meta/v1), written out strictly.
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "annotations": _STR_MAP,
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "deletionTimestamp": {"type": ["string", "null"]},
        "finalizers": {"type": "array", "items": _STR},
        "generateName": _STR,
        "generation": {"type": "integer"},
        "labels": _STR_MAP,
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "name": _STR,
        "namespace": _STR,
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    "apiVersion": _STR, "kind": _STR, "name": _STR, "uid": _STR,
                    "blockOwnerDeletion": {"type": "boolean"}, "controller": {"type": "boolean"},
                },
            },
        },
        "resourceVersion": _STR,
        "selfLink": _STR,
        "uid": _STR,
    },
}
META_REF = {"$ref": "#/$defs/ObjectMeta"}


def _int_or_string(node: dict) -> None:
    node.pop("anyOf", None)  # controller-gen writes anyOf [integer, string] beside the extension
    node["type"] = ["integer", "string"]


def convert(node: object, key: str = "") -> object:
    """One openAPIV3Schema node -> a JSON Schema node (a new object; the input is not changed)."""
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: convert(sub, name) for name, sub in v.items()}
        elif k in ("items", "not") or (k == "additionalProperties" and isinstance(v, dict)):
            out[k] = convert(v)
        elif k in ("anyOf", "allOf", "oneOf"):
            out[k] = [convert(sub) for sub in v]
        elif k.startswith("x-kubernetes-") or k == "nullable":
            continue
        else:
            out[k] = v
    if node.get("x-kubernetes-int-or-string"):
        _int_or_string(out)
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types + ["null"]
    bounds = INT_BOUNDS.get(node.get("format", ""))
    if bounds and "integer" in (out.get("type") or ()):
        out.setdefault("minimum", bounds[0])
        out.setdefault("maximum", bounds[1])
    if out.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        if "properties" not in out and "additionalProperties" not in out:
            if key == "metadata":
                return dict(META_REF)
            out["additionalProperties"] = False
        elif "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
    return out


def version_schema(crd: dict, version: dict) -> dict:
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    api_version = f"{group}/{version['name']}"
    body = convert(version["schema"]["openAPIV3Schema"])
    assert isinstance(body, dict)
    props = body.setdefault("properties", {})
    props["apiVersion"] = {"const": api_version}
    props["kind"] = {"const": kind}
    props["metadata"] = dict(META_REF)
    body["required"] = sorted(set(body.get("required", [])) | {"apiVersion", "kind"})
    body["additionalProperties"] = False
    return {
        "$schema": DRAFT,
        "$id": f"corral:agent-sandbox/{kind.lower()}-{group}-{version['name']}.json",
        "title": f"{kind} {api_version} (strict, from {REPO_URL} {CRD_DIR})",
        **body,
        "$defs": {"ObjectMeta": OBJECT_META},
    }


def _git(source: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(source), *args], check=True, capture_output=True,
                          text=True).stdout


def read_crds(source: Path) -> list[tuple[str, str]]:
    """(file name, text) of every CRD YAML: from the work tree if there is one, else from HEAD."""
    tree = source / CRD_DIR
    if tree.is_dir():
        return [(p.name, p.read_text()) for p in sorted(tree.glob("*.yaml"))]
    names = _git(source, "ls-tree", "--name-only", "HEAD", CRD_DIR + "/").split()
    return [(Path(n).name, _git(source, "show", f"HEAD:{n}")) for n in sorted(names) if n.endswith(".yaml")]


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    source = Path(argv[0])
    out_dir = Path(argv[1] if len(argv) == 2 else "tests/data/agent-sandbox")
    try:
        commit = _git(source, "rev-parse", "HEAD").strip()
        crds = read_crds(source)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"agent-sandbox-schemas: cannot read {source}/{CRD_DIR} ({e}); give a clone of {REPO_URL}",
              file=sys.stderr)
        return 1
    if not crds:
        print(f"agent-sandbox-schemas: no CRD YAML under {source}/{CRD_DIR}", file=sys.stderr)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {"source": {"repository": REPO_URL, "commit": commit, "path": CRD_DIR,
                        "licence": "Apache-2.0"}, "schemas": {}}
    for name, text in crds:
        crd = yaml.safe_load(text)
        if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
            continue
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            schema = version_schema(crd, version)
            kind = crd["spec"]["names"]["kind"]
            api_version = f"{crd['spec']['group']}/{version['name']}"
            fname = f"{kind.lower()}-{crd['spec']['group']}-{version['name']}.json"
            (out_dir / fname).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            index["schemas"][f"{api_version} {kind}"] = {"file": fname, "crd": f"{CRD_DIR}/{name}",
                                                        "storage": bool(version.get("storage"))}
            print(f"{fname}: {kind} {api_version}", file=sys.stderr)
    (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
