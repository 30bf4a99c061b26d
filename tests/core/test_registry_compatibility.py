"""The registry's global compatibility default is the catalog's, set by the launcher and by
``xbus schemas register``, so a subject made outside the bus's tools is guarded too; checked
through the Confluent API of the real registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.conftest import Bus
from xbus.core.catalog import DEFAULT_COMPATIBILITY, Catalog
from xbus.core.contracts import register_catalog
from xbus.core.serde import registry_client
from xbus.deploy.registry import CCOMPAT_PATH, LocalRegistry, RegistryConfig

pytestmark = pytest.mark.broker


def _global(bus: Bus) -> str:
    answer = httpx.get(
        f"{bus.settings.schema_registry_url}/config", auth=bus.settings.registry_auth(), timeout=10
    )
    answer.raise_for_status()
    return str(answer.json()["compatibilityLevel"])


@pytest.fixture
def reset_to_none(bus: Bus) -> Iterator[None]:
    """The registry as Apicurio starts it, global compatibility NONE; put back afterwards."""
    url = f"{bus.settings.schema_registry_url}/config"
    auth = bus.settings.registry_auth()
    httpx.put(url, json={"compatibility": "NONE"}, auth=auth, timeout=10).raise_for_status()
    assert _global(bus) == "NONE"
    yield
    default = {"compatibility": DEFAULT_COMPATIBILITY}
    httpx.put(url, json=default, auth=auth, timeout=10).raise_for_status()


@pytest.mark.usefixtures("reset_to_none")
def test_schemas_register_sets_the_global_default_and_guards_other_subjects(bus: Bus) -> None:
    registry = registry_client(bus.settings)

    register_catalog(Catalog.load(bus.settings.schemas_dir), registry)

    assert DEFAULT_COMPATIBILITY == "FULL_TRANSITIVE"
    assert _global(bus) == DEFAULT_COMPATIBILITY
    subject = f"outside-{uuid.uuid4().hex[:8]}-value"
    record = {"type": "record", "name": "Outside", "fields": [{"name": "a", "type": "string"}]}
    registry.register_schema(subject, Schema(json.dumps(record), "AVRO"))
    changed = {**record, "fields": [{"name": "a", "type": "int"}]}
    with pytest.raises(SchemaRegistryError) as refused:
        registry.register_schema(subject, Schema(json.dumps(changed), "AVRO"))
    assert refused.value.http_status_code == 409


@pytest.mark.usefixtures("reset_to_none")
def test_the_launcher_sets_the_global_default(bus: Bus) -> None:
    url = urlsplit(bus.settings.schema_registry_url)
    if url.path.rstrip("/") != CCOMPAT_PATH or url.hostname is None or url.port is None:
        pytest.skip("the registry under test is not the launcher's Apicurio")
    launcher = LocalRegistry(
        RegistryConfig(
            "unused",
            host=url.hostname,
            port=url.port,
            secured=bus.settings.registry_auth() is not None,
            secrets_dir=bus.settings.secrets_dir,
        )
    )

    launcher.set_default_compatibility()

    assert _global(bus) == DEFAULT_COMPATIBILITY
