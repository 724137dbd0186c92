"""The git ref policy end to end (issue 14): real `git` inside `corral run`, a real smart-HTTP
server (`git http-backend` behind an HTTPS server on 127.0.0.1 that requires a token), corral's
TLS termination with the token injected on the wire.

Asserted on the host: the server's refs (what really moved), the requests it received, git's
own output (the rule must be named where the user looks), the audit log; and the token must
never appear inside the sandbox (environment, git config, files), in corral's output or in the
audit log. Every test runs as root and as the unprivileged `corral-test` user.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from gitrepos import GIT_POLICY, REPOS, SAFE, policy, refs, repos  # noqa: F401 - fixture
from test_credentials import (  # noqa: F401 - fixtures
    PH_RE,
    assert_no_leak,
    audit,
    cred_run,
    git_root,
    git_server,
    git_token,
    one,
    test_ca,
    toml_list,
)
from test_network import out_of
from tlsservers import GIT_ID, presented_token


def test_git_ref_policy_end_to_end(launcher, ws, test_ca, repos, git_server, git_token):
    port = git_server.port
    url = f"https://x-access-token:$GIT_TOKEN@127.0.0.1:{port}"
    git = f"git -c credential.helper= {' '.join(GIT_ID)}"
    steps = {
        "clone": f'{git} clone -q "{url}/acme/widgets.git" cl',
        "fetch": f"{git} -C cl fetch origin",
        "commit": f"cd cl && echo pushed > pushed.txt && git add pushed.txt && {git} commit -q -m push && cd ..",
        "push_agent": f"{git} -C cl push origin HEAD:refs/heads/agent/x",
        "push_main": f"{git} -C cl push origin HEAD:refs/heads/main",
        "push_both": f"{git} -C cl push origin HEAD:refs/heads/agent/y HEAD:refs/heads/main",
        "push_tag": f"{git} -C cl tag v1 && {git} -C cl push origin v1",
        "push_delete": f"{git} -C cl push origin :refs/heads/agent/x",
        "push_other": f'{git} -C cl push "{url}/other/secret.git" HEAD:refs/heads/agent/x',
        "fetch_other": f'{git} ls-remote "{url}/other/secret.git"',
        "push_gitless": f'{git} -C cl push "{url}/acme/widgets" HEAD:refs/heads/release/1',
    }
    script = "\n".join(f'( {cmd} ) > {name}.out 2>&1; echo "{name}=$?"' for name, cmd in steps.items())
    script += '\nenv > env.out; git -C cl config -l > config.out; cat cl/.git/config >> config.out; echo "inside=$GIT_TOKEN"'
    (repos / "acme" / "widgets").symlink_to("widgets.git")  # served without .git too, as GitHub does
    before = {repo: refs(repos, repo) for repo in REPOS}
    p = cred_run(ws, script, policy(ws, git_server, test_ca, GIT_POLICY), env_extra={"GIT_TOKEN": git_token})
    out = {name: (ws.proj / f"{name}.out").read_text() for name in steps}
    status = {name: one(p.stdout, f"{name}=") for name in steps}
    for ok in ("clone", "fetch", "commit", "push_agent"):
        assert status[ok] == "0", (ok, out[ok], out_of(p))
    head = subprocess.run(["git", "-C", str(ws.proj / "cl"), "rev-parse", "HEAD"], capture_output=True, text=True,
                          env=SAFE).stdout.strip()
    after = {repo: refs(repos, repo) for repo in REPOS}
    # the allowed push landed; nothing else moved anywhere
    assert after["acme/widgets"] == {**before["acme/widgets"], "refs/heads/agent/x": head}, after
    assert after["acme/tools"] == before["acme/tools"] and after["other/secret"] == before["other/secret"]
    # each refusal is printed by git with the ref and the rule
    expect = {
        "push_main": ("[remote rejected]", "refs/heads/main is a protected branch", "git.repositories[1].protected"),
        "push_both": ("refs/heads/main is a protected branch", "HEAD -> agent/y (corral: not pushed"),
        "push_tag": ("[remote rejected]", "pushing tag refs/tags/v1 is not allowed", "git.repositories[1].tags"),
        "push_delete": ("[remote rejected]", "deleting refs/heads/agent/x is not allowed", "git.repositories[1].delete"),
        "push_other": ("127.0.0.1/other/secret refused", "not in git.repositories"),
        "fetch_other": ("127.0.0.1/other/secret refused", "not in git.repositories", "fetch_unlisted"),
        "push_gitless": ("[remote rejected]", "refs/heads/release/1 is a protected branch"),
    }
    for name, words in expect.items():
        assert status[name] != "0", (name, out[name])
        for w in words:
            assert w in out[name], (name, w, out[name])
    # the server never received a refused push: one receive-pack POST, the allowed one
    posts = [r.path for r in git_server.got() if r.method == "POST" and r.path.endswith("git-receive-pack")]
    assert posts == ["/acme/widgets.git/git-receive-pack"], posts
    assert not [r for r in git_server.got() if r.path.startswith("/other/")]
    # every request that reached the server carried the real token, put there by the proxy
    authed = [r for r in git_server.got() if r.header("authorization")]
    assert authed and {presented_token(r.header("authorization")) for r in authed} == {git_token}
    # audit: repository, refs with old and new ids, decision and rule
    recs = [r for r in audit(ws) if r.get("repo")]
    allowed = [r for r in recs if r.get("refs") and r["decision"] == "allow"]
    assert [x["ref"] for r in allowed for x in r["refs"]] == ["refs/heads/agent/x"], recs
    assert allowed[0]["refs"][0]["new"] == head and set(allowed[0]["refs"][0]["old"]) == {"0"}
    main = [r for r in recs if r["decision"] == "block" and any(x["ref"] == "refs/heads/main" for x in r.get("refs", []))]
    assert main and all(r["rule"] == "git.repositories[1].protected" and r["repo"] == "127.0.0.1/acme/widgets"
                        and r["refs"][-1]["new"] == head for r in main), recs
    assert any(r["decision"] == "block" and r["repo"] == "127.0.0.1/other/secret" and r["rule"] == "git.repositories"
               for r in recs), recs
    # the token never inside: a placeholder in the variable, nothing in env, git config or files
    assert PH_RE.fullmatch(one(p.stdout, "inside=")), p.stdout
    assert git_token not in (ws.proj / "env.out").read_text()
    assert git_token not in (ws.proj / "config.out").read_text()
    assert_no_leak(ws, p, git_token)


GZIP_CLIENT = r'''
import gzip, http.client, os, ssl, sys, urllib.parse
host, port, repo, mode, body_hex = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
c = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=ssl.create_default_context(), timeout=30)
auth = __import__("base64").b64encode(f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password)}".encode()).decode()
c.set_tunnel(host, port, headers={"Proxy-Authorization": "Basic " + auth})
body = gzip.compress(bytes.fromhex(body_hex))
headers = {"Content-Type": "application/x-git-receive-pack-request", "Content-Encoding": "gzip",
           "Authorization": "Bearer " + os.environ["GIT_TOKEN"]}
if mode == "chunked":
    c.request("POST", f"/{repo}.git/git-receive-pack", body=iter([body[:9], body[9:30], body[30:]]),
              headers={**headers, "Transfer-Encoding": "chunked"}, encode_chunked=True)
else:
    c.request("POST", f"/{repo}.git/git-receive-pack", body=body, headers=headers)
r = c.getresponse()
print("status=%d" % r.status)
print("type=" + (r.getheader("content-type") or ""))
print("body=" + r.read().decode("latin-1").encode("unicode_escape").decode())
'''


def _pkt(text: str) -> bytes:
    data = text.encode()
    return b"%04x" % (len(data) + 4) + data


@pytest.mark.parametrize("mode", ["chunked", "length"])
def test_gzip_encoded_push_commands_are_read(launcher, ws, test_ca, repos, git_server, git_token, mode):
    """A client that gzips its push body (git does not, libraries may) is judged the same: a
    deletion of acme/tools' agent/x (allowed there) reaches the server unchanged and is applied;
    an update of acme/widgets' main is refused with a report-status naming the rule."""
    main = refs(repos, "acme/widgets")["refs/heads/main"]
    subprocess.run(["git", "-C", str(repos / "acme/tools.git"), "update-ref", "refs/heads/agent/x", main],
                   check=True, env=SAFE)
    zero = "0" * 40
    delete = (_pkt(f"{main} {zero} refs/heads/agent/x\0report-status delete-refs\n") + b"0000").hex()
    update = (_pkt(f"{main} {'1' * 40} refs/heads/main\0report-status\n") + b"0000" + b"PACK-not-read").hex()
    ws.write("client.py", GZIP_CLIENT)
    cmd = f"python3 client.py 127.0.0.1 {git_server.port}"
    script = f"{cmd} acme/tools {mode} {delete}; {cmd} acme/widgets {mode} {update}"
    p = cred_run(ws, script, policy(ws, git_server, test_ca, GIT_POLICY), env_extra={"GIT_TOKEN": git_token})
    statuses = [line for line in p.stdout.splitlines() if line.startswith("status=")]
    bodies = [line for line in p.stdout.splitlines() if line.startswith("body=")]
    assert statuses == ["status=200", "status=200"], out_of(p)
    assert "ok refs/heads/agent/x" in bodies[0], out_of(p)  # the server's own report
    assert "refs/heads/agent/x" not in refs(repos, "acme/tools")
    assert "ng refs/heads/main corral: refs/heads/main is a protected branch" in bodies[1], out_of(p)
    assert "type=application/x-git-receive-pack-result" in p.stdout
    assert refs(repos, "acme/widgets")["refs/heads/main"] == main
    posts = [r for r in git_server.got() if r.method == "POST"]
    assert [r.path for r in posts] == ["/acme/tools.git/git-receive-pack"]
    assert posts[0].header("content-encoding") == "gzip"  # streamed through unchanged
    assert_no_leak(ws, p, git_token)


def test_unreadable_push_commands_are_refused(launcher, ws, test_ca, repos, git_server, git_token):
    """Commands the proxy cannot read (garbage, a push certificate) refuse the push: fail closed."""
    main = refs(repos, "acme/widgets")["refs/heads/main"]
    garbage = (b"zzzz" + b"x" * 40).hex()
    cert = (_pkt("push-cert\0report-status\n") + _pkt("certificate version 0.1\n") + b"0000").hex()
    ws.write("client.py", GZIP_CLIENT)
    cmd = f"python3 client.py 127.0.0.1 {git_server.port} acme/widgets length"
    p = cred_run(ws, f"{cmd} {garbage}; {cmd} {cert}", policy(ws, git_server, test_ca, GIT_POLICY),
                 env_extra={"GIT_TOKEN": git_token})
    assert [line for line in p.stdout.splitlines() if line.startswith("status=")] == ["status=400"] * 2, out_of(p)
    assert "not a pkt-line length" in p.stdout and "push certificates" in p.stdout, out_of(p)
    assert not [r for r in git_server.got() if r.method == "POST"]
    assert refs(repos, "acme/widgets")["refs/heads/main"] == main
    assert_no_leak(ws, p, git_token)


def test_git_block_alone_terminates_its_hosts(launcher, ws, test_ca, repos):
    """No credential and no `terminate`: the hosts named by [git] are terminated because the
    git policy must read them, so a push to a protected branch is still refused."""
    from tlsservers import HttpsServer

    server = HttpsServer(test_ca, git_root=repos)
    try:
        text = "\n".join([
            "[filesystem]", f"allow_write = {toml_list([ws.proj])}", "",
            "[network]", f"allowed_domains = {toml_list([server.hostport])}", "",
            "[network.tls]", f"extra_ca = {toml_list([test_ca.path])}", "",
            "[git]", 'repositories = ["127.0.0.1/acme/*"]', 'push = ["agent/*"]', ""])
        git = f"git -c credential.helper= {' '.join(GIT_ID)}"
        url = f"https://127.0.0.1:{server.port}/acme/widgets.git"
        script = "\n".join([
            f"{git} clone -q {url} cl; echo clone=$?",
            f"cd cl && echo x > x && git add x && {git} commit -q -m x; echo commit=$?",
            f"{git} push origin HEAD:refs/heads/main > ../main.out 2>&1; echo main=$?",
            f"{git} push origin HEAD:refs/heads/agent/z > ../agent.out 2>&1; echo agent=$?",
        ])
        before = refs(repos, "acme/widgets")
        p = cred_run(ws, script, text)
        assert one(p.stdout, "clone=") == "0" and one(p.stdout, "commit=") == "0", out_of(p)
        assert one(p.stdout, "main=") != "0" and one(p.stdout, "agent=") == "0", out_of(p)
        assert "git.repositories[0].protected" in (ws.proj / "main.out").read_text()
        after = refs(repos, "acme/widgets")
        assert after["refs/heads/main"] == before["refs/heads/main"] and "refs/heads/agent/z" in after
        assert any(r.get("repo") == "127.0.0.1/acme/widgets" and r.get("proto") == "https" for r in audit(ws))
    finally:
        server.close()
