"""`--backend auto` (`backend = "auto"`): which wall a run gets here, as a pure decision.

bubblewrap when it works on this machine (installed, and user namespaces allowed); else the
weaker Landlock wall, but only when the policy allows it (`allow_weaker = true`, or
`--allow-weaker`) and the kernel and this build offer it, said in one line; otherwise a
refusal naming the cause and the fix. Never a silent downgrade.

The inputs are probe results (`Probe`, gathered by `sandbox/hostfacts.auto_probe`); the
output is a `Choice`. No OS access here: table-tested in tests/test_auto_backend.py.
"""

from __future__ import annotations

from .._values import frozen

AUTO = "auto"
WEAKER = "landlock"


@frozen
class Probe:
    bwrap: str | None  # bubblewrap's program (None: not installed)
    userns_cause: str = ""  # why user namespaces are refused here ("" : they work)
    userns_fix: str = ""  # the command or change that allows them
    landlock_abi: int = 0  # the kernel's Landlock ABI (0: not enabled)
    landlock_backend: bool = False  # this build has the landlock backend


@frozen
class Choice:
    backend: str | None  # the wall to use; None: the run is refused
    notice: str = ""  # the one stderr line when the weaker wall is used
    cause: str = ""  # refused: why
    fix: str = ""  # refused: what to do


def choose(probe: Probe, allow_weaker: bool, allowed_by: str = "--allow-weaker") -> Choice:
    """The wall for `--backend auto`. `allowed_by`: where the weaker wall was allowed (named
    in the notice: `--allow-weaker`, or `allow_weaker = true in FILE`)."""
    if probe.bwrap and not probe.userns_cause:
        return Choice("bwrap")
    if not probe.bwrap:
        cause = "bubblewrap is not installed"
        fix = "sudo apt-get install bubblewrap (or dnf install bubblewrap)"
    else:
        cause, fix = probe.userns_cause, probe.userns_fix
    weaker = probe.landlock_backend and probe.landlock_abi > 0
    if not weaker:
        why = ("this corral has no landlock backend" if not probe.landlock_backend else
               "the kernel does not enable Landlock (CONFIG_SECURITY_LANDLOCK, lsm=landlock)")
        return Choice(None, cause=f"--backend auto: bubblewrap cannot run here: {cause}; "
                                  f"the weaker landlock wall is not available either ({why})",
                      fix=fix)
    if not allow_weaker:
        return Choice(None, cause=f"--backend auto: bubblewrap cannot run here: {cause}",
                      fix=f"{fix}; or accept the weaker landlock wall (Landlock ABI {probe.landlock_abi}: no private "
                          "/proc or /tmp, denied files stay visible by name) with --allow-weaker or "
                          "allow_weaker = true in the policy")
    return Choice(WEAKER, notice=f"corral: --backend auto: using the weaker landlock wall (Landlock ABI "
                                 f"{probe.landlock_abi}), allowed by {allowed_by}: bubblewrap cannot run here: "
                                 f"{cause} (for the strong wall: {fix})")
