"""Table tests of corral.display.shown: every name corral prints is escaped."""

import pytest

from corral.display import shown

CASES = [
    # (name, shown)
    ("github.com", "github.com"),
    ("", ""),
    ("a b", "a b"),
    ("évidence-日本.example", "évidence-日本.example"),
    ("\U0001F600", "\U0001F600"),
    # terminal escape sequences: ESC (and CSI, OSC) can no longer act
    ("evil\x1b[2K\x1b[1Gcorral: ok", "evil\\x1b[2K\\x1b[1Gcorral: ok"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("\x9b31m", "\\x9b31m"),  # the 8-bit CSI
    # line structure: no forged extra lines
    ("a\nb", "a\\nb"),
    ("a\r\nb", "a\\r\\nb"),
    ("a\tb", "a\\tb"),
    ("a\x00b", "a\\x00b"),
    ("\x7f", "\\x7f"),
    ("\x85", "\\x85"),  # NEL
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    # bidi and invisible format controls
    ("\u202aa\u202bb\u202cc\u202dd\u202ee", "\\u202aa\\u202bb\\u202cc\\u202dd\\u202ee"),
    ("\u2066a\u2067b\u2068c\u2069", "\\u2066a\\u2067b\\u2068c\\u2069"),
    ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
    ("zero\u200bwidth\u200d\ufeff", "zero\\u200bwidth\\u200d\\ufeff"),
    ("\U000e0041", "\\U000e0041"),  # tag character
    ("\u00a0", "\\xa0"),  # a space that is not a space
    # surrogates and bytes that are not UTF-8
    ("\ud800", "\\ud800"),
    ("caf\udce9", "caf\\xe9"),  # os.fsdecode of b"caf\xe9"
    (b"caf\xe9", "caf\\xe9"),
    (b"ok\xff\xfe", "ok\\xff\\xfe"),
    (b"\xc3\xa9", "é"),
    (bytearray(b"a\x1bb"), "a\\x1bb"),
    # the backslash itself: an escape in the output always means one was made
    ("a\\x1bb", "a\\\\x1bb"),
]


@pytest.mark.parametrize(("name", "expected"), CASES)
def test_shown_escapes_controls(name, expected):
    assert shown(name) == expected


@pytest.mark.parametrize(("name", "_"), CASES)
def test_shown_output_is_one_printable_line(name, _):
    out = shown(name)
    assert out.isprintable()
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in out)
    out.encode("utf-8")  # never raises


def test_shown_limit_cuts_before_escaping():
    assert shown("abcdef", limit=3) == "abc..."
    assert shown("abc", limit=3) == "abc"
    assert shown("\x1b" * 10, limit=2) == "\\x1b\\x1b..."


def test_shown_other_objects_are_stringified():
    assert shown(42) == "42"
