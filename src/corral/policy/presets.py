"""Allowlist presets: the names a package ecosystem's usual client reaches (data only).

`--allow-preset pypi` (repeatable) or native `[network] allow_presets = ["pypi"]` adds a
preset's names to allowed_domains. `corral audit --suggest` groups blocked names into the
presets that cover them. Each list is the smallest set the default client of that
ecosystem needs to fetch packages (not to publish them).
"""

from __future__ import annotations

PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (what it is for, allowed_domains entries)
    "pypi": ("pip, uv, poetry from PyPI", ("pypi.org", "files.pythonhosted.org")),
    "npm": ("npm, yarn, pnpm from the npm registry", ("registry.npmjs.org", "registry.yarnpkg.com")),
    "debian": ("apt from Debian's mirrors", ("deb.debian.org", "security.debian.org", "ftp.debian.org")),
    "ubuntu": ("apt from Ubuntu's archive", ("archive.ubuntu.com", "security.ubuntu.com", "ports.ubuntu.com")),
    "github": ("git over HTTPS, the API, archives and release files", (
        "github.com", "api.github.com", "codeload.github.com", "raw.githubusercontent.com",
        "objects.githubusercontent.com", "release-assets.githubusercontent.com",
    )),
    "crates": ("cargo from crates.io", ("crates.io", "index.crates.io", "static.crates.io")),
    "go": ("go modules through the Go module proxy and checksum database", ("proxy.golang.org", "sum.golang.org")),
}


def known() -> str:
    return ", ".join(PRESETS)


def domains(names) -> tuple[str, ...]:
    """The allowed_domains entries of presets `names`, in order, without repeats; ValueError
    names an unknown preset and lists the known ones."""
    out: dict[str, None] = {}
    for name in names:
        entry = PRESETS.get(name.strip().lower() if isinstance(name, str) else name)
        if entry is None:
            raise ValueError(f"unknown preset {name!r}; known presets: {known()}")
        out.update(dict.fromkeys(entry[1]))
    return tuple(out)


def covering(host: str) -> list[str]:
    """The presets whose names include canonical `host`, in table order."""
    return [name for name, (_, names) in PRESETS.items() if host in names]
