"""Routing in process, without Kafka: how long ``Router.route`` takes per event with the
engine benchmark's grants in force (1, 10 or 50 on one dataset), so that its cost can be
profiled and compared apart from the consumer and producer around it.

    python -m tests.benchmarks.bench_routing [--grants 10] [--events 20000] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import time
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema

from xbus.core.catalog import Catalog
from xbus.core.envelope import Op, change_event, record_full_name, with_union_branches
from xbus.core.metrics import ENGINE_VIEWS_ENCODED_WHOLE
from xbus.core.serde import WireEncoder, WriterSchemas
from xbus.core.settings import bus_settings
from xbus.producers.demodata import DISTRICTS, DemoData
from xbus.streams.grant_files import load_grants
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.routing import Router, ViewEncoders, metric_child
from xbus.streams.state import PolicySnapshot

GRANTS = Path(__file__).parent / "grants"
SCHEMA_ID = 7


class _OneSchema:
    """A registry that knows one schema (the dataset's envelope) under ``SCHEMA_ID``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = Schema(json.dumps(schema), "AVRO")

    def get_schema(self, schema_id: int) -> Schema:
        assert schema_id == SCHEMA_ID
        return self._schema


def compiled_grants(catalog: Catalog, count: int) -> tuple[CompiledGrant, ...]:
    """``count`` bench grants (the ten kinds in turn), compiled as the engine compiles them."""
    kinds = sorted(GRANTS.glob("bench_*.yaml"), key=lambda p: int(p.stem.split("_")[1]))
    loaded, problems = load_grants(kinds, catalog)
    assert not problems, problems
    out = []
    for i in range(count):
        grant = loaded[i % len(loaded)].grant
        grant = grant.model_copy(
            update={
                "grant": re.sub(r"^bench-\d+-", f"bench-{i}-", grant.grant),
                "subscriber": f"bench_{i}",
            }
        )
        compiled = check_and_compile(grant, catalog)
        assert isinstance(compiled, CompiledGrant), compiled
        out.append(compiled)
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=10)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--whole", action="store_true", help="encode views whole (reference)")
    parser.add_argument("--profile", help="write a cProfile of the timed run to this file")
    args = parser.parse_args()
    os.environ.setdefault("XBUS_PSEUDONYM_KEY", "bench-routing-pseudonym-key")
    settings = bus_settings()
    catalog = Catalog.load(settings.schemas_dir)
    dataset = catalog.get("market_regulation", "business_licence")
    grants = compiled_grants(catalog, args.grants)
    tables = {"districts": dict(DISTRICTS)}
    snapshot = PolicySnapshot({dataset.topic: grants}, tables)
    router = Router(
        lambda: snapshot,
        WriterSchemas(_OneSchema(dataset.envelope)),  # type: ignore[arg-type]
        ViewEncoders(None),
        splice=not args.whole,
    )
    encoder, name, data = (
        WireEncoder(SCHEMA_ID, dataset.envelope),
        record_full_name(dataset.schema),
        DemoData(1),
    )
    pool = []
    for _ in range(1000):
        licence = data.business_licence()
        event = change_event(
            department="market_regulation",
            dataset="business_licence",
            op=Op.CREATE,
            after=licence,
            system="bench",
        )
        pool.append(
            (dataset.key_of(licence).encode(), encoder.encode(with_union_branches(event, name)))
        )
    for key, value in pool[:200]:  # warm-up: view schemas, caches
        router.route(dataset.topic, 0, 0, key, value)
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    outputs = 0
    for i in range(args.events):
        key, value = pool[i % len(pool)]
        outputs += len(router.route(dataset.topic, i % 12, i, key, value).outputs)
    whole = sum(
        router.counts[metric_child(ENGINE_VIEWS_ENCODED_WHOLE, f"bench_{i}", dataset.name)]
        for i in range(args.grants)
    )
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    elapsed = time.perf_counter() - started
    print(
        f"{args.grants} grants: {args.events / elapsed:,.0f} events/s in process, "
        f"{elapsed / args.events * 1e6:.0f} µs per event, "
        f"{outputs / args.events:.1f} outputs per event, "
        f"{whole / args.events:.2f} views per event encoded whole"
    )
    if profiler:
        stats = pstats.Stats(args.profile)
        stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
