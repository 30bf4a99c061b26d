"""Keys land where Kafka's Java client puts them.

Per-key order holds only while every writer of a topic sends a key to the same partition.
Kafka Connect, Debezium and Kafka Streams partition with the Java client's murmur2; so must
every xbus producer. These tests produce the same keys from the Java client (kafka-clients
of the jars the local stack runs) and from xbus's producers, on the real broker, and compare
where each key landed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from tests.conftest import Bus
from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.core.settings import BusSettings
from xbus.deploy.errors import LauncherError
from xbus.deploy.jars import resolve_artifacts
from xbus.deploy.kafka import KAFKA_POM
from xbus.deploy.stack import StackSettings
from xbus.producers.demodata import DISTRICTS, DemoData
from xbus.producers.publisher import EventSpec, Publisher

pytestmark = pytest.mark.broker

PARTITIONS = 6

# Reads hex-encoded keys, one a line (an empty line is the empty key), sends each with the
# Java client's own partitioner and prints "<hex key>\t<partition>" as the broker acknowledged.
JAVA_PRODUCER = """
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class KeyedProducer {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        try (var file = new java.io.FileReader(args[0], StandardCharsets.UTF_8)) {
            config.load(file);
        }
        config.put("acks", "all");
        config.put("key.serializer", ByteArraySerializer.class.getName());
        config.put("value.serializer", ByteArraySerializer.class.getName());
        HexFormat hex = HexFormat.of();
        List<String> keys = new ArrayList<>();
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        BufferedReader in =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            for (String line = in.readLine(); line != null; line = in.readLine()) {
                byte[] value = ("java:" + line).getBytes(StandardCharsets.US_ASCII);
                sent.add(producer.send(new ProducerRecord<>(args[1], hex.parseHex(line), value)));
                keys.add(line);
            }
            producer.flush();
            for (int i = 0; i < keys.size(); i++) {
                System.out.println(keys.get(i) + "\\t" + sent.get(i).get().partition());
            }
        }
    }
}
"""


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the partitioning tests need Java and the Kafka jars: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def kafka_jars() -> Path:
    """The folder of the Kafka jars the local stack runs (fetched once into its cache)."""
    if shutil.which("java") is None:
        _missing("no java on PATH")
    try:
        return resolve_artifacts(KAFKA_POM, StackSettings().cache.resolve(), "kafka")
    except LauncherError as exc:
        _missing(str(exc))
        raise


@pytest.fixture(scope="module")
def java_producer(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("java") / "KeyedProducer.java"
    source.write_text(JAVA_PRODUCER)
    return source


def _java_client_properties(settings: BusSettings) -> str:
    lines = [
        f"bootstrap.servers={settings.bootstrap_servers}",
        f"security.protocol={settings.security_protocol}",
    ]
    if settings.sasl_mechanism:
        module = "org.apache.kafka.common.security.scram.ScramLoginModule"
        lines += [
            f"sasl.mechanism={settings.sasl_mechanism}",
            f'sasl.jaas.config={module} required username="{settings.sasl_username}" '
            f'password="{settings.kafka_password()}";',
        ]
    return "\n".join(lines) + "\n"


def java_partitions(
    source: Path, jars: Path, settings: BusSettings, topic: str, keys: list[bytes]
) -> dict[bytes, int]:
    """Where Kafka's Java producer put each key of ``keys`` in ``topic``."""
    # The client's settings (its credentials too) go in a file, as they would for any Java
    # client of the bus.
    client = source.parent / "client.properties"
    client.write_text(_java_client_properties(settings))
    client.chmod(0o600)
    result = subprocess.run(
        ["java", "-cp", f"{jars}/*", str(source), str(client), topic],
        input="".join(key.hex() + "\n" for key in keys),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    placed = {}
    for line in result.stdout.splitlines():
        key, partition = line.split("\t")
        placed[bytes.fromhex(key)] = int(partition)
    return placed


def sample_keys() -> list[bytes]:
    """A few hundred keys like the bus's, and the odd ones: Chinese and other UTF-8 text,
    one-byte and blank keys, the empty key, a long one."""
    rng = random.Random(8)
    data = DemoData(seed=8)
    text: list[str] = []
    for _ in range(120):
        licence = data.business_licence()
        text += [licence["credit_code"], licence["legal_representative_id"], licence["name"]]
    text += list(DISTRICTS) + list(DISTRICTS.values())
    text += [str(n) for n in range(40)] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    text += [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(30)]
    text += [
        " ",
        "  ",
        "\t",
        "-",
        "0",
        "上",
        "海",
        "一网通办",
        "企业开办·浦东",
        "ÄÖÜß",
        "🚀",
        "a🚀b",
    ]
    text += ["x" * 1024, "上海" * 300]
    keys = [t.encode() for t in dict.fromkeys(text)]
    return [b"", b"\x00", b"\xff\xfe", *keys]


def test_every_key_lands_on_the_partition_the_java_client_chooses(
    bus: Bus, java_producer: Path, kafka_jars: Path
) -> None:
    settings = bus.settings
    topic = f"test.partitioning.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, {topic: PARTITIONS})
    keys = sample_keys()
    assert len(keys) > 400

    java = java_partitions(java_producer, kafka_jars, settings, topic, keys)

    acknowledged: dict[bytes, int] = {}

    def delivered(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        acknowledged[bytes.fromhex(message.value().decode().removeprefix("xbus:"))] = (
            message.partition()
        )

    producer = Producer(settings.producer_config())
    for key in keys:
        producer.produce(topic, key=key, value=b"xbus:" + key.hex().encode(), on_delivery=delivered)
    assert producer.flush(30) == 0

    assert java.keys() == set(keys) == acknowledged.keys()
    assert len(set(java.values())) == PARTITIONS, "the sample should reach every partition"
    differ = {k: (java[k], acknowledged[k]) for k in keys if java[k] != acknowledged[k]}
    assert not differ, f"{len(differ)} of {len(keys)} keys landed elsewhere (java, xbus)"
    # What a consumer sees: each key's records, whoever wrote them, on one partition.
    assert _partitions_of_each_key(settings, topic, 2 * len(keys)) == {
        key.hex(): {("java", java[key]), ("xbus", java[key])} for key in keys
    }


def test_published_events_land_where_java_puts_their_business_keys(
    registered: Bus, java_producer: Path, kafka_jars: Path
) -> None:
    settings = registered.settings
    dataset = Catalog.load(settings.schemas_dir).get("market_regulation", "business_licence")
    data = DemoData(seed=9)
    licences = [data.business_licence() for _ in range(60)]
    with Publisher("market_regulation", system="partition-test", settings=settings) as p:
        receipts = p.publish_batch(
            "business_licence", [EventSpec(Op.CREATE, after=lic) for lic in licences]
        )
    partitions = _partition_count(settings, dataset.topic)
    twin = f"test.partitioning.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, {twin: partitions})
    keys = [dataset.key_of(lic).encode() for lic in licences]

    java = java_partitions(java_producer, kafka_jars, settings, twin, keys)

    assert [r.partition for r in receipts] == [java[key] for key in keys]


def _partition_count(settings: BusSettings, topic: str) -> int:
    consumer = Consumer({**settings.kafka_config(), "group.id": f"count-{uuid.uuid4()}"})
    try:
        return len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        consumer.close()


def _partitions_of_each_key(
    settings: BusSettings, topic: str, expected: int
) -> dict[str, set[tuple[str, int]]]:
    """``{hex key: {(writer, partition)}}`` of the first ``expected`` records of ``topic``;
    the key is read from the value, which carries it for the empty key's sake."""
    consumer = Consumer(settings.consumer_config(f"partitioning-{uuid.uuid4()}"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen: dict[str, set[tuple[str, int]]] = {}
    read = 0
    try:
        for _ in range(120):
            for message in consumer.consume(1000, timeout=0.5):
                assert message.error() is None, message.error()
                writer, key = message.value().decode().split(":")
                seen.setdefault(key, set()).add((writer, message.partition()))
                read += 1
            if read >= expected:
                break
    finally:
        consumer.close()
    assert read == expected
    return seen
