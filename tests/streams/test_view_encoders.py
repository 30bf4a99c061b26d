"""The engine's view encoders against a registry that refuses a view: the grant's events fail
without a registry request each, and the view is asked for again once the refusal is old."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.support.grant_helpers import compile_grant, licence_grant
from xbus.core.catalog import Catalog
from xbus.core.settings import BusSettings
from xbus.streams.exceptions import GrantFailed
from xbus.streams.routing import ViewEncoders


class _Refusing:
    """A registry that answers 403 to every change until told otherwise."""

    def __init__(self) -> None:
        self.requests = 0
        self.refusing = True
        # Where confluent-kafka's client keeps its URL (not Apicurio's: no second call).
        self._rest_client = SimpleNamespace(base_urls=["http://registry:8081"], session=None)

    def _answer(self) -> Any:
        self.requests += 1
        if self.refusing:
            raise SchemaRegistryError(403, 40301, "forbidden")

    def get_compatibility(self, subject_name: str | None = None) -> str:
        self.requests += 1
        return "FULL_TRANSITIVE"

    def set_compatibility(self, subject_name: str | None = None, level: str = "") -> None:
        self._answer()

    def lookup_schema(self, subject: str, schema: Any) -> Any:
        self._answer()
        raise SchemaRegistryError(404, 40403, "schema not found")

    def register_schema(self, subject: str, schema: Any) -> int:
        self._answer()
        return 41


def test_a_refused_view_is_not_asked_for_per_event_and_is_asked_again_later() -> None:
    catalog = Catalog.load(BusSettings().schemas_dir)
    grant = compile_grant(licence_grant("refused-view", "tester"), catalog)
    registry = _Refusing()
    now = [1000.0]
    encoders = ViewEncoders(registry, clock=lambda: now[0])  # type: ignore[arg-type]

    for _ in range(100):
        with pytest.raises(GrantFailed, match="refused the view schema"):
            encoders(grant)
    asked = registry.requests
    assert 0 < asked <= 3, "one refusal, not a request per event"

    now[0] += ViewEncoders.REFUSAL_KEPT + 1
    registry.refusing = False
    encoder, _ = encoders(grant)
    assert encoder.schema_id == 41
    assert registry.requests > asked
