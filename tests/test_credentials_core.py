"""corral.proxy.credentials: placeholders, injection into bound hosts, exfiltration, redaction.

Fake secrets are built at run time, never written out as token-looking literals.
"""

from __future__ import annotations

import base64
import pickle
import random
import re
import subprocess
import sys

import pytest

from corral.proxy.credentials import (
    Credential,
    InjectResult,
    Injector,
    StreamRedactor,
    StreamReplacer,
    base64_fragments,
    find_placeholders,
    new_placeholder,
)

VALUE = "sk-test-" + "ab" * 20
API_VALUE = "key-test-" + "cd" * 16
GIT_VALUE = "gh-test-" + "ef" * 18
ODD_VALUE = "odd/test+" + "gh" * 10 + "=="  # needs percent-encoding, base64-able
PH = "corral-ph-gh-token-" + "0" * 31 + "1"
API_PH = "corral-ph-api-key-" + "0" * 31 + "2"
GIT_PH = "corral-ph-git-token-" + "0" * 31 + "3"
ODD_PH = "corral-ph-odd-" + "0" * 31 + "4"

BEARER = Credential("GH_TOKEN", VALUE, ("api.github.com",))
API = Credential("API_KEY", API_VALUE, ("api.example.com", "*.api.example.com"), header="x-api-key: {value}")
GIT = Credential("GIT_TOKEN", GIT_VALUE, ("github.com",), basic_user="x-access-token")
ODD = Credential("ODD_TOKEN", ODD_VALUE, ("odd.example",), header="X-Odd: {value}", in_body=True)

INJECTOR = Injector({PH: BEARER, API_PH: API, GIT_PH: GIT, ODD_PH: ODD})
SECRETS = (VALUE, API_VALUE, GIT_VALUE, ODD_VALUE)


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def basic(user: str, secret: str) -> bytes:
    return b"Basic " + b64(f"{user}:{secret}")


def no_secret_in(*texts) -> bool:
    return not any(s in str(t) for s in SECRETS for t in texts)


# ---------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------

CREDENTIAL_ERRORS = [
    (dict(name="9X", value=VALUE, hosts=("a.example",)), "expected a variable name"),
    (dict(name="GH-TOKEN", value=VALUE, hosts=("a.example",)), "expected a variable name"),
    (dict(name="T", value="", hosts=("a.example",)), "the value is empty"),
    (dict(name="T", value=VALUE + "\r\nX-Evil: 1", hosts=("a.example",)), "control, non-ASCII"),
    (dict(name="T", value=VALUE + "\u00e9", hosts=("a.example",)), "control, non-ASCII"),
    (dict(name="T", value=" " + VALUE, hosts=("a.example",)), "surrounding space"),
    (dict(name="T", value=b"bytes-value", hosts=("a.example",)), "must be a string"),
    (dict(name="T", value=VALUE, hosts=()), "no hosts"),
    (dict(name="T", value=VALUE, hosts=("*",)), "would send the secret everywhere"),
    (dict(name="T", value=VALUE, hosts=("*.com",)), "whole top-level domain"),
    (dict(name="T", value=VALUE, hosts=("a.example:443",)), "no port here"),
    (dict(name="T", value=VALUE, hosts=("https://a.example",)), "host 'https://a.example'"),
    (dict(name="T", value=VALUE, hosts=(42,)), "expected a string"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="x: {value}", basic_user="u"), "either header or"),
    (dict(name="T", value=VALUE, hosts=("a.example",), basic_user="a:b"), "without ':'"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="x-api-key"), "expected 'Header-Name"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="x-api-key: static"), "exactly one '{value}'"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="x: {value}{value}"), "exactly one '{value}'"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="Host: {value}"), "framing or routing"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="Proxy-Authorization: {value}"), "framing or routing"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="x y: {value}"), "expected 'Header-Name"),
    (dict(name="T", value=VALUE, hosts=("a.example",), header="x: {value}\r\nY: 1"), "printable ASCII"),
]


@pytest.mark.parametrize("kwargs,message", CREDENTIAL_ERRORS)
def test_credential_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        Credential(**kwargs)
    assert message in str(info.value)
    assert no_secret_in(info.value)


TEMPLATES = [
    (BEARER, b"Authorization", b"Bearer " + VALUE.encode()),
    (API, b"x-api-key", API_VALUE.encode()),
    (GIT, b"Authorization", basic("x-access-token", GIT_VALUE)),
    (ODD, b"X-Odd", ODD_VALUE.encode()),
    (Credential("T", VALUE, ("a.example",), header="X-T:   pre {value} post"), b"X-T", f"pre {VALUE} post".encode()),
]


@pytest.mark.parametrize("cred,name,value", TEMPLATES)
def test_render(cred, name, value):
    assert cred.render() == (name, value)


def test_body_only_credential_sends_no_header():
    cred = Credential("T", VALUE, ("a.example",), in_body=True)
    assert cred.header is None and cred.header_name is None
    with pytest.raises(ValueError, match="request bodies only"):
        cred.render()


@pytest.mark.parametrize("cred", [BEARER, API, GIT, ODD])
def test_repr_hides_the_value(cred):
    assert "value=<hidden>" in repr(cred)
    assert no_secret_in(repr(cred), str(cred), f"{cred}", repr([cred]))


def test_credential_is_immutable_and_not_picklable():
    with pytest.raises(AttributeError):
        BEARER.value = "x"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(BEARER)


# ---------------------------------------------------------------------------------------------
# Placeholders
# ---------------------------------------------------------------------------------------------

SLUGS = [("GITHUB_TOKEN", "github-token"), ("api key!", "api-key"), ("___", "secret"), ("X" * 40, "x" * 24)]


@pytest.mark.parametrize("name,slug", SLUGS)
def test_new_placeholder(name, slug):
    ph = new_placeholder(name)
    assert re.fullmatch(rf"corral-ph-{slug}-[0-9a-f]{{32}}", ph), ph


def test_placeholders_are_new_every_time():
    assert len({new_placeholder("GH_TOKEN") for _ in range(100)}) == 100


def _percent_all(text: str) -> bytes:
    return "".join(f"%{ord(c):02x}" for c in text).encode()


FIND = [
    (PH.encode(), ["GH_TOKEN"]),
    (b"token=" + PH.upper().encode(), ["GH_TOKEN"]),
    (b"GET /?t=" + _percent_all(PH), ["GH_TOKEN"]),
    (b"GET /?t=" + _percent_all(PH).replace(b"%", b"%25"), ["GH_TOKEN"]),  # encoded twice
    (b'{"k": "' + b64(PH) + b'"}', ["GH_TOKEN"]),
    (base64.urlsafe_b64encode(b"\xff\xfe" + PH.encode()), ["GH_TOKEN"]),
    (b"x" + base64.b64encode(PH.encode()).replace(b"+", b"%2B").replace(b"/", b"%2F"), ["GH_TOKEN"]),
    *[(basic("u" * n, PH), ["GH_TOKEN"]) for n in range(6)],  # every base64 alignment
    (PH.encode() + b" and " + API_PH.encode(), ["GH_TOKEN", "API_KEY"]),
    (API_PH.encode() + PH.encode() + PH.encode(), ["GH_TOKEN", "API_KEY"]),  # each once, in `known` order
    (b"corral-ph-gh-token-", []),  # the prefix alone is not the placeholder
    (PH[:-1].encode(), []),
    (b64(PH[:20]), []),
    (b"", []),
]


@pytest.mark.parametrize("data,names", FIND)
def test_find_placeholders(data, names):
    known = {PH: BEARER, API_PH: API}
    assert [c.name for c in find_placeholders(data, known)] == names


def test_base64_fragments_cover_every_alignment():
    raw = PH.encode()
    fragments = base64_fragments(raw)
    for n in range(9):
        encoded = base64.b64encode(b"p" * n + raw + b"s" * n)
        assert any(f in encoded for f in fragments), n


# ---------------------------------------------------------------------------------------------
# Injection
# ---------------------------------------------------------------------------------------------


def headers_of(result: InjectResult, name: bytes) -> list[bytes]:
    return [v for n, v in result.headers if n.lower() == name.lower()]


INJECT = [
    # host, client headers, expected (header name, values), injected
    ("api.github.com", [(b"Accept", b"*/*")], (b"authorization", [b"Bearer " + VALUE.encode()]), ("GH_TOKEN",)),
    ("API.GitHub.com.", [], (b"authorization", [b"Bearer " + VALUE.encode()]), ("GH_TOKEN",)),
    # client-sent credentials are replaced, not merged
    ("api.github.com", [(b"Authorization", b"Bearer mine")], (b"authorization", [b"Bearer " + VALUE.encode()]),
     ("GH_TOKEN",)),
    ("api.github.com", [(b"authorization", b"Bearer a"), (b"AUTHORIZATION", b"Basic b")],
     (b"authorization", [b"Bearer " + VALUE.encode()]), ("GH_TOKEN",)),
    # the client's own spelling is kept when it carries the placeholder
    ("api.github.com", [(b"Authorization", b"token " + PH.encode())], (b"authorization", [b"token " + VALUE.encode()]),
     ("GH_TOKEN",)),
    ("api.github.com", [(b"Authorization", b"Bearer x"), (b"Authorization", b"token " + PH.encode())],
     (b"authorization", [b"token " + VALUE.encode()]), ("GH_TOKEN",)),
    # a placeholder inside basic auth (git's credential helper) is replaced inside the base64
    ("api.github.com", [(b"Authorization", basic("x-access-token", PH))],
     (b"authorization", [basic("x-access-token", VALUE)]), ("GH_TOKEN",)),
    ("github.com", [(b"Authorization", basic("x-access-token", GIT_PH))],
     (b"authorization", [basic("x-access-token", GIT_VALUE)]), ("GIT_TOKEN",)),
    ("github.com", [(b"Authorization", basic("git", GIT_PH))], (b"authorization", [basic("git", GIT_VALUE)]),
     ("GIT_TOKEN",)),
    ("github.com", [], (b"authorization", [basic("x-access-token", GIT_VALUE)]), ("GIT_TOKEN",)),
    ("github.com", [(b"Authorization", b"Basic !!notbase64")], (b"authorization", [basic("x-access-token", GIT_VALUE)]),
     ("GIT_TOKEN",)),
    # a custom header, and a wildcard binding
    ("api.example.com", [(b"X-Api-Key", API_PH.encode())], (b"x-api-key", [API_VALUE.encode()]), ("API_KEY",)),
    ("eu.api.example.com", [(b"X-API-KEY", b"other")], (b"x-api-key", [API_VALUE.encode()]), ("API_KEY",)),
    # unbound hosts get nothing
    ("example.com", [(b"Authorization", b"Bearer mine")], (b"authorization", [b"Bearer mine"]), ()),
    ("github.com.evil.example", [], (b"authorization", []), ()),
    ("example.com", [], (b"x-api-key", []), ()),  # *.api.example.com does not cover example.com
]


@pytest.mark.parametrize("host,headers,expected,injected", INJECT)
def test_prepare_request_injects(host, headers, expected, injected):
    result = INJECTOR.prepare_request("GET", host, True, headers, None)
    assert (result.action, result.status) == ("forward", 200), result.reason
    assert not result.exfiltration
    assert headers_of(result, expected[0]) == expected[1]
    assert result.injected == injected
    assert no_secret_in(result.reason, repr(result))


def test_injected_header_keeps_the_position_of_the_replaced_one():
    headers = [(b"Accept", b"*/*"), (b"Authorization", b"Bearer mine"), (b"User-Agent", b"git/2")]
    result = INJECTOR.prepare_request("GET", "api.github.com", True, headers, None)
    assert [n for n, _ in result.headers] == [b"Accept", b"Authorization", b"User-Agent"]
    assert headers == [(b"Accept", b"*/*"), (b"Authorization", b"Bearer mine"), (b"User-Agent", b"git/2")]


def test_placeholder_elsewhere_to_a_bound_host_is_left_alone():
    headers = [(b"X-Note", PH.encode())]
    result = INJECTOR.prepare_request("POST", "api.github.com", True, headers, PH.encode())
    assert result.action == "forward" and (b"X-Note", PH.encode()) in result.headers
    assert not result.substitute_body


EXFILTRATION = [
    # host, headers, body prefix, target, credential named
    ("evil.example", [(b"Authorization", b"Bearer " + PH.encode())], None, b"/", "GH_TOKEN"),
    ("evil.example", [(b"Authorization", basic("x-access-token", GIT_PH))], None, b"/", "GIT_TOKEN"),
    ("evil.example", [(b"Cookie", b"s=" + _percent_all(API_PH))], None, b"/", "API_KEY"),
    ("evil.example", [], None, b"/collect?t=" + _percent_all(PH), "GH_TOKEN"),
    ("evil.example", [], None, "/collect?t=" + PH.upper(), "GH_TOKEN"),
    ("evil.example", [], b'{"leak": "' + PH.encode() + b'"}', b"/", "GH_TOKEN"),
    ("evil.example", [], b"data=" + b64("x" + PH), b"/", "GH_TOKEN"),
    ("evil.example", [], base64.urlsafe_b64encode(b"ab" + GIT_PH.encode()), b"/", "GIT_TOKEN"),
    ("evil.example", [(PH.encode(), b"1")], None, b"/", "GH_TOKEN"),  # even as a header name
    # a placeholder to a host bound to another credential is still exfiltration
    ("api.github.com", [(b"X-Api-Key", API_PH.encode())], None, b"/", "API_KEY"),
    ("api.example.com", [(b"Authorization", b"Bearer " + PH.encode())], None, b"/", "GH_TOKEN"),
    # plaintext or TRACE do not come first: exfiltration is flagged over http too
    ("evil.example", [(b"Authorization", b"Bearer " + PH.encode())], None, b"/", "GH_TOKEN"),
]


@pytest.mark.parametrize("host,headers,body,target,name", EXFILTRATION)
@pytest.mark.parametrize("tls", [True, False])
def test_exfiltration_is_blocked(host, headers, body, target, name, tls):
    result = INJECTOR.prepare_request("POST", host, tls, headers, body, target=target)
    assert (result.action, result.exfiltration, result.status) == ("block", True, 403)
    assert f"credential {name} (bound to" in result.reason and "exfiltration" in result.reason
    assert result.injected == ()
    assert no_secret_in(result.reason, repr(result), *(v for _, v in result.headers))


PLAINTEXT = [
    ("api.github.com", BEARER, False, "block"),
    ("github.com", GIT, False, "block"),
    ("odd.example", ODD, False, "block"),
    ("api.github.com", BEARER, True, "forward"),
]


@pytest.mark.parametrize("host,cred,tls,action", PLAINTEXT)
def test_plaintext_refused(host, cred, tls, action):
    result = INJECTOR.prepare_request("GET", host, tls, [], None)
    assert result.action == action
    if action == "block":
        assert f"would send credential {cred.name} in plaintext to {host}" in result.reason
        assert result.status == 403 and not result.exfiltration
        assert no_secret_in(*(v for _, v in result.headers))


def test_plaintext_allowed_when_configured():
    cred = Credential("LOCAL", VALUE, ("svc.internal.example",), allow_plaintext=True)
    result = Injector({PH: cred}).prepare_request("GET", "svc.internal.example", False, [], None)
    assert result.action == "forward" and headers_of(result, b"Authorization") == [b"Bearer " + VALUE.encode()]


@pytest.mark.parametrize("method", ["TRACE", "trace", "TRACK"])
def test_trace_is_refused(method):
    result = INJECTOR.prepare_request(method, "api.github.com", True, [(b"Accept", b"*/*")], None)
    assert (result.action, result.status, result.injected) == ("block", 405, ())
    assert result.headers == [(b"Accept", b"*/*")]


def test_invalid_host_is_blocked():
    result = INJECTOR.prepare_request("GET", "bad host", True, [], None)
    assert (result.action, result.status) == ("block", 400)


def test_same_header_same_host_is_a_conflict():
    other = Credential("OTHER", API_VALUE, ("API.GITHUB.COM",))
    with pytest.raises(ValueError, match="GH_TOKEN and OTHER both send header 'authorization'") as info:
        Injector({PH: BEARER, API_PH: other})
    assert no_secret_in(info.value)


def test_most_specific_binding_wins_unless_the_client_presents_one():
    wide = Credential("WIDE", API_VALUE, ("*.github.com",))
    injector = Injector({API_PH: wide, PH: BEARER})
    result = injector.prepare_request("GET", "api.github.com", True, [], None)
    assert headers_of(result, b"authorization") == [b"Bearer " + VALUE.encode()]
    assert result.injected == ("GH_TOKEN",)
    presented = [(b"Authorization", b"Bearer " + API_PH.encode())]
    result = injector.prepare_request("GET", "api.github.com", True, presented, None)
    assert headers_of(result, b"authorization") == [b"Bearer " + API_VALUE.encode()]
    assert result.injected == ("WIDE",)
    assert [c.name for c in injector.bound("uploads.github.com")] == ["WIDE"]


INJECTOR_ERRORS = [
    ({"short": BEARER}, "at least 16"),
    ({PH + " x": BEARER}, "at least 16"),
    ({PH: "not a credential"}, "expected a Credential"),
    ({PH: BEARER, API_PH: BEARER}, "bound twice"),
    ({"x" + VALUE: BEARER}, "overlap"),
]


@pytest.mark.parametrize("bindings,message", INJECTOR_ERRORS)
def test_injector_errors(bindings, message):
    with pytest.raises(ValueError, match=message) as info:
        Injector(bindings)
    assert no_secret_in(info.value)


def test_body_substitution_only_where_configured():
    result = INJECTOR.prepare_request("POST", "odd.example", True, [], b"k=" + ODD_PH.encode())
    assert result.substitute_body and result.injected == ("ODD_TOKEN",)
    sub = INJECTOR.body_substituter("odd.example")
    body = b"key=" + ODD_PH.encode() + b"&again=" + ODD_PH.encode()
    out = b"".join(sub.feed(body[i : i + 1]) for i in range(len(body))) + sub.flush()
    assert out == b"key=" + ODD_VALUE.encode() + b"&again=" + ODD_VALUE.encode()
    assert INJECTOR.body_substituter("api.github.com") is None
    assert INJECTOR.body_substituter("evil.example") is None


# ---------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------

REDACT = [
    (b"echo: " + VALUE.encode(), b"echo: " + PH.encode()),
    (b'{"a":"' + API_VALUE.encode() + b'","b":"' + VALUE.encode() + b'"}',
     b'{"a":"' + API_PH.encode() + b'","b":"' + PH.encode() + b'"}'),
    (b64(VALUE), b64(PH)),
    (base64.urlsafe_b64encode(ODD_VALUE.encode()), base64.urlsafe_b64encode(ODD_PH.encode())),
    (basic("x-access-token", GIT_VALUE), basic("x-access-token", GIT_PH)),
    (VALUE.encode() * 3, PH.encode() * 3),
    (b"nothing here", b"nothing here"),
    (b"", b""),
]


@pytest.mark.parametrize("data,expected", REDACT)
def test_redact(data, expected):
    assert INJECTOR.redact(data) == expected


def test_redact_percent_encoded_value():
    from urllib.parse import quote

    encoded = quote(ODD_VALUE, safe="").encode()
    assert encoded != ODD_VALUE.encode()
    assert INJECTOR.redact(b"q=" + encoded + b"&") == b"q=" + ODD_PH.encode() + b"&"


def test_redact_headers():
    headers = [(b"Content-Type", b"text/plain"), (b"X-Echo", b"Bearer " + VALUE.encode())]
    assert INJECTOR.redact_headers(headers) == [(b"Content-Type", b"text/plain"), (b"X-Echo", b"Bearer " + PH.encode())]


def _stream(redactor: StreamReplacer, data: bytes, sizes) -> bytes:
    out, i = [], 0
    for size in sizes:
        out.append(redactor.feed(data[i : i + size]))
        i += size
    out.append(redactor.feed(data[i:]))
    return b"".join(out) + redactor.flush()


STREAM_BODY = (
    b"start " + VALUE.encode() + b" mid " + b64(VALUE) + b" " + API_VALUE.encode() + API_VALUE.encode()
    + b" " + basic("x-access-token", GIT_VALUE) + b" end " + VALUE.encode()
)


@pytest.mark.parametrize("sizes", [[1] * len(STREAM_BODY), [2] * 200, [7] * 50, [len(STREAM_BODY)], [0, 0, 5, 0]])
def test_stream_redactor_across_chunks(sizes):
    redactor = INJECTOR.redactor()
    assert isinstance(redactor, StreamRedactor)
    out = _stream(redactor, STREAM_BODY, sizes)
    assert out == INJECTOR.redact(STREAM_BODY)
    assert no_secret_in(out.decode())
    assert out.count(PH.encode()) == 2 and out.count(API_PH.encode()) == 2


def test_stream_redactor_random_chunkings():
    rng = random.Random(7)
    expected = INJECTOR.redact(STREAM_BODY)
    for _ in range(200):
        sizes = [rng.randint(0, 12) for _ in range(40)]
        assert _stream(INJECTOR.redactor(), STREAM_BODY, sizes) == expected


def test_stream_redactor_holds_back_only_a_possible_match():
    redactor = INJECTOR.redactor()
    assert redactor.feed(b"x" * 100) != b""  # far from any value: sent at once
    partial = VALUE[:10].encode()
    sent = redactor.feed(partial)
    assert not sent.endswith(partial)  # may be the start of a value: held back
    assert redactor.flush().endswith(partial)  # the stream ended without it: sent as is
    assert no_secret_in(repr(redactor))


STREAM_REPLACER = [
    ([(b"abc", b"X")], [b"a", b"b", b"c"], b"X"),
    ([(b"abc", b"X"), (b"abcd", b"Y")], [b"ab", b"cd"], b"Y"),  # longest at one position
    ([(b"abc", b"X"), (b"bc", b"Y")], [b"a", b"bc"], b"X"),  # earliest first
    ([(b"aa", b"b")], [b"aaa"], b"ba"),
    ([], [b"abc"], b"abc"),
    ([(b"abc", b"X")], [b"ab", b""], b"ab"),
]


@pytest.mark.parametrize("pairs,chunks,expected", STREAM_REPLACER)
def test_stream_replacer(pairs, chunks, expected):
    replacer = StreamReplacer(pairs)
    assert b"".join(replacer.feed(c) for c in chunks) + replacer.flush() == expected


def test_reprs_never_show_values():
    result = INJECTOR.prepare_request("GET", "api.github.com", True, [], None)
    assert VALUE.encode() in result.headers[0][1]  # the header itself does carry it
    substituter = INJECTOR.body_substituter("odd.example")
    assert no_secret_in(repr(result), repr(INJECTOR), repr(INJECTOR.redactor()), repr(substituter))


def test_importing_credentials_is_cheap_and_opens_nothing():
    code = (
        "import sys, builtins, corral; before = set(sys.modules); opened = []; real = builtins.open;"
        "builtins.open = lambda *a, **k: opened.append(a) or real(*a, **k);"
        "import corral.proxy.credentials as c; c.new_placeholder('X');"
        "print(sorted(m for m in set(sys.modules) - before if m in "
        "('socket', 'ssl', 're', 'dataclasses', 'inspect', 'selectors', 'asyncio', 'secrets', 'urllib.parse',"
        " 'base64', 'hashlib', 'random')), opened)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_a_short_value_is_injected_but_never_redacted():
    """Values under MIN_REDACT_LENGTH still stay outside the sandbox and are injected; echoes
    of them are not redacted (a 5-character value would hit innocent bytes everywhere)."""
    cred = Credential("PIN", "h4x0r", ("a.example",), header="x-pin: {value}")
    inj = Injector({"corral-ph-pin-" + "0" * 32: cred})
    sent = inj.prepare_request("GET", "a.example", True, [])
    assert sent.headers == [(b"x-pin", b"h4x0r")]
    assert inj.redact(b"echo h4x0r") == b"echo h4x0r"


def test_placeholder_in_the_url_is_swapped_for_bound_hosts_only():
    """`?key=<placeholder>` (APIs that take keys in the URL): the value goes into the target for a
    bound host over TLS; the same URL to another host is an exfiltration block."""
    cred = Credential("API_KEY", "k3y-" + "5e" * 10, ("api.example",), header="*")
    ph = "corral-ph-api-key-" + "1" * 32
    inj = Injector({ph: cred})
    target = f"/v1/q?key={ph}&x=1".encode()
    bound = inj.prepare_request("GET", "api.example", True, [], target=target)
    assert bound.target == f"/v1/q?key={cred.value}&x=1".encode() and bound.injected == ("API_KEY",)
    assert cred.value not in repr(bound)
    untouched = inj.prepare_request("GET", "api.example", True, [], target=b"/v1/q?x=1")
    assert untouched.target is None and untouched.injected == ()
    other = inj.prepare_request("GET", "other.example", True, [], target=target)
    assert other.blocked and other.exfiltration and other.target is None
