"""The git ref policy's pure parts, table-driven: the `[git]` block (policy/git.py), which
repository a smart-HTTP request is for and whether it may reach it, the judgement of a push's
ref updates, the reading of its pkt-line commands (chunks, gzip, limits) and the answer git
prints (proxy/gitpolicy.py). No sockets; the end-to-end tests are test_git_policy.py."""

from __future__ import annotations

import gzip

import pytest

from corral.errors import PolicyError
from corral.policy.git import parse
from corral.policy.model import LaunchContext
from corral.policy.native import load_toml
from corral.proxy.gitpolicy import (
    MAX_COMMAND_BYTES,
    CommandReader,
    GitProtocolError,
    GitRules,
    RefUpdate,
    decide_push,
    pkt,
    ref_matches,
    refusal_body,
)

Z, A, B = "0" * 40, "a" * 40, "b" * 40
CTX = LaunchContext(cwd="/work/p", home="/home/u", uid=1000, gid=1000)

POLICY = parse({
    "repositories": [
        {"match": "git.example.test/acme/tools", "push": ["*"], "tags": ["v*"], "delete": True},
        {"match": "git.example.test/acme/admin", "push": ["*"], "push_protected": True},
        "git.example.test/acme/*",
        "git.example.test/group/**",
        "*.corp.test/infra/*.git",
    ],
    "push": ["agent/*"],
}, "p.toml")
RULES = GitRules(POLICY)


# --------------------------------------------------------------------------------- [git] block

@pytest.mark.parametrize("git, key, words", [
    ({}, "git.repositories", "missing"),
    ({"repositories": []}, "git.repositories", "non-empty"),
    ({"repositories": ["x.test"]}, "git.repositories[0]", "host and a path"),
    ({"repositories": ["*/a/b"]}, "git.repositories[0]", "name the host"),
    ({"repositories": ["*.com/a/b"]}, "git.repositories[0]", "top-level"),
    ({"repositories": ["https://x.test/a/b"]}, "git.repositories[0]", "no scheme"),
    ({"repositories": ["x.test:8443/a/b"]}, "git.repositories[0]", "port"),
    ({"repositories": ["x.test/a/../b"]}, "git.repositories[0]", "'..'"),
    ({"repositories": ["x.test/a/b**"]}, "git.repositories[0]", "whole segment"),
    ({"repositories": ["x.test/a/b?"]}, "git.repositories[0]", "printable ASCII"),
    ({"repositories": [3]}, "git.repositories[0]", "pattern"),
    ({"repositories": [{"push": ["a"]}]}, "git.repositories[0].match", "missing"),
    ({"repositories": [{"match": "x.test/a", "pushh": []}]}, "git.repositories[0].pushh", "did you mean 'push'"),
    ({"repositories": ["x.test/a"], "tag": True}, "git.tag", "did you mean 'tags'"),
    ({"repositories": ["x.test/a"], "push": "agent/*"}, "git.push", "list of ref patterns"),
    ({"repositories": ["x.test/a"], "push": ["refs/tags/v1"]}, "git.push[0]", "git.tags"),
    ({"repositories": ["x.test/a"], "push": ["a..b"]}, "git.push[0]", "check-ref-format"),
    ({"repositories": ["x.test/a"], "push": ["a b"]}, "git.push[0]", "' '"),
    ({"repositories": ["x.test/a"], "push": ["a?"]}, "git.push[0]", "'?'"),
    ({"repositories": ["x.test/a"], "push": ["x/"]}, "git.push[0]", "check-ref-format"),
    ({"repositories": ["x.test/a"], "push": [""]}, "git.push[0]", "non-empty"),
    ({"repositories": ["x.test/a"], "tags": "yes"}, "git.tags", "true, false"),
    ({"repositories": ["x.test/a"], "tags": ["refs/heads/x"]}, "git.tags[0]", "tag pattern"),
    ({"repositories": ["x.test/a"], "delete": 1}, "git.delete", "true or false"),
    ({"repositories": ["x.test/a"], "fetch_unlisted": "no"}, "git.fetch_unlisted", "true or false"),
    ({"repositories": ["x.test/a/*", "x.test/a/b.git"]}, "git.repositories[1].match", "never applies"),
])
def test_bad_git_block_names_key_and_fix(git, key, words):
    with pytest.raises(PolicyError) as err:
        parse(git, "p.toml")
    assert err.value.key == key and words in err.value.why, (err.value.key, str(err.value))
    assert str(err.value).startswith("p.toml: " + key)


def test_git_block_from_toml_and_defaults():
    policy = load_toml('[git]\nrepositories = ["GitHub.com/Acme/Tools.git", { match = "github.com/acme/*", '
                       'push = ["feature/*", "refs/for/*"], tags = true }]\npush = ["agent/*"]\n', "p.toml", CTX)
    first, second = policy.git.repositories
    assert first.match == "github.com/acme/tools" and first.push == ("refs/heads/agent/*",) and first.tags == ()
    assert first.protected == ("refs/heads/main", "refs/heads/master", "refs/heads/release/*")
    assert not first.delete and not first.push_protected and first.origin == "git.repositories[0]"
    assert second.push == ("refs/heads/feature/*", "refs/for/*") and second.tags == ("refs/tags/*",)
    assert policy.git.fetch_unlisted is False
    assert load_toml("", "p.toml", CTX).git is None


def test_git_block_renders_and_loads_back():
    from corral.policy.render import to_toml

    policy = load_toml('[git]\nrepositories = [{ match = "x.test/a/b", push = ["x"], delete = true }, "x.test/**"]\n'
                       'fetch_unlisted = true\nprotected = []\n', "p.toml", CTX)
    text = to_toml(policy, CTX)
    again = load_toml(text, "shown.toml", CTX)
    assert again.git == policy.git


def test_srt_settings_have_no_git_ref_policy():
    from corral.policy.srt import load_srt_settings as load_srt_text

    with pytest.raises(PolicyError) as err:
        load_srt_text('{"network": {"allowedDomains": [], "deniedDomains": []}, "filesystem": {"denyRead": [], '
                      '"allowWrite": [], "denyWrite": []}, "git": {"repositories": ["x.test/a"]}}', "s.json", CTX)
    assert "native TOML" in str(err.value) and "[git]" in str(err.value), str(err.value)


# ----------------------------------------------------------------------------------- requests

@pytest.mark.parametrize("method, host, target, allowed, rule, repo, push", [
    ("GET", "git.example.test", "/acme/widgets.git/info/refs?service=git-upload-pack", True, "git.repositories[2]",
     "git.example.test/acme/widgets", False),
    ("GET", "git.example.test", "/acme/widgets/info/refs?service=git-receive-pack", True, "git.repositories[2]",
     "git.example.test/acme/widgets", False),
    ("POST", "git.example.test", "/acme/widgets.git/git-receive-pack", True, "git.repositories[2]",
     "git.example.test/acme/widgets", True),
    ("POST", "git.example.test", "/ACME/Tools.git/git-receive-pack", True, "git.repositories[0]",
     "git.example.test/acme/tools", True),
    ("POST", "git.example.test", "/acme/tools.git/GIT-RECEIVE-PACK", True, "git.repositories[0]",
     "git.example.test/acme/tools", True),
    ("POST", "git.example.test", "/acme/x/../tools.git/git-receive-pack", True, "git.repositories[0]",
     "git.example.test/acme/tools", True),
    ("POST", "git.example.test", "//acme//%74ools.git/git-receive-pack", True, "git.repositories[0]",
     "git.example.test/acme/tools", True),
    ("POST", "git.example.test", "/group/a/b/c.git/git-upload-pack", True, "git.repositories[3]",
     "git.example.test/group/a/b/c", False),
    ("POST", "git.corp.test", "/infra/net.git/git-receive-pack", True, "git.repositories[4]", "git.corp.test/infra/net",
     True),
    ("GET", "git.example.test", "/acme/w.git/info/refs", True, "git.repositories[2]", "git.example.test/acme/w", False),
    # not listed
    ("POST", "git.example.test", "/other/x.git/git-receive-pack", False, "git.repositories", "", False),
    ("GET", "git.example.test", "/other/x.git/info/refs?service=git-upload-pack", False, "git.repositories", "", False),
    ("GET", "github.com", "/acme/widgets.git/info/refs?service=git-receive-pack", False, "git.repositories", "", False),
    ("POST", "git.example.test", "/acme/a/b.git/git-receive-pack", False, "git.repositories", "", False),
    ("GET", "git.example.test", "/other/x.git/info/refs?service=git-upload-pack&service=git-receive-pack", False,
     "git.repositories", "", False),
    # readings that disagree, WebDAV
    ("POST", "git.example.test", "/acme/w%2Fx/git-receive-pack", False, "git", "", False),
    ("POST", "git.example.test", "/acme/w;x=1/..;/y/git-receive-pack", False, "git", "", False),
    ("PROPFIND", "git.example.test", "/acme/w.git/", False, "git", "", False),
    ("PUT", "git.example.test", "/acme/w.git/refs/heads/main", False, "git", "", False),
])
def test_git_requests(method, host, target, allowed, rule, repo, push):
    verdict = RULES.check(method, host, target)
    assert verdict is not None and verdict.allowed is allowed and verdict.rule == rule, verdict
    if allowed:
        assert verdict.request.repo == repo and (verdict.push is not None) is push
    else:
        assert verdict.status in (400, 403)


@pytest.mark.parametrize("method, host, target", [
    ("GET", "git.example.test", "/acme/widgets/raw/main/README.md"),
    ("POST", "api.example.test", "/graphql"),
    ("PUT", "other.test", "/objects/1"),  # not a git host
    ("PROPFIND", "dav.test", "/files/"),
    ("POST", "git.example.test", "/api/v4/projects"),
])
def test_other_requests_are_not_git_matters(method, host, target):
    assert RULES.check(method, host, target) is None


def test_fetch_unlisted_lets_fetches_pass_never_pushes():
    rules = GitRules(parse({"repositories": ["x.test/a/*"], "fetch_unlisted": True}, "p.toml"))
    fetch = rules.check("GET", "github.com", "/o/r.git/info/refs?service=git-upload-pack")
    assert fetch.allowed and fetch.rule == "git.fetch_unlisted"
    assert rules.check("POST", "github.com", "/o/r/git-upload-pack").allowed
    assert not rules.check("POST", "github.com", "/o/r/git-receive-pack").allowed
    assert not rules.check("GET", "github.com", "/o/r/info/refs?service=git-receive-pack").allowed
    assert rules.covers("x.test") and not rules.covers("github.com")


# ------------------------------------------------------------------------------------- pushes

TOOLS, ADMIN, ACME = POLICY.repositories[0], POLICY.repositories[1], POLICY.repositories[2]


@pytest.mark.parametrize("repo, updates, allowed, rule, words", [
    (ACME, [(A, B, "refs/heads/agent/x")], True, "", ""),
    (ACME, [(Z, B, "refs/heads/agent/x/y")], True, "", ""),
    (ACME, [], True, "", ""),  # git's probe: a flush-pkt alone
    (ACME, [(A, B, "refs/heads/main")], False, "git.repositories[2].protected", "protected branch"),
    (ACME, [(A, B, "refs/heads/MAIN")], False, "git.repositories[2].protected", "protected branch"),
    (ACME, [(A, B, "refs/heads/release/1.0/hotfix")], False, "git.repositories[2].protected", "protected"),
    (ACME, [(A, B, "refs/heads/feature")], False, "git.repositories[2].push", "only ['refs/heads/agent/*']"),
    (ACME, [(A, B, "refs/heads/agent")], False, "git.repositories[2].push", "not allowed"),
    (ACME, [(A, Z, "refs/heads/agent/x")], False, "git.repositories[2].delete", "deleting"),
    (ACME, [(Z, B, "refs/tags/v1")], False, "git.repositories[2].tags", "tag"),
    (ACME, [(A, B, "refs/heads/agent/x"), (A, B, "refs/heads/main")], False, "git.repositories[2].protected", "main"),
    (ACME, [(A, B, "refs/heads/agent/../main")], False, "git.repositories[2]: ref name", "not a valid ref"),
    (ACME, [(A, B, "HEAD")], False, "git.repositories[2]: ref name", "not a valid ref"),
    (ACME, [(A, B, "refs/heads/agent/x.lock")], False, "git.repositories[2]: ref name", "not a valid ref"),
    (TOOLS, [(A, B, "refs/heads/anything")], True, "", ""),
    (TOOLS, [(A, B, "refs/heads/main")], False, "git.repositories[0].protected", "protected"),
    (TOOLS, [(Z, B, "refs/tags/v1.2")], True, "", ""),
    (TOOLS, [(A, Z, "refs/tags/v1.2")], True, "", ""),
    (TOOLS, [(Z, B, "refs/tags/nightly")], False, "git.repositories[0].tags", "only ['refs/tags/v*']"),
    (TOOLS, [(A, Z, "refs/heads/old")], True, "", ""),
    (TOOLS, [(A, Z, "refs/heads/master")], False, "git.repositories[0].protected", "protected"),
    (ADMIN, [(A, B, "refs/heads/main")], True, "", ""),
    (ADMIN, [(A, Z, "refs/heads/main")], False, "git.repositories[1].delete", "deleting"),
])
def test_decide_push(repo, updates, allowed, rule, words):
    decision = decide_push(repo, [RefUpdate(*u) for u in updates])
    assert decision.allowed is allowed and decision.rule == rule, decision
    assert words in decision.reason
    if not allowed:
        # the audit's reason; what git shows adds "corral: " (refusal_body, the headline)
        assert decision.ref in decision.reason and not decision.reason.startswith("corral")


@pytest.mark.parametrize("pattern, ref, fold, matches", [
    ("refs/heads/agent/*", "refs/heads/agent/x", False, True),
    ("refs/heads/agent/*", "refs/heads/agent/x/y", False, True),
    ("refs/heads/agent/*", "refs/heads/agent", False, False),
    ("refs/heads/agent/*", "refs/heads/agentx", False, False),
    ("refs/heads/*-wip", "refs/heads/a-wip", False, True),
    ("refs/heads/main", "refs/heads/Main", False, False),
    ("refs/heads/main", "refs/heads/Main", True, True),
    ("refs/heads/a*b*c", "refs/heads/abc", False, True),
    ("refs/heads/a*b*c", "refs/heads/acb", False, False),
])
def test_ref_patterns(pattern, ref, fold, matches):
    assert ref_matches(pattern, ref, fold) is matches


# -------------------------------------------------------------------------- reading commands

def commands(*lines: str, caps: str = "report-status side-band-64k agent=git/2.39") -> bytes:
    out = b""
    for i, line in enumerate(lines):
        out += pkt((line + ("\0" + caps if i == 0 else "") + "\n").encode())
    return out + b"0000"


BODY = commands(f"{A} {B} refs/heads/main", f"{Z} {B} refs/heads/agent/x") + b"PACK" + b"\x00" * 64


@pytest.mark.parametrize("encoding, step", [(None, 1), (None, 7), (None, 10000), ("gzip", 1), ("gzip", 5),
                                            ("x-gzip", 10000)])
def test_command_reader_any_chunking(encoding, step):
    data = gzip.compress(BODY) if encoding else BODY
    reader = CommandReader(encoding)
    done = False
    for i in range(0, len(data), step):
        done = reader.feed(data[i:i + step])
        if done:
            break
    assert done and [u.ref for u in reader.updates] == ["refs/heads/main", "refs/heads/agent/x"]
    assert reader.updates[1].action == "create" and reader.updates[0].action == "update"
    assert {"report-status", "side-band-64k"} <= reader.capabilities


def test_command_reader_shallow_probe_and_sha256():
    reader = CommandReader()
    assert reader.feed(pkt(b"shallow " + A.encode() + b"\n") + commands(f"{A} {B} refs/heads/x"))
    assert reader.shallow == 1 and len(reader.updates) == 1
    assert CommandReader().feed(b"0000") and True  # git's auth probe: no commands at all
    long = "c" * 64
    assert CommandReader().feed(commands(f"{long} {long} refs/heads/x"))


@pytest.mark.parametrize("data, encoding, words", [
    (b"zzzz", None, "pkt-line length"),
    (b"0001", None, "special packet"),
    (b"0003", None, "special packet"),
    (pkt(b"push-cert\0report-status\n") + b"0000", None, "push certificates"),
    (pkt(b"hello\n") + b"0000", None, "not a ref-update command"),
    (pkt(f"{A} {B[:39]} refs/heads/x\n".encode()) + b"0000", None, "object id"),
    (pkt(f"{A.upper()} {B} refs/heads/x\n".encode()) + b"0000", None, "object id"),
    (commands(f"{A} {B} refs/heads/x", f"{'c' * 64} {'c' * 64} refs/heads/y"), None, "different lengths"),
    (pkt(f"{A} {B} refs/heads/x\n".encode()) + pkt(f"{A} {B} refs/heads/y\0report-status\n".encode()), None,
     "capabilities after"),
    (b"this is not gzip at all", "gzip", "not valid gzip"),
    (b"", "br", "Content-Encoding"),
])
def test_command_reader_refuses_what_it_cannot_read(data, encoding, words):
    with pytest.raises(GitProtocolError) as err:
        CommandReader(encoding).feed(data)
    assert words in str(err.value)


def test_command_reader_limits_and_truncation():
    reader = CommandReader()
    assert not reader.feed(commands(f"{A} {B} refs/heads/x")[:-4])
    with pytest.raises(GitProtocolError, match="ended before"):
        reader.end()
    huge = b"".join(pkt(f"{A} {B} refs/heads/agent/{i:060d}\n".encode()) for i in range(MAX_COMMAND_BYTES // 130 + 10))
    with pytest.raises(GitProtocolError, match="longer than"):
        CommandReader().feed(huge)
    # a gzip bomb is inflated only as far as the limit
    bomb = gzip.compress(pkt(f"shallow {A}\n".encode()) * (MAX_COMMAND_BYTES // 10))
    reader = CommandReader("gzip")
    with pytest.raises(GitProtocolError, match="longer than"):
        reader.feed(bomb)
    assert reader.decoded <= MAX_COMMAND_BYTES + 1 and len(bomb) < 100_000


# ------------------------------------------------------------------------------ what git prints

def unpack_pkts(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = int(data[:4], 16)
        if n == 0:
            out.append(b"")
            data = data[4:]
            continue
        out.append(data[4:n])
        data = data[n:]
    return out


def test_refusal_body_report_status_in_side_band():
    updates = [RefUpdate(A, B, "refs/heads/main"), RefUpdate(Z, B, "refs/heads/agent/x")]
    decision = decide_push(ACME, updates)
    body = refusal_body({"report-status", "side-band-64k"}, updates, decision, decision.reason + "\nsecond line")
    packets = unpack_pkts(body)
    assert packets[0] == b"\x02" + decision.reason.encode() + b"\n" and packets[1] == b"\x02second line\n"
    assert packets[-1] == b""
    inner = unpack_pkts(b"".join(p[1:] for p in packets if p[:1] == b"\x01"))
    assert inner[0] == b"unpack ok\n" and inner[-1] == b""
    assert inner[1].startswith(b"ng refs/heads/main corral: refs/heads/main is a protected branch")
    assert inner[2] == b"ng refs/heads/agent/x corral: not pushed: refs/heads/main in the same push is refused\n"


def test_refusal_body_forms():
    updates = [RefUpdate(A, B, "refs/heads/main")]
    decision = decide_push(ACME, updates)
    plain = unpack_pkts(refusal_body({"report-status"}, updates, decision, "x"))
    assert plain[0] == b"unpack ok\n" and plain[1].startswith(b"ng refs/heads/main ")
    v2 = unpack_pkts(refusal_body({"report-status-v2", "side-band"}, updates, decision, "x"))
    assert all(len(p) <= 996 for p in v2)
    fatal = unpack_pkts(refusal_body({"side-band-64k"}, updates, decision, "why\nmore"))
    assert fatal[-2].startswith(b"\x03why")
    assert refusal_body(set(), updates, decision, "x") is None  # answered with a 403 instead
    # control characters from a ref name never reach the client's terminal
    weird = [RefUpdate(A, B, "refs/heads/\x1b[31mx")]
    body = refusal_body({"report-status"}, weird, decide_push(ACME, weird), "x")
    assert b"\x1b" not in body
