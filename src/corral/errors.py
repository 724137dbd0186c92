"""corral's error hierarchy.

Every error corral raises on purpose derives from `CorralError` and renders as one line that
says what is wrong and, where known, what to do. The CLI prints `str(err)` and exits 125
(2 for a malformed command line: `CommandLineError`, a bad option value);
tracebacks are reserved for `--debug`.
"""

from __future__ import annotations


class CorralError(Exception):
    """Base class: a failure of corral itself (not of the sandboxed command)."""


class PolicyError(CorralError):
    """A policy or settings file (or CLI option) is invalid.

    `source` is the file (or "<cli>", "<built-in>"), `key` the dotted key path as written by
    the user (e.g. `filesystem.denyRead[2]`), `value` the offending value, `why` the reason.
    """

    def __init__(self, source: str, key: str, value: object, why: str):
        self.source = source
        self.key = key
        self.value = value
        self.why = why
        super().__init__(self._render())

    def _render(self) -> str:
        if self.source.startswith("<cli>") and self.key.startswith("-"):
            # An option, as typed: `--allow-write /x/y: no such file or directory (...)`.
            shown_value = self.value if isinstance(self.value, str) else _short(self.value)
            return f"{self.key} {_printable(shown_value)}: {self.why}"
        where = f"{self.source}: " if self.source else ""
        if self.key:
            return f"{where}{self.key} = {_short(self.value)}: {self.why}"
        return f"{where}{self.why}"


class UnsupportedFeature(PolicyError):
    """A valid setting that corral cannot honour (yet); refused rather than ignored."""


class SetupError(CorralError):
    """A protection could not be set up; `fix` tells the user what to do."""

    def __init__(self, cause: str, fix: str = ""):
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}" + (f" (fix: {fix})" if fix else ""))


class UsageError(CorralError):
    """Bad command-line usage."""


class CommandLineError(UsageError):
    """The command line itself is malformed (unknown option, missing value, wrong arguments):
    the CLI exits 2 with one line and a pointer to `corral COMMAND --help`."""


def _printable(text: str, limit: int = 200) -> str:
    from .display import shown

    return shown(text, limit)


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
