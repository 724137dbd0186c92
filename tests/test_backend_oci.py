"""The OCI renderer (backends/oci.py): Plan -> config.json and an OCI seccomp profile. Pure:
golden tests on a hand-made plan, every real plan validated against the OCI runtime-spec JSON
schema, and the seccomp rendering checked row by row against corral's deny table."""

from __future__ import annotations

import json
import os

import pytest

from corral.backends import oci
from corral.sandbox.plan import Mount, Plan
from corral.sandbox.seccomp import SeccompOptions, rules

SCHEMA_DIR = "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema"


def plan(**changes) -> Plan:
    base = dict(
        argv=("sh", "-c", "echo hi"), cwd="/work/p", env=(("PATH", "/usr/bin:/bin"), ("TMPDIR", "/tmp/corral-1")),
        mounts=(
            Mount("ro-bind", "/", "/"),
            Mount("bind", "/tmp", "/tmp"),
            Mount("dev", "/dev"),
            Mount("proc", "/proc"),
            Mount("tmpfs", "/dev/shm", perms=0o1777),
            Mount("dev-null", "/etc/shadow"),
            Mount("pre-ro-bind", "/work/p/.git/hooks"),
            Mount("tmpfs", "/tmp/corral-1", perms=0o700),
            Mount("bind", "/work/p", "/work/p"),
            Mount("dev-null", "/work/p/.env"),
            Mount("data", "/etc/resolv.conf", "nameserver 127.0.0.1\n", perms=0o644),
        ),
        seccomp=SeccompOptions(), disable_userns=True, placeholders=(), tmpdir="/tmp/corral-1",
        writable_roots=("/work/p",), scan_skip=frozenset(), protected_before={}, run_id="r1", run_as=(65533, 65533),
        offline=True)
    base.update(changes)
    return Plan(**base)


ROOT = oci.Bundle("/b", "runc", launched_by_root=True, init="/usr/bin/catatonit")
USER = oci.Bundle("/b", "runc", launched_by_root=False, init=None)


def test_golden_config_for_a_root_launch():
    config, files = oci.render(plan(), ROOT)
    assert config["root"] == {"path": "/b/rootfs", "readonly": True}
    assert config["process"]["user"] == {"uid": 65533, "gid": 65533, "additionalGids": []}
    assert config["process"]["args"] == ["/usr/bin/catatonit", "--", "sh", "-c", "echo hi"]
    assert config["process"]["noNewPrivileges"] is True
    assert config["process"]["capabilities"] == {k: [] for k in ("bounding", "effective", "inheritable", "permitted",
                                                                 "ambient")}
    assert config["process"]["cwd"] == "/work/p"
    assert config["process"]["env"] == ["PATH=/usr/bin:/bin", "TMPDIR=/tmp/corral-1"]
    assert [(m["destination"], m["type"], m.get("source")) for m in config["mounts"]] == [
        ("/tmp", "bind", "/tmp"),
        ("/dev", "tmpfs", "tmpfs"), ("/dev/pts", "devpts", "devpts"), ("/dev/mqueue", "mqueue", "mqueue"),
        ("/proc", "proc", "proc"),
        ("/dev/shm", "tmpfs", "tmpfs"),
        ("/etc/shadow", "bind", "/dev/null"),
        ("/tmp/corral-1", "tmpfs", "tmpfs"),
        ("/work/p", "bind", "/work/p"),
        ("/work/p/.env", "bind", "/dev/null"),
        ("/etc/resolv.conf", "bind", "/b/data/10"),
    ]
    by_dest = {m["destination"]: m for m in config["mounts"]}
    assert by_dest["/work/p"]["options"] == ["rbind", "rw", "nosuid", "nodev"]
    assert by_dest["/etc/shadow"]["options"][:2] == ["rbind", "ro"]
    assert "mode=1777" in by_dest["/dev/shm"]["options"] and "mode=700" in by_dest["/tmp/corral-1"]["options"]
    # The private TMPDIR belongs to the command (uid 65533), as bubblewrap makes it: git reads its config there.
    assert {"uid=65533", "gid=65533"} <= set(by_dest["/tmp/corral-1"]["options"])
    assert files == (("/b/data/10", b"nameserver 127.0.0.1\n", 0o644),)
    # No network namespace of its own: the container stays in corral's (loopback + proxy).
    assert [n["type"] for n in config["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount", "cgroup"]
    assert "uidMappings" not in config["linux"]
    assert "/proc/kcore" in config["linux"]["maskedPaths"]


def test_unprivileged_launch_nests_a_user_namespace_mapping_only_the_launcher():
    config, _ = oci.render(plan(run_as=None), USER)
    assert config["linux"]["namespaces"][0] == {"type": "user"}
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 0, "size": 1}]
    assert config["process"]["user"]["uid"] == 0  # uid 0 of a nested namespace = the launcher, no capabilities
    assert config["process"]["args"] == ["sh", "-c", "echo hi"]  # no init found: the command is pid 1


def test_gvisor_has_no_nested_user_namespace_and_skips_unopenable_masks():
    bundle = oci.Bundle("/b", "gvisor", launched_by_root=False, skip=("/etc/shadow",))
    config, _ = oci.render(plan(run_as=None), bundle)
    assert {"type": "user"} not in config["linux"]["namespaces"]
    assert "/etc/shadow" not in [m["destination"] for m in config["mounts"]]


def test_a_plan_without_corral_namespaces_gets_an_empty_network_namespace():
    config, _ = oci.render(plan(network=None, offline=False), ROOT)
    assert {"type": "network"} in config["linux"]["namespaces"]
    config, _ = oci.render(plan(offline=True), ROOT)
    assert {"type": "network"} not in config["linux"]["namespaces"]


def test_an_image_root_keeps_only_masks_inside_bound_areas():
    config, _ = oci.render(plan(), oci.Bundle("/b", "runc", True, image="/srv/rootfs"))
    dests = [m["destination"] for m in config["mounts"]]
    assert config["root"]["path"] == "/srv/rootfs"
    assert "/etc/shadow" not in dests  # a host path the image does not have
    assert "/work/p/.env" in dests and "/work/p" in dests


def test_pre_mounts_are_left_to_the_root_view():
    config, _ = oci.render(plan(), ROOT)
    assert "/work/p/.git/hooks" not in [m["destination"] for m in config["mounts"]]


# -- the OCI runtime-spec schema -----------------------------------------------------------------------

def _validator():
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    if not os.path.isdir(SCHEMA_DIR):
        pytest.fail(f"the OCI runtime-spec schema is missing ({SCHEMA_DIR}): scripts/install.sh installs "
                    "golang-github-opencontainers-specs-dev")
    docs = {}
    for name in os.listdir(SCHEMA_DIR):
        if name.endswith(".json"):
            with open(os.path.join(SCHEMA_DIR, name)) as fh:
                docs[name] = json.load(fh)
    base = f"file://{SCHEMA_DIR}/"
    registry = Registry().with_resources(
        (base + name, Resource.from_contents(doc, default_specification=DRAFT4)) for name, doc in docs.items())
    schema = dict(docs["config-schema.json"], id=base + "config-schema.json")
    return jsonschema.Draft4Validator(schema, registry=registry)


@pytest.mark.parametrize("bundle", [ROOT, USER, oci.Bundle("/b", "gvisor", False), oci.Bundle("/b", "crun", True)],
                         ids=["runc-root", "runc-user", "gvisor-user", "crun-root"])
def test_config_validates_against_the_runtime_spec_schema(bundle):
    config, _ = oci.render(plan(), bundle)
    errors = sorted(_validator().iter_errors(config), key=str)
    assert not errors, errors[0]


def test_schema_validation_catches_a_broken_config():
    config, _ = oci.render(plan(), ROOT)
    config["process"]["user"]["uid"] = "root"
    assert list(_validator().iter_errors(config))


def test_a_real_plan_validates_against_the_schema(tmp_path):
    from corral.policy.defaults import default_policy
    from corral.policy.model import LaunchContext
    from corral.sandbox.plan import build_plan

    proj = tmp_path / "proj"
    proj.mkdir()
    ctx = LaunchContext(cwd=str(proj), home=str(tmp_path), uid=os.geteuid(), gid=os.getegid())
    real = build_plan(default_policy(ctx), ctx, ["true"], {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                      run_id="r2", offline=True)
    for bundle in (ROOT, USER):
        config, _ = oci.render(real, bundle)
        errors = list(_validator().iter_errors(config))
        assert not errors, errors[0]


# -- seccomp -----------------------------------------------------------------------------------------------

def test_every_deny_rule_is_in_the_profile():
    profile = oci.seccomp_profile(SeccompOptions())
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    names = {e["names"][0] for e in profile["syscalls"]}
    assert names == {r.syscall for r in rules(SeccompOptions())}


def test_arguments_are_compared_on_their_low_32_bits():
    profile = oci.seccomp_profile(SeccompOptions())
    sock = [e for e in profile["syscalls"] if e["names"] == ["socket"]]
    assert {"index": 0, "value": 0xFFFFFFFF, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"} in [a for e in sock
                                                                                             for a in e["args"]]


def test_setid_bits_become_one_alternative_per_bit():
    profile = oci.seccomp_profile(SeccompOptions())
    chmod = [e["args"] for e in profile["syscalls"] if e["names"] == ["chmod"]]
    assert sorted(a[0]["valueTwo"] for a in chmod) == [0o2000, 0o4000]
    openat = [e["args"] for e in profile["syscalls"] if e["names"] == ["openat"]]
    assert len(openat) == 4  # (O_CREAT | O_TMPFILE) x (S_ISUID | S_ISGID)


def test_datagram_socketpairs_are_refused_and_stream_pairs_are_not():
    profile = oci.seccomp_profile(SeccompOptions())
    pairs = [e["args"] for e in profile["syscalls"] if e["names"] == ["socketpair"]]
    types = sorted(a[1]["valueTwo"] for a in pairs)
    assert 2 in types and 1 not in types and 5 not in types and len(types) == 14
    assert not [e for e in oci.seccomp_profile(SeccompOptions(allow_unix_sockets=True))["syscalls"]
                if e["names"] == ["socketpair"]]


def test_errno_values_follow_the_table():
    profile = oci.seccomp_profile(SeccompOptions())
    clone3 = next(e for e in profile["syscalls"] if e["names"] == ["clone3"])
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38  # ENOSYS: libc falls back to clone
    assert not [e for e in oci.seccomp_profile(SeccompOptions(), gvisor=True)["syscalls"] if e["names"] == ["clone3"]]


def test_root_launch_inside_corral_user_namespace_nests_an_identity_map():
    # With network, corral's namespace has a user namespace even for root: the runtime runs in
    # it, and a nested identity-mapped one tells runc/crun to bind devices rather than mknod.
    config, _ = oci.render(plan(), oci.Bundle("/b", "crun", True, in_userns=True))
    assert config["linux"]["namespaces"][0] == {"type": "user"}
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 0, "size": 4294967295}]
    assert config["process"]["user"]["uid"] == 65533
    errors = list(_validator().iter_errors(config))
    assert not errors, errors[0]
