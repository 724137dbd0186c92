"""Secret detection (`workspace/secrets.py`), the scan walk and its cache
(`workspace/secretscan.py`) and `corral scan` (`workspace/scan_cli.py`).

Every fake token is built at run time from a seeded generator, so this file holds nothing a
secret scanner (corral's included) would flag.
"""

from __future__ import annotations

import base64
import json
import os
import random
import stat
import subprocess
import sys
import time

import pytest

from corral.workspace import secrets, secretscan
from corral.workspace.secrets import check_named, classify_name, match_names, scan_text

R = random.Random(20240611)
B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def rand(n: int, alphabet: str = B62) -> str:
    while True:
        out = "".join(R.choice(alphabet) for _ in range(n))
        if not secrets.is_placeholder(out):
            return out


def pem(label: str = "RSA ") -> str:
    body = base64.encodebytes(bytes(R.randrange(256) for _ in range(600))).decode()
    return f"-----BEGIN {label}PRIVATE" + f" KEY-----\n{body}-----END {label}PRIVATE" + " KEY-----\n"


def cert() -> str:
    body = base64.encodebytes(bytes(R.randrange(256) for _ in range(600))).decode()
    return "-----BEGIN CERTIFICATE-----\n" + body + "-----END CERTIFICATE-----\n"


# ----------------------------------------------------------------------------- name rules

NAMES = [
    # relpath, is_dir, kind (None: not a secret by name), check
    (".env", False, "dotenv", ""),
    ("app/.env.local", False, "dotenv", ""),
    (".env.production", False, "dotenv", ""),
    (".env.example", False, "dotenv", "template"),
    ("web/.env.sample", False, "dotenv", "template"),
    (".ENV.Template", False, "dotenv", "template"),
    (".env.dist", False, "dotenv", "template"),
    (".env.defaults", False, "dotenv", "template"),
    (".env.tpl", False, "dotenv", "template"),
    (".envrc", False, "dotenv", "envrc"),
    ("environment.py", False, None, ""),
    ("id_rsa", False, "ssh-key", ""),
    ("keys/id_ed25519", False, "ssh-key", ""),
    ("id_ecdsa", False, "ssh-key", ""),
    ("id_dsa", False, "ssh-key", ""),
    ("id_ed25519_sk", False, "ssh-key", ""),
    ("id_ecdsa_sk", False, "ssh-key", ""),
    ("id_rsa.pub", False, None, ""),
    ("id_ed25519.pub", False, None, ""),
    ("server.pem", False, "private-key", "pem"),
    ("tls/Server.PEM", False, "private-key", "pem"),
    ("tls.key", False, "private-key", "key"),
    ("key.py", False, None, ""),
    ("monkey", False, None, ""),
    ("keys.json", False, None, ""),
    ("putty.ppk", False, "ssh-key", ""),
    ("cert.p12", False, "pkcs12", ""),
    ("cert.pfx", False, "pkcs12", ""),
    ("store.jks", False, "keystore", ""),
    ("release.keystore", False, "keystore", ""),
    ("vault.kdbx", False, "password-db", ""),
    (".netrc", False, "netrc", ""),
    ("_netrc", False, "netrc", ""),
    (".pgpass", False, "pgpass", ""),
    (".my.cnf", False, "mysql-password", "password"),
    (".s3cfg", False, "aws-credentials", ""),
    (".htpasswd", False, "htpasswd", ""),
    ("infra/terraform.tfstate", False, "terraform-state", ""),
    ("terraform.tfstate.backup", False, "terraform-state", ""),
    ("main.tf", False, None, ""),
    (".vault-token", False, "vault-token", ""),
    ("prod-service-account.json", False, "gcp-service-account", ""),
    ("my_service_account_key.json", False, "gcp-service-account", ""),
    ("service-account.yaml", False, None, ""),
    ("credentials.json", False, "credentials-file", ""),
    ("client_secret_123.apps.googleusercontent.com.json", False, "oauth-client-secret", ""),
    ("application_default_credentials.json", False, "gcloud-credentials", ""),
    (".git-credentials", False, "git-credentials", ""),
    (".npmrc", False, "npm-token", "npmrc"),
    (".pypirc", False, "pypi-token", "pypirc"),
    (".yarnrc.yml", False, "npm-token", "yarnrc"),
    ("kubeconfig", False, "kubeconfig", ""),
    ("prod.kubeconfig", False, "kubeconfig", ""),
    ("proj/.aws/credentials", False, "aws-credentials", ""),
    ("credentials", False, None, ""),
    (".aws/config", False, None, ""),
    (".kube/config", False, "kubeconfig", ""),
    ("config", False, None, ""),
    (".docker/config.json", False, "docker-auth", "docker"),
    ("config.json", False, None, ""),
    (".config/gh/hosts.yml", False, "github-token", "oauth"),
    ("hosts.yml", False, None, ""),
    (".config/hub", False, "github-token", "oauth"),
    (".git/config", False, "git-credentials", "url"),
    ("sub/.git/config", False, "git-credentials", "url"),
    (".cargo/credentials.toml", False, "cargo-token", ""),
    (".cargo/credentials", False, "cargo-token", ""),
    (".gem/credentials", False, "rubygems-token", ""),
    (".terraform.d/credentials.tfrc.json", False, "terraform-token", ""),
    (".config/gcloud/credentials.db", False, "gcloud-credentials", ""),
    (".config/gcloud/access_tokens.db", False, "gcloud-credentials", ""),
    (".azure", True, "azure-credentials", ""),
    (".gnupg", True, "gpg-keys", ""),
    (".azure", False, None, ""),
    ("src", True, None, ""),
    ("README.md", False, None, ""),
    # issue 11: names that slipped through
    ("prod.env", False, "dotenv", ""),
    ("deploy/staging.env", False, "dotenv", ""),
    ("example.env", False, "dotenv", "template"),
    ("sample.env", False, "dotenv", "template"),
    ("template.env", False, "dotenv", "template"),
    ("env.production", False, "dotenv", ""),
    ("env.prod", False, "dotenv", ""),
    ("env.staging", False, "dotenv", ""),
    ("env.development", False, "dotenv", ""),
    ("env.local", False, "dotenv", ""),
    ("env.py", False, None, ""),
    ("env.d.ts", False, None, ""),
    (".dev.vars", False, "dotenv", ""),
    ("app/.streamlit/secrets.toml", False, "app-secrets", ""),
    ("secrets.toml", False, "app-secrets", ""),
    ("config/secrets.yml", False, "app-secrets", ""),
    ("secrets.yaml", False, "app-secrets", ""),
    ("secrets.json", False, "app-secrets", ""),
    (".secrets", False, "app-secrets", ""),
    ("secrets.py", False, None, ""),
    ("prod.tfvars", False, "terraform-vars", ""),
    ("terraform.tfvars.json", False, "terraform-vars", ""),
    ("terraform.tfvars.example", False, None, ""),
    (".claude/.credentials.json", False, "agent-credentials", ""),
    (".codex/auth.json", False, "agent-credentials", ""),
    ("auth.json", False, None, ""),
    (".cache/huggingface/token", False, "huggingface-token", ""),
    (".cache/huggingface/stored_tokens", False, "huggingface-token", ""),
    (".huggingface/token", False, "huggingface-token", ""),
    ("token", False, None, ""),
    (".config/containers/auth.json", False, "docker-auth", ""),
    (".config/composer/auth.json", False, "composer-auth", ""),
    (".composer/auth.json", False, "composer-auth", ""),
    (".m2/settings-security.xml", False, "maven-master-password", ""),
    (".boto", False, "aws-credentials", ""),
    (".databrickscfg", False, "databricks-token", ""),
]


@pytest.mark.parametrize("relpath,is_dir,kind,check", NAMES)
def test_name_rules(relpath, is_dir, kind, check):
    match = classify_name(relpath, is_dir)
    if kind is None:
        assert match is None
    else:
        assert match is not None and (match.kind, match.check) == (kind, check)


def test_every_name_rule_has_a_case_above():
    tested = {classify_name(rel, d).pattern for rel, d, kind, _c in NAMES if kind}
    assert tested == {row[0] for row in secrets.NAME_RULES}


@pytest.mark.parametrize("parent", ["", "src", "proj/.aws", ".git", "gh"])
def test_bulk_matching_agrees_with_one_by_one(parent):
    names = [rel.rpartition("/")[2] for rel, is_dir, _k, _c in NAMES if not is_dir]
    names += ["x\n.env", "a\nb.pem", "plain.txt", "id_rsa.old", ".env"]
    expected = []
    for name in names:
        rule = classify_name(f"{parent}/{name}" if parent else name)
        if rule is not None:
            expected.append((name, rule))
    assert sorted(match_names(parent, names), key=repr) == sorted(expected, key=repr)
    assert match_names(parent, ["a.txt", "b.py", "credentials.py", "id_rsa.pub"]) == []


def test_deny_globs_follow_the_table():
    globs = secrets.deny_globs()
    assert len(globs) == len(secrets.NAME_RULES)
    assert "*.pem" in globs and "**/.aws/credentials" in globs and "**/.azure/**" in globs


# ----------------------------------------------------------------------------- content signatures


def _tokens():
    """kind -> list of texts that must be found (built at run time)."""
    return [
        ("private-key", pem("RSA ")),
        ("private-key", pem("OPENSSH ")),
        ("private-key", pem("EC ")),
        ("private-key", pem("ENCRYPTED ")),
        ("private-key", pem("")),
        ("private-key", "-----BEGIN PGP PRIVATE" + " KEY BLOCK-----\n\n" + pem("")[40:]),
        ("private-key", json.dumps({"type": "service_account", "private_key": pem("")})),
        ("private-key", "PuTTY-User-Key-File-" + "3: ssh-ed25519\nEncryption: none\n"),
        ("aws-access-key", "aws_access_key_id = " + "AKIA" + rand(16, UPPER)),
        ("aws-access-key", "AccessKeyId: " + "ASIA" + rand(16, UPPER)),
        ("aws-secret-key", "aws_secret_access_key = " + rand(40, B62 + "/+")),
        ("aws-secret-key", '"SecretAccessKey": "' + rand(40, B62 + "/+") + '"'),
        ("github-token", "token: " + "ghp_" + rand(36)),
        ("github-token", "gho_" + rand(36)),
        ("github-token", "x=ghu_" + rand(36)),
        ("github-token", "ghs_" + rand(36)),
        ("github-token", "ghr_" + rand(36)),
        ("github-token", "github_pat_" + rand(22) + "_" + rand(59)),
        ("gitlab-token", "glpat-" + rand(20)),
        ("slack-token", "xoxb-" + rand(12, "0123456789") + "-" + rand(13, "0123456789") + "-" + rand(24)),
        ("slack-token", "xoxp-" + rand(11, "0123456789") + "-" + rand(11, "0123456789") + "-" + rand(32)),
        ("slack-webhook", "https://hooks.slack.com/services/T" + rand(8, UPPER) + "/B" + rand(8, UPPER) + "/" + rand(24)),
        ("stripe-key", "sk_live_" + rand(24)),
        ("stripe-key", "rk_live_" + rand(99)),
        ("openai-key", "OPENAI_API_KEY=sk-proj-" + rand(80)),
        ("openai-key", "sk-svcacct-" + rand(60)),
        ("openai-key", "sk-" + rand(48)),
        ("anthropic-key", "ANTHROPIC_API_KEY=sk-ant-api03-" + rand(93) + "AA"),
        ("anthropic-key", "sk-ant-admin01-" + rand(93)),
        ("google-api-key", "key=AIza" + rand(35)),
        ("npm-token", "npm_" + rand(36)),
        ("pypi-token", "pypi-AgEIcHlwaS5vcmc" + rand(60)),
        ("huggingface-token", "hf_" + rand(34)),
        ("connection-string", "DATABASE_URL=postgres://app:" + rand(16) + "@db.example.internal:5432/app"),
        ("connection-string", "mongodb+srv://svc:" + rand(12) + "@cluster0.example.net/db"),
        ("connection-string", "url: redis://default:" + rand(20) + "@cache:6379/0"),
        ("connection-string", "index-url = https://me:" + rand(24) + "@pypi.example.com/simple"),
    ]


TOKENS = _tokens()


@pytest.mark.parametrize("kind,text", TOKENS, ids=[f"{k}-{i}" for i, (k, _t) in enumerate(TOKENS)])
def test_signature_found_redacted(kind, text):
    data = ("# header line\n\n" + text + "\n").encode()
    found = scan_text(data)
    assert [m.kind for m in found] == [kind]
    assert found[0].line == 3
    if kind == "private-key":  # the header is shown, never the key material
        assert found[0].preview.startswith(("-----BEGIN", "PuTTY-User-Key-File-"))
        assert not any(len(w) >= 40 for w in found[0].preview.split())
    else:
        secret_part = max(text.replace("=", " ").replace(":", " ").split(), key=len)
        assert secret_part not in found[0].preview and len(found[0].preview) <= 12


def test_every_signature_kind_is_tested():
    assert {row[0] for row in secrets.SIGNATURES} == {k for k, _t in TOKENS}


NOT_SECRETS = [
    "GITHUB_TOKEN=ghp_" + "x" * 36,  # placeholder
    "ghp_" + "ab" * 18,  # two characters
    "ghp_" + "0123456789" * 3 + "abcdef",  # a sequence
    "aws_access_key_id = " + "AKIA" + "IOSFODNN7" + "EXAMPLE",  # AWS's documented example
    "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    "OPENAI_API_KEY=sk-your-key-here",
    "token: ${GITHUB_TOKEN}",
    "key: <your-api-key>",
    "-----BEGIN RSA PRIVATE" + " KEY-----\n...\n-----END RSA PRIVATE" + " KEY-----",  # docs
    "-----BEGIN RSA PRIVATE" + " KEY-----\n" + "A" * 64 + "\n",  # no randomness
    "see the PRIVATE" + " KEY section",
    cert(),
    "xAKIA" + "Q" * 3 + rand(13, UPPER),  # inside a longer word
    "data:" + rand(30) + "AKIA" + rand(16, UPPER) + rand(10),  # inside a base64 run
    "ghp_" + rand(20),  # too short
    "sk_test_" + rand(24),  # Stripe test key
    "slack: xoxb-not-a-token",
    "password = hunter2",  # no signature for free-form passwords in contents
    "postgres://user:password@localhost:5432/app",  # example URL, not a signature
    "postgres://postgres:postgres@localhost/app",  # dev default: password = user name
    "mysql://root:root@127.0.0.1/app",
    "redis://:${REDIS_PASSWORD}@cache:6379",  # a reference
    "amqp://guest:guest@rabbit/",
    "https://user:<token>@example.com/x",
    "git@github.com:o/r.git",
    "https://example.com/a:b@c",  # `:` and `@` in the path, no user info
]


@pytest.mark.parametrize("text", NOT_SECRETS, ids=range(len(NOT_SECRETS)))
def test_not_a_secret(text):
    assert scan_text(text.encode()) == []


def test_scan_text_respects_end_and_counts_lines():
    token = "glpat-" + rand(20)
    data = bytearray(("a\nb\nc\n" + token + "\n").encode()) + bytearray(100)
    assert scan_text(data, 6) == []
    assert scan_text(data)[0].line == 4


@pytest.mark.parametrize("token,shown", [("short", "****"), ("ghp_" + "Q" * 12 + "wxyz", "ghp_****wxyz")])
def test_redact(token, shown):
    assert secrets.redact(token) == shown


# ----------------------------------------------------------------------------- named-file checks

CHECKS = [
    # check, contents, verdict ("secret" | "template" | None)
    ("template", "API_KEY=\nSECRET_KEY=<your secret>\nDEBUG=true\nPORT=3000\n", "template"),
    ("template", "# comment\nexport TOKEN=${TOKEN}\nPASSWORD=changeme\nDB=postgres://u:p@localhost/db\n", "template"),
    ("template", "STRIPE_KEY='sk_live_" + rand(24) + "'\n", "secret"),
    ("template", "SECRET_KEY=" + rand(40) + "\n", "secret"),
    ("template", "PUBLIC_URL=" + "https://example.org/" + rand(30) + "\n", "template"),
    ("pem", cert(), None),
    ("pem", cert() + pem(""), "secret"),
    ("pem", "", None),
    ("key", "PK\x03\x04keynote", None),
    ("key", pem("EC "), "secret"),
    ("npmrc", "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n", None),
    ("npmrc", "registry=https://registry.npmjs.org/\n", None),
    ("npmrc", "//registry.npmjs.org/:_authToken=npm_" + rand(36) + "\n", "secret"),
    ("pypirc", "[pypi]\nusername = __token__\n", None),
    ("pypirc", "[pypi]\nusername = __token__\npassword = pypi-" + rand(40) + "\n", "secret"),
    ("yarnrc", 'npmAuthToken: "${NPM_TOKEN}"\n', None),
    ("yarnrc", "npmAuthToken: " + rand(36) + "\n", "secret"),
    ("password", "[client]\nuser=me\n", None),
    ("password", "[client]\npassword=" + rand(12) + "\n", "secret"),
    ("oauth", "github.com:\n    user: me\n    git_protocol: https\n", None),
    ("oauth", "github.com:\n    oauth_token: gho_" + rand(36) + "\n", "secret"),
    ("docker", '{"credsStore": "desktop", "auths": {"ghcr.io": {}}}', None),
    ("docker", '{"auths": {"https://index.docker.io/v1/": {"auth": "' + rand(24) + '"}}}', "secret"),
    ("url", '[remote "origin"]\n\turl = https://github.com/o/r.git\n', None),
    ("url", '[remote "origin"]\n\turl = git@github.com:o/r.git\n', None),
    ("url", '[remote "origin"]\n\turl = https://me:' + rand(30) + "@github.com/o/r.git\n", "secret"),
    ("url", '[remote "origin"]\n\turl = https://ghp_' + rand(36) + "@github.com/o/r.git\n", "secret"),
    ("envrc", "use flake\nlayout python3\n", None),
    ("envrc", "export API_TOKEN=$(pass show api)\nexport PASSWORD=\n", None),
    ("envrc", "export DB_PASSWORD=" + rand(12) + "\n", "secret"),
    ("envrc", "dotenv\nexport STRIPE=sk_live_" + rand(24) + "\n", "secret"),
]


@pytest.mark.parametrize("check,text,verdict", CHECKS, ids=[f"{c}-{i}" for i, (c, _t, _v) in enumerate(CHECKS)])
def test_named_checks(check, text, verdict):
    result = check_named(check, text.encode())
    assert (result[0] if result else None) == verdict
    if result:
        for word in text.replace("=", " ").replace('"', " ").replace(":", " ").split():
            if len(word) >= 20:
                assert word not in result[1]


def test_every_check_is_tested():
    assert {row[2] for row in secrets.NAME_RULES if row[2]} == {c for c, _t, _v in CHECKS}


# ----------------------------------------------------------------------------- the walk


def write(path, text, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    if mode is not None:
        os.chmod(path, mode)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
def tree(tmp_path, cache_home):
    root = tmp_path / "proj"
    gh = "ghp_" + rand(36)
    files = {
        ".env": "DB_PASSWORD=" + rand(20) + "\n",
        ".env.example": "API_KEY=\nSECRET=<secret>\n",
        ".gitignore": "ignored/\nnode_modules/\n",
        "ignored/deep/er/id_ed25519": pem("OPENSSH "),
        "node_modules/pkg/config.js": "module.exports = {token: '" + gh + "'}\n",
        "src/app.py": "print('hello')\n",
        "src/cacert.pem": cert(),
        ".git/config": '[remote "origin"]\n\turl = https://github.com/o/r\n',
        ".git/objects/ab/id_rsa": pem(),
        "bin/blob.bin": b"\x00\x01" + ("ghp_" + rand(36)).encode(),
        ".azure/accessTokens.json": "[]",
    }
    for rel, text in files.items():
        write(str(root / rel), text)
    return root, gh


def kinds(result):
    return sorted((os.path.relpath(f.path, result.root), f.kind, f.source) for f in result.findings)


def test_scan_tree_finds_hidden_ignored_and_deep_files(tree):
    root, gh = tree
    result = secretscan.scan_tree(str(root))
    assert kinds(result) == [
        (".azure", "azure-credentials", "name"),
        (".env", "dotenv", "name"),
        (".env.example", "template", "template"),
        ("ignored/deep/er/id_ed25519", "ssh-key", "name"),
        ("node_modules/pkg/config.js", "github-token", "content"),
    ]
    assert [f.path for f in result.secrets] == [f.path for f in result.findings if f.kind != "template"]
    assert gh not in repr(result)


def test_names_only_skips_contents(tree):
    root, _gh = tree
    assert "github-token" not in {f.kind for f in secretscan.scan_tree(str(root), content=False).findings}


def test_git_config_with_token_url_is_a_secret(tree):
    root, _gh = tree
    write(str(root / ".git/config"), '[remote "o"]\n\turl = https://x:' + rand(30) + "@github.com/o/r\n")
    found = {os.path.relpath(f.path, root): f for f in secretscan.scan_tree(str(root)).findings}
    assert found[".git/config"].kind == "git-credentials"


def test_symlinks_are_not_followed_out_of_the_tree(tree, tmp_path):
    root, _gh = tree
    outside = tmp_path / "outside"
    write(str(outside / ".env"), "X=1\n")
    write(str(outside / "notes.txt"), "glpat-" + rand(20) + "\n")
    os.symlink(outside, root / "linked-dir")
    os.symlink(outside / ".env", root / "src" / ".env")  # secret-named link: reported with its target
    os.symlink(outside / "notes.txt", root / "notes.txt")  # not followed for contents
    result = secretscan.scan_tree(str(root))
    paths = {os.path.relpath(f.path, root): f for f in result.findings}
    assert "linked-dir/.env" not in paths and "notes.txt" not in paths
    assert paths["src/.env"].target == str(outside / ".env")
    deny = secretscan.paths_to_deny(str(root), str(tmp_path / "nohome"))
    assert str(outside / ".env") in deny and str(root / "src" / ".env") in deny


def test_special_files_do_not_block(tree):
    root, _gh = tree
    os.mkfifo(root / "src" / "pipe.txt")
    os.mkfifo(root / ".npmrc")  # a checked name, opened non-blocking
    t0 = time.monotonic()
    secretscan.scan_tree(str(root))
    assert time.monotonic() - t0 < 10


def test_large_files_are_skipped(tree):
    root, _gh = tree
    write(str(root / "big.txt"), "x" * 2000 + "\nglpat-" + rand(20) + "\n")
    assert "gitlab-token" in {f.kind for f in secretscan.scan_tree(str(root), cache=False).findings}
    small = secretscan.scan_tree(str(root), cache=False, max_bytes=1000)
    assert "gitlab-token" not in {f.kind for f in small.findings} and small.skipped_large >= 1


def test_entry_limit_fails_closed(tree):
    from corral.errors import SetupError

    root, _gh = tree
    with pytest.raises(SetupError):
        secretscan.scan_tree(str(root), max_entries=3)


# ----------------------------------------------------------------------------- the cache


@pytest.fixture
def no_racy(monkeypatch):
    """Cache files however recently they changed, so tests can exercise the stat check."""
    monkeypatch.setattr(secretscan, "RACY_NS", 0)


def cache_doc(root):
    import marshal

    with open(secretscan.cache_path(os.path.realpath(root)), "rb") as f:
        data = f.read()
    assert data.startswith(secretscan._CACHE_MAGIC)
    return marshal.loads(data[len(secretscan._CACHE_MAGIC):])


def write_cache_doc(root, doc):
    import marshal

    with open(secretscan.cache_path(os.path.realpath(root)), "wb") as f:
        f.write(secretscan._CACHE_MAGIC + marshal.dumps(doc))


def test_warm_scan_reads_nothing(tree, no_racy):
    root, _gh = tree
    first = secretscan.scan_tree(str(root))
    assert first.files_read > 3
    second = secretscan.scan_tree(str(root))
    assert second.files_read == 1  # only the file with a finding, re-read for its details
    assert kinds(second) == kinds(first)


def test_edit_hidden_by_setting_mtime_back_is_seen(tree, no_racy):
    root, _gh = tree
    path = str(root / "src" / "app.py")
    write(path, "x = '" + "a" * 26 + "'\n")
    st = os.stat(path)
    secretscan.scan_tree(str(root))
    time.sleep(0.05)  # the next write gets a later ctime
    write(path, "x = '" + "glpat-" + rand(20) + "'\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(path)
    assert (st2.st_size, st2.st_mtime_ns, st2.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert "gitlab-token" in {f.kind for f in secretscan.scan_tree(str(root)).findings}


def test_new_file_found_and_deleted_file_dropped(tree, no_racy):
    root, _gh = tree
    secretscan.scan_tree(str(root))
    write(str(root / "src" / "new.py"), "k = 'sk_live_" + rand(30) + "'\n")
    assert "stripe-key" in {f.kind for f in secretscan.scan_tree(str(root)).findings}
    os.unlink(root / "src" / "new.py")
    os.unlink(root / "src" / "app.py")
    assert "stripe-key" not in {f.kind for f in secretscan.scan_tree(str(root)).findings}
    files = cache_doc(root)["files"]
    assert "src/new.py" not in files and "src/app.py" not in files and "node_modules/pkg/config.js" in files


def test_corrupt_cache_is_ignored_and_rebuilt(tree, no_racy):
    root, _gh = tree
    expected = kinds(secretscan.scan_tree(str(root)))
    path = secretscan.cache_path(os.path.realpath(root))
    import marshal

    magic = secretscan._CACHE_MAGIC
    for garbage in (b"\x00not a cache", magic + b"\x00truncated", magic + marshal.dumps([1, 2]),
                    magic + marshal.dumps({"root": os.path.realpath(root), "tag": "x", "files": 3}),
                    json.dumps({"root": os.path.realpath(root), "tag": "x", "files": {}}).encode()):
        with open(path, "wb") as f:
            f.write(garbage)
        assert kinds(secretscan.scan_tree(str(root))) == expected
        assert isinstance(cache_doc(root)["files"], dict)


def test_cache_entry_of_wrong_shape_is_rescanned(tree, no_racy):
    root, _gh = tree
    secretscan.scan_tree(str(root))
    doc = cache_doc(root)
    doc["files"]["node_modules/pkg/config.js"][4] = False  # claims "clean" with a wrong type
    doc["files"]["src/app.py"] = "junk"
    write_cache_doc(root, doc)
    assert "github-token" in {f.kind for f in secretscan.scan_tree(str(root)).findings}


def test_cache_is_private_and_holds_no_secret(tree, no_racy):
    root, gh = tree
    secretscan.scan_tree(str(root))
    path = secretscan.cache_path(os.path.realpath(root))
    for p in (path, path[: -len(".cache")] + ".secrets.cache"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        with open(p, "rb") as f:
            data = f.read()
        assert gh.encode() not in data and gh[4:12].encode() not in data
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert cache_doc(root)["files"]["node_modules/pkg/config.js"][4] == ["github-token"]


def test_recently_changed_files_are_not_cached(tree):
    root, _gh = tree  # written just now: inside the racy window
    secretscan.scan_tree(str(root))
    assert "src/app.py" not in cache_doc(root)["files"]
    assert secretscan.scan_tree(str(root)).files_read > 3


def test_no_cache_leaves_no_file(tree, cache_home):
    root, _gh = tree
    secretscan.scan_tree(str(root), cache=False)
    assert not cache_home.exists()


# ----------------------------------------------------------------------------- automatic denial


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    write(str(h / ".aws/credentials"), "[default]\n")
    write(str(h / ".ssh/id_ed25519"), pem("OPENSSH "))
    write(str(h / ".ssh/id_ed25519.pub"), "ssh-ed25519 AAAA me\n")
    write(str(h / ".ssh/known_hosts"), "host key\n")
    write(str(h / ".npmrc"), "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n")
    write(str(h / ".config/gh/hosts.yml"), "github.com:\n    oauth_token: gho_" + rand(36) + "\n")
    os.makedirs(h / ".azure")
    return h


def test_home_findings(home):
    found = {os.path.relpath(f.path, home): f.kind for f in secretscan.home_findings(str(home))}
    assert found == {
        ".aws/credentials": "aws-credentials",
        ".ssh/id_ed25519": "ssh-key",
        ".config/gh/hosts.yml": "github-token",
        ".azure": "azure-credentials",
    }


def test_paths_to_deny(tree, home, no_racy):
    root, _gh = tree
    real = os.path.realpath(root)
    names = secretscan.paths_to_deny(str(root), str(home))
    assert f"{real}/.env" in names and f"{real}/.env.example" not in names
    assert f"{real}/ignored/deep/er/id_ed25519" in names and f"{home}/.aws/credentials" in names
    assert f"{real}/node_modules/pkg/config.js" not in names  # contents: not scanned yet
    # per-run "full" reads contents everywhere but in dependency directories such as node_modules
    assert f"{real}/node_modules/pkg/config.js" not in secretscan.paths_to_deny(str(root), str(home), content="full")
    secretscan.scan_tree(str(root))  # what `corral scan` (or a background refresh) records
    assert f"{real}/node_modules/pkg/config.js" in secretscan.paths_to_deny(str(root), str(home))
    assert f"{real}/node_modules/pkg/config.js" in secretscan.paths_to_deny(str(root), str(home), content="full")
    os.unlink(f"{real}/node_modules/pkg/config.js")
    assert f"{real}/node_modules/pkg/config.js" not in secretscan.paths_to_deny(str(root), str(home))
    assert f"{real}/.env" in secretscan.paths_to_deny(str(root), str(home), content="off")


# ----------------------------------------------------------------------------- corral scan


def corral_scan(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "corral", "scan", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_status_and_table(tree):
    root, gh = tree
    p = corral_scan(str(root))
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["KIND", "SOURCE", "PATH", "WHY"]
    assert any(line.split()[:3] == ["github-token", "content", "node_modules/pkg/config.js"] for line in lines)
    template = [line for line in lines if ".env.example" in line]
    assert template and template[0].startswith("template") and "not a secret" in template[0]
    assert lines[-1].startswith("4 secrets, 1 template in ")
    assert gh not in p.stdout + p.stderr


def test_cli_json(tree):
    root, gh = tree
    p = corral_scan(str(root), "--json")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["root"] == os.path.realpath(root) and doc["files"] >= 9 and doc["seconds"] >= 0
    by_path = {f["path"]: f for f in doc["findings"]}
    assert by_path[".env.example"]["kind"] == "template" and by_path[".env.example"]["secret"] is False
    assert by_path["node_modules/pkg/config.js"]["details"].startswith("line 1: ghp_****")
    assert gh not in p.stdout


def test_cli_templates_alone_exit_0(tmp_path, cache_home):
    write(str(tmp_path / "p" / ".env.example"), "TOKEN=\n")
    write(str(tmp_path / "p" / "README.md"), "hello\n")
    p = corral_scan(str(tmp_path / "p"))
    assert p.returncode == 0 and "0 secrets, 1 template" in p.stdout
    write(str(tmp_path / "q" / "a.txt"), "hello\n")
    assert corral_scan(str(tmp_path / "q")).returncode == 0


def test_cli_no_content_and_files(tree):
    root, _gh = tree
    p = corral_scan("--no-content", "--json", str(root))
    assert "github-token" not in {f["kind"] for f in json.loads(p.stdout)["findings"]}
    # pre-commit passes file names
    p = corral_scan("src/app.py", "node_modules/pkg/config.js", cwd=str(root))
    assert p.returncode == 1 and "node_modules/pkg/config.js" in p.stdout
    assert corral_scan("src/app.py", ".env.example", cwd=str(root)).returncode == 0


def test_cli_home(tree, home):
    root, _gh = tree
    env = dict(os.environ, HOME=str(home))
    p = corral_scan("--home", "--json", str(root / "src"), env=env)
    paths = {f["path"] for f in json.loads(p.stdout)["findings"]}
    assert {"~/.aws/credentials", "~/.ssh/id_ed25519"} <= paths and p.returncode == 1
    assert corral_scan(str(root / "src"), env=env).returncode == 0


@pytest.mark.parametrize("args", [["--bogus"], ["/nonexistent/corral-test"], ["-x"]])
def test_cli_usage_errors(args, cache_home):
    p = corral_scan(*args)
    assert p.returncode == 2
    assert p.stderr.startswith("corral: ") and "Traceback" not in p.stderr


def test_cli_help():
    p = corral_scan("--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: corral scan")


def test_cli_escapes_control_characters_in_names(tmp_path, cache_home):
    write(str(tmp_path / "p" / "x\nfake-row.pem"), pem(""))
    p = corral_scan(str(tmp_path / "p"))
    assert p.returncode == 1
    assert "x\\nfake-row.pem" in p.stdout and len(p.stdout.splitlines()) == 3


def test_classify_name_without_regex_agrees_with_the_regex():
    # classify_name walks the rules with a small glob matcher (no regex compile at start-up);
    # it must pick exactly the rule the one-regex alternation picks.
    names = [p.replace("*", fill) for p, *_ in secrets.NAME_RULES for fill in ("", "x", "a.b-c", "*")]
    names += ["id_rsa.pub", ".env", ".ENV.local", "notes.txt", "a-service-account.json", "x.pem", "key"]
    for name in names:
        base = name.rstrip("/").rpartition("/")[2]
        m = secrets._name_regex().match(base)
        expected = secrets._BASE_RULES[int(m.lastgroup[1:])][1] if m else None
        got = None
        for pattern, match in secrets._LOWER_RULES:
            if secrets._glob(pattern, base.lower()):
                got = match
                break
        assert got == expected, name


def test_hard_links_of_a_secret_are_findings(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".env").write_text("PASSWORD=hunter2hunter2\n")
    os.link(tmp_path / ".env", tmp_path / "sub" / "copy.txt")
    (tmp_path / "free.txt").write_text("x\n")
    os.link(tmp_path / "free.txt", tmp_path / "free-link.txt")  # a link to nothing secret
    result = secretscan.scan_tree(str(tmp_path), cache=False)
    by_path = {os.path.relpath(f.path, os.path.realpath(tmp_path)): f.kind for f in result.findings}
    assert by_path == {".env": "dotenv", "sub/copy.txt": "hard-link"}
