"""Persistence outside the project and credential files (issue 11, point 5).

Launched from HOME, a command must not plant what the user's next login, shell, editor or
tool start runs (`~/.local/bin`, `~/.config/systemd`, `~/.ssh/authorized_keys`, corral's own
policy, directories on the launcher's PATH), nor read the agents' and tools' credential files;
registry config files are shown with their token values withheld. Every test gets a private
HOME (never the launcher's real one); fake tokens are built at run time.
"""

from __future__ import annotations

import os
import random
import shlex
from pathlib import Path

import pytest

import helpers
from corral.policy.defaults import credential_paths
from corral.policy.model import LaunchContext
from corral.sandbox.plan import path_dirs
from corral.workspace import protected, secrets

R = random.Random(20250611)
B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def rand(n: int) -> str:
    return "".join(R.choice(B62) for _ in range(n))


def private_home(ws: helpers.Workspace) -> Path:
    home = ws.base / "home"
    home.mkdir()
    for d in (".config", ".local", ".local/share"):
        (home / d).mkdir()
    ws.chown()
    return home


def run_in(ws: helpers.Workspace, cwd: Path, home: Path, script: str, *opts, path: str = ""):
    env = {"HOME": str(home), "PATH": path or "/usr/local/bin:/usr/bin:/bin"}
    return helpers.run(ws.launcher, ["run", *opts, "-c", script], cwd, env_extra=env)


def attempts(*cmds: str) -> str:
    """A script that tries each command and prints `ok: CMD` or `refused: CMD`."""
    return "\n".join(f"if ( {c} ) 2>/dev/null; then echo {shlex.quote('ok: ' + c)}; "
                     f"else echo {shlex.quote('refused: ' + c)}; fi" for c in cmds)


# ----------------------------------------------------------------------------- pure parts

def test_home_entries_are_relative_to_home_and_xdg_dirs():
    entries = {p: (kind, base, rule) for p, kind, base, rule in
               protected.home_entries("/home/u", {"XDG_CONFIG_HOME": "/cfg", "XDG_DATA_HOME": "/home/u/.local/share"})}
    assert entries["/home/u/.local/bin"] == ("dir", "/home/u", "~/.local/bin")
    assert entries["/home/u/.config/systemd"][0] == "dir"
    assert entries["/cfg/systemd"] == ("dir", "/cfg", "~/.config/systemd")  # the XDG place too
    assert entries["/cfg/corral"][2] == "~/.config/corral"
    assert entries["/home/u/.ssh/authorized_keys"][0] == "file"
    assert entries["/var/spool/cron"] == ("dir", "", "/var/spool/cron")  # absolute: no placeholder
    # home-relative names are not matched by name anywhere else: `bin` in a project is its own
    assert not protected.classify("proj", "bin", True)
    assert not protected.classify_entry("/w/proj/.local", "bin", True, False)
    assert ("~", ".local/bin") not in protected.NESTED


@pytest.mark.parametrize("existing, path, kind, expected", [
    ({"/h", "/h/.config"}, "/h/.config/systemd", "dir", ("/h/.config/systemd", "dir")),
    ({"/h"}, "/h/.config/systemd", "dir", ("/h/.config", "dir")),  # first missing component
    ({"/h", "/h/.ssh"}, "/h/.ssh/authorized_keys", "file", ("/h/.ssh/authorized_keys", "file")),
    ({"/h"}, "/h/.ssh/authorized_keys", "file", ("/h/.ssh", "dir")),
    ({"/h", "/h/.config", "/h/.config/systemd"}, "/h/.config/systemd", "dir", None),  # exists
    (set(), "/h/.local/bin", "dir", None),  # HOME itself missing
])
def test_first_missing_component_gets_the_placeholder(existing, path, kind, expected):
    files = {"/h/.bashrc"}
    kind_of = lambda p: "dir" if p in existing else "file" if p in files else None  # noqa: E731
    assert protected.first_missing(path, "/h", kind, kind_of) == expected


def test_first_missing_stops_at_a_file_on_the_way():
    assert protected.first_missing("/h/.ssh/config", "/h", "file", {"/h": "dir", "/h/.ssh": "file"}.get) is None


@pytest.mark.parametrize("path_var, cwd, expected", [
    # project-local entries are the project's own; relative ones too
    ("/w/proj/node_modules/.bin:/h/.cargo/bin:.::/usr/bin", "/w/proj", ["/h/.cargo/bin", "/usr/bin"]),
    # launched from HOME, nothing in it is "the project's own"
    ("/h/.local/bin:/h/proj/.venv/bin", "/h", ["/h/.local/bin", "/h/proj/.venv/bin"]),
    ("/h/.local/bin:/h/.local/bin", "/", ["/h/.local/bin"]),
])
def test_path_dirs_outside_the_project(path_var, cwd, expected):
    assert path_dirs(path_var, cwd, "/h", real=lambda p: p) == expected


def test_credential_paths_cover_agents_tools_and_kerberos():
    ctx = LaunchContext(cwd="/w", home="/h", uid=1000, gid=1000)
    env = {"KRB5CCNAME": "FILE:/run/user/1000/krb5cc", "HF_HOME": "/data/hf", "KUBECONFIG": "/a/k:/b/k",
           "XDG_RUNTIME_DIR": "/run/user/1000"}
    paths = set(credential_paths(ctx, env, ["krb5cc_1000", "krb5cc_0_XYZ", "other"]))
    for rel in (".claude/.credentials.json", ".codex/auth.json", ".config/github-copilot", ".config/gh",
                ".config/glab-cli", ".cache/huggingface/token", ".huggingface/token", ".docker/config.json",
                ".config/containers/auth.json", ".m2/settings.xml", ".gradle/gradle.properties",
                ".cargo/credentials.toml", ".composer/auth.json", ".config/composer/auth.json", ".bundle/config",
                ".gem/credentials", ".config/gcloud", ".azure", ".aws", ".oci", ".config/doctl",
                ".terraform.d/credentials.tfrc.json", ".vault-token", ".pgpass", ".my.cnf", ".npmrc"):
        assert f"/h/{rel}" in paths, rel
    assert {"/run/user/1000/krb5cc", "/data/hf/token", "/a/k", "/b/k", "/run/user/1000/containers/auth.json",
            "/tmp/krb5cc_1000", "/tmp/krb5cc_0_XYZ"} <= paths
    assert "/tmp/other" not in paths


NPM_TOKEN = "npm_" + rand(36)
MASKS = [
    # path, text, must show, must not show
    ("/h/.npmrc", f"registry=https://registry.example/\n@acme:registry=https://npm.acme.example/\n"
                  f"//npm.acme.example/:_authToken={NPM_TOKEN}\nalways-auth=true\n",
     ["registry=https://registry.example/", "@acme:registry=", "_authToken=corral-withheld", "always-auth=true"],
     [NPM_TOKEN]),
    ("/h/.npmrc", "//r.example/:_auth = dXNlcjpwYXNzd29yZA==\n//r.example/:_password=aHVudGVyMg==\n",
     ["_auth = corral-withheld", "_password=corral-withheld"], ["dXNlcjpwYXNzd29yZA", "aHVudGVyMg"]),
    ("/h/.pypirc", "[distutils]\nindex-servers = pypi\n[pypi]\nusername = __token__\npassword = pypi-" + rand(60) + "\n",
     ["index-servers = pypi", "username = __token__", "password = corral-withheld"], ["pypi-"]),
    ("/h/.yarnrc.yml", f'npmRegistryServer: "https://r.example"\nnpmAuthToken: {NPM_TOKEN}\n',
     ['npmRegistryServer: "https://r.example"', "npmAuthToken: corral-withheld"], [NPM_TOKEN]),
    ("/h/.m2/settings.xml", "<settings><servers><server><id>corp</id><username>me</username>"
                            "<password>{" + rand(20) + "}</password></server></servers>"
                            "<mirrors><mirror><url>https://me:" + rand(16) + "@mvn.example/</url></mirror></mirrors></settings>",
     ["<id>corp</id>", "<password>corral-withheld</password>", "https://me:corral-withheld@mvn.example/"], []),
    ("/h/.gradle/gradle.properties", "org.gradle.jvmargs=-Xmx2g\nmavenPassword=" + rand(20) + "\nsigning.password=x1\n",
     ["org.gradle.jvmargs=-Xmx2g", "mavenPassword=corral-withheld", "signing.password=corral-withheld"], []),
    ("/h/.bundle/config", '---\nBUNDLE_PATH: "vendor"\nBUNDLE_GEMS__EXAMPLE__COM: "me:' + rand(20) + '"\n',
     ['BUNDLE_PATH: "vendor"', "BUNDLE_GEMS__EXAMPLE__COM: corral-withheld"], []),
    ("/h/.docker/config.json", '{"auths": {"ghcr.io": {"auth": "' + rand(24) + '"}}, "credsStore": "pass"}',
     ['"credsStore": "pass"', '"auth": "corral-withheld"'], []),
]


@pytest.mark.parametrize("path, text, shown, hidden", MASKS, ids=[f"{m[0].rsplit('/', 1)[1]}-{i}" for i, m in enumerate(MASKS)])
def test_mask_lines_withholds_values_and_keeps_the_rest(path, text, shown, hidden):
    out = secrets.mask_lines(path, text)
    assert out is not None
    for s in shown:
        assert s in out
    for s in hidden:
        assert s not in out
    assert out.count("\n") == text.count("\n")  # line by line: nothing added or dropped
    assert secrets.scan_text(out.encode()) == []


def test_mask_lines_refuses_when_a_token_would_still_show():
    # a token in a line no rule covers (a comment): the file stays denied whole
    assert secrets.mask_lines("/h/.npmrc", "registry=https://r.example/\n# old: ghp_" + rand(36) + "\n") is None
    assert secrets.mask_lines("/h/.netrc", "machine x login me password p\n") is None  # no rule: denied whole
    assert secrets.mask_lines("/w/settings.xml", "<password>x</password>") is None  # only ~/.m2/settings.xml


# ----------------------------------------------------------------------------- sandboxed runs

def test_launched_from_home_autostart_path_and_ssh_files_cannot_be_planted(launcher, ws):
    home = private_home(ws)
    ws.write(home / ".cargo/bin/cargo", "#!/bin/sh\necho real cargo\n", mode=0o755)
    script = attempts(
        "mkdir -p .local/bin && echo evil > .local/bin/x",
        "mkdir -p .config/systemd/user && echo '[Service]' > .config/systemd/user/x.service",
        "mkdir -p .ssh && echo 'ssh-ed25519 AAAA evil' >> .ssh/authorized_keys",
        "mkdir -p .config/corral && echo 'x = 1' > .config/corral/policy.toml",
        "mkdir -p .config/autostart && echo evil > .config/autostart/x.desktop",
        "echo 'alias ls=evil' > .bash_aliases",
        "mkdir -p .config/git && printf '[core]\\n\\tpager = evil\\n' > .config/git/config",
        "mkdir -p .local/lib/python3.11/site-packages && echo 'import os' > .local/lib/python3.11/site-packages/x.pth",
        "echo evil > .cargo/bin/cargo",
        "echo evil > .cargo/bin/rustc",
        "mv .config .config-moved",
        "echo fine > notes.txt",  # the control: HOME itself is writable
    )
    r = run_in(ws, home, home, script, path=f"{home}/.cargo/bin:/usr/bin:/bin")
    assert "ok: echo fine > notes.txt" in r.stdout, (r.stdout, r.stderr)
    assert (home / "notes.txt").read_text() == "fine\n"
    for line in r.stdout.splitlines():
        if "notes.txt" not in line:
            assert line.startswith("refused: "), (line, r.stderr)
    for rel in (".local/bin", ".config/systemd", ".ssh", ".config/corral", ".config/autostart", ".bash_aliases",
                ".config/git", ".local/lib", ".cargo/bin/rustc", ".config-moved"):
        assert not os.path.lexists(home / rel), rel  # placeholders gone, nothing planted
    assert (home / ".cargo/bin/cargo").read_text() == "#!/bin/sh\necho real cargo\n"
    assert "corral: the working directory is your home directory" in r.stderr
    assert "run it from a project directory" in r.stderr
    # ~/.ssh was missing: blocked whole for the run, and named with the fix
    assert "~/.ssh" in r.stderr and "not exist: kept from being created" in r.stderr, r.stderr
    assert helpers.quarantined(r.stderr) == {}


def test_existing_start_up_files_in_home_are_read_only(launcher, ws):
    home = private_home(ws)
    files = {".config/git/config": "[user]\n\tname = me\n", ".config/corral/policy.toml": "# mine\n",
             ".ssh/authorized_keys": "ssh-ed25519 AAAA me\n", ".local/bin/tool": "#!/bin/sh\n",
             ".config/systemd/user/a.service": "[Service]\n", ".bash_aliases": "alias ll='ls -l'\n",
             ".vimrc": "set nu\n"}
    for rel, text in files.items():
        ws.write(home / rel, text)
    script = attempts(*(f"echo evil >> {rel}" for rel in files), *(f"rm -f {rel}" for rel in files),
                      "echo evil > .local/bin/new", "echo fine > notes.txt")
    # credentials off: `.ssh` is then not hidden whole, and its authorized_keys must hold anyway
    policy = ws.write(ws.base / "policy.toml", "[filesystem]\ndeny_credentials = false\n")
    r = run_in(ws, home, home, script, "--settings", str(policy))
    assert "ok: echo fine > notes.txt" in r.stdout, (r.stdout, r.stderr)
    assert sum(line.startswith("refused: ") for line in r.stdout.splitlines()) == 2 * len(files) + 1, r.stdout
    for rel, text in files.items():
        assert (home / rel).read_text() == text, rel
    assert not (home / ".local/bin/new").exists()


def test_writable_home_from_a_project_warns_and_protects_path_dirs(launcher, ws):
    home = private_home(ws)
    ws.write(home / "go/bin/tool", "#!/bin/sh\n", mode=0o755)
    script = attempts("echo evil > ~/go/bin/tool", "echo evil > ~/go/bin/new", "echo fine > ~/notes.txt",
                      "mkdir -p node_modules/.bin && echo mine > node_modules/.bin/x")
    r = run_in(ws, ws.proj, home, script, "--allow-write", str(home),
               path=f"{ws.proj}/node_modules/.bin:{home}/go/bin:/usr/bin:/bin")
    assert "ok: echo fine > ~/notes.txt" in r.stdout, (r.stdout, r.stderr)
    assert "refused: echo evil > ~/go/bin/tool" in r.stdout and "refused: echo evil > ~/go/bin/new" in r.stdout
    # a PATH directory inside the project is the project's own
    assert "ok: mkdir -p node_modules/.bin && echo mine > node_modules/.bin/x" in r.stdout
    assert (home / "go/bin/tool").read_text() == "#!/bin/sh\n" and not (home / "go/bin/new").exists()
    assert "corral: your home directory is writable" in r.stderr


def test_project_workspace_gives_no_home_warning(launcher, ws):
    home = private_home(ws)
    r = run_in(ws, ws.proj, home, "true")
    assert r.returncode == 0, r.stderr
    assert "home directory" not in r.stderr
    assert not os.path.lexists(home / ".local/bin")  # nothing placed in a HOME that is not writable


def test_agent_and_tool_credential_files_are_unreadable(launcher, ws):
    home = private_home(ws)
    mark = helpers.marker()
    rels = [".claude/.credentials.json", ".codex/auth.json", ".config/github-copilot/apps.json",
            ".config/gh/hosts.yml", ".config/glab-cli/config.yml", ".cache/huggingface/token", ".huggingface/token",
            ".docker/config.json", ".config/containers/auth.json", ".m2/settings-security.xml",
            ".cargo/credentials.toml", ".composer/auth.json", ".config/composer/auth.json", ".gem/credentials",
            ".aws/credentials", ".config/gcloud/credentials.db", ".azure/msal_token_cache.json", ".oci/config",
            ".config/doctl/config.yaml", ".terraform.d/credentials.tfrc.json", ".vault-token", ".pgpass", ".netrc"]
    for rel in rels:
        ws.write(home / rel, f"{mark}\n")
    # shown masked (its other settings are readable), the login withheld
    ws.write(home / ".docker/config.json", '{"auths": {"ghcr.io": {"auth": "%s"}}}' % mark)
    krb = Path(f"/tmp/krb5cc_{launcher.uid}_ct{rand(6)}")
    krb.write_text(f"{mark}\n")
    krb.chmod(0o644)
    try:
        os.chown(krb, launcher.uid, launcher.gid) if os.geteuid() == 0 else None
        paths = " ".join(shlex.quote(str(home / r)) for r in rels) + f" {krb}"
        r = run_in(ws, ws.proj, home, f"for f in {paths}; do cat \"$f\" 2>/dev/null && echo \"^ $f\"; done; echo done; "
                                      f"cat {ws.proj}/README.txt")
    finally:
        krb.unlink()
    assert "done" in r.stdout and "readme" in r.stdout, r.stderr  # the control: the loop ran
    assert mark not in r.stdout


def test_npmrc_shows_the_registry_but_not_the_token(launcher, ws):
    home = private_home(ws)
    token = "npm_" + rand(36)
    ws.write(home / ".npmrc", f"registry=https://registry.example/\n//registry.example/:_authToken={token}\n")
    ws.write(home / ".pypirc", f"[pypi]\nusername = __token__\npassword = {token}\n")
    r = run_in(ws, ws.proj, home, "cat ~/.npmrc ~/.pypirc; echo x >> ~/.npmrc || echo refused")
    assert "registry=https://registry.example/" in r.stdout, (r.stdout, r.stderr)
    assert "//registry.example/:_authToken=corral-withheld" in r.stdout
    assert "username = __token__" in r.stdout and "password = corral-withheld" in r.stdout
    assert "refused" in r.stdout
    assert token not in r.stdout
    assert token in (home / ".npmrc").read_text()  # the host's file is untouched


def test_hard_linked_npmrc_is_denied_whole(launcher, ws):
    """Masking shows what a file holds minus its token lines: a second name of another
    credential file must not be shown that way."""
    home = private_home(ws)
    mark = helpers.marker()
    ws.write(home / ".aws/credentials", f"[default]\nregion = {mark}\n")
    os.link(home / ".aws/credentials", home / ".npmrc")
    r = run_in(ws, ws.proj, home, "cat ~/.npmrc; echo done")
    assert "done" in r.stdout, r.stderr
    assert mark not in r.stdout


def test_new_workspace_secret_names_and_connection_strings_are_denied(launcher, ws):
    mark = helpers.marker()
    rels = ["prod.env", "deploy/staging.env", "env.production", ".dev.vars", ".streamlit/secrets.toml",
            "infra/prod.tfvars", "infra/x.tfvars.json", "config/secrets.yml"]
    for rel in rels:
        ws.write(rel, f"KEY={mark}\n")
    ws.write(".envrc", f"export DB_PASSWORD={mark}\n")
    ws.write("config/database.yml", f"url: postgres://app:{rand(18)}@db.internal:5432/{mark}\n")
    ws.write("config/app.yml", f"name: {mark}-public\n")  # the control: readable
    home = private_home(ws)
    files = " ".join([*rels, ".envrc", "config/database.yml", "config/app.yml"])
    r = run_in(ws, ws.proj, home, f"for f in {files}; do cat $f 2>/dev/null; done; true")
    assert f"name: {mark}-public" in r.stdout, (r.stdout, r.stderr)
    assert r.stdout.count(mark) == 1, r.stdout
