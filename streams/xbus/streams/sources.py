"""Which source topics the engine reads: every dataset of the catalog it was deployed with,
and every ``gov.*`` topic in the cluster whose dataset is registered in the schema registry
(the registered envelope carries the dataset's record with all its metadata), so that a
department added after the engine was deployed is picked up without a new release: at start,
and by the hot path when such a topic is assigned to it."""

from __future__ import annotations

import json
import logging

from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from xbus.core.catalog import Catalog, Dataset, dataset_from_schema
from xbus.core.envelope import record_of
from xbus.core.errors import CatalogError
from xbus.core.settings import BusSettings
from xbus.core.topics import SOURCE_PREFIX, parse_source_topic, value_subject

log = logging.getLogger(__name__)


def source_topics(settings: BusSettings) -> set[str]:
    """The ``gov.<department>.<dataset>`` topics that exist in the cluster now."""
    names = AdminClient(settings.kafka_config()).list_topics(timeout=10).topics
    return {t for t in names if t.startswith(SOURCE_PREFIX) and t.count(".") == 2}


def registered_dataset(
    registry: SchemaRegistryClient, topic: str, catalog: Catalog
) -> Dataset | None:
    """The dataset of ``topic`` as registered, or None if it is not (or not valid)."""
    department, name = parse_source_topic(topic)
    subject = value_subject(topic)
    try:
        latest = registry.get_latest_version(subject)
        record = record_of(json.loads(latest.schema.schema_str or "{}"))
        return dataset_from_schema(
            record,
            catalog.envelope,
            where=f"registry subject {subject}",
            department=department,
            name=name,
        )
    except (CatalogError, KeyError, StopIteration, IndexError, ValueError) as exc:
        log.warning("source topic %s: its registered schema is not a dataset: %s", topic, exc)
    except Exception as exc:  # not registered, or the registry did not answer
        log.info("source topic %s has no registered dataset yet: %s", topic, exc)
    return None


def engine_catalog(
    settings: BusSettings, catalog: Catalog, registry: SchemaRegistryClient
) -> Catalog:
    """``catalog`` and the registered datasets of source topics it does not know."""
    known = {d.topic for d in catalog}
    extra = [
        d
        for t in sorted(source_topics(settings) - known)
        if (d := registered_dataset(registry, t, catalog)) is not None
    ]
    return catalog.with_datasets(extra) if extra else catalog
