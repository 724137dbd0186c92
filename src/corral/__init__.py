"""corral: run a command with the least privilege it needs, enforced by the OS.

    from corral import Policy, Sandbox
    with Sandbox(Policy.default()) as sb:
        sb.run(["ls"])

Attributes are imported lazily so that `import corral` stays cheap for the CLI.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Policy", "Sandbox", "CorralError", "PolicyError", "SetupError", "UnsupportedFeature"]


def __getattr__(name: str):
    if name in ("Policy", "Sandbox"):
        from . import api

        return getattr(api, name)
    if name in ("CorralError", "PolicyError", "SetupError", "UnsupportedFeature", "UsageError"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
