"""Interactive runs: the command gets its own pseudo-terminal, never the user's.

The user's terminal is put in raw mode and bytes are copied both ways, so Ctrl-C, job
control and full-screen programs work inside, while TIOCSTI from inside can only push input
into the sandbox's own pty, not into the user's shell.
"""

from __future__ import annotations

import errno
import os
import select
import signal


def copy_winsize(master: int, source: int = 0) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def relay(master: int, child: int) -> int:
    """Copy stdin -> master and master -> stdout until the child exits; return its status."""
    import termios
    import tty

    stdin, stdout = 0, 1
    saved = None
    try:
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)
    except termios.error:
        saved = None
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    old_chld = signal.signal(signal.SIGCHLD, lambda *_: None)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(master))
    status = None
    stdin_open = True
    try:
        while True:
            if status is None:
                pid, st = os.waitpid(child, os.WNOHANG)
                if pid:
                    status = st
            fds = [master, wake_r] + ([stdin] if stdin_open else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.5 if status is None else 0.05)
            except InterruptedError:
                continue
            if wake_r in ready:
                os.read(wake_r, 512)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break  # every holder of the slave side is gone
                _write_all(stdout, data)
            elif status is not None and not ready:
                break
            if stdin_open and stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    _write_all(master, data)
                else:
                    stdin_open = False
                    _write_all(master, b"\x04")  # EOF for the program reading the pty
    finally:
        signal.signal(signal.SIGCHLD, old_chld)
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)
    if status is None:
        _, status = os.waitpid(child, 0)
    return status


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
