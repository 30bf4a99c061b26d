"""The file sink's rotation, on real files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import xbus.consumers.sinks.file as file_sink
from xbus.consumers.delivery import Delivery
from xbus.consumers.sinks.file import FileSink


def _delivery(n: int) -> Delivery:
    event = {
        "event_id": f"e{n}",
        "op": "CREATE",
        "ts_ms": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "before": None,
        "after": {"n": n},
    }
    return Delivery("sub", "ds", "deliver.sub.ds", 0, n, b"k", b"", 1, {}, event)


def _lines(folder: Path) -> list[str]:
    return [
        json.loads(line)["event_id"]
        for path in sorted(folder.glob("ds*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_a_file_older_than_the_rotation_age_is_closed_and_a_new_one_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(file_sink.time, "time", lambda: clock[0])
    sink = FileSink(tmp_path, rotate_bytes=None, rotate_seconds=60)
    sink.deliver([_delivery(1), _delivery(2)])
    clock[0] += 30
    sink.deliver([_delivery(3)])
    assert len(list((tmp_path / "sub").glob("ds*.jsonl"))) == 1
    clock[0] += 31
    sink.deliver([_delivery(4)])
    sink.close()
    files = sorted((tmp_path / "sub").glob("ds*.jsonl"))
    assert len(files) == 2
    assert (tmp_path / "sub" / "ds.jsonl").read_text().count("\n") == 1
    assert _lines(tmp_path / "sub") == ["e1", "e2", "e3", "e4"]


def test_the_age_of_the_current_file_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(file_sink.time, "time", lambda: clock[0])
    first = FileSink(tmp_path, rotate_bytes=None, rotate_seconds=60)
    first.deliver([_delivery(1)])
    first.close()
    clock[0] += 61
    second = FileSink(tmp_path, rotate_bytes=None, rotate_seconds=60)
    second.deliver([_delivery(2)])
    second.close()
    assert len(list((tmp_path / "sub").glob("ds*.jsonl"))) == 2
    assert _lines(tmp_path / "sub") == ["e1", "e2"]
