"""corral's CA and leaf minter (proxy/tlsca.py), with real TLS handshakes over loopback."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import stat
import threading

import pytest

from corral.errors import SetupError
from corral.proxy import tlsca
from corral.proxy.tlsca import CertificateAuthority, LeafMinter, trust_bundle, upstream_context

NAME = "api.example.test"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


@pytest.fixture
def ca(data_home):
    return CertificateAuthority.load_or_create()


@pytest.fixture
def minter(ca):
    with LeafMinter(ca) as m:
        yield m


def serve_once(server_ctx):
    """A TLS server on 127.0.0.1 (ephemeral port) that accepts one connection in a thread."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    result = {}

    def run():
        try:
            conn, _ = srv.accept()
            conn.settimeout(10)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                result["alpn"] = tls.selected_alpn_protocol()
                tls.sendall(b"hello")
        except Exception as exc:  # noqa: BLE001 - reported to the test
            result["error"] = exc
        finally:
            srv.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return srv.getsockname()[1], thread, result


def handshake(server_ctx, client_ctx, server_hostname):
    """(client's ALPN, bytes read, peer cert, server's result) after one real handshake."""
    port, thread, result = serve_once(server_ctx)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                return tls.selected_alpn_protocol(), tls.recv(5), tls.getpeercert(), result
    finally:
        thread.join(10)


def client_trusting(path, alpn=("h2", "http/1.1")):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname, CERT_REQUIRED, no default CAs
    ctx.load_verify_locations(cafile=str(path))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default: leaves must be RFC 5280-clean
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def bundle_file(tmp_path, ca, **kw):
    path = tmp_path / "bundle.pem"
    path.write_bytes(trust_bundle(ca, **kw))
    return path


def make_ca_files(tmp_path, ca, stem):
    from cryptography.hazmat.primitives import serialization

    cert = tmp_path / f"{stem}.pem"
    key = tmp_path / f"{stem}-key.pem"
    cert.write_bytes(ca.cert_pem)
    key.write_bytes(ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert, key


# ---------------------------------------------------------------------------------------------
# Leaves, over real TLS
# ---------------------------------------------------------------------------------------------


def test_leaf_handshakes_with_a_client_trusting_the_bundle_and_negotiates_http11(tmp_path, ca, minter):
    client = client_trusting(bundle_file(tmp_path, ca))
    alpn, data, peer, server = handshake(minter.context_for(NAME), client, NAME)
    assert "error" not in server
    assert (alpn, server["alpn"], data) == ("http/1.1", "http/1.1", b"hello")
    assert ("DNS", NAME) in peer["subjectAltName"]
    assert (("organizationName", "corral"),) in peer["issuer"]


def test_leaf_for_an_ip_literal_has_an_ip_san(tmp_path, ca, minter):
    client = client_trusting(bundle_file(tmp_path, ca))
    alpn, _, peer, server = handshake(minter.context_for("127.0.0.1"), client, "127.0.0.1")
    assert "error" not in server
    assert peer["subjectAltName"] == (("IP Address", "127.0.0.1"),)


def test_hostname_mismatch_is_refused(tmp_path, ca, minter):
    client = client_trusting(bundle_file(tmp_path, ca))
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        handshake(minter.context_for(NAME), client, "other.example.test")


def test_client_that_does_not_trust_corral_ca_refuses_the_leaf(tmp_path, ca, minter):
    other = CertificateAuthority.ephemeral()
    client = client_trusting(bundle_file(tmp_path, other, system_bundle=os.devnull))
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(minter.context_for(NAME), client, NAME)


def test_tempdir_fallback_without_memfd_handshakes_and_cleans_up(tmp_path, ca, monkeypatch):
    monkeypatch.delattr(os, "memfd_create")
    minter = LeafMinter(ca)
    assert minter._files.mode == "tempdir"
    directory = minter._files._dir
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert os.listdir(directory) == ["leaf-key.pem"]  # the per-leaf cert file is already gone
    client = client_trusting(bundle_file(tmp_path, ca))
    _, data, _, server = handshake(minter.context_for(NAME), client, NAME)
    assert data == b"hello" and "error" not in server
    assert os.listdir(directory) == ["leaf-key.pem"]
    minter.close()
    assert not os.path.exists(directory)


def test_memfd_mode_is_used_where_available(minter):
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        pytest.skip("no memfd_create or /proc")
    assert minter._files.mode == "memfd"
    assert not os.get_inheritable(minter._files._key_fd)  # the sandbox must never inherit the key


def test_client_offering_only_h2_gets_no_alpn(tmp_path, ca, minter):
    client = client_trusting(bundle_file(tmp_path, ca), alpn=("h2",))
    alpn, data, _, server = handshake(minter.context_for(NAME), client, NAME)
    assert (alpn, server["alpn"], data) == (None, None, b"hello")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls11_client_is_refused(tmp_path, ca, minter):
    client = client_trusting(bundle_file(tmp_path, ca))
    client.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client itself offer TLS 1.1
    client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
    port, thread, server = serve_once(minter.context_for(NAME))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            client.wrap_socket(raw, server_hostname=NAME)
    thread.join(10)
    assert "UNSUPPORTED_PROTOCOL" in str(server["error"]).upper()


# ---------------------------------------------------------------------------------------------
# Leaves, as data
# ---------------------------------------------------------------------------------------------


def _leaf(minter, name):
    from cryptography import x509

    return x509.load_pem_x509_certificate(minter.leaf_pem(name))


def test_leaf_fields(ca, minter):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    leaf = _leaf(minter, NAME)
    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    assert ext.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert life == datetime.timedelta(seconds=tlsca.LEAF_VALID_SECONDS + tlsca.LEAF_BACKDATE_SECONDS)
    assert leaf.issuer == ca.cert.subject
    ca.cert.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    assert leaf.serial_number != _leaf(minter, NAME).serial_number


def test_leaves_share_one_key_per_minter(ca, minter):
    assert _leaf(minter, "a.test").public_key() == _leaf(minter, "b.test").public_key()
    with LeafMinter(ca) as other:
        assert _leaf(other, "a.test").public_key() != _leaf(minter, "a.test").public_key()


def test_leaf_never_outlives_the_ca(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "short-lived CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    short = CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), key, cert)
    with LeafMinter(short) as m:
        leaf = _leaf(m, NAME)
    assert leaf.not_valid_after_utc == cert.not_valid_after_utc
    assert leaf.not_valid_before_utc == cert.not_valid_before_utc


def test_long_name_has_empty_subject_and_critical_san(minter):
    from cryptography import x509

    name = "a" * 60 + ".example.test"
    leaf = _leaf(minter, name)
    assert leaf.subject == x509.Name([])
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


@pytest.mark.parametrize("bad", ["", "exa mple.test", "a..b", "[1.2.3.4]", "x" * 64 + ".test"])
def test_invalid_names_are_refused(minter, bad):
    with pytest.raises(ValueError, match="cannot mint"):
        minter.context_for(bad)


# ---------------------------------------------------------------------------------------------
# Cache and timing
# ---------------------------------------------------------------------------------------------


def test_leaf_cache_returns_the_same_context(minter):
    first = minter.context_for(NAME)
    assert minter.context_for(NAME) is first
    assert minter.context_for("API.Example.Test.") is first  # one spelling, one leaf
    assert minter.context_for("other.example.test") is not first
    assert (minter.mints, minter.hits) == (2, 2)


def test_leaf_cache_is_lru_bounded(ca):
    with LeafMinter(ca, cache_size=2) as m:
        a = m.context_for("a.test")
        m.context_for("b.test")
        assert m.context_for("a.test") is a  # a is now the most recent
        m.context_for("c.test")  # evicts b
        assert m.cached("a.test") and m.cached("c.test") and not m.cached("b.test")
        assert m.context_for("a.test") is a


def test_cached_leaf_near_expiry_is_minted_again(minter, monkeypatch):
    first = minter.context_for(NAME)
    real = tlsca.time.time
    monkeypatch.setattr(tlsca.time, "time", lambda: real() + tlsca.LEAF_VALID_SECONDS)
    assert minter.context_for(NAME) is not first


def test_cold_mint_then_cached_lookup_are_counted(minter, capsys):
    minter.context_for(NAME)
    cold = minter.last_mint_seconds
    assert (minter.mints, minter.hits) == (1, 0) and cold > 0
    minter.context_for(NAME)
    assert (minter.mints, minter.hits) == (1, 1) and minter.last_mint_seconds == cold
    with capsys.disabled():
        print(f"\n[tlsca] cold mint of {NAME}: {cold * 1000:.2f} ms ({minter._files.mode})")


# ---------------------------------------------------------------------------------------------
# The per-user CA
# ---------------------------------------------------------------------------------------------


def test_load_or_create_writes_a_private_ca_once(data_home):
    ca = CertificateAuthority.load_or_create()
    ca_dir = data_home / "corral" / "ca"
    assert stat.S_IMODE(os.stat(ca_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(ca_dir / "ca-key.pem").st_mode) == 0o600
    assert (ca_dir / "ca.pem").read_bytes() == ca.cert_pem
    assert sorted(os.listdir(ca_dir)) == ["ca-key.pem", "ca.pem"]  # no temp files left
    again = CertificateAuthority.load_or_create()
    assert again == ca and again.cert.serial_number == ca.cert.serial_number
    assert CertificateAuthority.load_or_create(str(data_home / "elsewhere")) != ca


def test_ca_certificate_fields(ca):
    from cryptography import x509

    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert ca.cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value.startswith("corral local CA (")
    years = (ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1
    assert ca.key.curve.name == "secp256r1"


def test_group_readable_ca_key_is_refused(ca, data_home):
    key = data_home / "corral" / "ca" / "ca-key.pem"
    os.chmod(key, 0o644)
    with pytest.raises(SetupError) as info:
        CertificateAuthority.load_or_create()
    assert str(key) in str(info.value) and "0644" in str(info.value) and f"chmod 600 {key}" in str(info.value)


def test_symlinked_ca_key_is_refused(ca, data_home, tmp_path):
    key = data_home / "corral" / "ca" / "ca-key.pem"
    os.replace(key, tmp_path / "moved.pem")
    os.symlink(tmp_path / "moved.pem", key)
    with pytest.raises(SetupError, match="ca-key.pem"):
        CertificateAuthority.load_or_create()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_ca_key_owned_by_another_user_is_refused(ca, data_home):
    key = data_home / "corral" / "ca" / "ca-key.pem"
    os.chown(key, 65534, 65534)
    with pytest.raises(SetupError, match="owned by uid 65534"):
        CertificateAuthority.load_or_create()


def test_loose_ca_directory_is_tightened(ca, data_home):
    ca_dir = data_home / "corral" / "ca"
    os.chmod(ca_dir, 0o755)
    assert CertificateAuthority.load_or_create() == ca
    assert stat.S_IMODE(os.stat(ca_dir).st_mode) == 0o700


def test_interrupted_creation_is_completed(ca, data_home):
    os.unlink(data_home / "corral" / "ca" / "ca-key.pem")  # as if the run died before the key's rename
    fresh = CertificateAuthority.load_or_create()
    assert fresh != ca
    assert CertificateAuthority.load_or_create() == fresh


def test_mismatched_pair_on_disk_is_refused(ca, data_home):
    (data_home / "corral" / "ca" / "ca.pem").write_bytes(CertificateAuthority.ephemeral().cert_pem)
    with pytest.raises(SetupError, match="is not the private key of"):
        CertificateAuthority.load_or_create()


def test_ephemeral_ca_differs_per_call(data_home):
    a, b = CertificateAuthority.ephemeral(), CertificateAuthority.ephemeral()
    assert a != b and a.cert.public_key() != b.cert.public_key()
    assert not (data_home / "corral").exists()  # nothing written


# ---------------------------------------------------------------------------------------------
# srt's caCertPath / caKeyPath
# ---------------------------------------------------------------------------------------------


def test_from_files_loads_a_matching_pair(tmp_path, ca):
    cert, key = make_ca_files(tmp_path, ca, "mine")
    assert CertificateAuthority.from_files(str(cert), str(key)) == ca


def test_from_files_refuses_a_mismatched_key(tmp_path, ca):
    cert, _ = make_ca_files(tmp_path, ca, "mine")
    _, other_key = make_ca_files(tmp_path, CertificateAuthority.ephemeral(), "other")
    with pytest.raises(SetupError) as info:
        CertificateAuthority.from_files(str(cert), str(other_key))
    assert str(other_key) in str(info.value) and str(cert) in str(info.value)


def test_from_files_refuses_a_certificate_that_is_not_a_ca(tmp_path, ca, minter):
    from cryptography.hazmat.primitives import serialization

    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(minter.leaf_pem(NAME))
    key = tmp_path / "leaf-key.pem"
    key.write_bytes(minter._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(SetupError, match=f"{leaf} is not a CA certificate"):
        CertificateAuthority.from_files(str(leaf), str(key))


def test_from_files_names_a_missing_or_garbage_file(tmp_path, ca):
    cert, key = make_ca_files(tmp_path, ca, "mine")
    with pytest.raises(SetupError, match="nope.pem"):
        CertificateAuthority.from_files(str(tmp_path / "nope.pem"), str(key))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SetupError, match="garbage.pem"):
        CertificateAuthority.from_files(str(cert), str(garbage))


def test_from_files_refuses_an_encrypted_key_with_a_fix(tmp_path, ca):
    from cryptography.hazmat.primitives import serialization

    cert, _ = make_ca_files(tmp_path, ca, "mine")
    key = tmp_path / "enc.pem"
    key.write_bytes(ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(SetupError, match="encrypted.*fix: decrypt"):
        CertificateAuthority.from_files(str(cert), str(key))


# ---------------------------------------------------------------------------------------------
# Trust
# ---------------------------------------------------------------------------------------------


def test_trust_bundle_is_system_then_corral_then_extras(tmp_path, ca):
    system = tmp_path / "system.pem"
    other = CertificateAuthority.ephemeral()
    system.write_bytes(other.cert_pem.rstrip(b"\n"))  # no final newline: must still be separated
    extra = tmp_path / "extra.pem"
    third = CertificateAuthority.ephemeral()
    extra.write_bytes(b"a comment\r\n" + third.cert_pem)
    bundle = trust_bundle(ca, extra_paths=[str(extra)], system_bundle=str(system))
    assert bundle == other.cert_pem + ca.cert_pem + third.cert_pem


def test_trust_bundle_uses_the_first_system_bundle_that_exists(ca):
    path = tlsca.system_bundle_path()
    if path is None:
        pytest.skip("no system CA bundle on this machine")
    assert path in tlsca.SYSTEM_BUNDLE_PATHS
    with open(path, "rb") as f:
        system = f.read()
    assert trust_bundle(ca).startswith(system) and ca.cert_pem in trust_bundle(ca)


def test_trust_bundle_refuses_an_extra_that_is_not_a_certificate(tmp_path, ca):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(SetupError, match="notes.txt"):
        trust_bundle(ca, extra_paths=[str(bad)])


def test_trust_env_vars_table():
    assert tlsca.TRUST_ENV_VARS == (
        "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "PIP_CERT",
        "NIX_SSL_CERT_FILE",
    )
    assert len(set(tlsca.SYSTEM_BUNDLE_PATHS)) == len(tlsca.SYSTEM_BUNDLE_PATHS)
    assert all(p.startswith("/etc/") for p in tlsca.SYSTEM_BUNDLE_PATHS)


def test_upstream_context_verifies_against_system_plus_extra_cas(tmp_path):
    upstream_ca = CertificateAuthority.ephemeral()  # e.g. a corporate CA, not in the system store
    pem = tmp_path / "corp-ca.pem"
    pem.write_bytes(upstream_ca.cert_pem)
    with LeafMinter(upstream_ca) as upstream:
        server = upstream.context_for(NAME)
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(server, upstream_context(), NAME)
        ctx = upstream_context([str(pem)])
        assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        alpn, data, _, _ = handshake(server, ctx, NAME)
        assert (alpn, data) == ("http/1.1", b"hello")
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            handshake(server, ctx, "other.example.test")


def test_upstream_context_names_an_unreadable_extra(tmp_path):
    with pytest.raises(SetupError, match="missing.pem"):
        upstream_context([str(tmp_path / "missing.pem")])
