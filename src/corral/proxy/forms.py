"""Every encoded form a secret can travel in, as patterns built once per secret.

Rules of this module: it is pure (no I/O, no state besides what a caller builds), and it knows
nothing about credentials or hosts: it turns byte strings into patterns and scans bytes with them.
`credentials.py` decides which strings are searched for and what replaces them.

A response from a bound host may echo a real value in any encoding the sandbox could decode; a
request may carry a placeholder the same way. A form is described as data, a sequence of *units*
(one per encoded character or byte), each unit a set of alternative *atom* sequences, each atom a
regular expression that matches exactly one byte. From that one description come both the scan
pattern (one compiled regex for every form of every secret) and the pattern that recognises a
possible *beginning* of a form at the end of a chunk, so a stream redactor holds back only bytes
that could still turn into a secret.

The forms:

- **characters** (`char_units`): each character of the secret raw, percent-encoded (`%2F`, any
  letter case; `+` for a space), as a JSON/JavaScript `\\u00XX` or `\\xXX` escape, as an HTML
  numeric entity (`&#47;`, `&#x2F;`) or named one (`&amp;`), or backslash-escaped (`\\/`) -
  mixed freely within one occurrence.
- **hex** (`hex_units`): two hex digits per byte, any letter case.
- **UTF-16** little and big endian (a NUL byte beside every character).
- **base64** (`radix_cores`): the encoding of a value depends on where it starts modulo 3 inside
  the encoded stream. For each of the 3 alignments, the characters that encode only bits of the
  value (the partial first and last characters dropped) appear in *any* base64 text that holds the
  value at that alignment, whatever surrounds it. Standard and URL-safe alphabets alike, and a
  line break (LF or CRLF) may sit between any two characters (MIME, PEM).
- **base32** the same way: 5 alignments, standard and "extended hex" alphabets, any letter case.
"""

from __future__ import annotations

import re

__all__ = [
    "Form", "PatternSet", "Scanner", "base32_cores", "base64_cores", "char_units", "hex_units", "literal_units",
    "radix_cores", "utf16_units", "wrapped",
]

B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
B32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B32HEX = b"0123456789ABCDEFGHIJKLMNOPQRSTUV"

# A unit: alternatives, each a tuple of atoms (regex source matching one byte). A form: units.
Unit = tuple  # tuple[tuple[bytes, ...], ...]
Form = tuple  # tuple[Unit, ...]

_HTML_NAMED = {ord("&"): b"amp", ord("<"): b"lt", ord(">"): b"gt", ord('"'): b"quot", ord("'"): b"apos"}
_BREAK = ((b"\\n",), (b"\\r", b"\\n"))  # what may sit between two characters of wrapped base64/base32


def _lit(byte: int) -> bytes:
    return re.escape(bytes((byte,)))


def _ci(byte: int) -> bytes:
    """An atom matching `byte` in either letter case."""
    c = bytes((byte,))
    if c.isalpha():
        return b"[" + c.lower() + c.upper() + b"]"
    return _lit(byte)


def _chars(text: bytes, fold: bool = False) -> tuple:
    return tuple((_ci if fold else _lit)(b) for b in text)


def _hex_atoms(byte: int, width: int = 2) -> tuple:
    return _chars(b"%0*x" % (width, byte), fold=True)


def literal_units(data: bytes, fold: bool = False) -> Form:
    """`data` as written (in any letter case with `fold`)."""
    return tuple(((a,),) for a in _chars(data, fold))


def char_units(data: bytes, fold: bool = False) -> Form:
    """Each byte of `data` raw or escaped in any of the ways listed in the module docstring."""
    units = []
    for b in data:
        alts = [(_ci(b) if fold else _lit(b),)]
        if not bytes((b,)).isalnum():
            alts.append((rb"\\", _lit(b)))  # \/ \" \\ \. ...
        if b == 0x20:
            alts.append((rb"\+",))
        alts.append((b"%",) + _hex_atoms(b))
        alts.append((rb"\\", b"u") + _hex_atoms(b, 4))
        alts.append((rb"\\", b"x") + _hex_atoms(b))
        alts.append((b"&", b"#") + _chars(b"%d" % b) + (b";",))
        alts.append((b"&", b"#", b"[xX]") + _hex_atoms(b) + (b";",))
        if b in _HTML_NAMED:
            alts.append((b"&",) + _chars(_HTML_NAMED[b]) + (b";",))
        if fold and bytes((b,)).isalpha():  # escapes of the other letter case too
            other = bytes((b,)).swapcase()[0]
            alts.append((b"%",) + _hex_atoms(other))
            alts.append((rb"\\", b"u") + _hex_atoms(other, 4))
            alts.append((rb"\\", b"x") + _hex_atoms(other))
        units.append(tuple(dict.fromkeys(alts)))
    return tuple(units)


def hex_units(data: bytes) -> Form:
    """Two hex digits per byte of `data`, any letter case."""
    return tuple(((_ci(d),),) for d in data.hex().encode())


def utf16_units(data: bytes, big_endian: bool = False, fold: bool = False) -> Form:
    """`data` (ASCII) as UTF-16: a NUL beside every byte."""
    out = []
    for a in _chars(data, fold):
        out += [((b"\\x00",),), ((a,),)] if big_endian else [((a,),), ((b"\\x00",),)]
    return tuple(out)


def radix_cores(data: bytes, alphabet: bytes, bits: int) -> list[bytes]:
    """For each alignment of `data` in a base-2**bits encoded stream, the characters that encode
    only bits of `data` (both ends' partial characters dropped); empty where there are none.

    Alignment r: `data` starts r bytes after the start of an encoding group (3 bytes for base64,
    5 for base32). The characters returned appear in every encoding of any bytes containing
    `data` at that alignment.
    """
    group = 3 if bits == 6 else 5
    out = []
    n = len(data)
    for r in range(group):
        stream = b"\0" * r + data + b"\0" * group
        total = 8 * len(stream)
        value = int.from_bytes(stream, "big")
        first = -(-8 * r // bits)  # ceil: the first character wholly inside `data`
        last = (8 * (r + n)) // bits  # one past the last one
        mask = (1 << bits) - 1
        out.append(bytes(alphabet[(value >> (total - bits * (i + 1))) & mask] for i in range(first, last)))
    return out


def base64_cores(data: bytes) -> list[bytes]:
    """`radix_cores` for base64 (standard alphabet; `wrapped` matches the URL-safe one too)."""
    return radix_cores(data, B64, 6)


def base32_cores(data: bytes, alphabet: bytes = B32) -> list[bytes]:
    return radix_cores(data, alphabet, 5)


def _b64_atom(c: int) -> bytes:
    if c == ord("+"):
        return rb"[+\-]"
    if c == ord("/"):
        return b"[/_]"
    return _lit(c)


def wrapped(core: bytes, fold: bool = False, b64: bool = False) -> Form:
    """`core` (base64 or base32 text) with an optional line break before every character but the
    first; base64 in the standard or URL-safe alphabet, base32 in any letter case with `fold`."""
    units = []
    for i, c in enumerate(core):
        atom = _b64_atom(c) if b64 else (_ci(c) if fold else _lit(c))
        units.append(((atom,),) if i == 0 else ((atom,),) + tuple(brk + (atom,) for brk in _BREAK))
    return tuple(units)


# ---------------------------------------------------------------------------------------------
# Compiling forms
# ---------------------------------------------------------------------------------------------


def _alt(atoms: tuple) -> bytes:
    return b"".join(atoms)


def _unit_source(unit: Unit) -> bytes:
    if len(unit) == 1:
        return _alt(unit[0]) if len(unit[0]) == 1 else b"(?:" + _alt(unit[0]) + b")"
    return b"(?:" + b"|".join(_alt(a) for a in unit) + b")"


def form_source(form: Form) -> bytes:
    """The regex source matching `form`."""
    return b"".join(_unit_source(u) for u in form)


def _nested_prefixes(atoms: tuple) -> bytes:
    """Every non-empty proper prefix of an atom sequence: a(?:b(?:c)?)? for abcd."""
    inner = b""
    for atom in reversed(atoms[1:-1]):
        inner = b"(?:" + atom + inner + b")?"
    return atoms[0] + inner


def prefix_source(form: Form) -> bytes:
    """The regex source that, matched to the end of a text, says the text is a non-empty part
    of the start of a `form` match (a flat sequence: one group per unit, none nested deeper)."""
    parts = []
    for unit in form:
        partial = [_nested_prefixes(a) for a in unit if len(a) > 1]
        body = _unit_source(unit)
        if partial:
            parts.append(b"(?:" + body + b"|(?:" + b"|".join(partial) + rb")\Z|\Z)")
        else:
            parts.append(b"(?:" + body + rb"|\Z)")
    return b"".join(parts)


def form_length(form: Form) -> int:
    """The longest text a `form` matches."""
    return sum(max(len(a) for a in unit) for unit in form)


_ATOM_BYTES: dict = {}


def _bytes_of(atom: bytes) -> tuple:
    """The bytes one atom matches."""
    hit = _ATOM_BYTES.get(atom)
    if hit is None:
        rx = re.compile(atom)
        hit = _ATOM_BYTES[atom] = tuple(b for b in range(256) if rx.fullmatch(bytes((b,))))
    return hit


def _branches(form: Form) -> list:
    """`form` as regex branches that each begin with one literal byte: so the scan regex has a
    set of first bytes the regex engine skips to, and tries a branch only where its byte is."""
    rest = form_source(form[1:])
    return [_lit(b) + b"".join(alt[1:]) + rest for alt in form[0] for b in _bytes_of(alt[0])]


class PatternSet:
    """Compiled forms with what replaces each: one scan regex, one prefix regex.

    `entries`: (form, replacement) pairs, earlier ones preferred where two match at one place;
    a replacement is bytes or a function of the matched bytes (None: only find, never replace).
    The scan regex has no groups (they would slow every scan down): which form matched is found
    afterwards, by matching the (short, rare) matched text against each form in turn.
    """

    __slots__ = ("scan", "prefix", "forms", "replacements", "longest", "firsts", "alphabet", "_each")

    def __init__(self, entries):
        entries = [(f, r) for f, r in entries if f]
        self.forms = tuple(f for f, _ in entries)
        self.replacements = tuple(r for _, r in entries)
        self.longest = max((form_length(f) for f in self.forms), default=0)
        self._each = [None] * len(self.forms)
        if not entries:
            self.scan = self.prefix = None
            self.firsts = frozenset()
            self.alphabet = None
            return
        self.scan = re.compile(b"|".join(b for f in self.forms for b in _branches(f)))
        self.prefix = re.compile(b"|".join(b"(?:" + prefix_source(f) + b")" for f in self.forms))
        atoms = {a for f in self.forms for unit in f for alt in unit for a in alt}
        self.firsts = frozenset(b for f in self.forms for alt in f[0] for b in _bytes_of(alt[0]))
        alphabet = sorted({b for a in atoms for b in _bytes_of(a)})
        self.alphabet = re.compile(b"[" + b"".join(_lit(b) for b in alphabet) + b"]*")

    def __repr__(self):  # never the patterns: they spell the secrets
        return f"PatternSet({len(self.forms)} forms)"

    def search(self, data: bytes, start: int = 0):
        return self.scan.search(data, start) if self.scan is not None else None

    def which(self, matched: bytes) -> int:
        """The index of the first form that matches all of `matched`."""
        for i, form in enumerate(self.forms):
            rx = self._each[i]
            if rx is None:
                rx = self._each[i] = re.compile(form_source(form))
            if rx.fullmatch(matched):
                return i
        raise ValueError("not a match of this PatternSet")

    def replacement(self, match) -> bytes:
        matched = match.group()
        new = self.replacements[self.which(matched)]
        return new(matched) if callable(new) else new

    def hold_from(self, buf: bytes, start: int = 0) -> int:
        """Where the shortest tail of `buf` (from `start` on) that could begin a match starts;
        len(buf) when no tail could."""
        if self.scan is None:
            return len(buf)
        lo = max(start, len(buf) - self.longest + 1)
        if lo >= len(buf):
            return len(buf)
        # Only a tail made of bytes that occur in some form can begin one.
        run = self.alphabet.match(buf[lo:][::-1]).end()
        for j in range(len(buf) - run, len(buf)):
            if buf[j] in self.firsts and self.prefix.fullmatch(buf, j):
                return j
        return len(buf)

    def could_begin(self, tail: bytes) -> bool:
        """Whether `tail` is the start of a match (for tests and assertions)."""
        return bool(tail) and self.scan is not None and self.prefix.fullmatch(tail) is not None


class Scanner:
    """Replaces every match of a PatternSet in a stream, also across chunk boundaries.

    Holds back only a tail that could begin a match (`PatternSet.hold_from`), so a stream of
    events is not delayed by it; `flush()` at the end returns the rest, replaced. Earliest match
    first; at one place the earliest-listed form. Its repr never shows what it replaces.
    """

    __slots__ = ("_set", "_tail", "count")

    def __init__(self, patterns: PatternSet):
        self._set = patterns
        self._tail = b""
        self.count = 0  # replacements made (for the audit log)

    def __repr__(self):
        return f"{type(self).__name__}({len(self._set.forms)} forms, {len(self._tail)} bytes held)"

    def _run(self, buf: bytes, final: bool) -> bytes:
        patterns = self._set
        out, i = [], 0
        keep_from = len(buf)
        while True:
            m = patterns.search(buf, i)
            if not final and (m is None or len(buf) - m.start() < patterns.longest):
                # Near the end, a match found may be cut short of a longer one: hold what could begin one.
                keep_from = patterns.hold_from(buf, i)
            if m is None or m.start() >= keep_from:
                break
            self.count += 1
            out.append(buf[i:m.start()])
            out.append(patterns.replacement(m))
            i = m.end()
        cut = max(i, keep_from)
        out.append(buf[i:cut])
        self._tail = buf[cut:]
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        """The replaced bytes that are safe to send now (possibly fewer than were fed)."""
        if self._set.scan is None:
            return bytes(chunk)
        return self._run(self._tail + bytes(chunk), final=False)

    def flush(self) -> bytes:
        """The rest, at the end of the stream."""
        if self._set.scan is None:
            return b""
        out = self._run(self._tail, final=True)
        self._tail = b""
        return out

    def could_begin(self, tail: bytes) -> bool:
        return self._set.could_begin(tail)
