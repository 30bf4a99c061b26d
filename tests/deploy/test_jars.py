"""The jar cache never looks complete after a failed or interrupted fetch (Maven replaced by a
stand-in script: this is the cache's own logic)."""

import os
import stat
from pathlib import Path

import pytest

from xbus.deploy.errors import LauncherError
from xbus.deploy.jars import COMPLETE, require_tools, resolve_artifacts


def _fake_mvn(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "mvn"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture()
def pom(tmp_path: Path) -> Path:
    path = tmp_path / "pom.xml"
    path.write_text("<project/>")
    return path


def test_a_failed_fetch_leaves_nothing_that_looks_cached(
    tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_mvn(tmp_path / "bin", 'echo "Could not transfer artifact" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    with pytest.raises(LauncherError, match="(?s)nothing was cached.*Could not transfer"):
        resolve_artifacts(pom, cache, "kafka")
    assert list(cache.iterdir()) == []


def test_a_half_downloaded_cache_is_fetched_again_and_a_complete_one_reused(
    tmp_path: Path, pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    # Writes one jar into -DoutputDirectory=... and counts its runs.
    _fake_mvn(
        tmp_path / "bin",
        f'echo run >> {calls}\nfor a in "$@"; do case "$a" in '
        '-DoutputDirectory=*) d="${a#-DoutputDirectory=}"; mkdir -p "$d"; '
        'touch "$d/kafka.jar";; esac; done\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    first = resolve_artifacts(pom, cache, "kafka")
    (first / COMPLETE).unlink()  # as if the process died before the fetch finished
    (first / "kafka.jar").unlink()

    again = resolve_artifacts(pom, cache, "kafka")
    reused = resolve_artifacts(pom, cache, "kafka")

    assert again == reused == first
    assert (again / "kafka.jar").exists()
    assert calls.read_text().count("run") == 2


def test_missing_java_and_maven_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LauncherError, match="java and mvn not found.*openjdk-17.*maven"):
        require_tools()
