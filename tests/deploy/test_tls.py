"""A broker started with TLS (SASL_SSL) on the real Kafka jars: clients that trust its CA
and log in get through (every xbus client is librdkafka's); a client that does not trust the
CA, or does not speak TLS, is refused."""

from __future__ import annotations

import logging
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.hazmat.primitives import serialization

from xbus.core.settings import BusSettings
from xbus.deploy.certificates import make_ca
from xbus.deploy.kafka import KafkaConfig, LocalKafka
from xbus.deploy.process import free_port
from xbus.deploy.stack import StackSettings

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaConfig]:
    folder = tmp_path_factory.mktemp("tls-broker")
    config = KafkaConfig(
        port=free_port(),
        controller_port=free_port(),
        data_dir=folder / "kafka",
        cache_dir=StackSettings().cache,
        run_dir=folder / "run",
        heap="256m",
        secrets_dir=folder / "secrets",
        tls=True,
    )
    kafka = LocalKafka(config)
    kafka.start()
    try:
        yield config
    finally:
        kafka.stop()


def _settings(config: KafkaConfig, **changes: object) -> BusSettings:
    """The settings a component gets from the launcher (``client_env``), with ``changes``."""
    env = config.client_env()
    settings = BusSettings(**{k.removeprefix("XBUS_").lower(): v for k, v in env.items()})
    return settings.model_copy(update=changes)


class _Log(logging.Handler):
    """librdkafka's log lines, kept to read why a connection failed."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.logger = logging.getLogger(f"tls-probe-{uuid.uuid4()}")
        self.logger.addHandler(self)
        self.logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _refusal(settings: BusSettings) -> str:
    """What librdkafka logged when ``settings`` did not get metadata from the broker."""
    log = _Log()
    admin = AdminClient(settings.kafka_config(**{"logger": log.logger, "socket.timeout.ms": 4000}))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(0.5)  # librdkafka hands its log lines over in poll
    return "\n".join(log.lines)


def test_the_launcher_names_sasl_ssl_and_its_ca_to_components(broker: KafkaConfig) -> None:
    env = broker.client_env()
    assert env["XBUS_SECURITY_PROTOCOL"] == "SASL_SSL"
    ca = Path(env["XBUS_SSL_CA_LOCATION"])
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    keys = [broker.certificates.keystore, broker.certificates.ca_key]
    for key in keys:
        assert "PRIVATE KEY" in key.read_text()
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(broker.certificates.folder.stat().st_mode) == 0o700


def test_a_record_makes_the_round_trip_over_sasl_ssl(broker: KafkaConfig) -> None:
    settings = _settings(broker)
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka_config())
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer(settings.producer_config())
    producer.produce(topic, key=b"licence-1", value=b"issued")
    assert producer.flush(30) == 0

    consumer = Consumer(settings.consumer_config(f"tls-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(30):
            message = consumer.poll(1.0)
            if message is not None:
                break
    finally:
        consumer.close()
    assert message is not None and message.error() is None
    assert (message.key(), message.value()) == (b"licence-1", b"issued")


def test_a_client_that_does_not_trust_the_ca_is_refused(
    broker: KafkaConfig, tmp_path: Path
) -> None:
    _, other_ca = make_ca("someone else's CA")
    other = tmp_path / "other-ca.pem"
    other.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))

    why = _refusal(_settings(broker, ssl_ca_location=other))

    assert "certificate verify failed" in why


def test_a_client_without_tls_is_refused_on_the_tls_port(broker: KafkaConfig) -> None:
    plaintext = _settings(broker, security_protocol="SASL_PLAINTEXT", ssl_ca_location=None)

    _refusal(plaintext)
    # The same user over TLS still gets in.
    assert AdminClient(_settings(broker).kafka_config()).list_topics(timeout=10).brokers
