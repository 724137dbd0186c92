"""Resource-limit values: parsing and printing sizes, durations, counts (`[limits]`, `--memory`).

Pure: no I/O, no knowledge of how a limit is enforced (that is `sandbox.limits`). Every parser
raises ValueError with the words a user needs (the caller adds file, key and value).
Sizes are binary (`2g` = 2 GiB), as in docker's `--memory 2g`.
"""

from __future__ import annotations

SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# key -> (kind, bounds): the [limits] table's schema, used by policy.native and the CLI flags.
MIN_MEMORY = 4 << 20  # below this bwrap itself cannot start
MAX_SIZE = 1 << 60
MIN_PIDS, MAX_PIDS = 1, 4194304
MIN_CPUS, MAX_CPUS = 0.01, 4096.0
MIN_NOFILE, MAX_NOFILE = 32, 1 << 30  # bwrap needs a handful of descriptors of its own
MAX_TIMEOUT = 366 * 86400.0

SIZE_HINT = 'expected a size such as "512m", "2g" or a number of bytes (units: k, m, g, t; binary)'
DURATION_HINT = 'expected a duration such as "30s", "10m", "1h30m" or a number of seconds'


def parse_size(value, minimum: int = 1) -> int:
    """`2g`, `512M`, `1.5g`, `64MiB`, `100000` (bytes) -> bytes."""
    if isinstance(value, bool):
        raise ValueError(SIZE_HINT)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower().replace("_", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(digits):].strip()
        if unit.endswith("ib"):
            unit = unit[:-2]
        elif unit.endswith("b") and len(unit) == 2:
            unit = unit[:-1]
        if unit not in SIZE_UNITS or not digits.strip():
            raise ValueError(SIZE_HINT)
        try:
            amount = float(digits) if "." in digits else int(digits)
        except ValueError:
            raise ValueError(SIZE_HINT) from None
        number = int(amount * SIZE_UNITS[unit])
    else:
        raise ValueError(SIZE_HINT)
    if not minimum <= number <= MAX_SIZE:
        raise ValueError(f"out of range: expected at least {format_size(minimum)}")
    return number


def parse_duration(value) -> float:
    """`10m`, `1h30m`, `2.5s`, `500ms`, `90` (seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError(DURATION_HINT)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if not text:
            raise ValueError(DURATION_HINT)
        try:
            seconds = float(text)
        except ValueError:
            seconds = _compound_duration(text)
    else:
        raise ValueError(DURATION_HINT)
    if not 0 < seconds <= MAX_TIMEOUT:  # also refuses nan
        raise ValueError("out of range: expected more than 0 s and at most 366 days")
    return seconds


def _compound_duration(text: str) -> float:
    total = 0.0
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] == "."):
            j += 1
        k = j
        while k < len(text) and text[k].isalpha():
            k += 1
        number, unit = text[i:j], text[j:k]
        if not number or unit not in DURATION_UNITS:
            raise ValueError(DURATION_HINT)
        try:
            total += float(number) * DURATION_UNITS[unit]
        except ValueError:
            raise ValueError(DURATION_HINT) from None
        i = k
    return total


def parse_count(value, minimum: int, maximum: int, what: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number of {what}")
    if not minimum <= value <= maximum:
        raise ValueError(f"out of range: expected {minimum} to {maximum} {what}")
    return value


def parse_cpus(value) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("expected a number of CPUs such as 1.5") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number of CPUs such as 1.5")
    if not MIN_CPUS <= value <= MAX_CPUS:  # also refuses nan
        raise ValueError(f"out of range: expected {MIN_CPUS} to {MAX_CPUS:g} CPUs")
    return float(value)


def format_size(n: int) -> str:
    """The shortest exact spelling: 2147483648 -> "2g", 1610612736 -> "1536m"."""
    for unit in ("t", "g", "m", "k"):
        if n >= SIZE_UNITS[unit] and n % SIZE_UNITS[unit] == 0:
            return f"{n // SIZE_UNITS[unit]}{unit}"
    return str(n)


def format_duration(seconds: float) -> str:
    """600 -> "10m", 5400 -> "1h30m", 2.5 -> "2.5s"."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    s = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out


# The [limits] keys: key -> (parser, formatter). `strict` is a bool, handled by the caller.
KEYS = {
    "memory": (lambda v: parse_size(v, MIN_MEMORY), format_size),
    "pids": (lambda v: parse_count(v, MIN_PIDS, MAX_PIDS, "processes"), str),
    "cpus": (parse_cpus, lambda v: f"{v:g}"),
    "timeout": (parse_duration, format_duration),
    "nofile": (lambda v: parse_count(v, MIN_NOFILE, MAX_NOFILE, "open files"), str),
    "fsize": (parse_size, format_size),
}


def parse(key: str, value):
    """One [limits] value (or CLI flag value) -> its model value; ValueError names the fix."""
    return KEYS[key][0](value)


def show(key: str, value) -> str:
    """A model value as the user would write it (also in messages: "memory limit 2g")."""
    return KEYS[key][1](value)
