"""Policy -> Plan: the ordered, printable description of one sandboxed run.

The decisions here are pure; every question about the host filesystem goes through the
`HostFS` object passed in (realpath, existence, the protected-file walk, glob expansion), so
tests can hand in a fake one. Mount order is the security: parents before children, and
hidden (tmpfs) directories are made read-only only after everything inside them is mounted.
"""

from __future__ import annotations

import os
from .._values import field, frozen, replace

from ..policy.defaults import credential_paths
from ..policy.model import LaunchContext, Policy
from ..workspace import protected
from .identity import IdMap, Identity, Skeleton, TmpOverlay
from .placeholders import Placeholder
from .seccomp import SeccompOptions

# Decisions for one path; the most specific (deepest) decision wins for everything below it.
RW, RO, HIDE, REOPEN_RO, REOPEN_RW, PROTECT, TMPDIR, PIN = (
    "rw", "ro", "hide", "reopen-ro", "reopen-rw", "protect", "tmpdir", "pin",
)
# The working directory in the workspace modes that keep the real directory untouched:
# writable inside, but never a host-writable area (no placeholders, no quarantine needed).
WS_TMPFS, WS_COPY, WS_OVERLAY = "ws-tmpfs", "ws-copy", "ws-overlay"


@frozen
class Mount:
    # "ro-bind" | "bind" | "dev" | "proc" | "tmpfs" | "dev-null" | "remount-ro" | "data", or
    # "pre-bind" | "pre-ro-bind": a path bound onto itself by corral's child before bwrap starts
    # (the new mount API: no mountinfo parse per mount); bwrap carries it with its parent's bind.
    op: str
    dest: str
    src: str = ""  # for "data": the file's content
    perms: int | None = None
    why: str = ""




@frozen
class WorkspacePlan:
    """How the working directory is presented (`--workspace MODE`)."""

    mode: str  # bind | ro | tmpfs | copy | overlay
    path: str  # the working directory (realpath)
    staging: str = ""  # copy: the filtered copy bound at `path`
    left_out: tuple[str, ...] = ()  # copy: secret files never copied into the staging copy
    upper: str = ""  # overlay: the session's upper and work directories
    work: str = ""
    session: str = ""  # overlay: the session name
    output: str = ""  # --output: a writable results directory


@frozen
class NetPlan:
    """The sandbox's way out: corral's proxy in a loopback-only network namespace."""

    transparent: bool  # redirect direct connections and answer DNS with synthetic addresses
    user: str  # per-run proxy credentials: each connection is attributed to its run
    token: str = field(compare=False)
    http_port: int = 3128
    socks_port: int = 1080


@frozen
class Plan:
    argv: tuple[str, ...]
    cwd: str
    env: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...]
    seccomp: SeccompOptions
    disable_userns: bool
    placeholders: tuple[Placeholder, ...]
    tmpdir: str
    writable_roots: tuple[str, ...]
    scan_skip: frozenset[str]
    protected_before: dict = field(hash=False, compare=False)
    allow_git_config: bool = False
    run_as: tuple[int, int] | None = None
    bwrap: str = "bwrap"
    quarantine_dir: str = ""
    run_id: str = ""
    scanned_entries: int = 0
    network: NetPlan | None = None
    workspace: WorkspacePlan | None = None
    # Launched by root: who the command runs as, and the view prepared for it (mountprep).
    identity: Identity | None = None
    idmaps: tuple[IdMap, ...] = ()
    # Overlay mode where the command does not own the workspace: (lower, session dir) layers,
    # idmapped, and the overlay mounted by the launcher's child rather than corral's helper.
    overlay_layers: tuple[IdMap, ...] = ()
    skeletons: tuple[Skeleton, ...] = ()
    tmp_overlay: TmpOverlay | None = None  # /tmp writable inside, writes gone with the run

    @property
    def premounts(self) -> tuple[tuple[str, bool], ...]:
        """(path, read_only) bound onto itself by corral's child before bwrap, in order."""
        return tuple((m.dest, m.op == "pre-ro-bind") for m in self.mounts if m.op.startswith("pre-"))

    @property
    def child_mount_ns(self) -> bool:
        """Does corral's child prepare a mount namespace before bwrap starts?"""
        return bool(self.idmaps or self.skeletons or self.overlay_layers or self.tmp_overlay is not None
                    or any(m.op.startswith("pre-") for m in self.mounts))
    # Symlinks on the way to the policy files in use, in writable areas: (link, target).
    # A link cannot be made read-only; the run's cleanup puts back any it changed.
    policy_links: tuple[tuple[str, str], ...] = ()
    notices: tuple[str, ...] = ()  # one line each, printed before the run (unless quiet)
    # (name, why) of the launcher's variables withheld because they look like credentials.
    withheld_env: tuple[tuple[str, str], ...] = ()
    # No network, said at once: corral's loopback-only namespace, whose responder refuses every
    # name (NXDOMAIN) and proxy request (403) and reports them (sandbox/offline.py).
    offline: bool = False


class HostFS:
    """The real filesystem, as seen by plan building."""

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def mounts_under(self, path: str) -> list[str]:
        """Mount points strictly below `path` in this mount namespace."""
        prefix = path.rstrip("/") + "/"
        found = []
        try:
            with open("/proc/self/mountinfo", "rb") as fh:
                for line in fh:
                    point = line.split(b" ", 5)[4].decode("utf-8", "surrogateescape")
                    if point.startswith(prefix):
                        found.append(point.replace("\\040", " "))
        except OSError:
            pass
        return found

    def kind(self, path: str) -> str | None:
        """'dir', 'file' (anything that is not a directory) or None when missing."""
        try:
            st = os.stat(path)
        except OSError:
            return "file" if os.path.islink(path) else None
        return "dir" if (st.st_mode & 0o170000) == 0o040000 else "file"

    def lexists(self, path: str) -> bool:
        return os.path.lexists(path)

    def read_text(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                return fh.read()
        except OSError:
            return None

    def owner(self, path: str) -> tuple[int, int]:
        st = os.stat(path)
        return st.st_uid, st.st_gid

    def readlink(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except OSError:
            return None

    def shared_sticky(self, path: str) -> bool:
        """A directory every user may write, guarded by the sticky bit (/tmp, /var/tmp)."""
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        return bool(mode & 0o1000) and bool(mode & 0o002)

    def may_create_in(self, directory: str) -> bool:
        """Can the launcher create entries in `directory`? (Where it cannot, the command cannot
        either: launched by root it can, launched unprivileged the kernel's checks apply.)"""
        return os.access(directory, os.W_OK | os.X_OK)

    def home_of(self, uid: int) -> str | None:
        import pwd

        try:
            return pwd.getpwuid(uid).pw_dir
        except KeyError:
            return None

    def sandbox_id(self) -> tuple[int, int]:
        """The dedicated uid/gid for root launches (identity.SANDBOX_USER, else SANDBOX_ID)."""
        import pwd

        from .identity import SANDBOX_ID, SANDBOX_USER

        try:
            entry = pwd.getpwnam(SANDBOX_USER)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            return SANDBOX_ID, SANDBOX_ID

    def known_uid(self, uid: int) -> bool:
        import pwd

        try:
            pwd.getpwuid(uid)
            return True
        except KeyError:
            return False

    def own_installation(self) -> list[str]:
        """Where the running corral and its interpreter live: changed by a sandbox, they would
        run its code at corral's next start, outside any sandbox (a `.pth` file, say)."""
        import site
        import sys

        paths = {os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
        if sys.prefix != sys.base_prefix:  # a virtual environment: its python, scripts, pyvenv.cfg
            paths.add(sys.prefix)
        paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
        if site.ENABLE_USER_SITE:
            paths.add(site.getusersitepackages())
        script = sys.argv[0] if sys.argv else ""
        if os.path.isabs(script) and os.path.isfile(script):
            paths.add(script)  # the console script (`corral`), wherever pip put it
        return sorted(p for p in paths if os.path.exists(p))

    def secret_files(self, workspace: str | None, home: str, content: str = "full") -> list[str]:
        """Secret files to deny: found in the workspace (any depth) and the home locations."""
        from ..workspace.secretscan import home_findings, paths_to_deny

        if workspace is None:
            return sorted({f.path for f in home_findings(home) if f.secret})
        return paths_to_deny(workspace, home, content=content)

    def shared_placeholder(self, path: str) -> bool:
        """A placeholder another running sandbox holds (it is shared, not a real file)."""
        from .placeholders import in_use

        return in_use(path)

    def reachable_by(self, path: str, uid: int, gid: int, swapped=None) -> bool:
        """Can `uid` look up `path`? (bwrap runs as that user under `run_as`.) `swapped`:
        (area, (disk uid, disk gid)) of an idmapped area, where the disk owner appears as `uid`."""
        parent = os.path.dirname(path)
        while True:
            try:
                st = os.stat(parent)
            except OSError:
                return False
            o_uid, o_gid = st.st_uid, st.st_gid
            if swapped is not None and _under(parent, swapped[0]):
                o_uid = uid if o_uid == swapped[1][0] else o_uid
                o_gid = gid if o_gid == swapped[1][1] else o_gid
            bit = 0o100 if o_uid == uid else 0o010 if o_gid == gid else 0o001
            if not st.st_mode & bit:
                return False
            if parent == "/":
                return True
            parent = os.path.dirname(parent)

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except OSError:
            return []

    def read_single(self, path: str, limit: int = 1 << 20) -> str | None:
        """The text of a regular file with one name only (a hard link to another secret must
        not be shown masked under this name), or None."""
        from ..workspace.safefile import read_single

        return read_single(path, limit)

    def scan_protected(self, roots, skip, allow_git_config):
        from ..workspace.scan import scan_protected

        return scan_protected(roots, skip, allow_git_config)

    def find_links(self, roots, skip, targets):
        from ..workspace.scan import find_links

        return find_links(roots, skip, targets)

    def expand_globs(self, patterns):
        from ..workspace.scan import expand_globs

        return expand_globs(patterns)


def _ancestors(path: str):
    """path itself, then each parent up to '/'."""
    while True:
        yield path
        if path == "/":
            return
        path = os.path.dirname(path)


def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


class _Layout:
    """Path decisions and the questions asked of them."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, str]] = {}  # path -> (decision, why)

    def set(self, path: str, decision: str, why: str) -> None:
        self.nodes[path] = (decision, why)

    def state(self, path: str) -> str | None:
        """The decision governing `path`: its own, or its nearest decided ancestor's."""
        for p in _ancestors(path):
            if p in self.nodes:
                return self.nodes[p][0]
        return None

    def writable(self, path: str) -> bool:
        return self.state(path) in (RW, REOPEN_RW, PIN)

    def hidden(self, path: str) -> bool:
        return self.state(path) == HIDE


def build_plan(policy: Policy, ctx: LaunchContext, argv: list[str], environ: dict[str, str],
               fs: HostFS | None = None, run_id: str = "", tmp_root: str = "/tmp",
               state_home: str | None = None, session: tuple[str, str, str] | None = None,
               output: str = "", boundary=None, offline: bool = False) -> Plan:
    """`session`: (name, upper, work) of the overlay session (workspace mode "overlay").
    `output`: a directory made writable for results (`--output`). `boundary`: the launch's
    resolved credentials (`sandbox.boundary.Boundary`): placeholders and files shown inside.
    `offline`: without network, the caller serves corral's offline namespace (its responder
    refuses and records names); otherwise names fail from /etc/hosts alone, unrecorded."""
    from .._timing import mark

    fs = fs or HostFS()
    fsp = policy.filesystem
    run_id = run_id or os.urandom(6).hex()
    real = fs.realpath
    layout = _Layout()
    cwd = real(ctx.cwd)
    mode = fsp.workspace
    isolated = mode in ("tmpfs", "copy", "overlay")  # the real directory is never written

    # --- writes: allow_write, then deny_write on top (deny wins at the same path) ---------
    allow_write = []
    write_rules = list(fsp.allow_write)
    if output:
        from ..policy.model import PathRule

        write_rules.append(PathRule(output, False, "--output"))
    granted = [real(r.path) for r in write_rules]
    for r in write_rules:
        p = real(r.path)
        if mode != "bind" and r.origin != "--output" and _under(p, cwd):
            continue  # the workspace mode decides what happens inside the working directory
        if fs.kind(p) is None:  # a missing path cannot be bound; writes there stay refused
            continue
        # A symlink on the way that lies in a writable area was possibly planted by an earlier
        # run (`ln -s /usr/lib/python3/dist-packages cache` with `cache` granted): following it
        # would grant whatever it points at. Refuse the entry, and say so.
        for link, target in _links_on_the_way(r.path, fs):
            where = real(os.path.dirname(link))
            if any(_under(where, g) for g in granted):
                from ..errors import PolicyError

                src, _, key = (r.origin or "<policy>").partition(":")
                raise PolicyError(src, key or "allow_write", r.path,
                                  f"{link} is a symlink (to {target}) inside a writable area: a sandboxed "
                                  "command may have planted it; grant the real directory instead, or remove "
                                  "the link")
        allow_write.append(p)
        layout.set(p, RW, f"allow_write ({r.origin})")
    workspace = None
    if mode != "bind":
        why = {"ro": "workspace mode ro", "tmpfs": "workspace mode tmpfs: empty scratch space",
               "copy": "workspace mode copy: a filtered staging copy, discarded after the run",
               "overlay": "workspace mode overlay: writes land in the session's upper layer"}[mode]
        layout.set(cwd, {"ro": RO, "tmpfs": WS_TMPFS, "copy": WS_COPY, "overlay": WS_OVERLAY}[mode], why)
        staging = f"{tmp_root.rstrip('/')}/corral-{run_id}-copy" if mode == "copy" else ""
        name, upper, work = session if (mode == "overlay" and session) else ("", "", "")
        if mode == "overlay" and not session:
            raise ValueError("workspace mode overlay needs a session (name, upper, work)")
        workspace = WorkspacePlan(mode, cwd, staging=staging, upper=upper, work=work, session=name,
                                  output=real(output) if output else "")
    elif output:
        workspace = WorkspacePlan("bind", cwd, output=real(output))
    deny_write_missing = []
    for r in fsp.deny_write:
        p = real(r.path)
        if fs.kind(p) is not None and not fs.shared_placeholder(p):
            layout.set(p, RO, f"deny_write ({r.origin})")
        else:
            deny_write_missing.append((p, r.origin))
    write_state = dict(layout.nodes)  # writability before reads are considered (for reopen)

    from . import identity as ids

    identity = None
    if ctx.uid == 0:
        identity = ids.choose(policy.process.run_as, ctx.uid, fs.owner(cwd) if fs.kind(cwd) else (0, 0),
                              fs.sandbox_id())
    run_as = (identity.uid, identity.gid) if identity else None
    idmaps: list[IdMap] = []
    overlay_layers: tuple[IdMap, ...] = ()
    if identity is not None and identity.idmapped:
        # Writable areas owned by someone else are shown as the sandbox uid's (idmapped).
        shown = (identity.uid, identity.gid)
        for p, (d, _) in sorted(layout.nodes.items()):
            if d == RW and not any(_under(p, m.path) for m in idmaps) and fs.owner(p)[0] != identity.uid:
                if fs.shared_sticky(p):
                    # /tmp, /var/tmp, /dev/shm: idmapped, every root file there would be the
                    # sandbox's. The sandbox uid writes there as itself; the sticky bit guards the rest.
                    continue
                idmaps.append(IdMap(p, fs.owner(p), shown))
        if workspace is not None and workspace.staging:  # made by the launcher just before the run
            idmaps.append(IdMap(workspace.staging, (ctx.uid, ctx.gid), shown))
        elif mode == "overlay" and fs.owner(cwd)[0] != identity.uid:
            # The launcher mounts the overlay itself, on idmapped layers (mountprep): the
            # workspace as the lower layer, the session directory holding upper/ and work/.
            session_dir = os.path.dirname(workspace.upper)
            overlay_layers = (IdMap(cwd, fs.owner(cwd), shown), IdMap(session_dir, fs.owner(session_dir), shown))
    # The paths the run needs to reach: a directory the sandbox uid cannot search on the way
    # (/root, 0700) becomes a skeleton that holds only them.
    needed = [cwd, *(p for p, (d, _) in layout.nodes.items() if d == RW)]
    needed += [real(r.path) for r in fsp.allow_read]
    skeleton_tops = _skeleton_tops(needed, run_as, fs, [m.path for m in idmaps]) if run_as else {}

    def visible(p: str) -> bool:
        """Can the sandbox uid look `p` up? (A skeleton keeps only what the run needs.)"""
        if not run_as:
            return True
        for top, keep in skeleton_tops.items():
            if _under(p, top):
                return any(_under(p, k) for k in keep)
        for m in idmaps:  # inside, the area owner's entries are the sandbox uid's, others keep theirs
            if _under(p, m.path):
                return fs.reachable_by(p, *run_as, swapped=(m.path, m.disk))
        return fs.reachable_by(p, *run_as)

    # Launched by root as another user (the project's owner, --as-user): that user's home holds
    # the credentials and start-up files the command could reach; they are denied and
    # protected as the launcher's own are.
    user_homes = [ctx.home]
    if identity is not None and identity.uid != 0:
        other = fs.home_of(identity.uid)
        if other and other.startswith("/") and real(other) != real(ctx.home) and fs.kind(other) == "dir":
            user_homes.append(other)

    # --- reads: deny_read (+ credentials + glob matches), then allow_read re-opens -------
    deny_read: list[tuple[str, str]] = []
    globs = []
    for r in fsp.deny_read:
        if r.glob:
            globs.append(r)
        else:
            deny_read.append((r.path, f"deny_read ({r.origin})"))
    if fsp.deny_credentials:
        deny_read.extend((p, "credential location (deny_credentials)")
                         for p in credential_paths(ctx, environ, fs.listdir("/tmp")))
        for other in user_homes[1:]:
            deny_read.extend((p, "credential location of the run-as user (deny_credentials)")
                             for p in credential_paths(replace(ctx, home=other)))
    # Always: with its key, a sandbox could sign certificates that sandboxes trust.
    data_base = environ.get("XDG_DATA_HOME") or os.path.join(ctx.home, ".local", "share")
    deny_read.append((os.path.join(data_base, "corral", "ca"), "corral's CA (deny always)"))
    if boundary is not None:
        deny_read.extend((p, "credential source (the proxy holds its value)") for p in boundary.hide)
    if (fsp.deny_secrets and mode != "tmpfs") or mode == "copy":
        # From `/` the "workspace" is the whole system: only the home locations are checked.
        scan_root = cwd if cwd != "/" else None
        found = fs.secret_files(scan_root, ctx.home, "cached" if fsp.deny_secrets == "names" else "full")
        if mode == "copy":  # a copy always leaves secrets out, whatever deny_secrets says
            workspace = replace(workspace, left_out=tuple(p for p in found if _under(p, cwd)))
        if fsp.deny_secrets:
            deny_read.extend((p, "secret file found by `corral scan` (deny_secrets)")
                             for p in found if not (mode == "copy" and _under(p, cwd)))
            for other in user_homes[1:]:
                deny_read.extend((p, "secret file in the run-as user's home (deny_secrets)")
                                 for p in fs.secret_files(None, other))
    mark("secret-scan")
    if globs:
        for match in fs.expand_globs([g.path for g in globs]):
            deny_read.append((match, "deny_read glob match"))
    hidden_files: set[str] = set()
    for path, why in deny_read:
        if fs.kind(path) is None:
            continue  # missing, as most credential locations are (stat follows links like realpath)
        p = real(path)
        kind = fs.kind(p)
        if kind is None:
            continue
        if not visible(p):
            continue  # the sandbox uid cannot even look it up (e.g. under /root)
        layout.set(p, HIDE, why)
        if kind == "file":
            hidden_files.add(p)
    for r in fsp.allow_read:
        p = real(r.path)
        if fs.kind(p) is None:
            continue
        if any(layout.nodes.get(a, ("",))[0] == HIDE for a in _ancestors(p)):
            if layout.nodes.get(p, ("",))[0] == HIDE:
                del layout.nodes[p]
                hidden_files.discard(p)
            if _writable_in(write_state, p):
                layout.set(p, REOPEN_RW, f"allow_read ({r.origin}) in a writable area")
            else:
                layout.set(p, REOPEN_RO, f"allow_read ({r.origin})")

    # --- protected files in writable areas ---------------------------------------------
    # (directories only: a re-opened file is writable itself and holds no names to check)
    roots = sorted(p for p, (d, _) in layout.nodes.items()
                   if d in (RW, REOPEN_RW) and layout.writable(p) and fs.kind(p) == "dir")
    skip = frozenset(layout.nodes)
    scan = fs.scan_protected(roots, skip, fsp.allow_git_config)

    def protect(path: str, why: str) -> None:
        # A read denial always wins: a denied path is unreadable *and* unwritable (/dev/null or
        # a read-only tmpfs), so both promises hold; a read-only bind would re-expose it.
        if layout.nodes.get(path, ("",))[0] != HIDE:
            layout.set(path, PROTECT, why)

    for root in roots:  # a writable root that is itself protected stays read-only
        parent = os.path.dirname(root)
        if protected.classify(os.path.basename(parent), os.path.basename(root), fs.kind(root) == "dir", fsp.allow_git_config):
            protect(root, "protected file (mandatory)")
    for path in scan.found:
        protect(path, "protected file (mandatory)")
    if scan.hardlinked:
        for path in fs.find_links(roots, skip, scan.hardlinked):
            protect(path, "hard link to a protected file")
    policy_links = []
    for source in policy.sources:
        if not source.startswith("/"):
            continue  # "<string>", "<cli>": not a file
        p = real(source)
        if fs.kind(p) is not None and layout.writable(p):
            protect(p, "policy file in use")
        for link, target in _links_on_the_way(source, fs):
            if layout.writable(os.path.dirname(link)):
                policy_links.append((link, target))
    notices = []
    own_kept = []
    for own in fs.own_installation():
        p = real(own)
        if layout.writable(p) and layout.nodes.get(p, ("",))[0] != HIDE:
            protect(p, "corral's own installation (it runs outside the sandbox at its next start)")
            own_kept.append(p)
    if own_kept:
        from ..display import shown

        notices.append(f"corral: corral's own installation ({', '.join(map(shown, own_kept))}) is in a writable "
                       "area: it stays read-only inside, since a change there would run outside the sandbox at "
                       "corral's next start (install corral outside the project to let commands change it)")
    # corral's own state (overlay sessions, audit log, quarantine) and caches (secret scan
    # verdicts): a command allowed to write to HOME must not rewrite what corral trusts.
    state_base = environ.get("XDG_STATE_HOME") or os.path.join(ctx.home, ".local", "state")
    cache_base = environ.get("XDG_CACHE_HOME") or os.path.join(ctx.home, ".cache")
    for own in (os.path.join(state_base, "corral"), os.path.join(cache_base, "corral")):
        p = real(own)
        if fs.kind(p) is not None and layout.writable(p):
            layout.set(p, PROTECT, "corral's own state and caches")

    # --- placeholders: missing protected names in the workspace root and a writable HOME --
    placeholders: list[Placeholder] = []
    homes = [cwd]
    home = real(ctx.home)
    if home != cwd:
        homes.append(home)
    for base in homes:
        # (a directory the launcher cannot write: the command cannot create anything there either)
        if fs.kind(base) != "dir" or not layout.writable(base) or not fs.may_create_in(base):
            continue
        def present(r, base=base):  # another run's placeholder counts as missing: we share it
            p = f"{base}/{r}"
            return fs.lexists(p) and not fs.shared_placeholder(p)

        for rel, kind in protected.root_placeholders(
            present, lambda r: fs.kind(f"{base}/{r}") == "dir", fsp.allow_git_config
        ):
            path = f"{base.rstrip('/')}/{rel}"
            if layout.writable(os.path.dirname(path)) and fs.may_create_in(os.path.dirname(path)):
                placeholders.append(Placeholder(path, kind))
                layout.set(path, PROTECT, "protected name kept from being created (placeholder)")
    for path, origin in deny_write_missing:
        if (layout.writable(os.path.dirname(path)) and fs.kind(os.path.dirname(path)) == "dir"
                and fs.may_create_in(os.path.dirname(path))):
            placeholders.append(Placeholder(path, "file"))
            layout.set(path, PROTECT, f"deny_write ({origin}), kept from being created")

    # --- persistence outside the project: HOME entries, the launcher's PATH, spools -------
    for home_dir in user_homes:
        notices.extend(_protect_outside(layout, fs, replace(ctx, home=home_dir), environ, cwd, protect, placeholders))

    mark("protected-scan")
    # --- pins: directories leading to a protected path cannot be renamed or removed ------
    # A read-only bind protects a file, not the name of its parent: `mv .git .git2` would move
    # the protected hooks away (and the host's repository with them). A mount point cannot be
    # renamed or removed, so each directory between a writable root and a protected path is
    # bound onto itself (still writable inside).
    for path, (decision, _) in list(layout.nodes.items()):
        if decision not in (PROTECT, RO) or path == "/":
            continue
        parent = os.path.dirname(path)
        if not layout.writable(parent):
            continue
        while parent not in layout.nodes:
            layout.set(parent, PIN, "pinned: leads to a protected path (cannot be renamed or removed)")
            parent = os.path.dirname(parent)

    # --- private TMPDIR: a tmpfs over an empty host directory --------------------------
    tmpdir = f"{tmp_root.rstrip('/')}/corral-{run_id}"
    placeholders.append(Placeholder(tmpdir, "dir"))
    layout.set(tmpdir, TMPDIR, "private TMPDIR (tmpfs, gone after the run)")

    # /tmp: writable inside, through an overlay whose writes vanish with the run (the host's
    # files there stay readable where the policy allows). Not when the policy lets the command
    # write /tmp itself, nor when /tmp is hidden.
    tmp_overlay = None
    tmp = real("/tmp")
    submounts = ()
    if fsp.tmp_overlay and ctx.uid != 0 and hasattr(fs, "mounts_under"):
        # In a user namespace the kernel refuses an overlay whose lower directory has mounts
        # under it ("failed to clone lowerpath": they are locked there): /tmp stays read-only.
        submounts = fs.mounts_under(tmp)
        if submounts:
            from ..display import shown

            notices.append(f"corral: /tmp is read-only for this run: {shown(submounts[0])}"
                           f"{f' and {len(submounts) - 1} more' if len(submounts) > 1 else ''} is mounted under "
                           "it, and the kernel refuses an overlay of /tmp to an unprivileged user then ($TMPDIR "
                           "stays writable; unmount it, or set filesystem.tmp_overlay = false to say so)")
    if fsp.tmp_overlay and not submounts and fs.kind(tmp) == "dir" and not layout.writable(tmp) \
            and layout.state(tmp) != HIDE:
        keep = {p for p, (d, _) in layout.nodes.items() if d in (RW, REOPEN_RW, WS_OVERLAY) and _under(p, tmp)}
        keep.update(top for top in skeleton_tops if _under(top, tmp))
        keep.update(m.path for m in (*idmaps, *overlay_layers) if _under(m.path, tmp))
        keep.discard(tmpdir)
        outer = sorted(k for k in keep if not any(o != k and _under(k, o) for o in keep))
        tmp_overlay = TmpOverlay(tmp, tmpdir, tuple(outer))
        if _under(cwd, tmp) and cwd != tmp and layout.state(cwd) is None:
            # The working directory is the project, not "the rest of /tmp": with no write granted
            # it stays read-only (as it would be without the overlay).
            layout.set(cwd, RO, "working directory without a write grant (read-only)")
    mounts = [
        Mount("ro-bind", "/", "/", why="whole filesystem read-only"),
        Mount("dev", "/dev", why="minimal /dev"),
        Mount("proc", "/proc", why="own /proc (pid namespace)"),
        Mount("tmpfs", "/dev/shm", perms=0o1777, why="private shared memory"),
    ]
    if tmp_overlay is not None:
        # bwrap's `--ro-bind / /` makes every submount read-only: bind the overlay back, writable,
        # before anything below /tmp is mounted.
        mounts.insert(1, Mount("bind", tmp_overlay.path, tmp_overlay.path,
                               why="/tmp: an overlay whose writes vanish with the run"))
    remount = []
    for path in sorted(layout.nodes, key=lambda p: (_depth(p), p)):
        decision, why = layout.nodes[path]
        if mode == "tmpfs" and path != cwd and _under(path, cwd) and decision != TMPDIR:
            continue  # scratch space starts empty: nothing of the real directory shows through
        if not visible(path):
            continue  # out of the sandbox uid's sight: nothing there to protect or hide
        if decision == PIN:
            mounts.append(Mount("pre-bind", path, path, why=why))
        elif decision == RW:
            mounts.append(Mount("bind", path, path, why=why))
        elif decision == REOPEN_RW:
            mounts.append(Mount("bind", path, path, why=why))
        elif decision in (RO, PROTECT, REOPEN_RO):
            if decision != REOPEN_RO and _under_hidden(layout, path):
                continue  # invisible already; binding it would re-expose it
            # Inside a writable area (protected files, placeholders, deny_write): made read-only
            # before bwrap starts; bwrap's bind of the area carries them.
            pre = decision != REOPEN_RO and path != "/" and layout.writable(os.path.dirname(path))
            mounts.append(Mount("pre-ro-bind" if pre else "ro-bind", path, path, why=why))
        elif decision == HIDE:
            if path in hidden_files:
                mounts.append(Mount("dev-null", path, "/dev/null", why=why))
            else:
                mounts.append(Mount("tmpfs", path, perms=0o755, why=why))
                remount.append(path)
        elif decision == TMPDIR:
            mounts.append(Mount("tmpfs", path, perms=0o700, why=why))
        elif decision == WS_TMPFS:
            mounts.append(Mount("tmpfs", path, perms=0o755, why=why))
        elif decision == WS_COPY:
            mounts.append(Mount("bind", path, workspace.staging, why=why))
        elif decision == WS_OVERLAY:
            mounts.append(Mount("bind", path, path, why=why + " (mounted in corral's mount namespace)"))
    # Credential files with a LINE_MASKS rule, hidden as credentials (not by an explicit
    # deny_read, nor when the policy masks the file itself): shown with the values withheld.
    unmasked = {real(p) for p, _c, _w in boundary.files} if boundary is not None else set()
    unmasked.update(real(r.path) for r in fsp.deny_read if not r.glob)
    for path in sorted(hidden_files - unmasked):
        if not layout.nodes[path][1].startswith(("credential location", "secret file found")):
            continue
        shown_text = _line_masked(path, fs) if visible(path) else None
        if shown_text is not None:  # after the /dev/null bind it covers
            mounts.append(Mount("data", path, src=shown_text, perms=0o444,
                                why="credential file masked line by line (token values withheld)"))
    if boundary is not None:
        # After the mounts they cover (a hidden credential file), before hidden directories
        # turn read-only (a masked file inside one is created in its tmpfs first).
        for path, content, why in boundary.files:
            if visible(real(path)):
                mounts.append(Mount("data", real(path), src=content, why=why))
    for path in sorted(remount, key=_depth, reverse=True):
        mounts.append(Mount("remount-ro", path, why="hidden directory refuses writes"))

    env = dict(environ)
    for name in policy.process.unset_env:
        env.pop(name, None)
    if boundary is not None:
        for name in boundary.unset:
            env.pop(name, None)
    # Variables that look like credentials (policy.secret_env): out, unless passed; one notice.
    from ..policy.secret_env import withheld as secret_variables

    withheld = secret_variables(env, policy.process.pass_env, policy.process.secret_env)
    for name in withheld:
        del env[name]
    env.update({"TMPDIR": tmpdir, "TMP": tmpdir, "TEMP": tmpdir, "CORRAL_SANDBOX": "1", "SANDBOX_RUNTIME": "1"})
    network = None
    if policy.network.enabled:
        from .netenv import proxy_environment, resolv_conf

        network = NetPlan(transparent=policy.network.transparent, user=f"corral-{run_id}",
                          token=os.urandom(15).hex())
        env.update(proxy_environment(network, policy.network))
        resolv = real("/etc/resolv.conf")
        mounts.append(Mount("data", resolv if fs.kind(resolv) == "file" else "/etc/resolv.conf",
                            src=resolv_conf(network), why="the sandbox's resolver (corral's proxy)"))
    else:
        # No network: names fail at once as "not found" (never the "temporary failure" of an
        # unreachable resolver, which clients retry for a minute), from corral's responder.
        from . import offline_env as nonet

        offline = offline and fs.kind("/etc/resolv.conf") is not None
        nss = real("/etc/nsswitch.conf")
        if fs.kind(nss) == "file":
            mounts.append(Mount("data", nss, src=nonet.nsswitch_conf(fs.read_text(nss), dns=offline),
                                why="names from /etc/hosts" + (", then corral's refusing resolver" if offline else " only")))
        if offline:
            resolv = real("/etc/resolv.conf")
            mounts.append(Mount("data", resolv if fs.kind(resolv) == "file" else "/etc/resolv.conf",
                                src=nonet.resolv_conf(), why="no network: corral's resolver refuses every name"))
            for name in nonet.LAUNCHER_PROXY_VARS:
                env.pop(name, None)
            env.update(nonet.environment(env))
    if identity is not None:
        # The launcher's HOME (/root) and XDG directories may be out of the sandbox uid's reach:
        # programs would warn on every dotfile they try. The private TMPDIR serves as HOME (gone
        # with the run); unreachable XDG_*_HOME variables go, so programs fall back to HOME.
        if not visible(os.path.join(home, ".")):
            env["HOME"] = tmpdir
        for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
            value = env.get(name)
            if value and value.startswith("/") and not visible(os.path.join(real(value), ".")):
                del env[name]
        # PATH entries it cannot search (/root/.local/bin) only turn "command not found" into
        # "permission denied": they go too.
        if "PATH" in env:
            env["PATH"] = ":".join(d for d in env["PATH"].split(":")
                                   if not d.startswith("/") or visible(os.path.join(real(d), ".")))
    if identity is not None and "GIT_CONFIG_SYSTEM" not in env:
        # The command's uid owns no repository on the host: git would refuse every one it did not
        # create ("dubious ownership"), even a read-only source to clone. Inside the sandbox that
        # check protects nothing (the command runs what it likes anyway). safe.directory is only
        # honoured from protected config, and a local clone's upload-pack drops GIT_CONFIG_COUNT:
        # the system config is the place (the host's /etc/gitconfig plus this one setting).
        gitconfig = f"{tmpdir}/.corral-gitconfig"
        system = fs.read_text("/etc/gitconfig") or ""
        mounts.append(Mount("data", gitconfig, src=system + ("\n" if system and not system.endswith("\n") else "")
                            + "[safe]\n\tdirectory = *\n",
                            why="git's system config + safe.directory (the sandbox uid owns no host repository)"))
        env["GIT_CONFIG_SYSTEM"] = gitconfig
    exclude = _git_exclude(placeholders, cwd, fs, env, home)
    if exclude:
        # corral's placeholders are empty read-only stand-ins, gone after the run: git must not
        # offer them (`git add -A` would stage twenty empty dotfiles). The launcher's own global
        # excludes come first, as git would read them.
        path = f"{tmpdir}/.corral-gitexclude"
        mounts.append(Mount("data", path, src=exclude, why="git: the launcher's excludes + corral's placeholders"))
        n = int(env.get("GIT_CONFIG_COUNT", "0") or 0) if env.get("GIT_CONFIG_COUNT", "0").isdigit() else 0
        env.update({"GIT_CONFIG_COUNT": str(n + 1), f"GIT_CONFIG_KEY_{n}": "core.excludesFile",
                    f"GIT_CONFIG_VALUE_{n}": path})
    env.update(dict(policy.process.set_env))
    if boundary is not None:
        env.update(boundary.env)
        env = {k: boundary.scrub(v) for k, v in env.items()}
        argv = [boundary.scrub(a) for a in argv]
    # Set by corral or the policy, or bound by a credential: not "withheld", whatever the value was.
    bound = {n for c in policy.credentials for n in (c.from_env, c.env) if n}
    withheld_env = tuple((n, why) for n, why in withheld.items() if n not in env and n not in bound)

    state = environ.get("XDG_STATE_HOME") or os.path.join(ctx.home, ".local", "state")
    skeletons = tuple(Skeleton(top, tuple((k, fs.kind(k) or "dir") for k in keep))
                      for top, keep in sorted(skeleton_tops.items()))
    if identity is not None and identity.idmapped and not fs.known_uid(identity.uid):
        passwd, group = ids.passwd_entry(identity.uid, identity.gid)
        for name, line in (("/etc/passwd", passwd), ("/etc/group", group)):
            text = fs.read_text(name)
            if text is not None:
                mounts.append(Mount("data", name, src=text + ("" if text.endswith("\n") or not text else "\n") + line,
                                    why="names the sandbox uid (shown inside only)"))
    return Plan(
        argv=tuple(argv),
        cwd=cwd,
        env=tuple(env.items()),
        mounts=tuple(mounts),
        seccomp=SeccompOptions(
            allow_unix_sockets=policy.network.allow_unix_sockets,
            allow_nested_userns=policy.process.allow_nested_userns,
        ),
        disable_userns=not policy.process.allow_nested_userns,
        placeholders=tuple(placeholders),
        tmpdir=tmpdir,
        writable_roots=tuple(roots),
        scan_skip=skip | {tmpdir},
        protected_before=dict(scan.found),
        allow_git_config=fsp.allow_git_config,
        run_as=run_as,
        bwrap=policy.process.bwrap_path or "bwrap",
        quarantine_dir=os.path.join(state_home or state, "corral", "quarantine", run_id),
        run_id=run_id,
        scanned_entries=scan.entries,
        network=network,
        offline=bool(network is None and offline),
        workspace=workspace,
        identity=identity,
        idmaps=tuple(idmaps),
        overlay_layers=overlay_layers,
        skeletons=skeletons,
        tmp_overlay=tmp_overlay,
        policy_links=tuple(policy_links),
        notices=tuple(notices),
        withheld_env=withheld_env,
    )


def _protect_outside(layout: _Layout, fs: HostFS, ctx: LaunchContext, environ, cwd: str, protect,
                     placeholders: list) -> list[str]:
    """Persistence outside the project (protected.py's home-relative and absolute entries, the
    directories on the launcher's PATH): read-only when they exist in a writable area, kept
    from being created (placeholder at the first missing component) when missing. Returns the
    notice lines (one when HOME itself is writable)."""
    real = fs.realpath
    home = real(ctx.home)
    parents: dict[str, str] = {}
    blocked: list[str] = []

    def where(path):
        """realpath(path), cheaply: ~90 entries share ~20 parent directories."""
        d, _, name = path.rpartition("/")
        if name in ("", ".", ".."):
            return real(path)
        rd = parents.get(d)
        if rd is None:
            rd = parents[d] = real(d or "/")
        p = f"{rd.rstrip('/')}/{name}"
        return real(p) if fs.readlink(p) is not None else p

    def kind_of(p):  # another run's placeholder counts as missing: we share it
        k = fs.kind(p)
        return None if k is not None and fs.shared_placeholder(p) else k

    def guard(path, kind, base, why):
        p = where(path)
        if not layout.writable(p):
            return  # nothing to protect, and no writable place on the way to block
        if kind_of(p) is not None:
            protect(p, why)
            return
        spot = protected.first_missing(path, base, kind, kind_of) if base else None
        if spot is None:
            return
        ph = real(spot[0])
        parent = os.path.dirname(ph)
        if (layout.writable(parent) and fs.kind(parent) == "dir" and layout.nodes.get(ph, ("",))[0] != PROTECT
                and fs.may_create_in(parent)):
            placeholders.append(Placeholder(ph, spot[1]))
            layout.set(ph, PROTECT, f"{why}, kept from being created (placeholder)")
            if spot[0] != path:
                blocked.append(ph)  # a whole missing directory (~/.local), not the entry itself

    for path, kind, base, rule in protected.home_entries(ctx.home, environ):
        guard(path, kind, base, f"{protected.reason(rule)} (mandatory)")
    for d in path_dirs(environ.get("PATH", ""), cwd, home, where):
        guard(d, "dir", home if _under(d, home) and d != home else os.path.dirname(d),
              "on the launcher's PATH: its commands run outside the sandbox (mandatory)")
    notes = []
    if blocked:
        from ..display import shown

        names = ", ".join(shown("~" + b[len(home):] if _under(b, home) and home != "/" else b) for b in blocked)
        notes.append(f"corral: {names} do{'es' if len(blocked) == 1 else ''} not exist: kept from being created "
                     "during the run, since protected paths lie below (create the directory to let the command "
                     "use the rest of it)")
    if not layout.writable(home):
        return notes
    kept = sum(1 for p, (d, _) in layout.nodes.items() if d in (PROTECT, RO, HIDE) and _under(p, home) and p != home)
    where = "the working directory is your home directory" if cwd == home else "your home directory is writable"
    return [f"corral: {where}: the command can change everything in it except {kept} protected paths "
            "(start-up files, PATH directories, credentials); run it from a project directory to give it less",
            *notes]


def path_dirs(path_var: str, cwd: str, home: str, real=os.path.realpath) -> list[str]:
    """The launcher's PATH directories whose commands the user runs outside the sandbox: the
    absolute entries (realpaths), except those inside the working directory (`./node_modules/.bin`,
    `.venv/bin`: the project's own), unless the working directory is HOME or holds it (then
    nothing in it is the project's own)."""
    out: list[str] = []
    whole = _under(home, cwd)
    for entry in path_var.split(":"):
        if not entry.startswith("/"):
            continue  # "" and "." mean the current directory: the project's own
        p = real(entry)
        if p not in out and (whole or not _under(p, cwd)):
            out.append(p)
    return out


def _line_masked(path: str, fs: HostFS) -> str | None:
    """The masked text of a hidden credential file that `secrets.LINE_MASKS` names, or None."""
    from ..workspace import secrets

    if secrets.line_mask_rule(path) is None:
        return None
    text = fs.read_single(path)
    return None if text is None else secrets.mask_lines(path, text)


def prefetch_identity(policy: Policy, ctx: LaunchContext, fs: HostFS | None = None) -> None:
    """Launched by root: start the user namespace helper of the likely idmapping (the working
    directory's owner shown as the sandbox uid) now, so that it overlaps with plan building."""
    if ctx.uid != 0:
        return
    from . import identity as ids

    fs = fs or HostFS()
    try:
        owner = fs.owner(fs.realpath(ctx.cwd))
    except OSError:
        return
    ident = ids.choose(policy.process.run_as, ctx.uid, owner, fs.sandbox_id())
    if ident is not None and ident.idmapped and owner[0] != ident.uid:
        from .mountprep import prefetch

        prefetch(owner, (ident.uid, ident.gid))


def helper_overlays(policy: Policy, ctx: LaunchContext, session, fs: HostFS | None = None) -> list:
    """The overlay mounts corral's namespace helper makes for a session: (lower, upper, work,
    target), or none when the launcher mounts it on idmapped layers (see Plan.overlay_layers)."""
    if not session or policy.filesystem.workspace != "overlay":
        return []
    from . import identity as ids

    fs = fs or HostFS()
    cwd = fs.realpath(ctx.cwd)
    if ctx.uid == 0 and ids.overlay_by_launcher(policy.process.run_as, ctx.uid, fs.owner(cwd), fs.sandbox_id()):
        return []
    return [(cwd, session[1], session[2], cwd)]


def _skeleton_tops(needed, run_as, fs: HostFS, idmapped) -> dict[str, list[str]]:
    """{top directory the sandbox uid cannot search: the needed paths it must keep}."""
    tops: dict[str, set[str]] = {}
    for n in needed:
        if fs.kind(n) is None:
            continue
        top = None
        d = os.path.dirname(n)
        while d != "/":
            if not any(_under(d, m) for m in idmapped) and not fs.reachable_by(d + "/x", *run_as):
                top = d  # keep climbing: the top-most one is replaced
            d = os.path.dirname(d)
        if top is not None:
            tops.setdefault(top, set()).add(n)
    out = {}
    for top, keep in tops.items():
        # only the outermost needed paths: the inner ones come along with them
        out[top] = sorted(k for k in keep if not any(o != k and _under(k, o) for o in keep))
    return out


def _links_on_the_way(path: str, fs: HostFS) -> list[tuple[str, str]]:
    """The symlinks met while resolving `path` (absolute), each with its target text."""
    out = []
    seen = 0
    parts = [p for p in path.split("/") if p]
    cur = "/"
    while parts and seen < 40:
        name = parts.pop(0)
        nxt = os.path.join(cur, name)
        target = fs.readlink(nxt)
        if target is None:
            cur = nxt
            continue
        seen += 1
        out.append((nxt, target))
        parts = [p for p in target.split("/") if p] + parts
        cur = "/" if target.startswith("/") else cur
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _under_hidden(layout: _Layout, path: str) -> bool:
    parent = os.path.dirname(path)
    return path != "/" and layout.hidden(parent)


def _writable_in(nodes: dict, path: str) -> bool:
    for p in _ancestors(path):
        if p in nodes:
            return nodes[p][0] == RW
    return False


def _git_exclude(placeholders, cwd: str, fs, env: dict, home: str) -> str:
    """The content of an excludes file for the git work tree around `cwd`: the launcher's
    global excludes (core.excludesFile, else $XDG_CONFIG_HOME/git/ignore) and one anchored
    pattern per placeholder in that work tree. "" when there is no work tree or placeholder."""
    top = cwd
    while not fs.lexists(os.path.join(top, ".git")):
        if top == "/":
            return ""
        top = os.path.dirname(top)
    patterns = []
    for ph in placeholders:
        if _under(ph.path, top) and ph.path != top and "/.git/" not in ph.path + "/":
            rel = os.path.relpath(ph.path, top)
            if not any(c in rel for c in "*?[\\!#\n") and not rel.startswith(".git/"):
                patterns.append("/" + rel + ("/" if ph.kind == "dir" else ""))
    if not patterns:
        return ""
    own = ""
    source = _global_excludes(fs, env, home)
    if source:
        own = (fs.read_text(source) or "").rstrip("\n")
    return (own + "\n" if own else "") + "# corral: placeholders, removed after the run\n" + "\n".join(patterns) + "\n"


def _global_excludes(fs, env: dict, home: str) -> str | None:
    """Where the launcher's git reads its global excludes (a plain reading of ~/.gitconfig)."""
    import re

    for cfg in (os.path.join(home, ".gitconfig"),
                os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "git", "config")):
        text = fs.read_text(cfg) or ""
        m = re.search(r"(?ims)^\s*\[core\][^\[]*?^\s*excludesfile\s*=\s*(.+?)\s*$", text)
        if m:
            value = m.group(1).strip('"')
            return os.path.join(home, value[2:]) if value.startswith("~/") else value
    return os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "git", "ignore")
