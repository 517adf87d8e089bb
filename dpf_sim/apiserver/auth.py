"""Who may talk to which served cluster: bearer tokens the twin issues, and optional TLS.

Every served cluster (the host and each DPU cluster) has its own tokens, as a real control plane has its own
token authenticator: a token issued for one DPU cluster is refused (401) by every other. A cluster also
accepts the tokens of its own `kubernetes.io/service-account-token` Secrets, the way a kube-apiserver
accepts the tokens its token controller minted, so credentials DPF writes into a DPU cluster work there.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import ipaddress
import secrets
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from dpf_core.api.external import Secret
from dpf_core.store.memory import MemoryStore

SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
# Reachable without a token, as kube-apiserver's system:public-info-viewer role allows.
PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})


@dataclass(frozen=True)
class Identity:
    cluster: str
    user: str


class TokenAuthority:
    """Issues opaque bearer tokens bound to one served cluster."""

    def __init__(self) -> None:
        self._by_token: dict[str, Identity] = {}
        self._issued: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def issue(self, cluster: str, user: str = "admin") -> str:
        """The token of `user` on `cluster` (the same one on every call, so kubeconfigs stay stable)."""
        with self._lock:
            token = self._issued.get((cluster, user))
            if token is None:
                token = f"twin.{secrets.token_urlsafe(24)}"
                self._issued[(cluster, user)] = token
                self._by_token[token] = Identity(cluster, user)
            return token

    def revoke(self, cluster: str, user: str = "admin") -> None:
        with self._lock:
            token = self._issued.pop((cluster, user), None)
            if token is not None:
                self._by_token.pop(token, None)

    def authenticate(self, header: str | None, cluster: str, store: MemoryStore | None) -> Identity | None:
        """The identity behind an `Authorization: Bearer ...` header on `cluster`, or None (401)."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            ident = self._by_token.get(token)
        if ident is not None:
            return ident if ident.cluster == cluster else None
        if store is not None:
            return _service_account_identity(store, token, cluster)
        return None


def _service_account_identity(store: MemoryStore, token: str, cluster: str) -> Identity | None:
    for s in store.list(Secret):
        wire = s.wire()
        if wire.get("type") != SERVICE_ACCOUNT_TOKEN:
            continue
        encoded = (wire.get("data") or {}).get("token")
        if not encoded:
            continue
        try:
            have = base64.b64decode(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        if hmac.compare_digest(have, token):
            sa = (s.metadata.annotations or {}).get("kubernetes.io/service-account.name", s.name)
            return Identity(cluster, f"system:serviceaccount:{s.namespace}:{sa}")
    return None


@dataclass(frozen=True)
class ServingCert:
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_data(self) -> str:
        """certificate-authority-data for a kubeconfig (the certificate is its own CA)."""
        return base64.b64encode(self.cert_pem).decode()

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # ssl loads chains from files only; the files live just long enough to be read.
        with tempfile.TemporaryDirectory(prefix="dpf-twin-tls-") as d:
            cert, key = Path(d) / "tls.crt", Path(d) / "tls.key"
            cert.write_bytes(self.cert_pem)
            key.write_bytes(self.key_pem)
            key.chmod(0o600)
            ctx.load_cert_chain(cert, key)
        return ctx


def self_signed(hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 30) -> ServingCert:
    """A fresh P-256 key and a self-signed serving certificate for `hosts` (IPs and DNS names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dpf-twin-apiserver")])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return ServingCert(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
