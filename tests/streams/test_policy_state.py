"""The engine's view of the grants outlives a broker that cannot answer for a moment: a
thread that died there would enforce the grants it knew forever, revocations unseen."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from tests.conftest import Bus
from tests.support.components import wait_for
from tests.support.grant_helpers import licence_grant, office_key
from xbus.core.catalog import Catalog
from xbus.core.producing import Record, produce_and_confirm
from xbus.core.topics import GRANTS_TOPIC
from xbus.streams.policy_records import grant_key, grant_value
from xbus.streams.state import PolicyState


class _Stumbling:
    """A real consumer whose first calls of some methods fail as a broker does while a
    partition has no leader."""

    def __init__(self, real: Consumer, failures: dict[str, int]) -> None:
        self._real, self.failures = real, dict(failures)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        if self.failures.get(name, 0) <= 0:
            return method

        def stumble(*args: Any, **kwargs: Any) -> Any:
            self.failures[name] -= 1
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))

        return stumble


def test_the_grants_are_followed_through_a_broker_that_stumbles(registered: Bus) -> None:
    settings = registered.settings
    catalog = Catalog.load(settings.schemas_dir)
    grant_id = f"stumble-{uuid.uuid4().hex[:8]}"
    key = office_key(settings)
    write = [
        Record(
            GRANTS_TOPIC,
            grant_value(licence_grant(grant_id, "tester"), 1, key),
            grant_key(grant_id),
        )
    ]
    produce_and_confirm(Producer(settings.producer_config()), write, timeout=30, what="the grant")
    state = PolicyState(settings, catalog)
    stumbling = _Stumbling(state._consumer, {"get_watermark_offsets": 2, "consume": 2})
    state._consumer = stumbling  # type: ignore[assignment]
    state.start()
    try:
        assert state.caught_up.wait(60), "the policy state never caught up"
        assert stumbling.failures == {"get_watermark_offsets": 0, "consume": 0}
        in_force = {g.grant.grant for g in state.snapshot().all_grants}
        assert grant_id in in_force
        produce_and_confirm(
            Producer(settings.producer_config()),
            [Record(GRANTS_TOPIC, None, grant_key(grant_id))],
            timeout=30,
            what="the revocation",
        )
        wait_for(
            lambda: grant_id not in {g.grant.grant for g in state.snapshot().all_grants},
            30,
            "the revocation to be seen",
        )
    finally:
        state.stop()
