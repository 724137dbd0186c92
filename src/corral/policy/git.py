"""The `[git]` block of a native TOML policy: repositories and the refs a push may update.

Pure: values in, a `model.GitPolicy` (or a `PolicyError` naming file, key, value and fix) out.
What the proxy does with it is `proxy.gitpolicy`'s.

```toml
[git]
repositories = ["git.example.test/acme/*",                     # inherit the defaults below
                { match = "git.example.test/acme/tools", push = ["agent/*", "feature/*"], tags = true }]
push = ["agent/*"]            # short names are branches: refs/heads/agent/*
tags = false                  # true: every tag; or a list of tag patterns ("v*")
delete = false
protected = ["main", "master", "release/*"]
push_protected = false
fetch_unlisted = false        # true: clones/fetches of repositories not listed pass
```
"""

from __future__ import annotations

from ..errors import PolicyError
from .model import DEFAULT_PROTECTED, GitPolicy, GitRepository

# Keys a repository entry may set; at the top of [git] they are the entries' defaults.
REPO_KEYS = ("push", "tags", "delete", "protected", "push_protected")
TOP_KEYS = ("repositories", "fetch_unlisted", *REPO_KEYS)
ENTRY_KEYS = ("match", *REPO_KEYS)
# Characters git's check-ref-format refuses in a ref name ('*' is our wildcard).
_REF_FORBIDDEN = frozenset(" ~^:?[\\\x7f")
_PATH_FORBIDDEN = frozenset("?#%\\")


def parse(table, source: str) -> GitPolicy:
    if not isinstance(table, dict):
        raise PolicyError(source, "git", table, "expected a table ([git])")
    for name, value in table.items():
        if name not in TOP_KEYS:
            raise PolicyError(source, f"git.{name}", value, f"unknown key{_suggest(name, TOP_KEYS)}")
    defaults = {
        "push": (),
        "tags": (),
        "delete": False,
        "protected": DEFAULT_PROTECTED,
        "push_protected": False,
    }
    for name in REPO_KEYS:
        if name in table:
            defaults[name] = _value(name, table[name], source, f"git.{name}")
    fetch_unlisted = table.get("fetch_unlisted", False)
    if not isinstance(fetch_unlisted, bool):
        raise PolicyError(source, "git.fetch_unlisted", fetch_unlisted, "expected true or false")
    entries = table.get("repositories")
    if entries is None:
        raise PolicyError(source, "git.repositories", None, 'missing: list the repositories git may reach, '
                          'as in repositories = ["github.com/acme/*"]')
    if not isinstance(entries, list) or not entries:
        raise PolicyError(source, "git.repositories", entries, 'expected a non-empty list of "host/owner/repo" '
                          'patterns or { match = "...", push = [...] } tables')
    repos = []
    for i, entry in enumerate(entries):
        key = f"git.repositories[{i}]"
        fields = dict(defaults)
        if isinstance(entry, str):
            fields["match"] = repository_pattern(entry, source, key)
        elif isinstance(entry, dict):
            for name, value in entry.items():
                if name not in ENTRY_KEYS:
                    raise PolicyError(source, f"{key}.{name}", value, f"unknown key{_suggest(name, ENTRY_KEYS)}")
            if "match" not in entry:
                raise PolicyError(source, f"{key}.match", None, 'missing: the repositories this entry covers, '
                                  'as in match = "github.com/acme/tools"')
            fields["match"] = repository_pattern(entry["match"], source, f"{key}.match")
            for name in REPO_KEYS:
                if name in entry:
                    fields[name] = _value(name, entry[name], source, f"{key}.{name}")
        else:
            raise PolicyError(source, key, entry, 'expected a "host/owner/repo" pattern or a table with match')
        repos.append(GitRepository(**fields, origin=key))
    _check_shadowed(repos, source)
    return GitPolicy(tuple(repos), fetch_unlisted)


def _check_shadowed(repos: list, source: str) -> None:
    """The first matching entry decides: an entry naming one repository that an earlier
    pattern already covers would never apply, and its rules would silently not hold."""
    from ..proxy.gitpolicy import GitRules

    for i, repo in enumerate(repos):
        if "*" in repo.match:
            continue
        earlier = GitRules(GitPolicy(tuple(repos[:i]))).repository(repo.match) if i else None
        if earlier is not None:
            raise PolicyError(source, f"{repo.origin}.match", repo.match,
                              f"never applies: {earlier.origin} ({earlier.match!r}) comes first and covers it "
                              "(the first matching entry decides: list the specific entry first)")


def _value(name: str, value, source: str, key: str):
    if name in ("delete", "push_protected"):
        if not isinstance(value, bool):
            raise PolicyError(source, key, value, "expected true or false")
        return value
    if name == "tags":
        if value is True:
            return ("refs/tags/*",)
        if value is False:
            return ()
        if not isinstance(value, list):
            raise PolicyError(source, key, value, 'expected true, false or a list of tag patterns such as ["v*"]')
        return tuple(dict.fromkeys(ref_pattern(v, source, f"{key}[{i}]", "tags") for i, v in enumerate(value)))
    if not isinstance(value, list):
        example = '["agent/*"]' if name == "push" else '["main", "release/*"]'
        raise PolicyError(source, key, value, f"expected a list of ref patterns such as {example}")
    return tuple(dict.fromkeys(ref_pattern(v, source, f"{key}[{i}]", name) for i, v in enumerate(value)))


def ref_pattern(text, source: str, key: str, kind: str = "push") -> str:
    """A full ref pattern: `agent/*` is `refs/heads/agent/*` (for `tags`, `v*` is
    `refs/tags/v*`); `refs/...` stays as written. `*` matches any run of characters."""
    if not isinstance(text, str) or not text:
        raise PolicyError(source, key, text, "expected a non-empty ref pattern such as 'agent/*'")
    bad = sorted({c for c in text if c in _REF_FORBIDDEN or not " " < c <= "~"})
    if bad:
        raise PolicyError(source, key, text, f"{bad[0]!r} cannot appear in a git ref name (only '*' is a wildcard)")
    if ".." in text or "//" in text or text.startswith("/") or text.endswith(("/", ".", ".lock")) or "@{" in text:
        raise PolicyError(source, key, text, "not a valid git ref name (see git check-ref-format)")
    prefix = "refs/tags/" if kind == "tags" else "refs/heads/"
    full = text if text.startswith("refs/") else prefix + text
    if kind == "tags" and not full.startswith("refs/tags/"):
        raise PolicyError(source, key, text, "expected a tag pattern such as 'v*' or 'refs/tags/v*'")
    if kind == "push" and full.startswith("refs/tags/"):
        raise PolicyError(source, key, text, "tags are governed by git.tags (true, false or tag patterns)")
    if full in ("refs/heads/", "refs/tags/") or full.count("*") > 4:
        raise PolicyError(source, key, text, "expected a ref pattern such as 'agent/*'")
    return full


def repository_pattern(text, source: str, key: str) -> str:
    """`host/owner/repo` with `*` (within a segment) and `**` (any number of segments);
    lower-cased (hosts such as GitHub ignore case), a trailing `.git` dropped."""
    example = "as in 'github.com/acme/*' or 'git.example.test/group/**'"
    if not isinstance(text, str) or not text:
        raise PolicyError(source, key, text, f"expected a repository pattern, {example}")
    if any(not " " < c <= "~" or c in _PATH_FORBIDDEN for c in text):
        raise PolicyError(source, key, text, f"printable ASCII without spaces, '?', '#', '%' or '\\' only, {example}")
    if "://" in text or "@" in text:
        raise PolicyError(source, key, text, f"no scheme or user name: host and path only, {example}")
    host, _, path = text.strip("/").partition("/")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise PolicyError(source, key, text, f"expected a host and a path, {example} ('host/**' for every "
                          "repository of the host)")
    if any(s in (".", "..") for s in segments):
        raise PolicyError(source, key, text, f"no '.' or '..' segments, {example}")
    if any("**" in s and s != "**" for s in segments):
        raise PolicyError(source, key, text, f"'**' must be a whole segment, {example}")
    from ..proxy.addresses import normalize_host
    from ..proxy.httprules import parse_host_pattern

    try:
        pattern = parse_host_pattern(host)
        if pattern.kind == "any":
            raise ValueError("name the host: it decides which connections are inspected")
        if pattern.kind == "wildcard" and "." not in pattern.host:
            raise ValueError("a whole top-level domain: name the hosts")
        if pattern.kind != "wildcard":
            host = normalize_host(host)
    except ValueError as exc:
        raise PolicyError(source, key, text, f"{exc}, {example}") from None
    last = segments[-1]
    if last.lower().endswith(".git") and len(last) > 4:
        segments[-1] = last[:-4]
    return "/".join([host.lower(), *segments]).lower()


def _suggest(key: str, known) -> str:
    import difflib  # error path only

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of {', '.join(known)})"
