"""Publishing throughput: the producer SDK next to raw confluent-kafka, in the same run.

The SDK publishes realistic business licences (checked against the dataset, wrapped in the
envelope, Avro-encoded with the registered schema, keyed, produced, acknowledged). Raw
confluent-kafka then produces the same number of byte strings, encoded beforehand, with the
same producer settings, to a topic of the same shape. Both are timed from the first event to
the last acknowledgement. Prints events/s for each and their ratio.

    make bench                      # a throw-away stack, then this with its defaults
    python tests/benchmarks/bench_publish.py --events 200000   # against XBUS_* settings
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid

from confluent_kafka import Producer

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.envelope import Op, change_event
from xbus.core.producing import produce
from xbus.core.serde import WireEncoder, registry_client
from xbus.core.settings import BusSettings
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher

DEPARTMENT, DATASET = "market_regulation", "business_licence"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    args = parser.parse_args()

    settings = BusSettings()
    catalog = Catalog.load(settings.schemas_dir)
    register_catalog(catalog, registry_client(settings))
    dataset = catalog.get(DEPARTMENT, DATASET)
    raw_topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, {dataset.topic: 3, raw_topic: 3})

    data = DemoData(seed=1)
    print(f"generating {args.events} licences...", flush=True)
    licences = [data.business_licence() for _ in range(args.events)]
    encoder = WireEncoder(0, dataset.envelope)
    encoded = [
        (
            dataset.key_of(r).encode(),
            encoder.encode(
                change_event(
                    department=DEPARTMENT, dataset=DATASET, op=Op.CREATE, after=r, system="bench"
                )
            ),
        )
        for r in licences
    ]
    print(f"average encoded event: {sum(len(v) for _, v in encoded) / len(encoded):.0f} bytes")
    # The inputs stay in memory for the whole run, which a real publisher's records do not:
    # keep the garbage collector from walking them again and again during the timed loops.
    gc.freeze()

    sdk_rates, raw_rates = [], []
    with Publisher(DEPARTMENT, system="bench", settings=settings, catalog=catalog) as publisher:
        publisher.publish(DATASET, Op.CREATE, after=licences[0]).result(30)  # warm up
        for round_ in range(1, args.rounds + 1):
            started = time.perf_counter()
            for licence in licences:
                publisher.publish(DATASET, Op.CREATE, after=licence)
            publisher.flush()
            sdk_rates.append(args.events / (time.perf_counter() - started))

            raw = Producer(settings.producer_config())
            raw.produce(raw_topic, b"warm-up")
            raw.flush()
            started = time.perf_counter()
            for key, value in encoded:
                produce(raw, raw_topic, value, key)
                raw.poll(0)
            raw.flush()
            raw_rates.append(args.events / (time.perf_counter() - started))
            print(
                f"round {round_}: sdk {sdk_rates[-1]:,.0f} events/s, "
                f"raw {raw_rates[-1]:,.0f} events/s",
                flush=True,
            )

    sdk, raw_best = max(sdk_rates), max(raw_rates)
    print(f"\nSDK (validate + envelope + Avro + produce + ack): {sdk:>10,.0f} events/s")
    print(f"raw confluent-kafka (pre-encoded bytes):          {raw_best:>10,.0f} events/s")
    print(f"ratio SDK / raw:                                  {sdk / raw_best:>10.2f}")


if __name__ == "__main__":
    main()
