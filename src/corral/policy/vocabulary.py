"""Say it in the user's words: srt's key names in messages become the native ones.

The network rules (proxy/rules.py) word their errors in srt's keys (`allowedDomains entry
'*': ...`), since srt settings are one input. A user who wrote native TOML or typed
`--allow-domain` reads `network.allowed_domains` or `--allow-domain` instead; srt's key
appears only when the input was srt JSON. Pure: tables and string functions.
"""

from __future__ import annotations

import re

# srt settings key -> native TOML key (both under [network] / [filesystem]).
SRT_TO_NATIVE = {
    "allowedDomains": "allowed_domains",
    "deniedDomains": "denied_domains",
    "deniedDomainReasons": "denied_reasons",
    "deniedResolvedAddresses": "denied_addresses",
    "strictAllowlist": "strict_allowlist",
    "parentProxy": "parent_proxy",
    "allowUnixSockets": "allow_unix_sockets",
    "denyRead": "deny_read",
    "allowRead": "allow_read",
    "allowWrite": "allow_write",
    "denyWrite": "deny_write",
}
# srt key -> the `corral run` option that adds to it.
SRT_TO_FLAG = {
    "allowedDomains": "--allow-domain",
    "denyRead": "--deny-read",
    "allowRead": "--allow-read",
    "allowWrite": "--allow-write",
    "denyWrite": "--deny-write",
}
_WORD = re.compile(r"\b(" + "|".join(sorted(SRT_TO_NATIVE, key=len, reverse=True)) + r")\b")
_ENTRY = re.compile(r"^(\w+) entry ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"): (.*)$", re.S)


def native_words(text: str) -> str:
    """`text` with every srt key name replaced by the native TOML key."""
    return _WORD.sub(lambda m: SRT_TO_NATIVE[m.group(1)], text)


def kind_of(source: str) -> str:
    """"cli" for command-line options, "srt" for an srt settings file, else "native"."""
    if source.startswith("<cli>"):
        return "cli"
    return "srt" if source.lower().endswith(".json") else "native"


def network_error(source: str, message: str, table: str = "network"):
    """The PolicyError for a network rule that does not compile, in the input's vocabulary:
    srt JSON `network: allowedDomains entry '*': ...`; native TOML
    `network.allowed_domains: entry '*': ...`; the CLI `--allow-domain *: ...`."""
    from ..errors import PolicyError

    kind = kind_of(source)
    if kind == "srt":
        return PolicyError(source, "", None, f"{table}: {message}")
    found = _ENTRY.match(message)
    if kind == "cli":
        flag = source.split(" ", 1)[1] if " " in source else ""
        if found and (flag or found.group(1) in SRT_TO_FLAG):
            value = found.group(2)[1:-1]
            return PolicyError("<cli>", flag or SRT_TO_FLAG[found.group(1)], value, native_words(found.group(3)))
        return _Plain("", f"{flag + ': ' if flag else ''}{native_words(message)}")
    if found:
        key = f"{table}.{SRT_TO_NATIVE.get(found.group(1), found.group(1))}"
        return _Plain(source, f"{key}: entry {found.group(2)}: {native_words(found.group(3))}")
    return _Plain(source, f"{table}: {native_words(message)}")


def _Plain(source: str, text: str):
    """A PolicyError whose text is `source: text` (no `key = value` part)."""
    from ..errors import PolicyError

    return PolicyError(source, "", None, text)
