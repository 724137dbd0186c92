"""Run a command under a seccomp filter that refuses new user namespaces the way Docker's
default profile does: unshare(2) and clone(2) with CLONE_NEWUSER fail with EPERM, clone3(2)
fails with ENOSYS (so libcs fall back to clone, whose flags a cBPF filter can read); every
other call is allowed. The simulation of "corral inside a container" for the refusal tests:

    python3 tests/nouserns.py COMMAND [ARGS...]

Unprivileged callers need no_new_privs to install a filter (set then, as a container would);
root keeps its capabilities, as root in a container with the default profile does."""

from __future__ import annotations

import ctypes
import os
import struct
import sys

CLONE_NEWUSER = 0x10000000
ARCH = {"x86_64": (0xC000003E, {"unshare": 272, "clone": 56, "clone3": 435}),
        "aarch64": (0xC00000B7, {"unshare": 97, "clone": 220, "clone3": 435})}
# seccomp_data: nr at 0, arch at 4, args[0] (low 32 bits, little endian) at 16
LD_W_ABS, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS = 1, 38


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The cBPF program, as (code, jt, jf, k) instructions."""
    audit_arch, nr = ARCH[machine]
    return [
        (LD_W_ABS, 0, 0, 4),
        (JEQ_K, 1, 0, audit_arch),
        (RET_K, 0, 0, ALLOW),  # another ABI (x32, compat): not this simulation's concern
        (LD_W_ABS, 0, 0, 0),
        (JEQ_K, 0, 1, nr["clone3"]),
        (RET_K, 0, 0, ERRNO | ENOSYS),
        (JEQ_K, 1, 0, nr["unshare"]),
        (JEQ_K, 0, 3, nr["clone"]),
        (LD_W_ABS, 0, 0, 16),
        (JSET_K, 0, 1, CLONE_NEWUSER),
        (RET_K, 0, 0, ERRNO | EPERM),
        (RET_K, 0, 0, ALLOW),
    ]


def install() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    code = b"".join(struct.pack("HBBI", *ins) for ins in program(os.uname().machine))
    buf = ctypes.create_string_buffer(code)
    n = len(code) // 8

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Fprog(n, ctypes.addressof(buf))
    if os.geteuid() != 0 and libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: nouserns.py COMMAND [ARGS...]")
    install()
    os.execvp(sys.argv[1], sys.argv[1:])
