"""corral.proxy.httprules: rule grammar, path normalisation, globs, decisions, Host vs SNI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from corral.proxy.httprules import (
    ALLOW,
    BAD_REQUEST,
    DEFAULT_DENY,
    DENY_RULE,
    NOT_ALLOWED,
    REFUSED_METHOD,
    HttpDecision,
    HttpRules,
    host_match,
    normalize_path,
    parse_host_pattern,
    parse_rule,
    refuse_method,
)

# ---------------------------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------------------------

PARSE_OK = [
    # text, action given, expected (action, methods, host kind, host, path, query)
    ("GET,HEAD github.com/**", "allow", ("allow", frozenset({"GET", "HEAD"}), "name", "github.com", "/**", ())),
    ("get github.com/**", "allow", ("allow", frozenset({"GET"}), "name", "github.com", "/**", ())),
    ("* api.example.com/v1/**", "allow", ("allow", "*", "name", "api.example.com", "/v1/**", ())),
    ("deny POST github.com/*/*.git/git-receive-pack", None,
     ("deny", frozenset({"POST"}), "name", "github.com", "/*/*.git/git-receive-pack", ())),
    ("DENY POST github.com/**", "deny", ("deny", frozenset({"POST"}), "name", "github.com", "/**", ())),
    ("GET github.com/*/*.git/info/refs?service=git-receive-pack", "deny",
     ("deny", frozenset({"GET"}), "name", "github.com", "/*/*.git/info/refs", (("service", "git-receive-pack"),))),
    ("GET *.github.com/**", "allow", ("allow", frozenset({"GET"}), "wildcard", "github.com", "/**", ())),
    ("GET GitHub.COM./**", "allow", ("allow", frozenset({"GET"}), "name", "github.com", "/**", ())),
    ("GET 10.0.0.1/x", "allow", ("allow", frozenset({"GET"}), "ip", "10.0.0.1", "/x", ())),
    ("GET [::1]/x", "allow", ("allow", frozenset({"GET"}), "ip", "::1", "/x", ())),
    ("GET */**", "allow", ("allow", frozenset({"GET"}), "any", "", "/**", ())),
    ("GET example.com/", "allow", ("allow", frozenset({"GET"}), "name", "example.com", "/", ())),
    # a trailing slash does not matter
    ("GET example.com/a/", "allow", ("allow", frozenset({"GET"}), "name", "example.com", "/a", ())),
    ("GET example.com/%7euser/%2e%61", "allow", ("allow", frozenset({"GET"}), "name", "example.com", "/~user/.a", ())),
    ("GET example.com/a%3ab", "allow", ("allow", frozenset({"GET"}), "name", "example.com", "/a%3Ab", ())),
]


@pytest.mark.parametrize("text,action,expected", PARSE_OK)
def test_parse_rule(text, action, expected):
    rule = parse_rule(text, action)
    assert (rule.action, rule.methods, rule.host.kind, rule.host.host, rule.path, rule.query) == expected
    assert rule.text == text


PARSE_ERRORS = [
    ("GET github.com/**", None, "no action"),
    ("allow GET github.com/**", "deny", "listed as 'deny'"),
    ("github.com/**", "allow", "expected 'METHODS HOST/PATH'"),
    ("GET github.com /**", "allow", "expected 'METHODS HOST/PATH'"),
    ("GET github.com", "allow", "no path: write 'github.com/**'"),
    ("GET https://github.com/**", "allow", "drop the scheme"),
    ("GET /org/**", "allow", "starts with the host"),
    ("GET github.com:443/**", "allow", "no port here"),
    ("GET git*hub.com/**", "allow", "host 'git*hub.com'"),
    ("GET,,HEAD github.com/**", "allow", "empty method"),
    ("G*T github.com/**", "allow", "'*' stands alone"),
    ("GE(T github.com/**", "allow", "invalid method"),
    ("CONNECT github.com/**", "allow", "CONNECT is decided by the domain rules"),
    ("TRACE github.com/**", "allow", "always refused"),
    ("GET github.com/a**/b", "allow", "'**' must be a whole segment"),
    ("GET github.com/a//b", "allow", "empty path segment"),
    ("GET github.com/a/../b", "allow", "dot segments"),
    ("GET github.com/a/%2e/b", "allow", "dot segments"),
    ("GET github.com/a%2Fb", "allow", "servers disagree"),
    ("GET github.com/a%zzb", "allow", "malformed percent-escape"),
    ("GET github.com/a#b", "allow", "fragment"),
    ("GET github.com/x?service", "deny", "expected KEY=VALUE"),
    ("GET github.com/x?service=*", "deny", "'*' is not a wildcard"),
    (42, "allow", "expected a string"),
]


@pytest.mark.parametrize("text,action,message", PARSE_ERRORS)
def test_parse_rule_errors(text, action, message):
    with pytest.raises(ValueError) as info:
        parse_rule(text, action)
    assert message in str(info.value)


HOST_PATTERN_ERRORS = [
    ("10.0.0.0/8", "not a range or path"),
    ("example.com:443", "no port here"),
    ("", "empty pattern"),
    ("*.", "invalid domain"),
]


@pytest.mark.parametrize("text,message", HOST_PATTERN_ERRORS)
def test_parse_host_pattern_errors(text, message):
    with pytest.raises(ValueError) as info:
        parse_host_pattern(text)
    assert message in str(info.value)


def test_rule_set_errors_name_the_entry():
    with pytest.raises(ValueError, match=r"HTTP deny rule 'POST github\.com': no path"):
        HttpRules.compile(deny=["POST github.com"])
    with pytest.raises(ValueError, match=r"HTTP rule 'GET github\.com/\*\*': no action"):
        HttpRules(["GET github.com/**"])
    with pytest.raises(ValueError, match="default 'maybe'"):
        HttpRules([], default="maybe")


def test_deny_rules_may_name_trace():
    assert parse_rule("deny TRACE */**").methods == frozenset({"TRACE"})


# ---------------------------------------------------------------------------------------------
# Path normalisation
# ---------------------------------------------------------------------------------------------

NORMALIZE = [
    ("/", [()], ""),
    ("/a/b", [("a", "b")], ""),
    ("/a/b/", [("a", "b")], ""),
    ("//a///b", [("a", "b")], ""),
    ("/a/./b/.", [("a", "b")], ""),
    ("/a/../b", [("b",)], ""),
    ("/a/b/../../c", [("c",)], ""),
    ("/a/%2e%2E/b", [("b",)], ""),  # encoded dots are dots
    ("/%61%62c", [("abc",)], ""),
    ("/a%3ab", [("a%3Ab",)], ""),  # reserved characters keep their escape, upper-case hex
    ("/Repo", [("Repo",)], ""),  # case-sensitive
    ("/a?x=1&y=%2F", [("a",)], "x=1&y=%2F"),
    ("/a%2Fb", [("a%2Fb",), ("a", "b")], ""),
    ("/a%2fb%5cc", [("a%2Fb%5Cc",), ("a", "b%5Cc"), ("a%2Fb", "c"), ("a", "b", "c")], ""),
    ("/a\\b", [("a\\b",), ("a", "b")], ""),
    # path parameters and trailing dots: also read the way servers that drop them read them
    ("/a;v=1/b", [("a;v=1", "b"), ("a", "b")], ""),
    ("/a%3bv/b", [("a%3Bv", "b"), ("a", "b")], ""),
    ("/a/..;/b", [("a", "..;", "b"), ("b",)], ""),
    ("/a./b..", [("a.", "b.."), ("a", "b")], ""),
    ("/a/.../b", [("a", "...", "b")], ""),  # all dots: not a dot segment, kept
    ("/a;x?q=1;r=2", [("a;x",), ("a",)], "q=1;r=2"),
]


@pytest.mark.parametrize("target,readings,query", NORMALIZE)
def test_normalize_path(target, readings, query):
    assert normalize_path(target) == (tuple(readings), query)


NORMALIZE_ERRORS = [
    ("/a/../..", "climbs above the root"),
    ("/..", "climbs above the root"),
    ("/%2e%2e/etc", "climbs above the root"),
    ("/a%2F..%2F..%2Fb", "climbs above the root"),  # only when %2F separates, but refused
    ("/a\x00b", "NUL"),
    ("/a\rb", "CR"),
    ("/a\nb", "LF"),
    ("/a b", "a space"),
    ("/caf\u00e9", "printable ASCII"),
    ("/a%", "malformed percent-escape"),
    ("/a%g0", "malformed percent-escape"),
    ("/a?b=%zz", "malformed percent-escape"),
    ("/a#frag", "fragment"),
    ("a/b", "starts with '/'"),
    ("", "starts with '/'"),
]


@pytest.mark.parametrize("target,message", NORMALIZE_ERRORS)
def test_normalize_path_refuses(target, message):
    with pytest.raises(ValueError) as info:
        normalize_path(target)
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------
# Globs: `*` is one segment, `**` any number, `*` inside a segment stays inside it
# ---------------------------------------------------------------------------------------------

GLOBS = [
    ("/*", "/a", True),
    ("/*", "/", False),
    ("/*", "/a/b", False),
    ("/**", "/", True),
    ("/**", "/a/b/c", True),
    ("/a/**", "/a", True),
    ("/a/**", "/a/b/c", True),
    ("/a/**", "/ab", False),
    ("/a/*/c", "/a/b/c", True),
    ("/a/*/c", "/a/b/x/c", False),
    ("/a/**/c", "/a/c", True),
    ("/a/**/c", "/a/b/x/c", True),
    ("/a/**/c", "/a/b/x/d", False),
    ("/**/c", "/x/y/c", True),
    ("/**/c/**", "/x/c/y", True),
    ("/**/c/**", "/x/y", False),
    ("/a/**/b/**/c", "/a/b/x/b/y/c", True),
    ("/*.git", "/repo.git", True),
    ("/*.git", "/.git", True),
    ("/*.git", "/repo.gitx", False),
    ("/*.git", "/dir/repo.git", False),
    ("/a*b*c", "/axxbyyc", True),
    ("/a*b*c", "/acb", False),
    ("/a*a", "/a", False),  # the literal parts may not overlap
    ("/x", "/X", False),
    ("/v1/**", "/v1/../v2/x", False),  # judged after resolving: /v2/x
    ("/v2/**", "/v1/../v2/x", True),
]


@pytest.mark.parametrize("pattern,path,matches", GLOBS)
def test_glob(pattern, path, matches):
    rules = HttpRules([f"allow GET example.com{pattern}"])
    assert rules.decide("GET", "example.com", path).allowed is matches


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------

GIT_RULES = HttpRules.compile(
    allow=["GET,HEAD,POST github.com/**", "* api.github.com/**"],
    deny=[
        "POST github.com/*/*.git/git-receive-pack",
        "GET github.com/*/*.git/info/refs?service=git-receive-pack",
    ],
)

GIT = [
    # git smart HTTP: fetch works, push does not
    ("GET", "/org/repo.git/info/refs?service=git-upload-pack", True, ALLOW),
    ("POST", "/org/repo.git/git-upload-pack", True, ALLOW),
    ("POST", "/org/repo.git/git-receive-pack", False, DENY_RULE),
    ("GET", "/org/repo.git/info/refs?service=git-receive-pack", False, DENY_RULE),
    ("get", "/org/repo.git/info/refs?service=git-receive-pack", False, DENY_RULE),
    ("GET", "/org/repo.git/info/refs", True, ALLOW),  # dumb-HTTP discovery: no service
    # the query condition of a deny rule: any occurrence counts, every separator counts
    ("GET", "/org/repo.git/info/refs?service=git-upload-pack&service=git-receive-pack", False, DENY_RULE),
    ("GET", "/org/repo.git/info/refs?x=1;service=git-receive-pack", False, DENY_RULE),
    ("GET", "/org/repo.git/info/refs?service=git%2Dreceive%2Dpack", False, DENY_RULE),
    ("GET", "/org/repo.git/info/refs?service=git-receive-packs", True, ALLOW),
    # spellings that must not dodge the push rule
    ("POST", "/org/repo.git/git-receive-pack/", False, DENY_RULE),
    ("POST", "//org//repo.git/git-receive-pack", False, DENY_RULE),
    ("POST", "/org/x/../repo.git/git-receive-pack", False, DENY_RULE),
    ("POST", "/org/./repo.git/./git-receive-pack", False, DENY_RULE),
    ("POST", "/org/repo.git/%67it-receive-pack", False, DENY_RULE),
    ("POST", "/org/repo.git/git-receive-pack?x=1", False, DENY_RULE),  # query ignored without condition
    ("POST", "/org/repo.git%2Fgit-receive-pack", False, BAD_REQUEST),  # ambiguous: refused
    ("POST", "/org%2Frepo.git/git-receive-pack", False, BAD_REQUEST),
    ("POST", "/org/repo.git%5Cgit-receive-pack", False, BAD_REQUEST),
    ("POST", "/org/repo.git\\git-receive-pack", False, BAD_REQUEST),
    ("GET", "/org/repo.git/blob%2Fmain", True, ALLOW),  # every reading allowed: goes through
    # default-deny on a host with allow rules
    ("DELETE", "/org/repo", False, NOT_ALLOWED),
    ("PUT", "/org/repo", False, NOT_ALLOWED),
    ("TRACE", "/", False, REFUSED_METHOD),
    ("track", "/", False, REFUSED_METHOD),
    ("GET", "/../etc/passwd", False, BAD_REQUEST),
    ("GET", "/a\r\nX-Injected: 1", False, BAD_REQUEST),
    ("G E T", "/", False, BAD_REQUEST),
    ("CONNECT", "github.com:443", False, BAD_REQUEST),
]


@pytest.mark.parametrize("method,path,allowed,code", GIT)
def test_git_smart_http(method, path, allowed, code):
    decision = GIT_RULES.decide(method, "github.com", path)
    assert (decision.allowed, decision.code) == (allowed, code), decision.reason


def test_blocked_request_names_the_rule():
    decision = GIT_RULES.decide("POST", "github.com", "/org/repo.git/git-receive-pack")
    assert decision == HttpDecision(
        False,
        "POST github.com/*/*.git/git-receive-pack",
        "POST github.com/org/repo.git/git-receive-pack is denied by HTTP rule "
        "'POST github.com/*/*.git/git-receive-pack'",
        DENY_RULE,
    )
    assert decision.status == 403
    nothing = GIT_RULES.decide("DELETE", "github.com", "/x")
    assert "GET,HEAD,POST github.com/**" in nothing.reason and nothing.status == 403


STATUSES = [
    ("GET", "/x", 200),
    ("POST", "/o/r.git/git-receive-pack", 403),
    ("PATCH", "/x", 403),
    ("TRACE", "/x", 405),
    ("GET", "/a%zz", 400),
]


@pytest.mark.parametrize("method,path,status", STATUSES)
def test_status(method, path, status):
    assert GIT_RULES.decide(method, "github.com", path).status == status


DECISIONS = [
    # rules, default, method, host, path, allowed, code
    (["allow GET github.com/**"], "allow", "GET", "github.com", "/x", True, ALLOW),
    (["allow GET github.com/**"], "allow", "POST", "github.com", "/x", False, NOT_ALLOWED),  # default-deny
    (["allow GET github.com/**"], "allow", "POST", "GITHUB.com.", "/x", False, NOT_ALLOWED),
    (["allow GET github.com/**"], "allow", "POST", "gitlab.com", "/x", True, ALLOW),  # not ruled: default
    (["allow GET github.com/**"], "deny", "GET", "gitlab.com", "/x", False, DEFAULT_DENY),
    (["allow GET github.com/**"], "allow", "POST", "api.github.com", "/x", True, ALLOW),  # exact != subdomain
    (["allow GET *.github.com/**"], "allow", "POST", "api.github.com", "/x", False, NOT_ALLOWED),
    (["allow GET *.github.com/**"], "allow", "POST", "github.com", "/x", True, ALLOW),  # *.x is not x
    # deny beats allow, whatever the order
    (["allow * github.com/**", "deny DELETE github.com/**"], "allow", "DELETE", "github.com", "/x", False, DENY_RULE),
    (["deny DELETE github.com/**", "allow * github.com/**"], "allow", "DELETE", "github.com", "/x", False, DENY_RULE),
    (["allow * github.com/a/**", "deny * github.com/a/secret/**"], "allow", "GET", "github.com", "/a/secret/x",
     False, DENY_RULE),
    (["allow * github.com/a/**", "deny * github.com/a/secret/**"], "allow", "GET", "github.com", "/a/public", True,
     ALLOW),
    # a host with only deny rules follows the default
    (["deny POST github.com/**"], "allow", "GET", "github.com", "/x", True, ALLOW),
    (["deny POST github.com/**"], "deny", "GET", "github.com", "/x", False, DEFAULT_DENY),
    (["deny POST github.com/**"], "allow", "POST", "github.com", "/x", False, DENY_RULE),
    # a wildcard host
    (["allow GET */**"], "allow", "POST", "anything.example", "/", False, NOT_ALLOWED),
    (["deny * 169.254.169.254/**"], "allow", "GET", "169.254.169.254", "/latest", False, DENY_RULE),
    # allow rules with a query condition: every occurrence must match
    (["allow GET h.example/q?a=1"], "allow", "GET", "h.example", "/q?a=1", True, ALLOW),
    (["allow GET h.example/q?a=1"], "allow", "GET", "h.example", "/q?a=1&a=2", False, NOT_ALLOWED),
    (["allow GET h.example/q?a=1"], "allow", "GET", "h.example", "/q", False, NOT_ALLOWED),
    (["allow GET h.example/q?a=1&b=2"], "allow", "GET", "h.example", "/q?b=2&a=1", True, ALLOW),
    (["allow GET h.example/q?a=1&b=2"], "allow", "GET", "h.example", "/q?a=1", False, NOT_ALLOWED),
    # OPTIONS * is judged as the root
    (["allow OPTIONS h.example/"], "allow", "OPTIONS", "h.example", "*", True, ALLOW),
    (["allow GET h.example/**"], "allow", "GET", "h.example", "*", False, BAD_REQUEST),
    ([], "allow", "GET", "bad host", "/", False, BAD_REQUEST),
    ([], "allow", "GET", "h.example", "/a\x00", False, BAD_REQUEST),
]


@pytest.mark.parametrize("rules,default,method,host,path,allowed,code", DECISIONS)
def test_decide(rules, default, method, host, path, allowed, code):
    decision = HttpRules(rules, default=default).decide(method, host, path)
    assert (decision.allowed, decision.code) == (allowed, code), decision.reason


def test_rule_objects_and_strings_mix():
    rules = HttpRules([parse_rule("GET a.example/**", "allow"), "deny GET a.example/x"])
    assert [r.action for r in rules.rules] == ["allow", "deny"]
    assert not rules.decide("GET", "a.example", "/x").allowed
    with pytest.raises(AttributeError):
        rules.default = "deny"


COVERS = [
    (["allow GET github.com/**"], "allow", "github.com", True),
    (["allow GET github.com/**"], "allow", "example.com", False),
    (["deny POST *.github.com/**"], "allow", "api.github.com", True),
    ([], "deny", "example.com", True),
]


@pytest.mark.parametrize("rules,default,host,covered", COVERS)
def test_covers(rules, default, host, covered):
    assert HttpRules(rules, default=default).covers(host) is covered


REFUSE_METHOD = [("TRACE", True), ("trace", True), ("TRACK", True), ("GET", False), ("CONNECT", False)]


@pytest.mark.parametrize("method,refused", REFUSE_METHOD)
def test_refuse_method(method, refused):
    assert (refuse_method(method) is not None) is refused


# ---------------------------------------------------------------------------------------------
# require_host_match: SNI and Host must agree (no domain fronting)
# ---------------------------------------------------------------------------------------------

HOST_MATCH = [
    ("api.x.com", "api.x.com", 443, True),
    ("api.x.com", "api.x.com:443", 443, True),
    ("api.x.com", "API.X.COM", 443, True),
    ("api.x.com.", "api.x.com", 443, True),
    ("api.x.com", "api.x.com.:443", 443, True),
    ("API.x.com", " api.x.com ", 443, True),
    ("api.x.com", "api.x.com:8443", 8443, True),
    ("api.x.com", "api.x.com:8443", 443, False),  # a port in Host must be the connection's
    ("api.x.com", "api.x.com:443", 8443, False),
    ("front.example", "hidden.example", 443, False),  # domain fronting
    ("x.com", "api.x.com", 443, False),
    ("api.x.com", "api.x.com:", 443, False),
    ("api.x.com", "api.x.com:0443x", 443, False),
    ("api.x.com", "api.x.com:99999", 443, False),
    ("api.x.com", "user@api.x.com", 443, False),
    ("api.x.com", "api.x.com/evil", 443, False),
    ("api.x.com", "", 443, False),
    ("bücher.example", "xn--bcher-kva.example", 443, True),
    (None, "1.2.3.4", 443, True),  # no SNI for IP literals
    (None, "[::1]:443", 443, True),
    ("", "1.2.3.4:443", 443, True),
    (None, "api.x.com", 443, False),  # a name without SNI: nothing to agree with
    (None, "::1", 443, False),  # IPv6 in Host must be bracketed
    ("api.x.com", "[::1]", 443, False),
    ("bad name", "bad name", 443, False),
]


@pytest.mark.parametrize("sni,host,port,expected", HOST_MATCH)
def test_host_match(sni, host, port, expected):
    assert host_match(sni, host, port) is expected


def test_importing_httprules_is_cheap_and_opens_nothing():
    code = (
        "import sys, builtins, corral; before = set(sys.modules); opened = []; real = builtins.open;"
        "builtins.open = lambda *a, **k: opened.append(a) or real(*a, **k);"
        "import corral.proxy.httprules as h;"
        "h.HttpRules(['allow GET *.example.com/**']).decide('GET', 'a.example.com', '/');"
        "print(sorted(m for m in set(sys.modules) - before if m in "
        "('socket', 'ssl', 're', 'dataclasses', 'inspect', 'selectors', 'asyncio', 'urllib.parse')), opened)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


# ---------------------------------------------------------------------------------------------
# The documented push rule: every spelling of a push is refused (issue 10)
# ---------------------------------------------------------------------------------------------

PUSH_RULES = HttpRules([
    "allow GET,HEAD,POST github.com/**",  # POST too: fetch posts to git-upload-pack
    "deny POST github.com/**/git-receive-pack",
    "deny * github.com/**/info/refs?service=git-receive-pack",
])

PUSH_SPELLINGS = [
    # method, path, allowed, code
    ("POST", "/o/r/git-receive-pack", False, DENY_RULE),  # no .git: GitHub serves it
    ("POST", "/o/r.git/git-receive-pack", False, DENY_RULE),
    ("POST", "/git-receive-pack", False, DENY_RULE),
    ("POST", "/o/r/GIT-RECEIVE-PACK", False, DENY_RULE),  # deny rules ignore case
    ("POST", "/o/r/Git-Receive-Pack/", False, DENY_RULE),
    ("POST", "/o/r/git-receive-pack;x=1", False, BAD_REQUEST),  # ;params: readings disagree
    ("POST", "/o/r/git-receive-pack%3bx", False, BAD_REQUEST),
    ("POST", "/o/r;x=1/git-receive-pack", False, DENY_RULE),
    ("POST", "/o/r/git-receive-pack.", False, BAD_REQUEST),  # trailing dot
    ("POST", "/o/r/git-receive-pack..", False, BAD_REQUEST),
    ("POST", "/o/r/git-receive-pack/.", False, DENY_RULE),
    ("POST", "/o/r/./git-receive-pack", False, DENY_RULE),
    ("POST", "//o//r//git-receive-pack", False, DENY_RULE),
    ("POST", "/o/r/x/../git-receive-pack", False, DENY_RULE),
    ("POST", "/o/r/x/..;/git-receive-pack", False, DENY_RULE),
    ("POST", "/o/r/%67it-receive-pack", False, DENY_RULE),
    ("POST", "/o/r/git%2dreceive%2Dpack", False, DENY_RULE),
    ("POST", "/o/r%2Fgit-receive-pack", False, BAD_REQUEST),
    ("POST", "/o/r%5cgit-receive-pack", False, BAD_REQUEST),
    ("POST", "/o/r/git-receive-pack?x=1", False, DENY_RULE),
    ("post", "/o/r/git-receive-pack", False, DENY_RULE),
    # push discovery, whatever the method and spelling
    ("GET", "/o/r/info/refs?service=git-receive-pack", False, DENY_RULE),
    ("GET", "/o/r.git/info/refs?service=git-receive-pack", False, DENY_RULE),
    ("HEAD", "/o/r/info/refs?service=git-receive-pack", False, DENY_RULE),
    ("POST", "/o/r/info/refs?service=git-receive-pack", False, DENY_RULE),
    ("GET", "/o/r/info/refs?service=GIT-RECEIVE-PACK", False, DENY_RULE),
    ("GET", "/o/r/info/refs?SERVICE=git-receive-pack", False, DENY_RULE),
    ("GET", "/o/r/info/refs?service=git%2Dreceive%2Dpack", False, DENY_RULE),
    ("GET", "/o/r/info/refs?service=git-receive-pack&service=git-upload-pack", False, DENY_RULE),
    ("GET", "/o/r/info/refs?a=b;service=git-receive-pack", False, DENY_RULE),
    ("GET", "/o/r/INFO/Refs?service=git-receive-pack", False, DENY_RULE),
    ("GET", "/o/r/info/refs;x?service=git-receive-pack", False, BAD_REQUEST),
    ("GET", "/o/r/info/./refs?service=git-receive-pack", False, DENY_RULE),
    ("GET", "/o/r/info//refs/?service=git-receive-pack", False, DENY_RULE),
    # fetch still works, with or without .git
    ("GET", "/o/r/info/refs?service=git-upload-pack", True, ALLOW),
    ("GET", "/o/r.git/info/refs?service=git-upload-pack", True, ALLOW),
    ("POST", "/o/r/git-upload-pack", True, ALLOW),
    ("POST", "/o/r.git/git-upload-pack;x", True, ALLOW),  # every reading allowed
    ("GET", "/o/r/blob/main/git-receive-pack.md", True, ALLOW),
]


@pytest.mark.parametrize("method,path,allowed,code", PUSH_SPELLINGS)
def test_push_in_any_spelling_is_refused(method, path, allowed, code):
    decision = PUSH_RULES.decide(method, "GitHub.com.", path)
    assert (decision.allowed, decision.code) == (allowed, code), decision.reason


def test_star_dot_git_names_only_dot_git_segments():
    """`*.git` means what it says; that is why the documented push rule is `**/git-receive-pack`."""
    old = HttpRules(["allow * github.com/**", "deny POST github.com/*/*.git/git-receive-pack"])
    assert not old.decide("POST", "github.com", "/o/r.git/git-receive-pack").allowed
    assert old.decide("POST", "github.com", "/o/r/git-receive-pack").allowed


def test_allow_rules_stay_case_sensitive():
    rules = HttpRules(["allow GET h.example/Public/**"])
    assert rules.decide("GET", "h.example", "/Public/x").allowed
    assert not rules.decide("GET", "h.example", "/public/x").allowed
