"""Names corral prints, made safe to print.

Every name that reaches corral's output may have been chosen by the sandbox: a host it asked for, a file it
planted, a header it sent. Printed raw, such a name can carry terminal escape sequences (which can move the
cursor and rewrite corral's own warnings), newlines (which forge extra log lines), bidi controls (which reorder
what the reader sees) or bytes that are not UTF-8. ``shown`` turns any such name into one line of visible,
unambiguous text: every character that is not printable becomes an escape in Python's notation (``\\x1b``,
``\\u202e``), a backslash becomes ``\\\\``, and bytes that are not UTF-8 become ``\\xNN``. Printable text, ASCII
or not, is left as it is.

This module is pure (no I/O) and imports nothing heavy: it is on the path of every ``corral run``.
"""

from __future__ import annotations

__all__ = ["shown"]

#: Shown in place of the rest of a name cut at ``limit`` characters.
ELLIPSIS = "..."


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}  # the escapes everyone reads at a glance


def _escape(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8, kept by the surrogateescape error handler
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def shown(name: str | bytes, limit: int | None = None) -> str:
    """``name`` as one line of visible text, safe to print to a terminal or a log.

    Escaped: C0 and C1 controls, DEL (so ESC sequences, newlines, tabs, carriage returns), bidi and other format
    controls (U+202A-U+202E, U+2066-U+2069, U+200E/F, zero-width characters, U+FEFF), line and paragraph separators,
    unusual spaces, surrogates, private-use and unassigned code points (everything ``str.isprintable`` refuses,
    except the ASCII space), the backslash itself (so an escape in the output always means one was made), and bytes
    that are not UTF-8. With ``limit``, at most that many characters of ``name`` are shown, then ``...``.
    """
    if isinstance(name, (bytes, bytearray, memoryview)):
        name = bytes(name).decode("utf-8", "surrogateescape")
    elif not isinstance(name, str):
        name = str(name)
    cut = limit is not None and len(name) > limit
    if cut:
        name = name[:limit]
    if name.isprintable() and "\\" not in name:
        out = name
    else:
        out = "".join(c if (c.isprintable() and c != "\\") else ("\\\\" if c == "\\" else _escape(c)) for c in name)
    return out + ELLIPSIS if cut else out
