"""The local CA and the broker's certificate: what they name, who signed them, how long they
last, and that they are made once and kept."""

from __future__ import annotations

import datetime
import json
import ssl
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from xbus.core.settings import BusSettings
from xbus.deploy.certificates import (
    BROKER_DAYS,
    broker_certificate,
    ensure_broker_certificates,
    make_broker_certificate,
    make_ca,
    named_hosts,
)


def _ca(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_broker_certificate_names_its_host_and_loopback(tmp_path: Path) -> None:
    files = ensure_broker_certificates(tmp_path / "tls", "broker.city.example")
    cert = broker_certificate(files)

    assert named_hosts(cert) == {"127.0.0.1", "localhost", "broker.city.example"}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_an_ip_host_is_named_as_an_ip_address(tmp_path: Path) -> None:
    files = ensure_broker_certificates(tmp_path / "tls", "10.20.30.40")
    san = broker_certificate(files).extensions.get_extension_for_class(x509.SubjectAlternativeName)

    assert {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "10.20.30.40",
    }


def test_the_ca_signed_the_broker_certificate_and_no_other_ca_did(tmp_path: Path) -> None:
    files = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")
    ca = _ca(files.ca_certificate)
    cert = broker_certificate(files)

    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Another CA, even of the same name, did not sign it.
    _, stranger = make_ca()
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(stranger)


def test_validity_starts_now_and_lasts_a_year_within_the_cas(tmp_path: Path) -> None:
    files = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")
    now = datetime.datetime.now(datetime.UTC)
    cert = broker_certificate(files)
    ca = _ca(files.ca_certificate)

    assert cert.not_valid_before_utc <= now
    assert now - cert.not_valid_before_utc < datetime.timedelta(hours=1)
    left = cert.not_valid_after_utc - now
    assert datetime.timedelta(days=BROKER_DAYS - 1) < left <= datetime.timedelta(days=BROKER_DAYS)
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
    _, capped = make_broker_certificate(ca_key, ca, "x", days=100_000)  # type: ignore[arg-type]
    assert capped.not_valid_after_utc == ca.not_valid_after_utc


def test_keys_are_private_unencrypted_pkcs8_files(tmp_path: Path) -> None:
    files = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")

    assert stat.S_IMODE(files.folder.stat().st_mode) == 0o700
    for path in (files.keystore, files.ca_key, files.ca_certificate):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Kafka's PEM keystore reads "PRIVATE KEY" (PKCS#8), not "EC PRIVATE KEY" nor PBES2.
    assert files.keystore.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert files.keystore.read_text().count("BEGIN CERTIFICATE") == 2


def test_made_once_then_kept_and_remade_only_for_a_new_host(tmp_path: Path) -> None:
    first = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")
    ca_before = first.ca_certificate.read_bytes()
    keystore_before = first.keystore.read_bytes()

    again = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")
    assert again.keystore.read_bytes() == keystore_before

    moved = ensure_broker_certificates(tmp_path / "tls", "kafka-1.city.example")
    assert moved.keystore.read_bytes() != keystore_before
    assert "kafka-1.city.example" in named_hosts(broker_certificate(moved))
    # Same CA: clients that trust it keep trusting the broker.
    assert moved.ca_certificate.read_bytes() == ca_before
    broker_certificate(moved).verify_directly_issued_by(_ca(moved.ca_certificate))


def test_a_broker_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    files = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")
    files.ca_certificate.unlink()
    files.ca_key.unlink()

    renewed = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")

    broker_certificate(renewed).verify_directly_issued_by(_ca(renewed.ca_certificate))


@pytest.fixture
def https_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A stand-in for a registry's Confluent API (``GET /subjects``) served over HTTPS with a
    certificate of a fresh local CA: ``(url, ca.pem)``."""
    files = ensure_broker_certificates(tmp_path / "tls", "127.0.0.1")

    class Subjects(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps(["gov.tax.registration-value"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Subjects)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.keystore)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", files.ca_certificate
    finally:
        server.shutdown()
        server.server_close()


def test_the_registry_client_trusts_the_ca_it_is_told_of(
    https_registry: tuple[str, Path],
) -> None:
    url, ca = https_registry
    trusting = BusSettings(schema_registry_url=url, schema_registry_ssl_ca_location=ca)
    assert SchemaRegistryClient(trusting.registry_config()).get_subjects() == [
        "gov.tax.registration-value"
    ]

    # Without it, the system's CAs do not know the local one.
    untold = BusSettings(schema_registry_url=url)
    # (confluent-kafka raises its own copy of httpx's ConnectError.)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):  # noqa: PT011
        SchemaRegistryClient(untold.registry_config()).get_subjects()
