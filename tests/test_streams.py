"""corral.proxy.streams: SockStream, TlsStream (TLS over MemoryBIO on a non-blocking socket)
and relay_streams, against each other over socketpairs and against Python's own blocking
`ssl` sockets on 127.0.0.1. Certificates are minted here with `cryptography`.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import os
import random
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.proxy.streams import SockStream, TlsStream, pump, relay_streams

BIG = 8 * 1024 * 1024
TIMEOUT = 20.0


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class MiniCA:
    def __init__(self, directory, cn="streams test CA"):
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cn} {os.urandom(3).hex()}")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def leaf(self, dns=("localhost",), ips=("127.0.0.1",)):
        """(cert path, key path) of a server leaf with these SANs."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (list(dns) + list(ips))[0])]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.dir / f"leaf-{os.urandom(3).hex()}"
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)

    def client_context(self, version=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self.pem.decode())
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
        return ctx

    def server_context(self, version=None, **leaf):
        cert, key = self.leaf(**leaf)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
        return ctx


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return MiniCA(tmp_path_factory.mktemp("streams-ca"))


VERSIONS = [pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2"), pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3")]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def run(coro):
    async def bounded():
        async with asyncio.timeout(TIMEOUT):
            return await coro

    return asyncio.run(bounded())


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def tls_pair(ca, version=None, server_ctx=None, client_ctx=None, server_hostname="localhost"):
    a, b = pair()
    client = TlsStream(a, client_ctx or ca.client_context(version), server_side=False,
                       server_hostname=server_hostname)
    server = TlsStream(b, server_ctx or ca.server_context(version), server_side=True)
    await asyncio.gather(client.handshake(), server.handshake())
    return client, server


async def read_all(stream, limit=None) -> bytes:
    out = bytearray()
    while limit is None or len(out) < limit:
        data = await stream.recv()
        if not data:
            break
        out += data
    return bytes(out)


def payload(n: int, seed: int) -> bytes:
    """n deterministic pseudo-random bytes (a lost, repeated or shifted chunk changes the digest)."""
    return random.Random(seed).randbytes(n)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def failed_handshake(client, server):
    """Both handshakes' outcomes when the client refuses the server: the client raises, and
    once it hangs up the server's handshake ends too (it never completes)."""
    server_task = asyncio.ensure_future(server.handshake())
    try:
        await client.handshake()
        client_result = None
    except Exception as exc:  # noqa: BLE001 - returned to the test
        client_result = exc
    client.close()
    try:
        await server_task
        server_result = None
    except Exception as exc:  # noqa: BLE001
        server_result = exc
    server.close()
    return client_result, server_result


# ---------------------------------------------------------------------------------------------
# TlsStream <-> TlsStream over a socketpair
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_tls_streams_handshake_and_exchange(ca, version):
    async def main():
        client, server = await tls_pair(ca, version)
        assert client.tls and server.tls
        assert client.obj.version() == server.obj.version() == {
            ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        await client.send(b"ping from the client")
        assert await server.recv() == b"ping from the client"
        await server.send(b"pong from the server")
        assert await client.recv() == b"pong from the server"
        # several messages in a row arrive complete and in order
        for i in range(50):
            await client.send(b"m%03d;" % i)
        got = await read_all(server, 250)
        assert got == b"".join(b"m%03d;" % i for i in range(50))
        assert client.still_open() and server.still_open()
        client.close()
        server.close()

    run(main())


def test_server_name_comes_from_the_sni_callback():
    """With corral's Terminator contexts, the server side learns the name the client asked for."""
    from corral.proxy.terminate import Terminator
    from corral.proxy.tlsca import CertificateAuthority

    corral_ca = CertificateAuthority.ephemeral()
    term = Terminator(corral_ca, terminate=("*",))

    async def main():
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.load_verify_locations(cadata=corral_ca.cert_pem.decode())
        client_ctx.set_alpn_protocols(["h2", "http/1.1"])
        client, server = await tls_pair(None, server_ctx=term.server_context("first.example"),
                                        client_ctx=client_ctx, server_hostname="api.example.com")
        assert server.server_name == "api.example.com"
        # the leaf was minted for the SNI name (hostname checked by the client) and h2 was not chosen
        assert client.obj.selected_alpn_protocol() == "http/1.1"
        assert client.obj.getpeercert()["subjectAltName"] == (("DNS", "api.example.com"),)
        assert client.server_name is None
        client.close()
        server.close()

    run(main())


@pytest.mark.parametrize("version", VERSIONS)
def test_large_transfer_both_ways_at_once(ca, version):
    up, down = payload(BIG, 1), payload(BIG + 12345, 2)  # odd size: not a multiple of any buffer

    async def main():
        client, server = await tls_pair(ca, version)

        async def send_then_close(stream, data):
            await stream.send(data)
            await stream.shutdown_write()

        _, _, at_server, at_client = await asyncio.gather(
            send_then_close(client, up), send_then_close(server, down), read_all(server), read_all(client))
        client.close()
        server.close()
        return at_server, at_client

    at_server, at_client = run(main())
    assert len(at_server) == len(up) and digest(at_server) == digest(up)
    assert len(at_client) == len(down) and digest(at_client) == digest(down)


@pytest.mark.parametrize("version", VERSIONS)
def test_close_notify_is_eof_and_the_other_direction_stays_open(ca, version):
    async def main():
        client, server = await tls_pair(ca, version)
        await client.send(b"request body")
        await client.shutdown_write()  # close_notify: the client is done sending
        assert await read_all(server) == b"request body"
        assert await server.recv() == b""  # EOF is sticky
        assert not server.still_open()
        await server.send(b"the answer, after the client's close_notify")
        await server.shutdown_write()
        assert await read_all(client) == b"the answer, after the client's close_notify"
        assert await client.recv() == b""
        client.close()
        server.close()

    run(main())


@pytest.mark.parametrize("version", VERSIONS)
def test_peer_ending_without_close_notify_is_eof(ca, version):
    async def main():
        client, server = await tls_pair(ca, version)
        await client.send(b"last words")
        client.sock.shutdown(socket.SHUT_WR)  # TCP EOF, no close_notify: a truncated stream
        assert await read_all(server) == b"last words"
        assert await server.recv() == b""
        assert await server.recv() == b""
        assert not server.still_open()
        client.close()
        server.close()

    run(main())


def test_still_open_sees_pending_data_and_a_closed_peer(ca):
    async def main():
        client, server = await tls_pair(ca)
        assert server.still_open()
        await client.send(b"x")
        await asyncio.sleep(0.01)
        assert server.still_open()  # data waiting is not a closed connection
        assert await server.recv() == b"x"
        client.sock.close()
        await asyncio.sleep(0.01)
        assert not server.still_open()
        server.close()

    run(main())


def test_handshake_with_a_peer_that_hangs_up(ca):
    async def main():
        a, b = pair()
        server = TlsStream(b, ca.server_context(), server_side=True)
        a.close()
        with pytest.raises(ConnectionResetError):
            await server.handshake()
        server.close()

    run(main())


def test_first_bytes_already_read_are_used(ca):
    """The proxy peeks at the ClientHello before it decides to terminate: those bytes are given
    to the server stream as `first` and must not be lost."""

    async def main():
        loop = asyncio.get_running_loop()
        a, b = pair()
        client = TlsStream(a, ca.client_context(), server_side=False, server_hostname="localhost")
        hello_task = asyncio.ensure_future(client.handshake())
        first = await loop.sock_recv(b, 16384)
        assert first[0] == 0x16  # a TLS handshake record
        server = TlsStream(b, ca.server_context(), server_side=True, first=first)
        await asyncio.gather(server.handshake(), hello_task)
        await client.send(b"after a peeked hello")
        assert await server.recv() == b"after a peeked hello"
        client.close()
        server.close()

    run(main())


def test_untrusted_certificate_fails_the_handshake(ca, tmp_path):
    other = MiniCA(tmp_path, "not trusted")

    async def main():
        a, b = pair()
        client = TlsStream(a, ca.client_context(), server_side=False, server_hostname="localhost")
        server = TlsStream(b, other.server_context(), server_side=True)
        return await failed_handshake(client, server)

    client_result, server_result = run(main())
    assert isinstance(server_result, (OSError, ssl.SSLError))
    assert isinstance(client_result, ssl.SSLCertVerificationError)


def test_wrong_host_name_fails_the_handshake(ca):
    async def main():
        a, b = pair()
        client = TlsStream(a, ca.client_context(), server_side=False, server_hostname="other.example")
        server = TlsStream(b, ca.server_context(), server_side=True)
        return await failed_handshake(client, server)

    client_result, server_result = run(main())
    assert isinstance(server_result, (OSError, ssl.SSLError))
    assert isinstance(client_result, ssl.SSLCertVerificationError)
    assert "other.example" in str(client_result) or "match" in str(client_result)


# ---------------------------------------------------------------------------------------------
# Against Python's blocking ssl sockets on 127.0.0.1
# ---------------------------------------------------------------------------------------------


class BlockingTlsEchoServer:
    """One-connection-at-a-time TLS echo server on 127.0.0.1 (a thread, blocking `ssl`). After
    the client's EOF it sends `trailer` and closes with close_notify."""

    def __init__(self, ctx, trailer=b"bye"):
        self.ctx = ctx
        self.trailer = trailer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.errors = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        raw.settimeout(TIMEOUT)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as tls:
                while True:
                    try:
                        data = tls.recv(65536)
                    except ssl.SSLZeroReturnError:
                        data = b""
                    if not data:
                        break
                    self.received += len(data)
                    tls.sendall(data)
                tls.sendall(self.trailer)
                tls.unwrap()
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))

    def close(self):
        self.listener.close()
        self.thread.join(TIMEOUT)


@pytest.mark.parametrize("version", VERSIONS)
def test_tls_stream_client_against_a_real_ssl_server(ca, version):
    server = BlockingTlsEchoServer(ca.server_context(version))
    data = payload(BIG, 3)

    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        client = TlsStream(sock, ca.client_context(version), server_side=False, server_hostname="localhost")
        await client.handshake()

        async def send_then_close():
            await client.send(data)
            await client.shutdown_write()

        _, echoed = await asyncio.gather(send_then_close(), read_all(client))
        client.close()
        return echoed

    try:
        echoed = run(main())
    finally:
        server.close()
    assert server.errors == []
    assert server.received == len(data)
    assert echoed[:-3] == data and echoed[-3:] == b"bye"


def test_tls_stream_client_by_ip_address(ca):
    server = BlockingTlsEchoServer(ca.server_context(), trailer=b"")

    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        client = TlsStream(sock, ca.client_context(), server_side=False, server_hostname="127.0.0.1")
        await client.handshake()
        await client.send(b"by address")
        await client.shutdown_write()
        got = await read_all(client)
        client.close()
        return got

    try:
        assert run(main()) == b"by address"
    finally:
        server.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_tls_stream_server_against_a_real_ssl_client(ca, version):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    data = payload(BIG, 4)
    result = {}

    def client_thread():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                with ca.client_context(version).wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(data)  # the server reads it all, then answers
                    got = bytearray()
                    while True:
                        try:
                            chunk = tls.recv(65536)
                        except ssl.SSLZeroReturnError:
                            chunk = b""
                        if not chunk:
                            break
                        got += chunk
                    result["got"] = bytes(got)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = repr(exc)

    async def main():
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        server = TlsStream(conn, ca.server_context(version), server_side=True)
        await server.handshake()
        received = await read_all(server, len(data))
        await server.send(digest(received).encode() + b"\n" + received[::-1][:1000])
        await server.shutdown_write()
        server.close()
        return received

    t = threading.Thread(target=client_thread, daemon=True)
    t.start()
    try:
        received = run(main())
    finally:
        t.join(TIMEOUT)
        listener.close()
    assert "error" not in result, result.get("error")
    assert digest(received) == digest(data)
    assert result["got"] == digest(data).encode() + b"\n" + data[::-1][:1000]


# ---------------------------------------------------------------------------------------------
# SockStream and relay_streams
# ---------------------------------------------------------------------------------------------


def test_sock_stream_send_recv_half_close():
    async def main():
        a, b = pair()
        sa, sb = SockStream(a), SockStream(b)
        assert not sa.tls
        await sa.send(b"")  # nothing to send is not an error
        await sa.send(b"plain bytes")
        await sa.shutdown_write()
        assert await read_all(sb) == b"plain bytes"
        assert sa.still_open()  # only its write side is shut
        await sb.send(b"reply")
        assert await sa.recv() == b"reply"
        sb.close()
        await asyncio.sleep(0.01)
        assert not sa.still_open()
        await sa.shutdown_write()  # twice, and after the peer left: no error
        sa.close()

    run(main())


def test_relay_streams_tls_to_plain_both_directions_and_half_close(ca):
    up_data, down_data = payload(4 * 1024 * 1024, 5), payload(2 * 1024 * 1024 + 7, 6)

    async def main():
        client, term = await tls_pair(ca)  # the sandboxed client and the proxy's TLS side
        a, b = pair()
        upstream, server = SockStream(a), SockStream(b)  # the proxy's plain side and the server
        relay = asyncio.ensure_future(relay_streams(term, upstream, idle_timeout=TIMEOUT))

        async def client_side():
            await client.send(up_data)
            await client.shutdown_write()
            return await read_all(client)

        async def server_side():
            got = await read_all(server)  # until the relay passes the client's EOF on
            await server.send(down_data)
            await server.shutdown_write()
            return got

        at_client, at_server = await asyncio.gather(client_side(), server_side())
        counts = await relay
        for s in (client, term, upstream, server):
            s.close()
        return at_client, at_server, counts

    at_client, at_server, (up, down) = run(main())
    assert digest(at_server) == digest(up_data)
    assert digest(at_client) == digest(down_data)
    assert (up, down) == (len(up_data), len(down_data))


def test_relay_streams_tls_to_tls(ca):
    """After termination a WebSocket is relayed between two TLS streams."""
    data = payload(1024 * 1024, 7)

    async def main():
        client, term = await tls_pair(ca)
        up_side, server = await tls_pair(ca)
        relay = asyncio.ensure_future(relay_streams(term, up_side, idle_timeout=TIMEOUT))

        async def echo():
            got = await read_all(server)
            await server.send(got[::-1])
            await server.shutdown_write()

        async def talk():
            await client.send(data)
            await client.shutdown_write()
            return await read_all(client)

        got, _ = await asyncio.gather(talk(), echo())
        counts = await relay
        for s in (client, term, up_side, server):
            s.close()
        return got, counts

    got, counts = run(main())
    assert got == data[::-1]
    assert counts == (len(data), len(data))


def test_relay_streams_idle_timeout_ends_both_directions():
    async def main():
        a1, b1 = pair()
        a2, b2 = pair()
        left, middle_left = SockStream(a1), SockStream(b1)
        middle_right, right = SockStream(a2), SockStream(b2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await left.send(b"one message, then silence")
        counts = await relay_streams(middle_left, middle_right, idle_timeout=0.3)
        elapsed = loop.time() - start
        # both far ends see the message and then EOF
        assert await read_all(right) == b"one message, then silence"
        assert await read_all(left) == b""
        for s in (left, middle_left, middle_right, right):
            s.close()
        return counts, elapsed

    counts, elapsed = run(main())
    assert counts == (len(b"one message, then silence"), 0)
    assert 0.25 < elapsed < 5


def test_pump_counts_and_shuts_the_destination():
    async def main():
        a1, b1 = pair()
        a2, b2 = pair()
        src_far, src = SockStream(a1), SockStream(b1)
        dst, dst_far = SockStream(a2), SockStream(b2)
        await src_far.send(b"x" * 100000)
        await src_far.shutdown_write()
        n = await pump(src, dst, idle_timeout=TIMEOUT)
        got = await read_all(dst_far)
        for s in (src_far, src, dst, dst_far):
            s.close()
        return n, got

    n, got = run(main())
    assert n == 100000 and got == b"x" * 100000


# ---------------------------------------------------------------------------------------------
# StreamReplacer / StreamRedactor: only a tail that could begin a match is held back, so
# server-sent events pass through a redacted response without delay
# ---------------------------------------------------------------------------------------------

SSE_VALUE = "sse-test-" + "4d" * 16
SSE_PH = "corral-ph-sse-" + "0" * 31 + "8"


def sse_injector():
    from corral.proxy.credentials import Credential, Injector

    return Injector({SSE_PH: Credential("SSE_TOKEN", SSE_VALUE, ("api.example.com",), in_body=True)})


def test_redactor_passes_an_event_without_a_secret_at_once():
    r = sse_injector().redactor()
    assert r.feed(b"data: hello\n\n") == b"data: hello\n\n"
    assert r.feed(b"event: ping\ndata: {\"n\": 1}\n\n") == b"event: ping\ndata: {\"n\": 1}\n\n"
    assert r.flush() == b""
    assert r.count == 0


def test_redactor_holds_only_a_possible_start_of_a_secret():
    r = sse_injector().redactor()
    half = SSE_VALUE[: len(SSE_VALUE) // 2].encode()
    assert r.feed(b"data: " + half) == b"data: "  # everything before the possible secret goes now
    assert half.decode() not in repr(r)
    assert r.feed(SSE_VALUE[len(SSE_VALUE) // 2:].encode() + b"\n\n") == b"%s\n\n" % SSE_PH.encode()
    assert r.count == 1
    assert r.flush() == b""


def test_redactor_releases_a_false_start_with_the_next_chunk():
    r = sse_injector().redactor()
    start = SSE_VALUE[:6].encode()
    assert r.feed(b"data: " + start) == b"data: "
    assert r.feed(b"NOT\n\n") == start + b"NOT\n\n"  # it was not the secret after all
    assert r.flush() == b""


def test_redactor_flush_releases_a_held_tail():
    r = sse_injector().redactor()
    assert r.feed(b"data: " + SSE_VALUE[:3].encode()) == b"data: "
    assert r.flush() == SSE_VALUE[:3].encode()


def test_redactor_every_split_point_of_an_event_stream():
    inj = sse_injector()
    stream = (b"data: hello\n\n" + b"data: token " + SSE_VALUE.encode() + b" done\n\n"
              + b"data: b64 " + base64_of(SSE_VALUE) + b"\n\n")
    expected = inj.redact(stream)
    assert SSE_VALUE.encode() not in expected and expected.count(SSE_PH.encode()) == 1
    probe = inj.redactor()
    longest = 6 * len(SSE_VALUE)  # no form is longer: every character escaped as \\u00XX
    for i in range(len(stream) + 1):
        r = inj.redactor()
        first = r.feed(stream[:i])
        held = i - len(first) if r.count == 0 else None
        if held is not None:
            # what is held back is short, and a prefix of some form of the value
            tail = stream[i - held:i]
            assert held < longest
            assert held == 0 or probe.could_begin(tail), (i, tail)
            # ...and it is the shortest such tail: no byte that cannot start a match is held
            assert first == stream[:i - held]
        assert first + r.feed(stream[i:]) + r.flush() == expected, i


def base64_of(text: str) -> bytes:
    import base64

    return base64.b64encode(text.encode())


def test_body_substituter_holds_only_a_possible_placeholder():
    sub = sse_injector().body_substituter("api.example.com")
    assert sub.feed(b'{"a": 1}') == b'{"a": 1}'
    assert sub.feed(b'{"key": "' + SSE_PH[:12].encode()) == b'{"key": "'
    assert sub.feed(SSE_PH[12:].encode() + b'"}') == SSE_VALUE.encode() + b'"}'
    assert sub.flush() == b""
    assert sse_injector().body_substituter("other.example") is None


def test_stream_replacer_chunk_by_chunk():
    from corral.proxy.credentials import StreamReplacer

    r = StreamReplacer({b"secretvalue": b"XX"})
    assert r.feed(b"abc") == b"abc"
    assert r.feed(b"abcs") == b"abc"  # "s" may begin the pattern
    assert r.feed(b"ecre") == b""
    assert r.feed(b"tvalue!") == b"XX!"
    assert r.feed(b"sss") == b"ss"  # only the last "s" can still begin a match
    assert r.feed(b"x") == b"sx"
    assert r.count == 1 and r.flush() == b""


def test_a_failed_handshake_sends_the_alert_to_the_peer():
    """The refusing side tells the peer why (a TLS alert), not a bare close."""
    import asyncio
    import ssl

    from corral.proxy.streams import TlsStream
    from corral.proxy.terminate import Terminator
    from corral.proxy.tlsca import CertificateAuthority

    term = Terminator(CertificateAuthority.ephemeral(), terminate=("*",))

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        client_ctx = ssl.create_default_context(cadata=CertificateAuthority.ephemeral().cert_pem.decode())
        server = TlsStream(a, term.server_context("localhost"), server_side=True)
        client = TlsStream(b, client_ctx, server_side=False, server_hostname="localhost")  # another CA
        # Without the alert the server would wait for bytes that never come.
        results = await asyncio.wait_for(
            asyncio.gather(server.handshake(), client.handshake(), return_exceptions=True), 10)
        a.close()
        b.close()
        return results

    server_result, client_result = asyncio.run(main())
    assert isinstance(client_result, ssl.SSLCertVerificationError)
    assert isinstance(server_result, ssl.SSLError) and "ALERT" in str(server_result).upper(), server_result
