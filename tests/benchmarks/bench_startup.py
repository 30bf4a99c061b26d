"""Start-up time of the local stack (broker, registry, PostgreSQL, all answering), secured
(SASL/SCRAM, ACLs, registry auth: the default) next to open, alternating runs so that both
meet the same machine load. Each run is a fresh data dir, so formatting is included.

    .venv/bin/python tests/benchmarks/bench_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from xbus.deploy.stack import LocalStack, StackSettings


def _start_once(secured: bool) -> tuple[float, float, float]:
    """Seconds until the broker, then the registry, then the whole stack answered."""
    stack = LocalStack.ephemeral(StackSettings(secured=secured))
    began = time.perf_counter()
    try:
        stack.kafka.start()
        broker = time.perf_counter() - began
        stack.start_registry()
        registry = time.perf_counter() - began
        stack.postgres.start()
        return broker, registry, time.perf_counter() - began
    finally:
        stack.stop()
        stack.remove_data()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    times: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for _ in range(runs):
        for secured in (False, True):
            times[secured].append(_start_once(secured))
    print(f"{'stack':<8}{'broker s':>10}{'+registry s':>13}{'all s':>8}   (median of {runs})")
    for secured in (False, True):
        columns = [statistics.median(t[i] for t in times[secured]) for i in range(3)]
        name = "secured" if secured else "open"
        print(f"{name:<8}{columns[0]:>10.1f}{columns[1]:>13.1f}{columns[2]:>8.1f}")
    added = statistics.median(t[2] for t in times[True]) - statistics.median(
        t[2] for t in times[False]
    )
    print(f"security adds {added:+.1f} s to the start of the whole stack")


if __name__ == "__main__":
    main()
