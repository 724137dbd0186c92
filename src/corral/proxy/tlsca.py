"""corral's certificate authority, for terminating the sandbox's TLS in the egress proxy.

Rules of this module: every certificate corral makes or trusts is made or chosen here, and it
knows nothing about connections (it hands out `ssl.SSLContext`s; the proxy does the I/O).
It is imported only when TLS termination is on; `cryptography` (~45 ms) and `ssl` (~15 ms) are
imported inside the functions that need them, so the constants (`TRUST_ENV_VARS`,
`SYSTEM_BUNDLE_PATHS`) cost ~1 ms.

- `CertificateAuthority`: the per-user CA (`$XDG_DATA_HOME/corral/ca/`, key 0600, refused when
  group/world-readable or not ours), an ephemeral one per run, or srt's `caCertPath`/`caKeyPath`.
- `LeafMinter`: a server-side context per SNI name, minted on first use and kept in an LRU.
- `trust_bundle`: what the sandbox trusts (system CAs + corral's CA + srt's `extraCaCertPaths`).
- `upstream_context`: how the proxy verifies the real servers.

Choices:

- Keys are EC P-256: generating one takes ~1 ms and signing ~0.1 ms (RSA-2048: ~50 ms and
  ~1 ms), and every TLS client of the last decade accepts ECDSA P-256 with SHA-256.
- All leaves of one minter share one private key, generated when the minter is made, so minting
  a leaf is one signature. The key never leaves the proxy process, so sharing it exposes nothing
  that a per-leaf key would protect.
- No nameConstraints on the CA: it must sign for whichever host the sandbox reaches and the
  allow-list changes per run. The CA is trusted only inside the sandbox (never installed in the
  host's store), which bounds what a stolen key could do.
- Leaves are valid from 1 hour ago (clock skew) for 1 day, never past the CA's own expiry, and
  are minted again when less than an hour is left, so a long-lived proxy never serves an expired
  leaf. Leaves carry SKI/AKI, critical basicConstraints and keyUsage, and EKU serverAuth, so
  they pass OpenSSL's `VERIFY_X509_STRICT` (Python 3.13's default).
- `ssl` only loads certificates and keys from files. The minter writes them to anonymous
  memory files (`memfd_create`, read through `/proc/self/fd/N`): nothing touches a disk and
  nothing is left behind. Where that is unavailable it uses a private 0700 temp directory,
  removed by `close()` (or at exit). Both measure the same, ~1.5 ms per leaf, most of it
  OpenSSL parsing the key.
"""

from __future__ import annotations

import os
import time

from .._values import field, frozen
from ..errors import SetupError

TYPE_CHECKING = False  # `typing` costs an import; annotations are strings here anyway
if TYPE_CHECKING:
    import ssl

#: Environment variables that point TLS clients at a CA bundle (file), set to the trust bundle.
TRUST_ENV_VARS = (
    "SSL_CERT_FILE",  # OpenSSL and everything built on it (Python ssl, Ruby, curl with OpenSSL)
    "REQUESTS_CA_BUNDLE",  # Python requests
    "CURL_CA_BUNDLE",  # curl
    "NODE_EXTRA_CA_CERTS",  # Node.js (added to its built-in roots)
    "GIT_SSL_CAINFO",  # git over https
    "PIP_CERT",  # pip
    "NIX_SSL_CERT_FILE",  # Nix-built programs
)

#: Where distributions keep their CA bundle, most common first (the list Go's crypto/x509 uses).
SYSTEM_BUNDLE_PATHS = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Gentoo, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/pki/tls/cacert.pem",  # OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # CentOS, RHEL 7+
    "/etc/ssl/cert.pem",  # Alpine
)

ALPN = ("http/1.1",)
CA_VALID_DAYS = 3650
CA_RENEW_DAYS = 30  # a per-user CA with less left than this is replaced
LEAF_VALID_SECONDS = 24 * 3600
LEAF_BACKDATE_SECONDS = 3600
LEAF_REFRESH_SECONDS = 3600  # a cached leaf with less left than this is minted again
_CN_MAX = 64  # RFC 5280 ub-common-name

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"


# ---------------------------------------------------------------------------------------------
# The CA
# ---------------------------------------------------------------------------------------------


@frozen
class CertificateAuthority:
    cert_pem: bytes
    key: object = field(compare=False)  # cryptography private key
    cert: object = field(compare=False)  # cryptography x509.Certificate
    source: str = field(default="<ephemeral>", compare=False)  # the file(s) it came from

    @classmethod
    def load_or_create(cls, data_dir: str | None = None) -> CertificateAuthority:
        """The per-user CA in `<data_dir>/ca/` (default `$XDG_DATA_HOME/corral`), made on first use.

        The directory is 0700 and the key 0600, written atomically; a key file that others may
        read, or that another user owns, is refused. Concurrent callers are serialised by a
        lock on the directory. A CA within `CA_RENEW_DAYS` of expiry is replaced.
        """
        import fcntl

        base = data_dir or _default_data_dir()
        ca_dir = os.path.join(base, "ca")
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
            try:
                os.mkdir(ca_dir, 0o700)
            except FileExistsError:
                pass
            dfd = os.open(ca_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SetupError(
                f"cannot create corral's CA directory {ca_dir}: {exc.strerror}",
                "set XDG_DATA_HOME to a writable directory, or use an ephemeral CA",
            ) from None
        try:
            st = os.fstat(dfd)
            if st.st_uid != os.geteuid():
                raise SetupError(
                    f"{ca_dir} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})",
                    f"remove {ca_dir}; corral makes a new CA",
                )
            if st.st_mode & 0o077:
                os.fchmod(dfd, 0o700)
            fcntl.flock(dfd, fcntl.LOCK_EX)
            ca = _load_dir(ca_dir, dfd)
            if ca is None or _seconds_left(ca.cert) < CA_RENEW_DAYS * 86400:
                ca = cls._new(f"corral local CA ({_who()})")
                _write_dir(ca_dir, dfd, ca)
                ca = CertificateAuthority(ca.cert_pem, ca.key, ca.cert, ca_dir)
            return ca
        finally:
            os.close(dfd)  # also releases the lock

    @classmethod
    def ephemeral(cls) -> CertificateAuthority:
        """A CA that lives in memory for this run only."""
        return cls._new(f"corral ephemeral CA ({_who()})")

    @classmethod
    def from_files(cls, cert_path: str, key_path: str) -> CertificateAuthority:
        """A CA the user brings (srt's `caCertPath` / `caKeyPath`; PEM or DER, the first certificate
        of a PEM file), checked to be an unexpired CA whose key matches. Unlike the per-user key,
        the file mode of a key the user points at is not policed."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_data = _read(cert_path, "CA certificate")
        key_data = _read(key_path, "CA private key")
        try:
            if b"-----BEGIN" in cert_data:
                cert = x509.load_pem_x509_certificates(cert_data)[0]
            else:
                cert = x509.load_der_x509_certificate(cert_data)
        except ValueError as exc:
            raise SetupError(f"{cert_path}: not a PEM or DER certificate ({exc})", "point caCertPath at the CA's certificate") from None
        try:
            if b"-----BEGIN" in key_data:
                key = serialization.load_pem_private_key(key_data, password=None)
            else:
                key = serialization.load_der_private_key(key_data, password=None)
        except TypeError:
            raise SetupError(
                f"{key_path}: the private key is encrypted and corral cannot ask for its passphrase",
                f"decrypt it: openssl pkey -in {key_path} -out KEY.pem, then chmod 600 KEY.pem",
            ) from None
        except Exception as exc:  # noqa: BLE001 - ValueError, or UnsupportedAlgorithm
            raise SetupError(f"{key_path}: not a usable private key ({exc})", "point caKeyPath at the CA's private key") from None
        _check_key_type(key, key_path)
        _check_is_ca(cert, cert_path)
        if not _same_public_key(cert, key):
            raise SetupError(
                f"{key_path} is not the private key of the certificate {cert_path}",
                "point caCertPath and caKeyPath at the two halves of the same CA",
            )
        if _seconds_left(cert) <= 0:
            raise SetupError(f"{cert_path}: the CA certificate has expired", "renew the CA certificate")
        return cls(cert.public_bytes(serialization.Encoding.PEM), key, cert, f"{cert_path} + {key_path}")

    @classmethod
    def _new(cls, common_name: str) -> CertificateAuthority:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "corral"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_CN_MAX]),
        ])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(seconds=LEAF_BACKDATE_SECONDS))
            .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert.public_bytes(serialization.Encoding.PEM), key, cert)


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: relative paths are invalid and ignored
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "corral")


def _who() -> str:
    import pwd
    import socket

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return f"{user}@{socket.gethostname()}"


def _load_dir(ca_dir: str, dfd: int) -> CertificateAuthority | None:
    """The CA stored in `ca_dir`, or None when it is not (completely) there."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key_path = os.path.join(ca_dir, CA_KEY_FILE)
    cert_path = os.path.join(ca_dir, CA_CERT_FILE)
    try:
        fd = os.open(CA_KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SetupError(f"cannot open corral's CA key {key_path}: {exc.strerror}", f"remove {key_path}; corral makes a new CA") from None
    try:
        st = os.fstat(fd)
        _check_private_file(st, key_path)
        key_data = _read_fd(fd)
    finally:
        os.close(fd)
    try:
        fd = os.open(CA_CERT_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return None  # an interrupted creation: make a new pair
    try:
        cert_data = _read_fd(fd)
    finally:
        os.close(fd)
    fix = f"remove {ca_dir}; corral makes a new CA"
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, UnsupportedAlgorithm
        raise SetupError(f"{key_path}: not a usable private key ({exc})", fix) from None
    try:
        cert = x509.load_pem_x509_certificate(cert_data)
    except ValueError as exc:
        raise SetupError(f"{cert_path}: not a PEM certificate ({exc})", fix) from None
    if not _same_public_key(cert, key):
        raise SetupError(f"{key_path} is not the private key of {cert_path}", fix)
    return CertificateAuthority(cert_data, key, cert, ca_dir)


def _check_private_file(st: os.stat_result, path: str) -> None:
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise SetupError(f"{path} is not a regular file", f"remove {path}; corral makes a new CA")
    if st.st_uid != os.geteuid():
        raise SetupError(
            f"{path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}), so it may not be secret",
            f"remove {path}; corral makes a new CA",
        )
    if st.st_mode & 0o077:
        raise SetupError(
            f"{path} is readable or writable by group/others (mode {stat.S_IMODE(st.st_mode):04o}), "
            "so anyone on this machine could impersonate any server to the sandbox",
            f"chmod 600 {path}, or remove it and corral makes a new CA",
        )


def _write_dir(ca_dir: str, dfd: int, ca: CertificateAuthority) -> None:
    """Write cert then key, each to an O_EXCL temp file renamed into place (key last: the pair
    is complete when the key is there)."""
    from cryptography.hazmat.primitives import serialization

    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        _write_atomic(dfd, CA_CERT_FILE, ca.cert_pem, 0o644)
        _write_atomic(dfd, CA_KEY_FILE, key_pem, 0o600)
        os.fsync(dfd)
    except OSError as exc:
        raise SetupError(f"cannot write corral's CA to {ca_dir}: {exc.strerror}", "free space or fix permissions there") from None


def _write_atomic(dfd: int, name: str, data: bytes, mode: int) -> None:
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits; it cannot have added any
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_fd(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SetupError(f"cannot read the {what} {path}: {exc.strerror}", "check the path in the settings") from None


def _check_key_type(key, path: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise SetupError(f"{path}: a {type(key).__name__} cannot sign certificates", "use an RSA or EC CA key")


def _check_is_ca(cert, path: str) -> None:
    from cryptography import x509

    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise SetupError(f"{path} is not a CA certificate (basicConstraints CA:TRUE is missing)", "point caCertPath at a CA certificate")
    if bc.path_length is not None and bc.path_length < 0:
        raise SetupError(f"{path}: invalid pathlen", "point caCertPath at a CA certificate")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise SetupError(f"{path}: the CA certificate's keyUsage does not allow keyCertSign", "use a CA certificate that may sign certificates")


def _same_public_key(cert, key) -> bool:
    from cryptography.hazmat.primitives import serialization

    enc, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt)


def _not_after(cert):
    import datetime

    value = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    return value if value is not None else cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _not_before(cert):
    import datetime

    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def _seconds_left(cert) -> float:
    return _not_after(cert).timestamp() - time.time()


def _signing_hash(key):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    return None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()


# ---------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------


class LeafMinter:
    """Server-side contexts for the names the sandbox connects to, signed by `ca` and cached.

    Not locked: call `context_for` from one thread (the proxy's event loop). A mint blocks that
    thread for ~1.5 ms, once per name. The contexts themselves may be used from any thread.
    """

    def __init__(self, ca: CertificateAuthority, cache_size: int = 1024):
        import ipaddress  # noqa: F401 - imported here so that the first mint does not pay for them
        import ssl  # noqa: F401

        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: F401

        from . import addresses  # noqa: F401
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.ca = ca
        self.cache_size = cache_size
        self._cache: dict[str, tuple[ssl.SSLContext, float]] = {}  # LRU: insertion order, oldest first
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._hash = _signing_hash(ca.key)
        try:
            ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
        except x509.ExtensionNotFound:
            self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
        self._ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self._ca_not_before = _not_before(ca.cert)
        self._ca_not_after = _not_after(ca.cert)
        self._files = _PemFiles(
            self._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        self._mint("warm-up.invalid")  # OpenSSL's first context and key load cost ~2 ms more: pay it now
        # Statistics, for benchmarks and `corral doctor`.
        self.mints = 0
        self.hits = 0
        self.last_mint_seconds = 0.0
        self.mint_seconds_total = 0.0

    def context_for(self, server_name: str) -> ssl.SSLContext:
        """The server-side context presenting a leaf for `server_name` (a DNS name or IP literal).

        Raises ValueError when `server_name` is neither.
        """
        from .addresses import normalize_host

        try:
            name = normalize_host(server_name)
        except ValueError as exc:
            raise ValueError(f"cannot mint a certificate for {server_name!r}: {exc}") from None
        entry = self._cache.get(name)
        if entry is not None and time.time() < entry[1]:
            self._cache[name] = self._cache.pop(name)  # now the most recent
            self.hits += 1
            return entry[0]
        start = time.perf_counter()
        ctx, refresh_at = self._mint(name)
        elapsed = time.perf_counter() - start
        self.mints += 1
        self.last_mint_seconds = elapsed
        self.mint_seconds_total += elapsed
        self._cache.pop(name, None)
        self._cache[name] = (ctx, refresh_at)
        while len(self._cache) > self.cache_size:
            del self._cache[next(iter(self._cache))]
        return ctx

    def leaf_pem(self, server_name: str) -> bytes:
        """A freshly minted leaf certificate for `server_name` (for inspection and tests)."""
        from cryptography.hazmat.primitives import serialization

        from .addresses import normalize_host

        return self._build(normalize_host(server_name))[0].public_bytes(serialization.Encoding.PEM)

    def _mint(self, name: str) -> tuple[ssl.SSLContext, float]:
        import ssl

        from cryptography.hazmat.primitives import serialization

        cert, not_after = self._build(name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_RENEGOTIATION
        ctx.set_alpn_protocols(list(ALPN))
        self._files.load(ctx, cert.public_bytes(serialization.Encoding.PEM))
        return ctx, not_after - LEAF_REFRESH_SECONDS

    def _build(self, name: str):
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        if self._ca_not_after <= now:
            raise SetupError(f"the CA {self.ca.source} has expired", "renew it, or remove corral's CA directory")
        not_before = max(now - datetime.timedelta(seconds=LEAF_BACKDATE_SECONDS), self._ca_not_before)
        not_after = min(now + datetime.timedelta(seconds=LEAF_VALID_SECONDS), self._ca_not_after)
        try:
            san = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            san = x509.DNSName(name)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)] if len(name) <= _CN_MAX else [])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca.cert.subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([san]), critical=not subject)  # RFC 5280 4.2.1.6
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(self._ski, critical=False)
            .add_extension(self._aki, critical=False)
            .sign(self.ca.key, self._hash)
        )
        return cert, not_after.timestamp()

    def cached(self, server_name: str) -> bool:
        from .addresses import normalize_host

        return normalize_host(server_name) in self._cache

    def close(self) -> None:
        self._cache.clear()
        self._files.close()

    def __enter__(self) -> LeafMinter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _PemFiles:
    """Hands PEM bytes to `SSLContext.load_cert_chain`, which reads only files.

    memfd + /proc/self/fd/N where available (close-on-exec, so the sandbox never inherits the
    key's descriptor); otherwise a 0700 temp directory, removed on close or at exit.
    """

    def __init__(self, key_pem: bytes):
        import weakref

        self._key_fd = -1
        self._dir = None
        self.mode = "memfd"
        try:
            self._key_fd = self._memfd(key_pem)
            self.key_path = f"/proc/self/fd/{self._key_fd}"
            os.stat(self.key_path)
        except (AttributeError, OSError):  # no memfd_create, or no /proc
            if self._key_fd >= 0:
                os.close(self._key_fd)
                self._key_fd = -1
            self._use_dir(key_pem)
        self._finalizer = weakref.finalize(self, _cleanup, self._key_fd, self._dir)

    def _use_dir(self, key_pem: bytes) -> None:
        import tempfile

        self.mode = "tempdir"
        self._dir = tempfile.mkdtemp(prefix="corral-tls-")  # 0700
        self.key_path = os.path.join(self._dir, "leaf-key.pem")
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, key_pem)
        finally:
            os.close(fd)

    @staticmethod
    def _memfd(data: bytes) -> int:
        fd = os.memfd_create("corral-tls", os.MFD_CLOEXEC)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def load(self, ctx: ssl.SSLContext, cert_pem: bytes) -> None:
        if self._dir is None:
            fd = self._memfd(cert_pem)
            try:
                ctx.load_cert_chain(f"/proc/self/fd/{fd}", self.key_path)
            finally:
                os.close(fd)
            return
        import tempfile

        fd, path = tempfile.mkstemp(dir=self._dir, suffix=".pem")
        try:
            try:
                _write_all(fd, cert_pem)
            finally:
                os.close(fd)
            ctx.load_cert_chain(path, self.key_path)
        finally:
            os.unlink(path)

    def close(self) -> None:
        self._finalizer()


def _cleanup(key_fd: int, directory: str | None) -> None:
    if key_fd >= 0:
        try:
            os.close(key_fd)
        except OSError:
            pass
    if directory is not None:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Trust
# ---------------------------------------------------------------------------------------------


def system_bundle_path() -> str | None:
    """The first of `SYSTEM_BUNDLE_PATHS` that exists, or None."""
    for path in SYSTEM_BUNDLE_PATHS:
        if os.path.isfile(path):
            return path
    return None


def trust_bundle(ca: CertificateAuthority, extra_paths=(), system_bundle: str | None = None) -> bytes:
    """The PEM bundle the sandbox trusts: the system's CAs (`system_bundle`, default the first of
    `SYSTEM_BUNDLE_PATHS`; none when there is none), corral's CA, then the certificates of each
    of `extra_paths` (srt's `extraCaCertPaths`), which must be PEM certificate files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    parts = []
    path = system_bundle or system_bundle_path()
    if path is not None:
        parts.append(_read(path, "system CA bundle"))
    parts.append(ca.cert_pem)
    for extra in extra_paths:
        data = _read(extra, "extra CA certificate file")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise SetupError(f"{extra}: no PEM certificate in it ({exc})", "list only PEM CA certificate files in extra_ca (srt: extraCaCertPaths)") from None
        parts.extend(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)


def upstream_context(extra_ca_paths=()) -> ssl.SSLContext:
    """The client-side context the proxy uses towards real servers: the system trust store plus
    `extra_ca_paths`, hostname checked, TLS 1.2+, ALPN http/1.1."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in extra_ca_paths:
        try:
            ctx.load_verify_locations(cafile=path)
        except (OSError, ssl.SSLError) as exc:
            raise SetupError(f"{path}: cannot load CA certificates ({exc})", "list only PEM CA certificate files in extra_ca (srt: extraCaCertPaths)") from None
    ctx.set_alpn_protocols(list(ALPN))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
