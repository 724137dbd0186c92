"""Host-side TLS fixtures for the credential-boundary tests: a test CA, leaf certificates, and a
threaded HTTPS server on 127.0.0.1 that records every request it is sent.

Nothing here talks to corral: the servers are the "real upstreams" the sandbox reaches through
corral's proxy, and what they record is what the tests assert on.

Routes of `HttpsServer` (any method):
  /echo          JSON of what was received: method, path (with query), every header, body;
                 the received Authorization / x-api-key are also echoed in response headers
  /sse           text/event-stream, 5 events 300 ms apart, chunked, each chunk flushed
  /echo-split    the received Authorization in a chunked body, cut mid-value, 300 ms between chunks
  /big?n=BYTES   a deterministic body of n bytes
  /ws            WebSocket echo: 101 + Sec-WebSocket-Accept, echoes text frames until close
  /<name>.git/…  with `git_root`: `git http-backend` (smart HTTP), optionally requiring a token
  anything else  200 "ok <path>"
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import ipaddress
import json
import os
import shutil
import socketserver
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
SSE_EVENTS = 5
SSE_PAUSE = 0.3


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class TestCA:
    """A self-signed CA (RFC 5280-clean, so strict verifiers accept it) that mints leaves.

    `directory` gets `ca.pem` (0644, in a 0755 directory, so the unprivileged test user and
    corral running as that user can read it). Leaf keys live in `directory/private` (0700)."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, common_name: str = "corral test CA"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        self.private = self.directory / "private"
        self.private.mkdir(exist_ok=True)
        self.private.chmod(0o700)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "corral tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {os.urandom(4).hex()}")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.path = self.directory / "ca.pem"
        self.path.write_bytes(self.cert_pem)
        self.path.chmod(0o644)
        self._n = 0

    def leaf(self, dns=("localhost",), ips=("127.0.0.1",)) -> tuple[Path, Path, bytes]:
        """(cert file, key file, DER of the leaf) for a server certificate with these SANs."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        first = (list(dns) + list(ips))[0]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self._n += 1
        stem = self.private / f"leaf{self._n}-{os.urandom(3).hex()}"
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        key_path.touch(mode=0o600)
        key_path.write_bytes(_pem_key(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(self.path))
        return ctx

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def make_ca(prefix: str = "ct-ca-") -> TestCA:
    return TestCA(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------------------------
# The HTTPS server
# ---------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str  # with the query
    headers: list  # [(name, value)] as received
    body: bytes
    sni: str | None = None

    def header(self, name: str, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def raw(self) -> str:
        """Everything received, as one string (to search for a placeholder or a secret)."""
        return "\n".join([f"{self.method} {self.path}", *(f"{k}: {v}" for k, v in self.headers),
                          self.body.decode("latin-1")])


def basic_password(authorization: str | None) -> str | None:
    """The password of `Authorization: Basic ...`, else None."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(authorization.split(None, 1)[1]).decode("latin-1").partition(":")[2]
    except (ValueError, IndexError):
        return None


def presented_token(authorization: str | None) -> str | None:
    """The token a client presented: Bearer/token value, or the Basic password."""
    if not authorization:
        return None
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() in ("bearer", "token"):
        return rest.strip()
    return basic_password(authorization)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, *args):  # quiet
        pass

    # every method goes through one dispatcher
    def _dispatch(self):
        owner: HttpsServer = self.server.owner
        body = self._read_body()
        req = Request(self.command, self.path, list(self.headers.items()), body,
                      getattr(self.connection, "ct_sni", None))
        owner._record(req)
        route = req.route
        if route in owner.routes:
            status, headers, body = owner.routes[route](req)
            return self._send(status, body, "application/octet-stream", headers)
        if owner.git_root is not None and _is_git_path(route, owner.git_root):
            return self._git(req)
        if route == "/echo":
            return self._echo(req)
        if route == "/sse":
            return self._sse()
        if route == "/echo-split":
            return self._echo_split(req)
        if route == "/big":
            n = int(urllib.parse.parse_qs(self.path.partition("?")[2]).get("n", ["0"])[0])
            return self._send(200, big_body(n), "application/octet-stream")
        if route == "/ws" and (req.header("Upgrade") or "").lower() == "websocket":
            return self._websocket(req)
        return self._send(200, f"ok {self.path}\n".encode())

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_TRACE = do_TRACK = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes, ctype: str = "text/plain", extra=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _echo(self, req: Request) -> None:
        doc = {"method": req.method, "path": req.path, "headers": [[k, v] for k, v in req.headers],
               "body": req.body.decode("latin-1")}
        extra = []
        for name in ("Authorization", "x-api-key"):
            if req.header(name) is not None:
                extra.append((f"X-Echo-{name}", req.header(name)))
        self._send(200, json.dumps(doc).encode(), "application/json", extra)

    def _sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(SSE_EVENTS):
            chunk = f"id: {i}\ndata: event {i}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
            if i < SSE_EVENTS - 1:
                time.sleep(SSE_PAUSE)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _echo_split(self, req: Request) -> None:
        """The received Authorization, in a chunked body cut in the middle of the value, with a
        pause between the two chunks (a redactor must hold back a partial match)."""
        text = f"auth={req.header('Authorization') or ''}\n".encode()
        cut = len(b"auth=") + len(text) // 2
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in (text[:cut], text[cut:]):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(0.3)
        self.wfile.write(b"0\r\n\r\n")

    def _websocket(self, req: Request) -> None:
        owner: HttpsServer = self.server.owner
        key = req.header("Sec-WebSocket-Key") or ""
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            frame = read_ws_frame(self.rfile)
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x8:  # close: answer it and stop
                self.wfile.write(ws_frame(0x8, payload[:2]))
                return
            if opcode in (0x1, 0x2):
                with owner.lock:
                    owner.ws_messages.append(payload)
                self.wfile.write(ws_frame(opcode, payload))
            elif opcode == 0x9:  # ping
                self.wfile.write(ws_frame(0xA, payload))

    def _git(self, req: Request) -> None:
        owner: HttpsServer = self.server.owner
        if owner.git_token is not None and presented_token(req.header("Authorization")) != owner.git_token:
            return self._send(401, b"authentication required\n", extra=[("WWW-Authenticate", 'Basic realm="ct"')])
        route, _, query = req.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(owner.git_root),
            "GIT_PROJECT_ROOT": str(owner.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*",
            "PATH_INFO": urllib.parse.unquote(route),
            "QUERY_STRING": query,
            "REQUEST_METHOD": req.method,
            "CONTENT_TYPE": req.header("Content-Type") or "",
            "CONTENT_LENGTH": str(len(req.body)),
            "REMOTE_USER": "ct",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        for k, v in req.headers:
            name = "HTTP_" + k.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_AUTHORIZATION"):
                env[name] = v
        proc = subprocess.run(["git", "http-backend"], input=req.body, env=env, capture_output=True, timeout=120)
        out = proc.stdout
        cut = min((i for i in (out.find(b"\r\n\r\n"), out.find(b"\n\n")) if i >= 0), default=-1)
        if cut < 0:
            return self._send(500, b"http-backend failed: " + proc.stderr[-500:])
        head = out[:cut]
        body = out[cut + 4:] if out[cut:cut + 4] == b"\r\n\r\n" else out[cut + 2:]
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k.strip():
                headers.append((k.strip(), v.strip()))
        ctype = next((v for k, v in headers if k.lower() == "content-type"), "text/plain")
        extra = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
        self._send(status, body, ctype, extra)


def _is_git_path(route: str, root: Path | None = None) -> bool:
    first = route.lstrip("/").split("/", 1)[0]
    # also a repository named without .git (`repo` -> `repo.git`), as GitHub serves both, and
    # nested ones (`/acme/widgets.git/...`)
    if first.endswith(".git") or any(seg.endswith(".git") for seg in route.split("/")[1:-1]):
        return True
    segs = [s for s in route.split("/") if s and s not in (".", "..")]
    return root is not None and any((root.joinpath(*segs[:i]) / "HEAD").is_file() for i in range(1, len(segs)))


def big_body(n: int) -> bytes:
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


def ws_frame(opcode: int, payload: bytes, mask: bool = False) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def read_ws_frame(f):
    """(opcode, payload) of the next frame from a binary file object, None at EOF."""
    first = f.read(2)
    if len(first) < 2:
        return None
    opcode, n, masked = first[0] & 0x0F, first[1] & 0x7F, first[1] & 0x80
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    key = f.read(4) if masked else b""
    payload = f.read(n)
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return opcode, payload


class _TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # runs in the per-connection thread: a slow or failing handshake blocks nobody else
        owner: HttpsServer = self.owner
        request.settimeout(60)
        try:
            tls = owner.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with owner.lock:
                owner.handshake_errors.append(repr(exc))
            try:
                request.close()
            except OSError:
                pass
            return
        with owner.lock:
            owner.handshakes += 1
            owner.alpn.append(tls.selected_alpn_protocol())
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):  # a client vanishing is not news
        pass


class HttpsServer:
    """A threaded HTTPS server on 127.0.0.1:<ephemeral> that records every request.

    `untrusted=True`: the certificate is signed by a throwaway CA the tests never trust (the
    test CA did NOT sign it). `git_root`: serve bare repositories below it with `git
    http-backend`; `git_token`: refuse (401 + WWW-Authenticate: Basic) git requests that do not
    present exactly this token (Bearer, or as the Basic password)."""

    def __init__(self, ca: TestCA, *, untrusted: bool = False, git_root: Path | None = None,
                 git_token: str | None = None, alpn=("http/1.1",), routes=None):
        self.ca = ca
        self.rogue: TestCA | None = None
        if untrusted:
            self.rogue = make_ca("ct-rogue-ca-")
            cert, key, self.leaf_der = self.rogue.leaf()
        else:
            cert, key, self.leaf_der = ca.leaf()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        if alpn:
            self.context.set_alpn_protocols(list(alpn))
        self.context.sni_callback = self._sni
        self.git_root = Path(git_root).resolve() if git_root else None
        self.git_token = git_token
        self.routes = dict(routes or {})  # extra routes: path -> fn(Request) -> (status, [(name, value)], body)
        self.requests: list[Request] = []
        self.ws_messages: list[bytes] = []
        self.handshake_errors: list[str] = []
        self.handshakes = 0
        self.alpn: list = []
        self.snis: list = []
        self.lock = threading.Lock()
        self.httpd = _TLSServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _sni(self, sslsock, name, ctx):
        with self.lock:
            self.snis.append(name)
        try:
            sslsock.ct_sni = name
        except AttributeError:
            pass
        return None

    def _record(self, req: Request) -> None:
        with self.lock:
            self.requests.append(req)

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.leaf_der)

    def got(self, route: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if route is None or r.route == route]

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]

    def everything(self) -> str:
        with self.lock:
            return "\n\n".join(r.raw() for r in self.requests) + "\n" + "\n".join(
                m.decode("latin-1") for m in self.ws_messages)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.rogue is not None:
            self.rogue.cleanup()


# ---------------------------------------------------------------------------------------------
# A bare repository for the git smart-HTTP mode
# ---------------------------------------------------------------------------------------------

GIT_ID = ["-c", "user.email=ct@example.invalid", "-c", "user.name=ct", "-c", "init.defaultBranch=main"]
GIT_FILE_TEXT = "hello from the https repo\n"


def make_git_root(receive_pack: bool = True) -> Path:
    """/tmp/ct-git-XXXX/repo.git: a bare repository holding one commit of hello.txt on main.

    Owned by the test process (http-backend runs as that user); push is enabled with
    http.receivepack when `receive_pack`."""
    root = Path(tempfile.mkdtemp(prefix="ct-git-", dir="/tmp"))
    work = root / "work"
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root)}
    subprocess.run(["git", *GIT_ID, "init", "-q", str(work)], check=True, env=env)
    (work / "hello.txt").write_text(GIT_FILE_TEXT)
    subprocess.run(["git", *GIT_ID, "-C", str(work), "add", "hello.txt"], check=True, env=env)
    subprocess.run(["git", *GIT_ID, "-C", str(work), "commit", "-q", "-m", "init"], check=True, env=env)
    subprocess.run(["git", *GIT_ID, "clone", "-q", "--bare", str(work), str(root / "repo.git")], check=True, env=env)
    shutil.rmtree(work)
    if receive_pack:
        subprocess.run(["git", "-C", str(root / "repo.git"), "config", "http.receivepack", "true"], check=True, env=env)
    return root


def git_refs(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root / "repo.git"), "for-each-ref"], capture_output=True, text=True,
                          env={**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
                               "GIT_CONFIG_VALUE_0": "*"}).stdout
