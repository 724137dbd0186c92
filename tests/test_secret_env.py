"""Secrets in the launcher's environment are withheld by default (issue 11, point 1).

The decision is pure (`corral.policy.secret_env`) and tested table by table: names, values,
the policy's pass_env / secret_env, the CLI flags. The end-to-end tests run real sandboxes
for both launchers (root and the unprivileged `corral-test` user) and read the command's
environment from inside (`env` and `/proc/self/environ`); a variable's real value must never
appear inside nor in anything corral prints. Fake secrets are built at run time.
"""

from __future__ import annotations

import json
import secrets
import string
import subprocess
import sys

import pytest

import helpers
from corral.errors import PolicyError
from corral.policy import secret_env
from corral.policy.model import LaunchContext, Policy
from test_credentials import CURL, PH_RE, native, one, srt, test_ca, tls_server  # noqa: F401 (fixtures)
from test_network import out_of

_ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def github_token() -> str:
    return "gh" + "p_" + rand(36)


# ---------------------------------------------------------------------------------------------
# the pure decision: names
# ---------------------------------------------------------------------------------------------

NAMES = [
    # (name, withheld?)
    ("GITHUB_TOKEN", True), ("GH_TOKEN", True), ("GITLAB_TOKEN", True), ("NPM_TOKEN", True),
    ("HTTP_AUTHORIZATION", True), ("COOKIE", True), ("PASSPHRASE", True), ("GPG_PASSPHRASE", True),
    ("CREDS", True), ("DOCKER_CREDENTIALS", True), ("GIT_CONFIG_PARAMETERS", True), ("CREDENTIALS_FILE", False),
    ("PYPI_TOKEN", True), ("HF_TOKEN", True), ("OPENAI_API_KEY", True), ("ANTHROPIC_API_KEY", True),
    ("AWS_ACCESS_KEY_ID", True), ("AWS_SECRET_ACCESS_KEY", True), ("AWS_SESSION_TOKEN", True),
    ("MY_API_KEY", True), ("STRIPE_SECRET", True), ("CLIENT_SECRET_VALUE", True), ("PGPASSWORD", True),
    ("DB_PASSWD", True), ("MYSQL_PWD", True), ("SMTP_PASS", True), ("GITLAB_PAT", True),
    ("NPM_CONFIG__AUTHTOKEN", True), ("SIGNING_PRIVATE_KEY_PEM", True), ("DOCKER_AUTH_CONFIG", True),
    ("my_api_key", True), ("Github_Token", True), ("TOKEN", True), ("SESSION_COOKIE", True),
    ("SERVICE_APIKEY", True), ("CLAUDE_CODE_OAUTH_TOKEN", True), ("TWINE_PASSWORD", True),
    # not secrets
    ("PATH", False), ("HOME", False), ("PWD", False), ("OLDPWD", False), ("TERM", False),
    ("COLORTERM", False), ("LANG", False), ("GPG_TTY", False), ("SSH_AUTH_SOCK", False),
    ("TOKENIZERS_PARALLELISM", False), ("KEYBOARD_LAYOUT", False), ("XKB_KEYMAP", False),
    ("XDG_RUNTIME_DIR", False), ("XDG_SESSION_TYPE", False), ("AWS_REGION", False), ("AWS_PROFILE", False),
    ("AWS_CA_BUNDLE", False), ("POSTGRES_PASSWORD_FILE", False), ("PASSWORD_STORE_DIR", False),
    ("SSL_KEY_PATH", False), ("GIT_ASKPASS", False), ("SSH_ASKPASS", False), ("MONKEY", False),
    ("STRIPE_PUBLISHABLE_KEY", False), ("TOX_TESTENV_PASSENV", False), ("DATABASE_URL", False),
    ("GPG_KEY_ID", False), ("LESSKEY", False),
]


@pytest.mark.parametrize("name, expected", NAMES)
def test_secret_names_table(name, expected):
    assert (secret_env.name_reason(name) is not None) == expected, name
    # and through the whole decision, with a harmless value
    assert (name in secret_env.withheld({name: "plain"})) == expected


def test_well_known_names_beat_the_not_secret_list():
    # AWS_ACCESS_KEY_ID is named exactly; a *_FILE / *_DIR rule must never let a listed name go.
    assert secret_env.name_reason("AWS_ACCESS_KEY_ID") == "AWS access key"
    assert secret_env.name_reason("aws_secret_access_key") == "AWS secret key"


def test_every_listed_name_matches_itself():
    # The table is data: each exact row must actually withhold its name.
    for pattern, _why in secret_env.SECRET_NAMES:
        if "*" not in pattern:
            assert secret_env.name_reason(pattern) is not None, pattern


# ---------------------------------------------------------------------------------------------
# the pure decision: values
# ---------------------------------------------------------------------------------------------


def _values():
    b64 = string.ascii_letters + string.digits + "-_"
    return [
        # (value, withheld?, what)
        (github_token(), True, "GitHub token"),
        ("github" + "_pat_" + rand(82, _ALNUM + "_"), True, "GitHub fine-grained token"),
        ("gl" + "pat-" + rand(20), True, "GitLab personal access token"),
        ("xo" + "xb-" + rand(10, string.digits) + "-" + rand(24), True, "Slack token"),
        ("sk-" + "ant-api03-" + rand(90, b64), True, "Anthropic API key"),
        ("sk-" + "proj-" + rand(60, b64), True, "OpenAI API key"),
        ("AK" + "IA" + rand(16, string.ascii_uppercase + string.digits), True, "AWS access key ID"),
        ("AI" + "za" + rand(35, b64), True, "Google API key"),
        ("np" + "m_" + rand(36), True, "npm access token"),
        ("hf" + "_" + rand(36), True, "Hugging Face token"),
        ("-----BEGIN " + "OPENSSH PRIVATE KEY-----\n" + rand(70) + "\n-----END OPENSSH PRIVATE KEY-----", True,
         "PEM private key block"),
        ("ey" + "J" + rand(20, b64) + ".ey" + "J" + rand(30, b64) + "." + rand(43, b64), True, "JSON Web Token"),
        ("postgres://app:" + rand(12) + "@db.internal:5432/app", True, "connection string with a password"),
        ("https://user:" + rand(10) + "@proxy.corp:3128", True, "connection string with a password"),
        ("svn+ssh://user:" + rand(10) + "@svn.corp/repo", True, "URL with a password"),
        ("some text, then " + github_token() + " inside", True, "GitHub token"),
        # not secrets
        ("postgres://localhost/app", False, ""),
        ("postgres://app@db/app", False, ""),
        ("postgres://app:${DB_PASSWORD}@db/app", False, ""),
        ("https://user:@host/", False, ""),
        ("postgres://postgres:postgres@localhost/db", False, ""),  # a dev default
        ("svn+ssh://u:password@svn.corp/repo", False, ""),
        ("/usr/local/bin:/usr/bin:/bin", False, ""),
        ("ghp_" + "x" * 36, False, ""),  # a placeholder, not a token
        ("AKIA" + "IOSFODNN7EXAMPLE", False, ""),  # AWS's documented example key
        ("eyJhbGciOi", False, ""),  # too short to be a JWT
        ("hello world", False, ""),
        ("", False, ""),
    ]


def test_secret_values_table():
    for value, expected, what in _values():
        found = secret_env.withheld({"INNOCENT_NAME": value})
        assert ("INNOCENT_NAME" in found) == expected, (what, value[:12])
        if expected:
            assert found["INNOCENT_NAME"] == f"value: {what}"
            assert value not in found["INNOCENT_NAME"]


def test_values_are_matched_to_their_own_variable():
    env = {"A": "plain", "B": "x" + github_token(), "C": "ok", "D": github_token(), "E": "postgres://u:" + rand(9) + "@h/d"}
    assert list(secret_env.withheld(env)) == ["D", "E"]  # B: no token boundary before ghp_


def test_value_signatures_reuse_the_workspace_table():
    from corral.workspace.secrets import SIGNATURES

    assert secret_env._VALUE_ROWS[: len(SIGNATURES)] == tuple(SIGNATURES)


# ---------------------------------------------------------------------------------------------
# pass_env, secret_env, the line, the CLI flags
# ---------------------------------------------------------------------------------------------

PASS_CASES = [
    # (pass_env, secret_env, environment names, withheld names)
    ((), (), ["GITHUB_TOKEN", "MY_API_KEY", "PATH"], ["GITHUB_TOKEN", "MY_API_KEY"]),
    (("GITHUB_TOKEN",), (), ["GITHUB_TOKEN", "MY_API_KEY"], ["MY_API_KEY"]),
    (("github_token",), (), ["GITHUB_TOKEN"], []),
    (("MY_*",), (), ["GITHUB_TOKEN", "MY_API_KEY", "MY_SECRET"], ["GITHUB_TOKEN"]),
    (("*_KEY",), (), ["GITHUB_TOKEN", "MY_API_KEY"], ["GITHUB_TOKEN"]),
    (("*",), (), ["GITHUB_TOKEN", "MY_API_KEY"], []),
    (("*API*",), (), ["OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY"], ["AWS_SECRET_ACCESS_KEY"]),
    (("A*C*E",), (), ["ABCDE", "ACE_TOKEN", "AXCXE"], ["ACE_TOKEN"]),
    ((), ("INTERNAL_*",), ["INTERNAL_THING", "PATH"], ["INTERNAL_THING"]),
    ((), ("*_CONN",), ["PG_CONN", "PATH"], ["PG_CONN"]),
    ((), ("XDG_*",), ["XDG_CONFIG_HOME"], ["XDG_CONFIG_HOME"]),  # the policy's own word wins
    (("INTERNAL_ONE",), ("INTERNAL_*",), ["INTERNAL_ONE", "INTERNAL_TWO"], ["INTERNAL_TWO"]),
]


@pytest.mark.parametrize("pass_env, secret_env_, names, expected", PASS_CASES)
def test_pass_env_and_secret_env_table(pass_env, secret_env_, names, expected):
    env = {n: "plain" for n in names}
    assert list(secret_env.withheld(env, pass_env, secret_env_)) == expected


def test_pass_env_also_lets_a_token_value_through():
    env = {"DEPLOY": github_token()}
    assert list(secret_env.withheld(env)) == ["DEPLOY"]
    assert secret_env.withheld(env, ("DEPLOY",)) == {}


def test_notice_names_without_values_and_escapes():
    line = secret_env.notice(["MY_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"])
    assert line == ("corral: withheld 3 variables that look like credentials: AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN, "
                    "MY_API_KEY (pass one with --pass-env NAME, or bind it to its hosts with --mask-env NAME@HOST)")
    one_line = secret_env.notice(["GH_TOKEN"])
    assert "withheld 1 variable that looks like a credential: GH_TOKEN" in one_line
    assert "--pass-env GH_TOKEN" in one_line and "--mask-env GH_TOKEN@HOST" in one_line
    hostile = secret_env.notice(["X\x1b[2J_TOKEN\nforged"])
    assert "\x1b" not in hostile and "\n" not in hostile and "\\x1b" in hostile


@pytest.mark.parametrize("pattern, ok", [
    ("MY_VAR", True), ("MY_*", True), ("*", True), ("*_KEY", True), ("a*b*c", True),
    ("", False), ("MY-VAR", False), ("MY VAR", False), ("X?", False), ("[A]", False), (3, False),
])
def test_pattern_check(pattern, ok):
    assert (secret_env.check_pattern(pattern) is None) == ok


CTX = LaunchContext(cwd="/work/proj", home="/home/me", uid=1000, gid=1000)


def _toml(text: str) -> Policy:
    from corral.policy.native import load_toml

    return load_toml(text, "p.toml", CTX)


def test_policy_keys_load_and_render():
    from corral.policy.render import to_toml

    policy = _toml('[process]\npass_env = ["MY_API_KEY", "CI_*"]\nsecret_env = ["INTERNAL_*"]\n')
    assert policy.process.pass_env == ("MY_API_KEY", "CI_*")
    assert policy.process.secret_env == ("INTERNAL_*",)
    text = to_toml(policy, CTX)
    assert 'pass_env = [\n  "MY_API_KEY",\n  "CI_*",\n]' in text
    assert 'secret_env = [\n  "INTERNAL_*",\n]' in text
    assert "# Withheld unless pass_env names them" in text and "*TOKEN" in text
    assert _toml(text.split("# Effective", 1)[1].split("\n", 1)[1]).process == policy.process  # loadable again


@pytest.mark.parametrize("text, key", [
    ('[process]\npass_env = "MY_KEY"\n', "process.pass_env"),
    ('[process]\npass_env = ["MY-KEY"]\n', "process.pass_env[0]"),
    ('[process]\nsecret_env = [""]\n', "process.secret_env[0]"),
    ('[process]\nsecret_env = ["OK", 3]\n', "process.secret_env[1]"),
    ('[process]\npassenv = ["X"]\n', "process.passenv"),
])
def test_bad_policy_keys_name_file_key_and_value(text, key):
    with pytest.raises(PolicyError) as err:
        _toml(text)
    assert str(err.value).startswith(f"p.toml: {key} = "), str(err.value)


def test_cli_flags_build_the_policy():
    policy = secret_env.apply_cli(Policy(), ["MY_*"], ["FOO"], ["GH_TOKEN@api.github.com,*.githubusercontent.com"])
    assert policy.process.pass_env == ("MY_*",)
    assert policy.process.unset_env == ("FOO",)
    (cred,) = policy.credentials
    assert (cred.name, cred.from_env, cred.env, cred.hosts, cred.header) == \
        ("GH_TOKEN", "GH_TOKEN", "GH_TOKEN", ("api.github.com", "*.githubusercontent.com"), None)
    assert cred.origin == "<cli>:--mask-env"


@pytest.mark.parametrize("flag, raw, why", [
    ("--pass-env", "MY-VAR", "letters, digits"),
    ("--unset-env", "A B", "not a valid environment variable name"),
    ("--mask-env", "GH_TOKEN", "expected VAR@HOST"),
    ("--mask-env", "GH_TOKEN@", "expected VAR@HOST"),
    ("--mask-env", "@api.github.com", "expected VAR@HOST"),
    ("--mask-env", "GH-TOKEN@api.github.com", "not a valid environment variable name"),
    ("--mask-env", "GH_TOKEN@api.github.com,", "an empty host"),
    ("--mask-env", "GH_TOKEN@*", "not allowed here"),
    ("--mask-env", "GH_TOKEN@api.github.com:443", "no port here"),
])
def test_cli_flag_errors_name_the_flag(flag, raw, why):
    kw = {"--pass-env": ([raw], [], []), "--unset-env": ([], [raw], []), "--mask-env": ([], [], [raw])}[flag]
    with pytest.raises(PolicyError) as err:
        secret_env.apply_cli(Policy(), *kw)
    assert (err.value.source, err.value.key) == ("<cli>", flag), str(err.value)
    assert flag in str(err.value) and why in str(err.value)


def test_mask_env_twice_or_over_a_policy_binding_is_refused():
    policy = _toml('[[credentials]]\nname = "gh"\nfrom_env = "GH_TOKEN"\nhosts = ["api.github.com"]\n')
    with pytest.raises(PolicyError, match="already bound by p.toml:credentials"):
        secret_env.apply_cli(policy, mask_env=["GH_TOKEN@api.github.com"])
    with pytest.raises(PolicyError, match="already bound by <cli>:--mask-env"):
        secret_env.apply_cli(Policy(), mask_env=["X_TOKEN@a.example.com", "X_TOKEN@b.example.com"])


def test_mask_env_turns_on_tls_for_srt_settings_without_tls_terminate():
    from corral.policy.srt import convert

    body = {"network": {"allowedDomains": ["api.github.com"], "deniedDomains": []},
            "filesystem": {"denyRead": [], "allowRead": [], "allowWrite": [], "denyWrite": []}}
    policy = convert(body, "s.json", CTX)
    assert policy.network.tls.auto is False
    assert secret_env.apply_cli(policy, mask_env=["GH_TOKEN@api.github.com"]).network.tls.auto is True


def test_mask_warnings_say_the_host_is_not_allowed():
    policy = _toml('[network]\nallowed_domains = ["api.github.com"]\n')
    env = {"GH_TOKEN": "v"}
    assert secret_env.mask_warnings(policy, ["GH_TOKEN@api.github.com"], env) == []
    (line,) = secret_env.mask_warnings(policy, ["GH_TOKEN@api.github.com,uploads.github.com"], env)
    assert "binding a credential does not allow its hosts" in line
    assert "uploads.github.com is not allowed: add --allow-domain uploads.github.com" in line
    lines = secret_env.mask_warnings(Policy(), ["NOPE_TOKEN@api.github.com"], {})
    assert any("NOPE_TOKEN is not set" in x for x in lines) and any("is not allowed" in x for x in lines)


def test_plan_records_withheld_and_keeps_what_the_policy_sets(tmp_path):
    from corral.sandbox.plan import build_plan

    ctx = LaunchContext(cwd=str(tmp_path), home=str(tmp_path), uid=1000, gid=1000)
    policy = _toml('[process]\nunset_env = ["OLD_TOKEN"]\npass_env = ["PASSED_KEY"]\n'
                   '[process.env]\nSET_TOKEN = "from-the-policy"\n')
    environ = {"PATH": "/usr/bin", "GITHUB_TOKEN": "a", "OLD_TOKEN": "b", "PASSED_KEY": "c", "SET_TOKEN": "d",
               "HTTPS_PROXY": "http://u:" + rand(10) + "@proxy:3128", "X": github_token()}
    plan = build_plan(policy, ctx, ["true"], environ, run_id="t1")
    env = dict(plan.env)
    assert dict(plan.withheld_env).keys() == {"GITHUB_TOKEN", "HTTPS_PROXY", "X"}
    assert dict(plan.withheld_env)["X"] == "value: GitHub token"
    assert "GITHUB_TOKEN" not in env and "X" not in env and "OLD_TOKEN" not in env and "HTTPS_PROXY" not in env
    assert env["PASSED_KEY"] == "c" and env["SET_TOKEN"] == "from-the-policy" and env["PATH"] == "/usr/bin"


# ---------------------------------------------------------------------------------------------
# end to end: real sandboxes, both launchers
# ---------------------------------------------------------------------------------------------

SHOW = 'echo "--env"; env; echo "--self"; cat /proc/self/environ | tr "\\0" "\\n"; echo "--end"'


def _xdg(ws) -> dict:
    """Private XDG directories: nothing of the test lands in the launcher's real state."""
    out = {}
    for name in ("XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        d = ws.base / "xdg" / name.lower()
        d.mkdir(parents=True, exist_ok=True)
        out[name] = str(d)
    ws.chown()
    return out


def _run(ws, args, env, **kw):
    return helpers.run(ws.launcher, ["run", *args], ws.proj, env_extra={**_xdg(ws), **env}, **kw)


def _withheld_lines(p) -> list[str]:
    return [line for line in p.stderr.splitlines() if line.startswith("corral: withheld")]


def _inside(p) -> tuple[list[str], list[str]]:
    env = p.stdout.split("--env\n", 1)[1].split("--self\n", 1)[0].splitlines()
    self_env = p.stdout.split("--self\n", 1)[1].split("--end\n", 1)[0].splitlines()
    return env, self_env


def _secret_env() -> dict:
    return {
        "GITHUB_TOKEN": github_token(),
        "MY_API_KEY": "k-" + rand(24),
        "AWS_SECRET_ACCESS_KEY": rand(40),
        "DEPLOY_NOTE": "token " + github_token() + " for deploys",  # caught by its value
        "DB_URL": "postgres://app:" + rand(14) + "@db.example:5432/app",
        "INNOCENT": "hello-" + rand(8),
    }


def test_variables_that_look_like_credentials_never_reach_the_command(launcher, ws):
    env = _secret_env()
    p = _run(ws, ["-c", SHOW], env)
    assert p.returncode == 0, out_of(p)
    inside, self_env = _inside(p)
    for lines in (inside, self_env):
        assert f"INNOCENT={env['INNOCENT']}" in lines, lines
        names = {line.partition("=")[0] for line in lines}
        assert not names & {"GITHUB_TOKEN", "MY_API_KEY", "AWS_SECRET_ACCESS_KEY", "DEPLOY_NOTE", "DB_URL"}, names
    for name, value in env.items():
        if name != "INNOCENT":
            assert value not in p.stdout and value not in p.stderr, name
    (line,) = _withheld_lines(p)
    assert line == ("corral: withheld 5 variables that look like credentials: AWS_SECRET_ACCESS_KEY, DB_URL, "
                    "DEPLOY_NOTE, GITHUB_TOKEN, MY_API_KEY (pass one with --pass-env NAME, or bind it to its hosts "
                    "with --mask-env NAME@HOST)"), p.stderr


def test_pass_env_flag_lets_one_through_and_unset_env_removes(launcher, ws):
    env = _secret_env()
    p = _run(ws, ["--pass-env", "MY_API_KEY", "--pass-env", "DB_*", "--unset-env", "INNOCENT", "-c", SHOW], env)
    assert p.returncode == 0, out_of(p)
    for lines in _inside(p):
        assert f"MY_API_KEY={env['MY_API_KEY']}" in lines and f"DB_URL={env['DB_URL']}" in lines
        names = {line.partition("=")[0] for line in lines}
        assert not names & {"GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DEPLOY_NOTE", "INNOCENT"}, names
    assert env["GITHUB_TOKEN"] not in p.stdout
    (line,) = _withheld_lines(p)
    assert "withheld 3 variables" in line and "MY_API_KEY" not in line and "DB_URL" not in line, line


def test_policy_pass_env_and_secret_env(launcher, ws):
    env = {**_secret_env(), "INTERNAL_ENDPOINT_KEYS": "k1,k2"}
    policy = ws.write(ws.base / "policy.toml",
                      f'[filesystem]\nallow_write = ["{ws.proj}"]\n'
                      '[process]\npass_env = ["GITHUB_TOKEN"]\nsecret_env = ["INTERNAL_*", "INNOCENT"]\n')
    p = _run(ws, ["--settings", str(policy), "-c", SHOW], env)
    assert p.returncode == 0, out_of(p)
    for lines in _inside(p):
        assert f"GITHUB_TOKEN={env['GITHUB_TOKEN']}" in lines
        names = {line.partition("=")[0] for line in lines}
        assert not names & {"INTERNAL_ENDPOINT_KEYS", "INNOCENT", "MY_API_KEY"}, names
    (line,) = _withheld_lines(p)
    assert "INNOCENT" in line and "INTERNAL_ENDPOINT_KEYS" in line and "GITHUB_TOKEN" not in line, line


def test_quiet_silences_the_line_but_still_withholds(launcher, ws):
    env = _secret_env()
    p = _run(ws, ["-q", "-c", SHOW], env)
    assert p.returncode == 0, out_of(p)
    assert _withheld_lines(p) == [], p.stderr
    assert env["GITHUB_TOKEN"] not in p.stdout


def test_dry_run_lists_withheld_names_never_values(launcher, ws):
    env = _secret_env()
    p = _run(ws, ["--dry-run", "--", "true"], env)
    assert p.returncode == 0, out_of(p)
    assert "withheld   GITHUB_TOKEN  # GitHub token" in p.stdout, p.stdout[-2000:]
    assert "withheld   DEPLOY_NOTE  # value: GitHub token" in p.stdout
    for name, value in env.items():
        assert value not in p.stdout and value not in p.stderr, name


def test_srt_settings_withhold_too_and_a_masked_variable_is_bound_not_withheld(launcher, ws):
    gh, other = github_token(), github_token()
    settings = srt(ws, ["127.0.0.1"], env_vars=[{"name": "GH_TOKEN", "mode": "mask", "injectHosts": ["127.0.0.1"]}])
    path = ws.write(ws.base / "settings.json", json.dumps(settings))
    p = _run(ws, ["--settings", str(path), "-c", 'echo "PH=$GH_TOKEN"; ' + SHOW], {"GH_TOKEN": gh, "OTHER_TOKEN": other})
    assert p.returncode == 0, out_of(p)
    assert PH_RE.fullmatch(one(p.stdout, "PH=")), p.stdout
    assert gh not in p.stdout + p.stderr and other not in p.stdout + p.stderr
    for lines in _inside(p):
        assert "OTHER_TOKEN" not in {line.partition("=")[0] for line in lines}
    (line,) = _withheld_lines(p)
    assert "OTHER_TOKEN" in line and "GH_TOKEN" not in line, line


def test_mask_env_flag_gives_a_placeholder_inside_and_injects_for_its_host(launcher, ws, test_ca, tls_server):
    gh = github_token()
    policy = ws.write(ws.base / "policy.toml", native(ws, [tls_server.hostport], ca=test_ca, terminate=()))
    script = (f'echo "PH=$GH_TOKEN"; {CURL} -o /dev/null -w "code=%{{http_code}}\\n" {tls_server.url("/echo")} '
              '-H "Authorization: Bearer $GH_TOKEN"; ' + SHOW)
    p = _run(ws, ["--settings", str(policy), "--mask-env", "GH_TOKEN@127.0.0.1", "-c", script], {"GH_TOKEN": gh},
             timeout=120)
    assert p.returncode == 0, out_of(p)
    ph = one(p.stdout, "PH=")
    assert PH_RE.fullmatch(ph), ph
    for lines in _inside(p):
        assert f"GH_TOKEN={ph}" in lines
    assert one(p.stdout, "code=") == "200", out_of(p)
    assert [g.header("authorization") for g in tls_server.got("/echo")] == [f"Bearer {gh}"]
    assert gh not in p.stdout and gh not in p.stderr
    assert _withheld_lines(p) == [], p.stderr
    assert "warning" not in p.stderr, p.stderr


def test_mask_env_to_a_host_not_allowed_says_so(launcher, ws):
    p = _run(ws, ["--mask-env", "GH_TOKEN@api.github.com", "-c", 'echo "PH=$GH_TOKEN"'], {"GH_TOKEN": github_token()})
    assert p.returncode == 0, out_of(p)
    assert PH_RE.fullmatch(one(p.stdout, "PH=")), p.stdout
    assert ("binding a credential does not allow its hosts, and api.github.com is not allowed: add "
            "--allow-domain api.github.com") in p.stderr, p.stderr


def test_library_sandbox_withholds_too(launcher, ws):
    script = (
        "import os, sys\n"
        "from corral import Policy, Sandbox\n"
        "with Sandbox(Policy.default()) as sb:\n"
        "    r = sb.run(['sh', '-c', 'env'], capture_output=True, text=True)\n"
        "    plan = sb.plan(['true'])\n"
        "    import subprocess\n"
        "    w = subprocess.run(sb.wrap(['sh', '-c', 'env']), capture_output=True, text=True)\n"
        "print(r.stdout)\n"
        "print('WITHHELD=' + ','.join(n for n, _ in plan.withheld_env))\n"
        "print('WRAPPED=' + str(w.returncode) + ':' + w.stdout.replace(chr(10), ' ') + w.stderr)\n"
    )
    ws.write(ws.base / "lib.py", script)
    gh = github_token()
    cmd = [*launcher.prefix, sys.executable, str(ws.base / "lib.py")]
    p = subprocess.run(cmd, cwd=str(ws.proj), env={**launcher.env, **_xdg(ws), "GITHUB_TOKEN": gh, "INNOCENT": "yes"},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, out_of(p)
    assert "INNOCENT=yes" in p.stdout and gh not in p.stdout
    assert "WITHHELD=GITHUB_TOKEN" in p.stdout.splitlines(), p.stdout
    # Sandbox.wrap: a runner starts the argv with its own environment (which holds the token)
    wrapped = one(p.stdout, "WRAPPED=")
    assert wrapped.startswith("0:") and "INNOCENT=yes" in wrapped and "GITHUB_TOKEN" not in wrapped, wrapped
