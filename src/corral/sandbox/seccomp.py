"""A seccomp-BPF syscall filter, generated in pure Python.

The output of `compile_filter` is the raw bytes of a classic-BPF program (an array of
`struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}`), which is exactly what
`bwrap --seccomp FD` reads from its fd and hands to `prctl(PR_SET_SECCOMP)`.

Why not libseccomp: it is a C dependency (and its Python binding is not on PyPI), while
the filter we need is a short deny list that compiles to a few hundred instructions. The
generator is kept deliberately dumb so that it is easy to audit:

    ld arch;  jeq AUDIT_ARCH ? +1 : kill          (foreign ABIs: i386, arm32 compat)
    ld nr;    jge 0x40000000 -> kill              (x86_64 only: the x32 ABI)
    for each rule, a self-contained block:
        ld nr; jeq NR ? 0 : skip_block
        for each condition (all must hold):
            ld low32(arg); [and MASK]; jeq/jset VALUE ? go on : skip_rest_of_block
        ret ACTION
    ret ALLOW

Integer arguments are only ever compared on their low 32 bits (offset 16 + 8*i, the low
half on little-endian). The kernel truncates `int` parameters such as socket()'s domain,
so looking at the full 64-bit value would let `socket(0x100000001, ...)` through as an
AF_UNIX socket; looking only at the low half matches what the kernel actually uses.

Import cost matters (the CLI imports this for `--dry-run`): only cheap stdlib modules here.
"""

from __future__ import annotations

import errno
import os
import struct
from .._values import frozen

__all__ = ["SeccompOptions", "Cond", "Rule", "UnsupportedArch", "rules", "compile_filter", "describe"]


@frozen
class SeccompOptions:
    allow_unix_sockets: bool = False  # lift the socket(AF_UNIX) refusal
    allow_nested_userns: bool = False  # lift the unshare/clone/clone3 namespace refusals


@frozen
class Cond:
    """One test on a syscall argument's low 32 bits.

    "eq": (low32 & mask) == value; "ne": (low32 & mask) != value; "mask_any": (low32 & value) != 0.
    """

    arg: int  # 0..5
    op: str
    value: int
    name: str = ""  # the value's symbolic name, for describe()
    mask: int = 0xFFFFFFFF  # eq/ne only: applied first (BPF_ALU AND)


@frozen
class Rule:
    """One row of the deny table: `action` when the syscall is `syscall` and every
    condition in `when` holds (no conditions: the whole syscall)."""

    syscall: str
    action: str  # "errno:EPERM", "errno:ENOSYS", "kill"
    when: tuple[Cond, ...] = ()
    why: str = ""


class UnsupportedArch(Exception):
    """No syscall table / audit arch is known for this machine."""


# --------------------------------------------------------------------------------------
# Constants (uapi values; identical on x86_64 and aarch64)
# --------------------------------------------------------------------------------------

AF_UNIX = 1
AF_VSOCK = 40
SOCK_STREAM = 1
SOCK_SEQPACKET = 5
SOCK_TYPE_MASK = 0xF  # the rest of socket()'s type is SOCK_NONBLOCK | SOCK_CLOEXEC

S_ISUID = 0o4000
S_ISGID = 0o2000
O_CREAT = 0o100  # same value on x86_64 and aarch64 (asm-generic/fcntl.h)
O_TMPFILE_BIT = 0o20000000  # __O_TMPFILE; O_TMPFILE is this | O_DIRECTORY

CLONE_NEWTIME = 0x00000080  # unshare only: in clone()'s flags the low byte is the exit signal
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = (
    CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
)

PTRACE_ATTACH = 16
PTRACE_SEIZE = 0x4206

TIOCSTI = 0x5412
TIOCLINUX = 0x541C

# seccomp return values (include/uapi/linux/seccomp.h)
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# struct seccomp_data {int nr; u32 arch; u64 instruction_pointer; u64 args[6];}
OFF_NR = 0
OFF_ARCH = 4
OFF_ARGS = 16

X32_SYSCALL_BIT = 0x40000000

# --------------------------------------------------------------------------------------
# The deny table (behaviour as data). The first column names the SeccompOptions field
# that lifts the rule, or None when no option does.
# --------------------------------------------------------------------------------------

_EPERM = "errno:EPERM"


def _eq(arg: int, value: int, name: str) -> Cond:
    return Cond(arg, "eq", value, name)


def _any(arg: int, value: int, name: str) -> Cond:
    return Cond(arg, "mask_any", value, name)


def _SETID(arg: int) -> Cond:  # noqa: N802 - reads as a table constant
    return _any(arg, S_ISUID | S_ISGID, "S_ISUID|S_ISGID")


def _CREATES(arg: int) -> Cond:  # noqa: N802
    return _any(arg, O_CREAT | O_TMPFILE_BIT, "O_CREAT|O_TMPFILE")


_SETID_WHY = "no setuid/setgid file may be made inside"

_TABLE: tuple[tuple[str | None, Rule], ...] = (
    # Network: AF_UNIX reaches host daemons through any visible socket path (docker.sock,
    # the D-Bus / ssh-agent sockets, journald's /run/systemd/journal/socket, /dev/log);
    # AF_VSOCK reaches the hypervisor.
    ("allow_unix_sockets", Rule("socket", _EPERM, (_eq(0, AF_UNIX, "AF_UNIX"),), "AF_UNIX sockets can reach host daemons")),
    (None, Rule("socket", _EPERM, (_eq(0, AF_VSOCK, "AF_VSOCK"),), "AF_VSOCK reaches the hypervisor/host")),
    # socketpair(AF_UNIX) is the other way to get an AF_UNIX socket. A datagram pair
    # (SOCK_DGRAM, or SOCK_RAW which AF_UNIX turns into SOCK_DGRAM) can still sendto() any
    # datagram socket path, or connect() to one. Stream and seqpacket pairs cannot: sendto()
    # with an address fails with EISCONN (stream) or the address is ignored (seqpacket), and
    # connect() fails with EISCONN. They stay allowed: libuv, asyncio, subprocess need them.
    # Only the low 4 bits are the type (SOCK_NONBLOCK/SOCK_CLOEXEC sit above), hence the mask.
    ("allow_unix_sockets", Rule("socketpair", _EPERM, (
        _eq(0, AF_UNIX, "AF_UNIX"),
        Cond(1, "ne", SOCK_STREAM, "SOCK_STREAM", SOCK_TYPE_MASK),
        Cond(1, "ne", SOCK_SEQPACKET, "SOCK_SEQPACKET", SOCK_TYPE_MASK),
    ), "a datagram pair can sendto()/connect() any AF_UNIX socket path")),
    # io_uring: a second syscall interface that seccomp cannot see into; large attack surface.
    (None, Rule("io_uring_setup", _EPERM, why="io_uring bypasses per-syscall filtering")),
    (None, Rule("io_uring_enter", _EPERM, why="io_uring bypasses per-syscall filtering")),
    (None, Rule("io_uring_register", _EPERM, why="io_uring bypasses per-syscall filtering")),
    # Namespaces: a fresh user namespace gives back CAP_SYS_ADMIN over new namespaces, the
    # door to most kernel LPEs and to undoing the sandbox's mount layout.
    ("allow_nested_userns", Rule("unshare", _EPERM, (_any(0, NS_FLAGS | CLONE_NEWTIME, "CLONE_NEW*"),),
                                 "new namespaces re-grant capabilities")),
    # On x86_64 and aarch64 clone()'s flags are argument 0. CLONE_NEWTIME is not in the mask:
    # 0x80 there is part of the exit signal (CSIGNAL).
    ("allow_nested_userns", Rule("clone", _EPERM, (_any(0, NS_FLAGS, "CLONE_NEW*"),), "new namespaces re-grant capabilities")),
    # clone3's flags live in a struct in memory that seccomp cannot read, so refuse the whole
    # call with ENOSYS: glibc (pthread_create, posix_spawn) then falls back to clone().
    ("allow_nested_userns", Rule("clone3", "errno:ENOSYS", why="flags not inspectable; libc falls back to clone")),
    # Mount table and root changes.
    (None, Rule("mount", _EPERM, why="changes the mount layout")),
    (None, Rule("umount2", _EPERM, why="could uncover hidden host paths")),
    (None, Rule("pivot_root", _EPERM, why="changes the root")),
    (None, Rule("setns", _EPERM, why="joins another namespace")),
    (None, Rule("chroot", _EPERM, why="changes the root")),
    (None, Rule("fsopen", _EPERM, why="new mount API")),
    (None, Rule("fsconfig", _EPERM, why="new mount API")),
    (None, Rule("fsmount", _EPERM, why="new mount API")),
    (None, Rule("fspick", _EPERM, why="new mount API")),
    (None, Rule("move_mount", _EPERM, why="new mount API")),
    (None, Rule("open_tree", _EPERM, why="new mount API")),
    (None, Rule("mount_setattr", _EPERM, why="new mount API")),
    # Other processes' memory. PTRACE_TRACEME and requests on an already-traced child stay
    # allowed so that debuggers / strace of one's own children keep working.
    (None, Rule("ptrace", _EPERM, (_eq(0, PTRACE_ATTACH, "PTRACE_ATTACH"),), "attaching to non-children")),
    (None, Rule("ptrace", _EPERM, (_eq(0, PTRACE_SEIZE, "PTRACE_SEIZE"),), "attaching to non-children")),
    (None, Rule("process_vm_readv", _EPERM, why="reads other processes' memory")),
    (None, Rule("process_vm_writev", _EPERM, why="writes other processes' memory")),
    # Kernel keyrings: shared, not namespaced; can hold host credentials.
    (None, Rule("keyctl", _EPERM, why="kernel keyring is not namespaced")),
    (None, Rule("add_key", _EPERM, why="kernel keyring is not namespaced")),
    (None, Rule("request_key", _EPERM, why="kernel keyring is not namespaced")),
    # Large kernel attack surface with no place in an agent sandbox.
    (None, Rule("bpf", _EPERM, why="eBPF: kernel attack surface")),
    (None, Rule("perf_event_open", _EPERM, why="kernel attack surface, side channels")),
    (None, Rule("userfaultfd", _EPERM, why="widens kernel race windows for exploits")),
    (None, Rule("kexec_load", _EPERM, why="replaces the kernel")),
    (None, Rule("kexec_file_load", _EPERM, why="replaces the kernel")),
    (None, Rule("init_module", _EPERM, why="loads kernel code")),
    (None, Rule("finit_module", _EPERM, why="loads kernel code")),
    (None, Rule("delete_module", _EPERM, why="unloads kernel code")),
    # Terminal input injection: push keystrokes into the controlling terminal's input
    # queue, i.e. run commands in the user's shell after the sandbox exits.
    (None, Rule("ioctl", _EPERM, (_eq(1, TIOCSTI, "TIOCSTI"),), "injects terminal input")),
    (None, Rule("ioctl", _EPERM, (_eq(1, TIOCLINUX, "TIOCLINUX"),), "injects terminal input")),
    # Container-escape primitives and host-global administration.
    (None, Rule("open_by_handle_at", _EPERM, why="opens files outside the mount tree (shocker)")),
    (None, Rule("name_to_handle_at", _EPERM, why="file-handle escape primitive")),
    (None, Rule("acct", _EPERM, why="host-global process accounting")),
    (None, Rule("swapon", _EPERM, why="host-global")),
    (None, Rule("swapoff", _EPERM, why="host-global")),
    (None, Rule("reboot", _EPERM, why="host-global")),
    (None, Rule("quotactl", _EPERM, why="host-global")),
    (None, Rule("lookup_dcookie", _EPERM, why="leaks host paths")),
    (None, Rule("vhangup", _EPERM, why="hangs up the terminal")),
    (None, Rule("syslog", _EPERM, why="reads the kernel log (address leaks)")),
    # No setuid/setgid file can be made inside. A launcher running as root (or whose files
    # land root-owned through an idmapped mount) would otherwise find a setuid-root binary
    # planted in the workspace, to be run later outside the sandbox; an unprivileged
    # launcher, a setuid-to-the-launcher binary that other local users could run. The bits
    # come from a chmod (any type of file: the filter cannot tell a directory, so `chmod g+s
    # DIR` is refused too) or from the mode of a call that creates a file (open/openat/creat
    # with O_CREAT or O_TMPFILE, mknod/mknodat, which also makes regular files). mkdir and
    # mkdirat are left alone: the kernel drops S_ISUID/S_ISGID from their mode (a directory
    # gets S_ISGID only by inheriting it from a setgid parent, which is harmless).
    (None, Rule("chmod", _EPERM, (_SETID(1),), _SETID_WHY)),
    (None, Rule("fchmod", _EPERM, (_SETID(1),), _SETID_WHY)),
    (None, Rule("fchmodat", _EPERM, (_SETID(2),), _SETID_WHY)),
    (None, Rule("fchmodat2", _EPERM, (_SETID(2),), _SETID_WHY)),
    (None, Rule("open", _EPERM, (_CREATES(1), _SETID(2)), _SETID_WHY)),
    (None, Rule("openat", _EPERM, (_CREATES(2), _SETID(3)), _SETID_WHY)),
    (None, Rule("creat", _EPERM, (_SETID(1),), _SETID_WHY)),
    (None, Rule("mknod", _EPERM, (_SETID(1),), _SETID_WHY)),
    (None, Rule("mknodat", _EPERM, (_SETID(2),), _SETID_WHY)),
    # openat2's mode sits in a struct in memory that seccomp cannot read: ENOSYS, the answer
    # of kernels older than 5.6, so its few users (systemd, some Go/Rust code) fall back to
    # openat. glibc, Python and coreutils never call it.
    (None, Rule("openat2", "errno:ENOSYS", why="mode not inspectable; callers fall back to openat")),
)

# --------------------------------------------------------------------------------------
# Per-arch syscall numbers for every name used in the table.
# x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64: include/uapi/asm-generic/unistd.h.
# A name missing from an arch's dict is skipped on that arch (aarch64 has no open, creat,
# chmod or mknod: only their *at forms).
# --------------------------------------------------------------------------------------

_X86_64_NR: dict[str, int] = {
    "ioctl": 16, "socket": 41, "clone": 56, "ptrace": 101, "syslog": 103, "vhangup": 153,
    "pivot_root": 155, "chroot": 161, "acct": 163, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "lookup_dcookie": 212, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
    "mount_setattr": 442, "open": 2, "creat": 85, "chmod": 90, "fchmod": 91, "mknod": 133,
    "openat": 257, "mknodat": 259, "fchmodat": 268, "openat2": 437, "fchmodat2": 452,
    "socketpair": 53, "sendto": 44, "sendmsg": 46, "sendmmsg": 307,
}  # fmt: skip

_AARCH64_NR: dict[str, int] = {
    "lookup_dcookie": 18, "ioctl": 29, "umount2": 39, "mount": 40, "pivot_root": 41,
    "chroot": 51, "vhangup": 58, "quotactl": 60, "acct": 89, "unshare": 97, "kexec_load": 104,
    "init_module": 105, "delete_module": 106, "syslog": 116, "ptrace": 117, "reboot": 142,
    "socket": 198, "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220,
    "swapon": 224, "swapoff": 225, "perf_event_open": 241, "name_to_handle_at": 264,
    "open_by_handle_at": 265, "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271,
    "finit_module": 273, "bpf": 280, "userfaultfd": 282, "kexec_file_load": 294,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "clone3": 435, "mount_setattr": 442, "mknodat": 33, "fchmod": 52, "fchmodat": 53,
    "openat": 56, "openat2": 437, "fchmodat2": 452, "socketpair": 199, "sendto": 206, "sendmsg": 211,
    "sendmmsg": 269,
}  # fmt: skip


@frozen
class _Arch:
    name: str
    audit_arch: int
    audit_name: str
    numbers: dict[str, int]
    x32_check: bool  # refuse syscall numbers carrying the x32 bit


_ARCHES: dict[str, _Arch] = {
    "x86_64": _Arch("x86_64", 0xC000003E, "AUDIT_ARCH_X86_64", _X86_64_NR, True),
    "aarch64": _Arch("aarch64", 0xC00000B7, "AUDIT_ARCH_AARCH64", _AARCH64_NR, False),
}
# platform.machine() spellings seen in the wild.
_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

# --------------------------------------------------------------------------------------
# Classic BPF encoding
# --------------------------------------------------------------------------------------

BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = seccomp_data[k:k+4]
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K (unsigned)
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K: A & k != 0
BPF_RET_K = 0x06  # BPF_RET | BPF_K
BPF_ALU_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K: A &= k

BPF_MAXINSNS = 4096
_INSN = struct.Struct("<HBBI")


def rules(opts: SeccompOptions) -> tuple[Rule, ...]:
    """The deny table, minus the rows that `opts` lifts."""
    return tuple(rule for lifted_by, rule in _TABLE if lifted_by is None or not getattr(opts, lifted_by))


def _resolve_arch(arch: str | None) -> _Arch:
    name = arch if arch is not None else os.uname().machine  # == platform.machine(), cheaper
    key = _ALIASES.get(name.lower(), name.lower())
    try:
        return _ARCHES[key]
    except KeyError:
        supported = ", ".join(sorted(_ARCHES))
        raise UnsupportedArch(f"seccomp filter: unsupported architecture {name!r} (supported: {supported})") from None


def _action(action: str) -> int:
    if action == "kill":
        return SECCOMP_RET_KILL_PROCESS
    if action.startswith("errno:"):
        code = getattr(errno, action[len("errno:"):], None)
        if isinstance(code, int):
            return SECCOMP_RET_ERRNO | (code & 0xFFFF)
    raise ValueError(f"seccomp rule: unknown action {action!r}")


def _check_rule(rule: Rule) -> None:
    if not isinstance(rule.when, tuple):
        raise ValueError(f"seccomp rule {rule.syscall}: conditions must be a tuple of Cond")
    for c in rule.when:
        if not isinstance(c, Cond):
            raise ValueError(f"seccomp rule {rule.syscall}: {c!r} is not a Cond")
        if not 0 <= c.arg <= 5:
            raise ValueError(f"seccomp rule {rule.syscall}: arg must be 0..5, got {c.arg}")
        if c.op not in ("eq", "ne", "mask_any"):
            raise ValueError(f"seccomp rule {rule.syscall}: unknown op {c.op!r}")
        # Only the low 32 bits are ever compared; a wider value could never match.
        if not 0 <= c.value <= 0xFFFFFFFF or not 0 < c.mask <= 0xFFFFFFFF:
            raise ValueError(f"seccomp rule {rule.syscall}: value and mask must fit in 32 bits")
        if c.op == "mask_any" and c.mask != 0xFFFFFFFF:
            raise ValueError(f"seccomp rule {rule.syscall}: mask_any takes no mask (the value is the mask)")
        if c.value & ~c.mask & 0xFFFFFFFF:
            raise ValueError(f"seccomp rule {rule.syscall}: value 0x{c.value:x} has bits outside mask 0x{c.mask:x}")


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    # Every jump is checked here, so a table change can never produce a silently wrong
    # (truncated) offset. An explicit raise rather than `assert`: it must survive python -O.
    if not (0 <= jt <= 255 and 0 <= jf <= 255):
        raise AssertionError(f"BPF jump offset out of range: jt={jt} jf={jf}")
    return _INSN.pack(code, jt, jf, k & 0xFFFFFFFF)


def _rule_block(rule: Rule, nr: int) -> list[bytes]:
    """ld nr; jeq NR ? 0 : skip; per condition: ld low32(arg); [and MASK]; test; ret ACTION.

    Built back to front, so that each failed test jumps exactly past the block's `ret`."""
    _check_rule(rule)
    body = [_insn(BPF_RET_K, 0, 0, _action(rule.action))]
    for c in reversed(rule.when):
        past = len(body)  # insns after this test, the ret included: a jump of `past` leaves the block
        if c.op == "eq":
            test = _insn(BPF_JEQ_K, 0, past, c.value)
        elif c.op == "ne":
            test = _insn(BPF_JEQ_K, past, 0, c.value)
        else:
            test = _insn(BPF_JSET_K, 0, past, c.value)
        load = [_insn(BPF_LD_W_ABS, 0, 0, OFF_ARGS + 8 * c.arg)]  # low half only (little-endian)
        if c.mask != 0xFFFFFFFF:
            load.append(_insn(BPF_ALU_AND_K, 0, 0, c.mask))
        body = load + [test] + body
    return [_insn(BPF_LD_W_ABS, 0, 0, OFF_NR), _insn(BPF_JEQ_K, 0, len(body), nr), *body]


def compile_filter(opts: SeccompOptions, arch: str | None = None, extra: tuple[Rule, ...] = ()) -> bytes:
    """The filter as raw `struct sock_filter[]` bytes, for `bwrap --seccomp FD`. `extra`: rules
    a backend adds after the table (landlock: the sockets Landlock does not restrict)."""
    a = _resolve_arch(arch)
    kill = _insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)
    prog = [
        # A foreign ABI (i386 via int 0x80, arm32 compat) has its own syscall numbers:
        # our table would mean nothing there, so refuse the ABI outright.
        _insn(BPF_LD_W_ABS, 0, 0, OFF_ARCH),
        _insn(BPF_JEQ_K, 1, 0, a.audit_arch),
        kill,
    ]
    if a.x32_check:
        # x32 syscalls arrive with AUDIT_ARCH_X86_64 and nr | 0x40000000: refuse them, or
        # every rule below could be dodged by setting that bit. nr == -1 is let through
        # (the kernel answers ENOSYS): tracers use it to skip a syscall, as libseccomp does.
        prog += [
            _insn(BPF_LD_W_ABS, 0, 0, OFF_NR),
            _insn(BPF_JGE_K, 0, 2, X32_SYSCALL_BIT),
            _insn(BPF_JEQ_K, 1, 0, 0xFFFFFFFF),
            kill,
        ]
    for rule in (*rules(opts), *extra):
        nr = a.numbers.get(rule.syscall)
        if nr is None:
            continue  # syscall does not exist on this arch
        prog += _rule_block(rule, nr)
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    if len(prog) > BPF_MAXINSNS:
        raise ValueError(f"seccomp filter too long: {len(prog)} > {BPF_MAXINSNS} instructions")
    return b"".join(prog)


def _fmt_cond(c: Cond) -> str:
    value = f"{c.name} (0x{c.value:x})" if c.name else f"0x{c.value:x}"
    if c.op == "mask_any":
        return f"arg{c.arg} & {value}"
    left = f"arg{c.arg}" if c.mask == 0xFFFFFFFF else f"(arg{c.arg} & 0x{c.mask:x})"
    return f"{left} {'==' if c.op == 'eq' else '!='} {value}"


def _fmt_action(action: str) -> str:
    return "kill process" if action == "kill" else action.replace("errno:", "error ")


def describe(opts: SeccompOptions, arch: str | None = None) -> list[str]:
    """Human-readable lines for `corral run --dry-run`, in program order."""
    a = _resolve_arch(arch)
    lines = [f"seccomp[{a.name}]: arch != {a.audit_name} (0x{a.audit_arch:08x}) -> kill process (foreign ABI)"]
    if a.x32_check:
        lines.append(f"seccomp[{a.name}]: syscall nr >= 0x{X32_SYSCALL_BIT:08x} (x32 ABI) -> kill process")
    for rule in rules(opts):
        nr = a.numbers.get(rule.syscall)
        if nr is None:
            continue
        cond = f"{rule.syscall}({' && '.join(map(_fmt_cond, rule.when))})" if rule.when else rule.syscall
        why = f"  # {rule.why}" if rule.why else ""
        lines.append(f"seccomp[{a.name}]: {cond} [nr {nr}] -> {_fmt_action(rule.action)}{why}")
    lines.append(f"seccomp[{a.name}]: everything else -> allow (arguments compared on their low 32 bits)")
    return lines
