"""`--backend auto` (`backend = "auto"`): the pure decision (backends/auto.py) on probe results,
table-driven, and the policy key / flag that allow the weaker wall. The refusals reproduced
for real (a seccomp filter, a user namespace with max_user_namespaces = 0) are in
tests/test_refusals.py."""

from __future__ import annotations

import pytest

from corral.backends.auto import Choice, Probe, choose

OK = Probe("/usr/bin/bwrap", landlock_abi=7, landlock_backend=True)
SECCOMP = Probe("/usr/bin/bwrap", "a seccomp filter refuses CLONE_NEWUSER", "run with seccomp=unconfined",
                landlock_abi=7, landlock_backend=True)
NO_BWRAP = Probe(None, landlock_abi=4, landlock_backend=True)
NO_LANDLOCK = Probe("/usr/bin/bwrap", "max_user_namespaces = 0", "sysctl ...", landlock_abi=0, landlock_backend=True)
NOT_BUILT = Probe("/usr/bin/bwrap", "max_user_namespaces = 0", "sysctl ...", landlock_abi=7, landlock_backend=False)


@pytest.mark.parametrize("probe, weaker, backend, says", [
    # bwrap works: always bwrap, whatever allow_weaker says, and nothing said
    (OK, False, "bwrap", ""),
    (OK, True, "bwrap", ""),
    # user namespaces refused: landlock only when allowed, said with the cause and the fix
    (SECCOMP, True, "landlock", "weaker landlock wall (Landlock ABI 7), allowed by --allow-weaker: bubblewrap "
                                "cannot run here: a seccomp filter refuses CLONE_NEWUSER (for the strong wall: "
                                "run with seccomp=unconfined)"),
    (SECCOMP, False, None, "bubblewrap cannot run here: a seccomp filter refuses CLONE_NEWUSER"),
    # bwrap not installed: the same, the fix installs it
    (NO_BWRAP, True, "landlock", "bubblewrap is not installed (for the strong wall: sudo apt-get install bubblewrap"),
    (NO_BWRAP, False, None, "bubblewrap is not installed"),
    # no weaker wall to fall back to: refused even when allowed, saying why
    (NO_LANDLOCK, True, None, "the kernel does not enable Landlock"),
    (NO_LANDLOCK, False, None, "the kernel does not enable Landlock"),
    (NOT_BUILT, True, None, "this corral has no landlock backend"),
])
def test_auto_decision(probe, weaker, backend, says):
    choice = choose(probe, weaker)
    assert choice.backend == backend
    text = choice.notice if backend else choice.cause
    assert says in text
    if backend == "bwrap":
        assert choice == Choice("bwrap")  # no line, no cause: nothing to say
    elif backend is None:
        assert choice.fix and not choice.notice  # a refusal names the fix, never runs
        assert choice.cause.startswith("--backend auto: ")


def test_a_refusal_offers_the_weaker_wall_only_when_there_is_one():
    assert "--allow-weaker" in choose(SECCOMP, False).fix
    assert "run with seccomp=unconfined" in choose(SECCOMP, False).fix
    assert "--allow-weaker" not in choose(NO_LANDLOCK, False).fix
    assert "--allow-weaker" not in choose(NOT_BUILT, True).fix


def test_the_notice_names_where_the_weaker_wall_was_allowed():
    choice = choose(SECCOMP, True, "allow_weaker = true in /p/policy.toml")
    assert "allowed by allow_weaker = true in /p/policy.toml" in choice.notice
    assert choice.notice.startswith("corral: ") and "\n" not in choice.notice


def _policy(tmp_path, text):
    from corral.policy import load
    from corral.runopts import launch_context

    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path, load.load(str(path), launch_context())


def test_allow_weaker_key_and_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, policy = _policy(tmp_path, 'backend = "auto"\nallow_weaker = true\n')
    assert (policy.backend.name, policy.backend.allow_weaker) == ("auto", True)
    assert policy.backend.allowed_by == f"allow_weaker = true in {path}"
    from corral.policy.render import to_toml
    from corral.runopts import build_policy, launch_context, parse_run_args

    assert 'backend = "auto"\nallow_weaker = true\n' in to_toml(policy, launch_context())
    opts = parse_run_args(["--backend", "auto", "--allow-weaker", "--", "true"])
    assert (opts.backend, opts.allow_weaker, opts.command) == ("auto", True, ["true"])
    flagged = build_policy(opts, launch_context())
    assert (flagged.backend.allow_weaker, flagged.backend.allowed_by) == (True, "--allow-weaker")
    _, policy = _policy(tmp_path, 'allow_weaker = false\n')
    assert policy.backend.allow_weaker is False and policy.backend.allowed_by == ""


@pytest.mark.parametrize("toml, text", [
    ('allow_weaker = "yes"\n', "allow_weaker = 'yes': expected true or false"),
    ('backend = "autoo"\n', "backend = 'autoo': unknown backend; expected one of"),
    ('allow_weakr = true\n', "allow_weakr = True: unknown key (did you mean 'allow_weaker'?)"),
])
def test_bad_auto_keys_are_named(tmp_path, toml, text):
    from corral.errors import PolicyError

    with pytest.raises(PolicyError) as exc:
        _policy(tmp_path, toml)
    assert text in str(exc.value)
    if "backend" in toml:
        assert str(exc.value).rstrip(")").endswith("or auto")
