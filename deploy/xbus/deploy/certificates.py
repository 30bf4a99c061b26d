"""A private certificate authority and the local broker's TLS certificate, for a stack that
runs Kafka's client listener on SASL_SSL (``XBUS_STACK_TLS=true``).

Made once into ``<secrets>/tls/`` and kept: ``ca.pem`` (the CA certificate clients trust),
``ca.key`` (the CA's key) and ``broker.pem`` (the broker's key, its certificate, then the
CA's: the keystore Kafka reads with ``ssl.keystore.type=PEM``). Keys are ECDSA P-256 in
unencrypted PKCS#8 PEM, the only form Kafka 4.1 on Java 17 reads that is not a weak PBES1
cipher (a PBES2-encrypted key fails with "PBES2 SecretKeyFactory not available"); like every
generated secret they are 0600 files in a 0700 folder.

The broker's certificate is made again (by the same CA) when it no longer names the broker's
host or is near its end; the CA is kept, so clients keep trusting the broker."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xbus.core.secret_files import write_private

CA_DAYS = 3650
BROKER_DAYS = 365
# A broker certificate with less left than this is made again at the next start.
RENEW_BEFORE = datetime.timedelta(days=30)
# Backdated a little, so that a clock a few minutes behind still accepts a new certificate.
_CLOCK_SKEW = datetime.timedelta(minutes=5)
_ALWAYS_NAMED = ("127.0.0.1", "localhost")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class BrokerCertificates:
    """The files of the local CA and of the broker's certificate."""

    folder: Path

    @property
    def ca_certificate(self) -> Path:
        """The CA certificate (PEM) that clients trust: ``XBUS_SSL_CA_LOCATION``."""
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (PKCS#8 PEM, 0600); it signs broker certificates only."""
        return self.folder / "ca.key"

    @property
    def keystore(self) -> Path:
        """The broker's private key (unencrypted PKCS#8), its certificate and the CA's, in one
        PEM file (0600): ``ssl.keystore.location``."""
        return self.folder / "broker.pem"


def ensure_broker_certificates(folder: Path, host: str) -> BrokerCertificates:
    """The CA and the broker certificate in ``folder``, made if missing; the broker's is made
    again if it does not name ``host`` (besides 127.0.0.1 and localhost) or ends within
    ``RENEW_BEFORE``."""
    files = BrokerCertificates(folder.resolve())
    if not (files.ca_certificate.exists() and files.ca_key.exists()):
        ca_key, ca_cert = make_ca()
        write_private(files.ca_key, _key_pem(ca_key))
        write_private(files.ca_certificate, _cert_pem(ca_cert))
    ca_cert = x509.load_pem_x509_certificate(files.ca_certificate.read_bytes())
    if not _still_good(files, ca_cert, host):
        signer = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        if not isinstance(signer, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{files.ca_key} is not an ECDSA key made by xbus")
        key, cert = make_broker_certificate(signer, ca_cert, host)
        write_private(files.keystore, _key_pem(key) + _cert_pem(cert) + _cert_pem(ca_cert))
    return files


def make_ca(
    name: str = "xbus local CA", days: int = CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed CA that may sign server certificates and nothing below them."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_broker_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    host: str,
    days: int = BROKER_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new server certificate signed by the CA, naming ``host`` and 127.0.0.1 and localhost
    (as IP or DNS names, whichever each is)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, ec.EllipticCurvePublicKey):
        raise ValueError("the CA certificate does not hold an ECDSA key")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # The broker also connects to itself (the inter-broker listener), hence client auth.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def named_hosts(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses (as text) a certificate's SAN names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def broker_certificate(files: BrokerCertificates) -> x509.Certificate:
    """The broker's certificate: the first in its keystore."""
    return x509.load_pem_x509_certificates(files.keystore.read_bytes())[0]


def _names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys((*_ALWAYS_NAMED, host)):
        ip = _ip(name)
        names.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(name))
    return names


def _ip(name: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _still_good(files: BrokerCertificates, ca_cert: x509.Certificate, host: str) -> bool:
    """Whether the broker's certificate exists, was signed by this CA, names ``host`` and
    has more than ``RENEW_BEFORE`` left."""
    if not files.keystore.exists():
        return False
    cert = broker_certificate(files)
    ip = _ip(host)
    wanted = str(ip) if ip is not None else host
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return wanted in named_hosts(cert) and left > RENEW_BEFORE


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()
