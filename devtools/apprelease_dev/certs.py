"""PKI of the local control plane: one CA, serving certs, client certs, service-account keys.

ECDSA P-256 everywhere: Kubernetes accepts it for TLS, client auth and service-account
tokens (ES256), and generating a key takes microseconds instead of RSA's tens of ms.
Files are reused across `up`s (kept etcd data stays readable with the same CA/SA keys).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_VALIDITY = datetime.timedelta(days=365)
# Certificates closer than this to expiry are re-issued (with a fresh CA) on the next `up`.
RENEW_BEFORE = datetime.timedelta(days=7)
# First address of the service CIDR: the in-cluster `kubernetes` Service's ClusterIP.
KUBERNETES_SERVICE_IP = "10.96.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")
APISERVER_NAMES = (
    *LOOPBACK_NAMES,
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client certificate authenticates as: user = CN, groups = O."""

    user: str
    groups: tuple[str, ...] = ()


# One client certificate per component, so audit logs and RBAC see who did what.
CLIENT_IDENTITIES: dict[str, ClientIdentity] = {
    "admin": ClientIdentity("kubernetes-admin", ("system:masters",)),
    # Bootstrap RBAC grants these users exactly what the components need.
    "kube-controller-manager": ClientIdentity("system:kube-controller-manager"),
    "kube-scheduler": ClientIdentity("system:kube-scheduler"),
    # KWOK patches status of nodes and pods, renews leases and deletes pods: a kubelet for
    # every node at once, which no narrower built-in role covers.
    "kwok": ClientIdentity("kwok-controller", ("system:masters",)),
    # The apiserver's identity towards aggregated API servers (requestheader auth).
    "front-proxy-client": ClientIdentity("front-proxy-client"),
    "apiserver-kubelet-client": ClientIdentity(
        "kube-apiserver-kubelet-client", ("system:masters",)
    ),
    # metrics-server authenticates as its ServiceAccount (what a pod's token would say), so
    # the RBAC shipped with metrics-server applies unchanged.
    "metrics-server": ClientIdentity(
        "system:serviceaccount:kube-system:metrics-server",
        ("system:serviceaccounts", "system:serviceaccounts:kube-system"),
    ),
}
# Serving certificates and the names they are valid for.
SERVING_CERTS: dict[str, tuple[str, ...]] = {
    "apiserver": APISERVER_NAMES,
    # KWOK's kubelet-like server (logs/exec endpoints the apiserver would call).
    "kwok-serving": LOOPBACK_NAMES,
    # The aggregator dials metrics-server as <service>.<namespace>.svc (the APIService's
    # Service), whatever address that Service resolves to.
    "metrics-server-serving": ("metrics-server.kube-system.svc", *LOOPBACK_NAMES),
}


@dataclass(frozen=True)
class ClusterPki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def all_files(self) -> list[Path]:
        names = [*CLIENT_IDENTITIES, *SERVING_CERTS]
        return [
            self.ca_cert,
            self.ca_key,
            self.service_account_key,
            self.service_account_public_key,
            *(self.cert(name) for name in names),
            *(self.key(name) for name in names),
        ]


def ensure_pki(directory: Path) -> ClusterPki:
    """Reuse the PKI in `directory` if complete and not near expiry, else create a new one."""
    pki = ClusterPki(directory)
    if all(path.is_file() for path in pki.all_files()) and _still_valid(pki):
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue_ca(ca_key)
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.ca_cert, ca_cert)
    for name, hosts in SERVING_CERTS.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue_leaf(ca_cert, ca_key, key, common_name=name, hosts=hosts, server=True)
        _write_key(pki.key(name), key)
        _write_cert(pki.cert(name), cert)
    for name, identity in CLIENT_IDENTITIES.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue_leaf(
            ca_cert, ca_key, key, common_name=identity.user, organizations=identity.groups
        )
        _write_key(pki.key(name), key)
        _write_cert(pki.cert(name), cert)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.service_account_key, sa_key)
    pki.service_account_public_key.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _still_valid(pki: ClusterPki) -> bool:
    for path in (pki.ca_cert, *(pki.cert(name) for name in [*CLIENT_IDENTITIES, *SERVING_CERTS])):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
            return False
    return True


def _issue_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apprelease-dev-ca")])
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    server: bool = False,
) -> x509.Certificate:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        alt_names: list[x509.GeneralName] = [x509.DNSName(host) for host in hosts]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in LOOPBACK_IPS]
        if hosts == APISERVER_NAMES:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
