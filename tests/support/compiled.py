"""Which of the engine's modules run compiled (mypyc, see setup.py) and which as Python
source, and what routing writes for a fixed set of events and grants, so that the compiled and
the interpreted build can be compared byte for byte.

    python -m tests.support.compiled                 # module by module: compiled or source
    python -m tests.support.compiled --outputs       # every output of the fixed routing
    python -m tests.support.compiled --outputs --interpreted   # the same from the source
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import tomllib
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from tests.support.checkout import ROOT


def compiled_sources() -> list[Path]:
    """The source files setup.py compiles, as pyproject.toml lists them."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return [ROOT / p for p in tomllib.load(f)["tool"]["xbus"]["compiled"]]


def module_name(source: Path) -> str:
    """``streams/xbus/streams/routing.py`` -> ``xbus.streams.routing``."""
    parts = source.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[1:])  # the first folder is the namespace's slice


COMPILABLE = [module_name(p) for p in compiled_sources()]


def is_compiled(module: str) -> bool:
    """Whether ``module`` imports as a compiled extension (else from its Python source)."""
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    return origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


class SourceOnly(importlib.abc.MetaPathFinder):
    """Finds the compilable modules' Python source, never their compiled extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in COMPILABLE:
            return None
        for entry in path or ():
            source = Path(entry) / (fullname.rsplit(".", 1)[1] + ".py")
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def routing_outputs() -> list[str]:
    """Every output routing writes, as text, for the ten benchmark grants on events of each
    op (and records that are no change events, or carry a wrong key), at a fixed time."""
    import datetime as dt

    from tests.benchmarks.bench_routing import SCHEMA_ID, _OneSchema, compiled_grants
    from xbus.core.catalog import Catalog
    from xbus.core.envelope import Op, change_event, record_full_name, with_union_branches
    from xbus.core.serde import WireEncoder, WriterSchemas
    from xbus.producers.demodata import DISTRICTS, DemoData
    from xbus.streams.routing import Router, ViewEncoders
    from xbus.streams.state import PolicySnapshot

    os.environ.setdefault("XBUS_PSEUDONYM_KEY", "compiled-build-pseudonym-key")
    catalog = Catalog.load(ROOT / "schemas")
    dataset = catalog.get("market_regulation", "business_licence")
    snapshot = PolicySnapshot(
        {dataset.topic: compiled_grants(catalog, 10)}, {"districts": dict(DISTRICTS)}
    )
    encoder = WireEncoder(SCHEMA_ID, dataset.envelope)
    name = record_full_name(dataset.schema)
    out = []
    for splice in (True, False):
        router = Router(
            lambda: snapshot,
            WriterSchemas(_OneSchema(dataset.envelope)),  # type: ignore[arg-type]
            ViewEncoders(None),
            splice=splice,
        )
        data = DemoData(7)
        now = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
        for i in range(200):
            before, after = data.business_licence(), data.business_licence()
            for record in (before, after):  # made at the time it runs: not to differ
                record["issued_at"] = now - dt.timedelta(minutes=i)
            op = (Op.CREATE, Op.UPDATE, Op.DELETE, Op.SNAPSHOT)[i % 4]
            after["credit_code"] = before["credit_code"]
            event = change_event(
                department="market_regulation",
                dataset="business_licence",
                op=op,
                before=None if op in (Op.CREATE, Op.SNAPSHOT) else before,
                after=None if op == Op.DELETE else after,
                system="compiled-build",
                ts_ms=1_764_489_600_000 + i,
                event_id=f"00000000-0000-4000-8000-{i:012d}",
            )
            key = dataset.key_of(after if op != Op.DELETE else before).encode()
            value = encoder.encode(with_union_branches(event, name))
            if i % 25 == 24:
                key = b"not-its-key"
            if i % 50 == 49:
                value = value[:-3]
            routing = router.route(dataset.topic, i % 3, i, key, value, now)
            out += [repr(o) for o in routing.outputs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", action="store_true", help="print routing's outputs")
    parser.add_argument("--interpreted", action="store_true", help="from the Python source")
    args = parser.parse_args()
    if args.interpreted:
        sys.meta_path.insert(0, SourceOnly())
    if args.outputs:
        for line in routing_outputs():
            print(line)
        return
    compiled = [m for m in COMPILABLE if is_compiled(m)]
    for module in COMPILABLE:
        print(f"{module}: {'compiled' if module in compiled else 'Python source'}")
    print(f"{len(compiled)} of {len(COMPILABLE)} engine modules compiled")


if __name__ == "__main__":
    main()
