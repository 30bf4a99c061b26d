"""Creating the topics the bus needs, through Kafka's admin API."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from xbus.core.errors import XbusError
from xbus.core.settings import BusSettings


def ensure_topics(
    settings: BusSettings,
    topics: dict[str, int],
    *,
    replication_factor: int = -1,
    config: dict[str, dict[str, str]] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create each ``{name: partitions}`` topic that does not exist yet; existing ones are kept.
    ``replication_factor`` -1 is the cluster's ``default.replication.factor``.

    Existing topics are looked up first and not asked for again: on a secured bus a component
    may use a topic that ``xbus provision`` made without the right to create it, and Kafka
    answers a create request it does not authorize with a refusal even when the topic exists."""
    admin = AdminClient(settings.kafka_config())
    existing = admin.list_topics(timeout=timeout).topics
    topics = {name: n for name, n in topics.items() if name not in existing}
    if not topics:
        return
    new = [
        NewTopic(
            name,
            num_partitions=n,
            replication_factor=replication_factor,
            config=(config or {}).get(name, {}),
        )
        for name, n in topics.items()
    ]
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise XbusError(f"could not create topic {name}: {error}") from exc
