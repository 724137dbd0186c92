"""Response redaction and placeholder search in every encoding (proxy/forms.py, proxy/credentials.py).

The threat: a bound host echoes the real value back, encoded at an offset the sandbox chose (inside
`Basic base64("x:" + value)`, `base64("ab" + value)`, hex, percent-escapes, JSON escapes...). No
response bytes, decoded any way, may contain the real value. The pure generator and redactor are
tested table by table; the last test runs a real sandbox against a TLS server that echoes the
value it received in every encoding, in headers and in a body.

Fake secrets are built at run time, never written out as token-looking literals.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import os
import random
import re
import urllib.parse

import pytest

from corral.proxy import forms
from corral.proxy.credentials import Credential, Injector, find_placeholders

VALUE = 'rt/k+"&<v>=' + "9f" * 12  # reserved characters, so escaping forms differ from the raw one
PH = "corral-ph-tok-" + "0" * 31 + "7"
CRED = Credential("TOK", VALUE, ("api.example",), header="x-tok: {value}")
INJ = Injector({PH: CRED})

PLAIN = "plainval-" + "a1" * 12
PLAIN_PH = "corral-ph-plain-" + "0" * 31 + "8"
PLAIN_CRED = Credential("PLAIN", PLAIN, ("basic.example",), basic_user="x-access-token")


# ---------------------------------------------------------------------------------------------
# Decoding a response every way the sandbox could
# ---------------------------------------------------------------------------------------------

def _b64_decodings(data: bytes):
    text = re.sub(rb"[\r\n]", b"", data)
    for token in re.findall(rb"[A-Za-z0-9+/\-_]{4,}", text):
        token = token.replace(b"-", b"+").replace(b"_", b"/")
        for skip in range(4):
            part = token[skip:]
            if len(part) % 4 == 1:
                part = part[:-1]
            if part:
                yield binascii.a2b_base64(part + b"=" * (-len(part) % 4))


def _b32_decodings(data: bytes):
    text = re.sub(rb"[\r\n]", b"", data).upper()
    for token in re.findall(rb"[A-Z2-7]{8,}", text):
        for skip in range(8):
            part = token[skip:]
            for cut in range(8):  # the longest prefix that is whole base32
                whole = part[: len(part) - cut]
                if whole and len(whole) % 8 in (0, 2, 4, 5, 7):
                    yield base64.b32decode(whole + b"=" * (-len(whole) % 8))
                    break


def _hex_decodings(data: bytes):
    for token in re.findall(rb"[0-9a-fA-F]{2,}", data):
        for skip in range(2):
            part = token[skip:]
            yield bytes.fromhex(part[: len(part) - len(part) % 2].decode())


def _escape_decodings(data: bytes):
    text = data.decode("latin-1")
    yield urllib.parse.unquote_to_bytes(data)
    yield urllib.parse.unquote_plus(text).encode("latin-1", "replace")
    yield html.unescape(text).encode("latin-1", "replace")
    unescaped = re.sub(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|\\(.)",
                       lambda m: chr(int(m.group(1) or m.group(2), 16)) if (m.group(1) or m.group(2)) else m.group(3),
                       text)
    yield unescaped.encode("latin-1", "replace")
    for codec in ("utf-16-le", "utf-16-be"):
        for skip in range(2):
            yield data[skip:].decode(codec, "replace").encode("latin-1", "replace")


def decodings(data: bytes) -> list[bytes]:
    """`data` and everything it decodes to: base64 (both alphabets, every token, every start),
    base32, hex, percent/JSON/HTML/backslash escapes, UTF-16; and those decoded once more."""
    out = [data]
    for decode in (_b64_decodings, _b32_decodings, _hex_decodings, _escape_decodings):
        out += list(decode(data))
    return out


def reveals(data: bytes, secret: str) -> bool:
    s = secret.encode()
    return any(s in d for d in decodings(data))


# ---------------------------------------------------------------------------------------------
# Encodings a server may echo a value in (what the sandbox can ask an echoing server for)
# ---------------------------------------------------------------------------------------------

def _pct(text: bytes, upper=True) -> bytes:
    return b"".join((b"%%%02X" if upper else b"%%%02x") % c for c in text)


def _wrap(data: bytes, width: int, nl: bytes) -> bytes:
    return nl.join(data[i:i + width] for i in range(0, len(data), width))


ENCODINGS = {
    "raw": lambda b: b,
    "base64": base64.b64encode,
    "base64url": base64.urlsafe_b64encode,
    "base64-unpadded": lambda b: base64.b64encode(b).rstrip(b"="),
    "base64-mime": base64.encodebytes,  # 76 characters a line
    "base64-pem": lambda b: _wrap(base64.b64encode(b), 64, b"\r\n"),
    "base64-narrow": lambda b: _wrap(base64.b64encode(b), 5, b"\n"),
    "base32": base64.b32encode,
    "hex": lambda b: b.hex().encode(),
    "HEX": lambda b: b.hex().upper().encode(),
    "percent-all": _pct,
    "percent-lower": lambda b: _pct(b, upper=False),
    "urlquote": lambda b: urllib.parse.quote(b, safe="").encode(),
    "form": lambda b: urllib.parse.quote_plus(b.decode("latin-1")).encode(),
    "json-u": lambda b: b"".join(b"\\u%04x" % c for c in b),
    "json-dumps": lambda b: json.dumps(b.decode("latin-1")).encode(),
    "js-x": lambda b: b"".join(b"\\x%02x" % c for c in b),
    "html-dec": lambda b: b"".join(b"&#%d;" % c for c in b),
    "html-hex": lambda b: b"".join(b"&#x%X;" % c for c in b),
    "html-escape": lambda b: html.escape(b.decode("latin-1")).encode(),
    "utf-16-le": lambda b: b.decode("latin-1").encode("utf-16-le"),
    "utf-16-be": lambda b: b.decode("latin-1").encode("utf-16-be"),
}

SURROUNDINGS = [(p, s) for p in ("", "a", "ab", "x:", "abc", "user:", "\xffz") for s in ("", "!", "tail=")]


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("prefix,suffix", SURROUNDINGS)
def test_echo_of_the_value_in_any_encoding_is_redacted(encoding, prefix, suffix):
    plain = prefix.encode("latin-1") + VALUE.encode() + suffix.encode()
    echoed = b"<" + ENCODINGS[encoding](plain) + b">"
    assert reveals(echoed, VALUE), "the test's decoder must see the value in the unredacted echo"
    out = INJ.redact(echoed)
    assert out != echoed
    assert not reveals(out, VALUE), (encoding, prefix, suffix, out)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_redaction_is_the_same_for_any_chunking(encoding):
    rng = random.Random(encoding)
    body = b"head " + b" ".join(ENCODINGS[encoding](p.encode("latin-1") + VALUE.encode() + b"~")
                                for p in ("", "a", "ab")) + b" end"
    whole = INJ.redact(body)
    for _ in range(30):
        r, out, i = INJ.redactor(), [], 0
        while i < len(body):
            n = rng.randint(0, 40)
            out.append(r.feed(body[i:i + n]))
            i += n
        out.append(r.flush())
        assert b"".join(out) == whole


def test_whole_encodings_come_back_as_the_placeholder():
    """Where the whole text is the value's encoding, the sandbox gets the placeholder's."""
    table = [
        (VALUE.encode(), PH.encode()),
        (base64.b64encode(VALUE.encode()), base64.b64encode(PH.encode())),
        (VALUE.encode().hex().encode(), PH.encode().hex().encode()),
        (VALUE.encode().hex().upper().encode(), PH.encode().hex().upper().encode()),
        (urllib.parse.quote(VALUE, safe="").encode(), PH.encode()),
        (json.dumps(VALUE).encode(), json.dumps(PH).encode()),
        (VALUE.encode("utf-16-le"), PH.encode("utf-16-le")),
    ]
    for echoed, expected in table:
        assert INJ.redact(echoed) == expected, echoed


@pytest.mark.parametrize("user", ["", "x", "ab", "abc", "x-access-token", "user@example"])
def test_basic_header_echo_comes_back_with_the_placeholder_for_any_user(user):
    inj = Injector({PLAIN_PH: PLAIN_CRED, PH: CRED})
    for secret, ph in ((PLAIN, PLAIN_PH), (VALUE, PH)):
        header = b"Basic " + base64.b64encode(f"{user}:{secret}".encode())
        [(_, got)] = inj.redact_headers([(b"X-Echo", header)])
        assert got == b"Basic " + base64.b64encode(f"{user}:{ph}".encode()), (user, got)
        # in a body only part of such a text can be replaced: it keeps its length, never the value
        body = inj.redact(b'{"auth": "' + header + b'"}')
        assert not reveals(body, secret)


def test_base64_inside_a_longer_text_decodes_to_stars_where_the_value_was():
    for prefix in (b"", b"a", b"ab"):
        encoded = base64.b64encode(prefix + VALUE.encode() + b"-and-more-text")
        out = INJ.redact(encoded)
        assert len(out) == len(encoded)
        decoded = base64.b64decode(out)
        assert decoded.endswith(b"-and-more-text") and b"*" * (len(VALUE) - 4) in decoded


def test_innocent_text_is_untouched():
    body = b"".join(ENCODINGS[e](b"an innocent body with rt/k and 9f9f9f") for e in sorted(ENCODINGS))
    assert INJ.redact(body) == body


# ---------------------------------------------------------------------------------------------
# The pure form generator
# ---------------------------------------------------------------------------------------------

CORES = [
    # (alphabet, bits, encode)
    (forms.B64, 6, base64.b64encode),
    (forms.B32, 5, base64.b32encode),
]


@pytest.mark.parametrize("alphabet,bits,encode", CORES)
def test_a_core_appears_in_every_encoding_at_its_alignment(alphabet, bits, encode):
    group = 3 if bits == 6 else 5
    rng = random.Random(bits)
    data = VALUE.encode()
    cores = forms.radix_cores(data, alphabet, bits)
    assert len(cores) == group
    for offset in range(3 * group):
        for _ in range(5):
            before = bytes(rng.randrange(256) for _ in range(offset))
            after = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
            assert cores[offset % group] in encode(before + data + after), (offset, before, after)


@pytest.mark.parametrize("alphabet,bits,encode", CORES)
def test_a_core_is_every_character_the_value_alone_decides(alphabet, bits, encode):
    """Drop one more character at either end and some surroundings change it."""
    group = 3 if bits == 6 else 5
    data = VALUE.encode()
    for r, core in enumerate(forms.radix_cores(data, alphabet, bits)):
        char_bits = len(core) * bits
        assert 8 * len(data) - 2 * (bits - 1) <= char_bits <= 8 * len(data), (r, len(core))
        assert b"=" not in core
        # ...and exactly those: neighbours of other values change the characters just outside
        for left, right in ((b"\0" * r, b"\0" * group), (b"\xff" * r, b"\xff" * group)):
            assert core in encode(left + data + right)


FORM_TABLE = [
    # (form builder, text that matches, text that does not)
    (lambda: forms.char_units(b"a/b"), [b"a/b", b"a%2Fb", b"%61%2fb", b"a\\/b", b"a\\u002fb", b"a&#47;b",
                                        b"a&#x2F;b", b"\\x61/b"], [b"a/c", b"A/b", b"a%2b"]),
    (lambda: forms.char_units(b"a/b", fold=True), [b"A/B", b"%41/b", b"a%2fB"], [b"a/c"]),
    (lambda: forms.char_units(b"a b"), [b"a b", b"a+b", b"a%20b"], [b"a_b"]),
    (lambda: forms.char_units(b'"&'), [b'"&', b"&quot;&amp;", b'\\"&', b"&#34;&#38;"], [b"&quot&"]),
    (lambda: forms.hex_units(b"\xab"), [b"ab", b"AB", b"aB"], [b"ba"]),
    (lambda: forms.utf16_units(b"ab"), [b"a\0b\0"], [b"\0a\0b", b"ab"]),
    (lambda: forms.utf16_units(b"ab", big_endian=True), [b"\0a\0b"], [b"a\0b\0"]),
    (lambda: forms.wrapped(b"ab+/", b64=True), [b"ab+/", b"ab-_", b"a\nb+\r\n/"], [b"a\n\nb+/", b"ab+/".upper()]),
    (lambda: forms.wrapped(b"AB2", fold=True), [b"AB2", b"ab2", b"a\nB2"], [b"AB3"]),
    (lambda: forms.literal_units(b"a.b"), [b"a.b"], [b"axb", b"A.b"]),
]


@pytest.mark.parametrize("build,good,bad", FORM_TABLE)
def test_form_table(build, good, bad):
    form = build()
    rx = re.compile(forms.form_source(form))
    patterns = forms.PatternSet([(form, b"X")])
    for text in good:
        assert rx.fullmatch(text), text
        assert patterns.search(text) is not None, text
        for i in range(1, len(text)):
            assert patterns.could_begin(text[:i]), (text, i)
    for text in bad:
        assert not rx.fullmatch(text), text


def test_scanner_holds_only_what_could_begin_a_form():
    patterns = forms.PatternSet([(forms.char_units(b"secret!"), b"X")])
    s = forms.Scanner(patterns)
    assert s.feed(b"data: sec") == b"data: "
    assert s.feed(b"%72") == b""
    assert s.feed(b"et! and sec") == b"X and "
    assert s.feed(b"onds\n\n") == b"seconds\n\n"
    assert s.feed(b"%") == b""
    assert s.flush() == b"%"
    assert s.count == 1


def test_patterns_and_reprs_never_show_the_value():
    r = INJ.redactor()
    r.feed(VALUE.encode()[:5])
    assert VALUE not in repr(r) and VALUE[:5] not in repr(r)
    assert VALUE not in repr(INJ)


# ---------------------------------------------------------------------------------------------
# Placeholders on their way to another host: the same offset-independent forms
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("prefix", ["", "a", "ab", "x:", "abcd"])
def test_placeholder_found_in_any_encoding_at_any_offset(encoding, prefix):
    data = ENCODINGS[encoding](prefix.encode() + PH.encode() + b"&")
    assert [c.name for c in find_placeholders(b"q=" + data, {PH: CRED})] == ["TOK"]


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_placeholder_search_has_no_false_alarm(encoding):
    data = ENCODINGS[encoding](b"nothing here: corral-ph-tok-" + b"0" * 31 + b"6")
    assert find_placeholders(data, {PH: CRED}) == []


# ---------------------------------------------------------------------------------------------
# End to end: a bound host echoes the value it received in every encoding
# ---------------------------------------------------------------------------------------------

from test_credentials import assert_no_leak, https_records, masked_run, one, real, test_ca  # noqa: E402,F401
from test_network import out_of  # noqa: E402
from tlsservers import HttpsServer, presented_token  # noqa: E402

ECHO_HEADERS = {  # header name -> what the server puts there, from the token it received
    "X-Basic": lambda t: b"Basic " + base64.b64encode(b"x:" + t),
    "X-B64-ab": lambda t: base64.b64encode(b"ab" + t),
    "X-B64-a": lambda t: base64.b64encode(b"a" + t + b"!"),
    "X-B64url": lambda t: base64.urlsafe_b64encode(b"user:" + t).rstrip(b"="),
    "X-B32": lambda t: base64.b32encode(b"zz" + t),
    "X-Hex": lambda t: b"0x" + t.hex().encode(),
    "X-Pct": lambda t: _pct(t),
}


def _encoded_echo(req):
    token = (presented_token(req.header("Authorization")) or "").encode()
    headers = [(name, make(token).decode()) for name, make in ECHO_HEADERS.items()]
    body = b"\n".join(name.encode() + b": " + ENCODINGS[name](p + token + b"!")
                      for name in sorted(ENCODINGS) for p in (b"", b"a", b"ab", b"x:"))
    return 200, headers, body + b"\n"


@pytest.fixture
def echo_server(test_ca):
    s = HttpsServer(test_ca, routes={"/encoded": _encoded_echo})
    yield s
    s.close()


def test_value_echoed_in_any_encoding_never_reaches_the_sandbox(launcher, ws, test_ca, echo_server):
    gh = real("gh")
    script = (f'echo "PH=$GH_TOKEN"; curl -sS --max-time 30 -D hdr.txt -o body.txt -w "code=%{{http_code}}\\n" '
              f'{echo_server.url("/encoded")} -H "Authorization: Bearer $GH_TOKEN"')
    p = masked_run(ws, script, echo_server, test_ca, gh)
    assert one(p.stdout, "code=") == "200", out_of(p)
    ph = one(p.stdout, "PH=")
    # the server got the real value and sent it back in every encoding...
    assert [g.header("authorization") for g in echo_server.got("/encoded")] == [f"Bearer {gh}"]
    status, sent_headers, sent_body = _encoded_echo(echo_server.got("/encoded")[0])
    assert reveals(sent_body, gh) and all(reveals(v.encode(), gh) for _, v in sent_headers)
    # ...and nothing the sandbox received reveals it, decoded any way
    head = (ws.proj / "hdr.txt").read_bytes()
    body = (ws.proj / "body.txt").read_bytes()
    assert len(body) >= len(sent_body) // 2
    for line in head.splitlines() + body.splitlines():
        assert not reveals(line, gh), line
    assert not reveals(head, gh) and not reveals(body, gh)
    # a whole Basic header comes back as the placeholder's
    basic = [line.split(b":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith(b"x-basic:")]
    assert basic == [b"Basic " + base64.b64encode(b"x:" + ph.encode())], head
    assert_no_leak(ws, p, gh)
    [rec] = https_records(ws, echo_server.port)
    assert rec.get("redacted", 0) >= len(ECHO_HEADERS), rec
