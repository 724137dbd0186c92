"""JSON for the start path: the C scanner of `_json`, without importing `json`.

`json.decoder` compiles regular expressions at import, which pulls in `re` and `enum`: about
4 ms of every `corral run --settings srt.json`, corral's most common start. `loads` drives the
same C scanner `json.loads` uses, with the same results; anything it does not accept whole
(a syntax error, trailing data) goes to `json.loads`, which then raises its usual, precise error.
"""

from __future__ import annotations

_WS = " \t\n\r"


class _Context:
    """What `_json.make_scanner` reads from a decoder (the C scanner parses numbers itself)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant) -> None:
        self.parse_constant = parse_constant
        self.memo: dict = {}


def loads(text: str, parse_constant):
    """`json.loads(text, parse_constant=parse_constant)`."""
    try:
        import _json

        scan = _json.make_scanner(_Context(parse_constant))
        start = len(text) - len(text.lstrip(_WS))
        value, end = scan(text, start)
        if text[end:].strip(_WS) == "":
            return value
    except (ImportError, StopIteration, ValueError, RecursionError, SystemError):
        # (SystemError: the C scanner on some truncated documents, e.g. `{"a": {`; json.loads
        # then reports them properly)
        pass
    import json

    return json.loads(text, parse_constant=parse_constant)  # raises the precise error
