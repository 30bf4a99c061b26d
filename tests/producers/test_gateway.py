"""The ingest gateway as a real HTTP server (``xbus run gateway``) on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Bus
from tests.support.components import component, wait_until_healthy
from tests.support.kafka_reading import end_offsets, read_events
from xbus.core.values import to_json
from xbus.deploy.process import free_port
from xbus.producers.demodata import DemoData
from xbus.producers.gateway.keys import new_key

pytestmark = pytest.mark.broker

VACCINATIONS = "gov.health.vaccination_record"


class Gateway:
    def __init__(
        self, url: str, key: str, other_key: str, keys_file: Path, metrics: str, log_file: Path
    ) -> None:
        self.url = url
        self.key = key
        self.other_key = other_key
        self.keys_file = keys_file
        self.metrics = metrics
        self.log_file = log_file

    def metric(self, name: str, **labels: str) -> float:
        """The value of metric ``name`` with ``labels`` on the gateway's metrics port."""
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in httpx.get(f"{self.metrics}/metrics", timeout=10).text.splitlines():
            if line.startswith(name + "{") and all(w in line for w in wanted):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def post(
        self,
        path: str,
        body: object,
        *,
        key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if key != "":
            headers["Authorization"] = f"Bearer {key or self.key}"
        return httpx.post(
            f"{self.url}{path}", content=to_json(body), headers=headers, params=params, timeout=60
        )


def start_gateway(
    bus: Bus, tmp_path: Path, name: str, extra_env: dict[str, str] | None = None
) -> Iterator[Gateway]:
    """``xbus run gateway`` on free ports (its API and its metrics), with a key of health and
    one of market_regulation."""
    keys = tmp_path / f"{name}-keys.toml"
    key = new_key(keys, "health")
    other = new_key(keys, "market_regulation")
    port, metrics = free_port(), free_port()
    env = {"XBUS_GATEWAY_KEYS_FILE": str(keys), **(extra_env or {})}
    args = ("gateway", "--port", str(port), "--metrics-port", str(metrics))
    with component(bus, tmp_path, name, *args, env=env):
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, "the gateway")
        yield Gateway(
            url, key, other, keys, f"http://127.0.0.1:{metrics}", tmp_path / f"{name}.log"
        )


@pytest.fixture()
def gateway(registered: Bus, tmp_path: Path) -> Iterator[Gateway]:
    yield from start_gateway(registered, tmp_path, "gateway")


EVENTS = "/v1/datasets/health/vaccination_record/events"


def test_accepted_events_are_on_kafka_and_decode_with_stock_tools(
    gateway: Gateway, registered: Bus
) -> None:
    data = DemoData(seed=31)
    record = data.vaccination_record()
    retry_id = str(uuid.uuid4())
    one = gateway.post(EVENTS, {"op": "CREATE", "after": record, "event_id": retry_id})
    batch = gateway.post(
        f"{EVENTS}/batch",
        {"events": [{"op": "CREATE", "after": data.vaccination_record()} for _ in range(20)]},
    )

    assert one.status_code == 202, one.text
    assert one.json() == {"event_ids": [retry_id]}
    assert batch.status_code == 202, batch.text
    ids = {retry_id, *batch.json()["event_ids"]}
    assert len(ids) == 21
    found = read_events(registered.settings, VACCINATIONS, ids)
    assert found.keys() == ids
    key, event = found[retry_id]
    assert key == record["record_id"].encode()
    assert event["after"]["person"]["id_number"] == record["person"]["id_number"]
    assert event["after"]["person"]["birth_date"] == record["person"]["birth_date"]
    assert event["source"]["origin"] == "gateway"


def test_a_bad_batch_names_each_field_and_publishes_nothing_unless_partial(
    gateway: Gateway, registered: Bus
) -> None:
    data = DemoData(seed=32)
    bad = data.vaccination_record()
    bad["person"]["birth_date"] = "1990-02-30"
    bad["dose_number"] = "two"
    events = {
        "events": [
            {"op": "CREATE", "after": data.vaccination_record()},
            {"op": "CREATE", "after": bad},
            {"op": "MERGE", "after": data.vaccination_record()},
        ]
    }
    before = end_offsets(registered.settings, VACCINATIONS)

    refused = gateway.post(f"{EVENTS}/batch", events)

    assert refused.status_code == 400
    records = {
        r["index"]: {e["path"] for e in r["errors"]} for r in refused.json()["error"]["records"]
    }
    assert records == {
        1: {"events[1].after.person.birth_date", "events[1].after.dose_number"},
        2: {"events[2].op"},
    }
    assert end_offsets(registered.settings, VACCINATIONS) == before

    partial = gateway.post(f"{EVENTS}/batch", events, params={"partial": "true"})

    assert partial.status_code == 202, partial.text
    body = partial.json()
    assert [a["index"] for a in body["accepted"]] == [0]
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    accepted = body["accepted"][0]["event_id"]
    assert read_events(registered.settings, VACCINATIONS, {accepted}).keys() == {accepted}


def _refusal(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_keys_ownership_and_size_are_enforced(gateway: Gateway) -> None:
    event = {"op": "CREATE", "after": DemoData(seed=33).vaccination_record()}
    anonymous = gateway.post(EVENTS, event, key="")
    assert _refusal(anonymous) == (401, "unauthorized")
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert _refusal(gateway.post(EVENTS, event, key="xbk_not-a-key")) == (401, "unauthorized")
    foreign = gateway.post(EVENTS, event, key=gateway.other_key)
    assert _refusal(foreign) == (403, "forbidden")
    assert "market_regulation" in foreign.json()["error"]["message"]
    unknown = gateway.post("/v1/datasets/health/no_such/events", event)
    assert _refusal(unknown) == (404, "unknown_dataset")
    huge = gateway.post(f"{EVENTS}/batch", {"events": [event] * 5000})
    assert _refusal(huge) == (413, "too_large")
    assert _refusal(gateway.post(f"{EVENTS}/batch", {"events": []})) == (400, "invalid_batch")
    invalid_json = httpx.post(
        f"{gateway.url}{EVENTS}",
        content=b'{"op": ',
        headers={"Authorization": f"Bearer {gateway.key}"},
    )
    assert invalid_json.status_code == 400
    assert invalid_json.json()["error"]["code"] == "invalid_json"


def test_the_openapi_description_is_served_to_a_key(gateway: Gateway) -> None:
    anonymous = httpx.get(f"{gateway.url}/openapi.json")
    assert _refusal(anonymous) == (401, "unauthorized")
    headers = {"Authorization": f"Bearer {gateway.other_key}"}
    spec = httpx.get(f"{gateway.url}/openapi.json", headers=headers).json()
    assert set(spec["paths"]) >= {
        "/v1/datasets/{department}/{dataset}/events",
        "/v1/datasets/{department}/{dataset}/events/batch",
    }
    responses = spec["paths"]["/v1/datasets/{department}/{dataset}/events/batch"]["post"][
        "responses"
    ]
    assert {"202", "400", "401", "403", "413", "429", "503"} <= set(responses)


def test_an_unavailable_kafka_is_a_503_after_a_bounded_wait(
    registered: Bus, tmp_path: Path
) -> None:
    dead = {
        "XBUS_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "XBUS_GATEWAY_DELIVERY_TIMEOUT": "2",
    }
    for gateway in start_gateway(registered, tmp_path, "dead-kafka-gateway", dead):
        answer = gateway.post(
            EVENTS, {"op": "CREATE", "after": DemoData(seed=34).vaccination_record()}
        )
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.json()["error"]["code"] == "broker_unreachable"
