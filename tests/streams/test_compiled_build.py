"""The engine's compiled build (mypyc, see setup.py) against the Python source it is compiled
from: routing writes the same bytes either way, and what runs compiled was built from the
source as it is now (an older build would run instead of an edited module).

The rest of the suite runs against whichever build is installed; with the modules compiled
(``make install``), these tests compare it with the source, which each test here loads in a
process of its own (``tests.support.compiled``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.checkout import ROOT
from tests.support.compiled import COMPILABLE, compiled_sources, is_compiled

COMPILED = [m for m in COMPILABLE if is_compiled(m)]
needs_compiled = pytest.mark.skipif(
    not COMPILED, reason="the engine's modules run from source here (XBUS_COMPILE=0, no compiler)"
)


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.compiled", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_compiled
def test_compiled_routing_writes_what_the_source_writes() -> None:
    assert _run("--interpreted").endswith(f"0 of {len(COMPILABLE)} engine modules compiled\n")
    compiled = _run("--outputs").splitlines()
    interpreted = _run("--outputs", "--interpreted").splitlines()
    topics = {line.split("'", 2)[1] for line in compiled}
    assert {"_xbus.audit", "_xbus.dead-letters", "deliver.bench_0.business_licence"} <= topics
    differ = [i for i, (c, s) in enumerate(zip(compiled, interpreted, strict=False)) if c != s]
    assert not differ, (
        f"output {differ[0]} differs:\ncompiled:    {compiled[differ[0]]}\n"
        f"from source: {interpreted[differ[0]]}"
    )
    assert len(compiled) == len(interpreted)


@needs_compiled
def test_what_runs_compiled_is_built_from_the_current_source() -> None:
    assert COMPILED == COMPILABLE, f"compiled only in part: {COMPILED}"
    built = list((ROOT / "streams" / "xbus" / "streams").glob("*.so"))
    oldest = min(p.stat().st_mtime for p in built)
    changed = [str(p.relative_to(ROOT)) for p in compiled_sources() if p.stat().st_mtime > oldest]
    assert not changed, (
        f"{', '.join(changed)} changed after the engine was compiled, and the old build runs "
        "instead: `make install` compiles it again (XBUS_COMPILE=0 make install: from source)"
    )
