"""Sandbox backends: turn a Plan into a running, isolated process.

`plan` builds the ordered Plan from a Policy and filesystem facts, `bwrap` renders it as a
bubblewrap argv, `seccomp` compiles the syscall filter, `launch` runs it and cleans up.
"""
