"""`corral proxy`: the egress proxy alone, for containers and VMs (no sandbox of its own)."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import socketserver
import stat
import subprocess
import threading
import time

import pytest

import helpers


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = f"hello {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@pytest.fixture
def upstream():
    srv = _Server(("127.0.0.1", 0), _Hello)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(launcher, ws, listen: str, allowed: str):
    policy = ws.write("proxy.toml", f'[network]\nallowed_domains = ["{allowed}"]\naudit_log = ""\n')
    proc = subprocess.Popen(launcher.argv(["proxy", "--listen", listen, "--policy", str(policy)]), cwd=str(ws.proj),
                            env=launcher.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        try:
            _connect(listen).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("corral proxy did not start listening")


def _connect(listen: str) -> socket.socket:
    kind, _, rest = listen.partition(":")
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(rest)
        return s
    host, port = rest.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _http(listen: str, target: str) -> tuple[int, bytes]:
    s = _connect(listen)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _socks(listen: str, host: str, port: int) -> int:
    s = _connect(listen)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode() + port.to_bytes(2, "big"))
    reply = s.recv(10)
    s.close()
    return reply[1]


def _stop(proc) -> subprocess.CompletedProcess:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_unix_socket_listener(launcher, ws, upstream):
    path = ws.base / "px.sock"
    listen = f"unix:{path}"
    proc = _start(launcher, ws, listen, f"127.0.0.1:{upstream}")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # only its owner may use it
        assert os.stat(path).st_uid == launcher.uid
        assert _http(listen, f"http://127.0.0.1:{upstream}/a") == (200, b"hello /a\n")
        status, body = _http(listen, f"http://127.0.0.1:{_free_port()}/b")
        assert status == 403 and b"blocked" in body
        assert _socks(listen, "127.0.0.1", upstream) == 0
        assert _socks(listen, "127.0.0.1", _free_port()) == 2
    finally:
        done = _stop(proc)
    assert done.returncode == 0, done.stderr
    assert not path.exists()  # removed on exit


def test_tcp_listener_with_curl(launcher, ws, upstream):
    port = _free_port()
    listen = f"tcp:127.0.0.1:{port}"
    proc = _start(launcher, ws, listen, f"127.0.0.1:{upstream}")
    try:
        ok = subprocess.run(["curl", "-sS", "-x", f"http://127.0.0.1:{port}", f"http://127.0.0.1:{upstream}/c"],
                            capture_output=True, text=True, timeout=20)
        assert ok.stdout == "hello /c\n", ok.stderr
        tunnel = subprocess.run(["curl", "-sS", "-p", "-x", f"http://127.0.0.1:{port}",
                                 f"http://127.0.0.1:{upstream}/d"], capture_output=True, text=True, timeout=20)
        assert tunnel.stdout == "hello /d\n", tunnel.stderr
        no = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x",
                             f"http://127.0.0.1:{port}", "http://127.0.0.2:9/"], capture_output=True, text=True,
                            timeout=20)
        assert no.stdout == "403"
    finally:
        done = _stop(proc)
    assert done.returncode == 0 and "listening on tcp:127.0.0.1" in done.stderr


@pytest.mark.parametrize("listen,fragment", [
    ("udp:1.2.3.4:5", "expected unix:PATH or tcp:HOST:PORT"),
    ("tcp:127.0.0.1", "a port is required"),
    ("tcp:127.0.0.1:99999", "invalid port"),
])
def test_bad_listen_spec(launcher, ws, listen, fragment):
    p = helpers.run(launcher, ["proxy", "--listen", listen], ws.proj)
    assert p.returncode == 2 and fragment in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_listen_path_that_is_not_a_socket_is_left_alone(launcher, ws):
    victim = ws.write("important.txt", "keep me")
    p = helpers.run(launcher, ["proxy", "--listen", f"unix:{victim}"], ws.proj)
    assert p.returncode == 125 and "not a socket" in p.stderr
    assert victim.read_text() == "keep me"
