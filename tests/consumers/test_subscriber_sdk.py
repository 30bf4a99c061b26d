"""The subscriber SDK reading a subscriber's topics on the real broker and registry."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Bus
from tests.support.delivery_feed import DeliveryFeed, licence
from xbus.consumers.subscriber import Subscription

pytestmark = pytest.mark.broker


def test_a_subscription_decodes_its_events_and_resumes_after_its_last_commit(bus: Bus) -> None:
    subscriber, group = f"sdk_{uuid.uuid4().hex[:8]}", f"app-{uuid.uuid4()}"
    feed = DeliveryFeed(bus.settings, subscriber, partitions=1)
    feed.create_licences(10)
    with Subscription(bus.settings, subscriber, group=group) as subscription:
        first = [subscription.poll(10.0) for _ in range(4)]
        assert all(first)
        subscription.commit(first[3])  # type: ignore[arg-type]
    with Subscription(bus.settings, subscriber, group=group) as subscription:
        rest = []
        while len(rest) < 6:
            d = subscription.poll(10.0)
            assert d is not None, "the rest of the stream comes after a restart"
            rest.append(d)
    seen = [d.event_id for d in first + rest]  # type: ignore[union-attr]
    assert seen == [e["event_id"] for e in feed.sent]
    d = rest[0]
    assert (d.subscriber, d.dataset, d.key_text) == (subscriber, "business_licence", "k4")
    assert d.event["after"]["registered_capital"] == licence(4)["registered_capital"]
    assert d.event["after"]["issued_on"] == licence(4)["issued_on"]
