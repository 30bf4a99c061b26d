"""The file sink: appends what a subscriber receives as JSON lines, one file per subscriber
and dataset, rotated by size or age.

A batch is written, flushed and fsynced before the runtime commits its offsets, so a crash
can repeat an event in the files (at least once; ``event_id`` tells repeats apart) but never
lose one. The file being written is ``<dir>/<subscriber>/<dataset>.jsonl``; a rotated file
becomes ``<dataset>.<UTC time>.jsonl`` beside it, complete and never touched again.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xbus.consumers.delivery import Delivery
from xbus.consumers.exceptions import DeliveryRefused, TargetUnavailable
from xbus.consumers.sinks.base import Position, Sink
from xbus.core.values import to_json


@dataclass
class _OpenFile:
    path: Path
    handle: IO[str]
    opened: float
    size: int


class FileSink(Sink):
    """Writes each delivery as one JSON line: the decoded subscriber view, as the engine
    wrote it (event_id, op, ts_ms, before, after, ...)."""

    connector = "file"

    def __init__(
        self,
        directory: Path,
        *,
        rotate_bytes: int | None = 64 * 1024 * 1024,
        rotate_seconds: float | None = None,
    ) -> None:
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._files: dict[tuple[str, str], _OpenFile] = {}

    @classmethod
    def rotating(cls, directory: Path, rotate_mb: float, rotate_minutes: float) -> FileSink:
        """A sink whose files rotate past ``rotate_mb`` megabytes or ``rotate_minutes``
        minutes (0: never by that measure)."""
        return cls(
            directory,
            rotate_bytes=int(rotate_mb * 1024 * 1024) or None,
            rotate_seconds=rotate_minutes * 60 or None,
        )

    def deliver(self, batch: list[Delivery]) -> list[tuple[Delivery, DeliveryRefused]]:
        """Append the batch and make it durable (fsync) before returning."""
        touched: set[tuple[str, str]] = set()
        try:
            for d in batch:
                f = self._file(d.subscriber, d.dataset)
                line = to_json(d.event) + "\n"
                f.handle.write(line)
                f.size += len(line.encode("utf-8"))
                touched.add((d.subscriber, d.dataset))
            for name in touched:
                f = self._files[name]
                f.handle.flush()
                os.fsync(f.handle.fileno())
        except OSError as exc:
            # A full or read-only disk may be fixed by a person; hold the batch meanwhile.
            # What was written before the failure may be written again (at least once).
            raise TargetUnavailable("file", f"writing under {self.directory}: {exc}") from exc
        return []

    def positions(self, partitions: list[Position]) -> dict[Position, int]:
        """Kafka's committed offsets decide where to start."""
        return {}

    def _file(self, subscriber: str, dataset: str) -> _OpenFile:
        key = (subscriber, dataset)
        f = self._files.get(key)
        if f is not None and self._due(f):
            self._rotate(key, f)
            f = None
        if f is None:
            f = self._open(key)
            if f.size and self._due(f):  # grew old while the connector was stopped
                self._rotate(key, f)
                f = self._open(key)
        return f

    def _open(self, key: tuple[str, str]) -> _OpenFile:
        subscriber, dataset = key
        folder = self.directory / subscriber
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{dataset}.jsonl"
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        f = _OpenFile(path, handle, _created(path), path.stat().st_size)
        self._files[key] = f
        return f

    def _due(self, f: _OpenFile) -> bool:
        if self.rotate_bytes is not None and f.size >= self.rotate_bytes:
            return True
        return self.rotate_seconds is not None and time.time() - f.opened >= self.rotate_seconds

    def _rotate(self, key: tuple[str, str], f: _OpenFile) -> None:
        f.handle.close()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        f.path.rename(f.path.with_name(f"{f.path.stem}.{stamp}.jsonl"))
        del self._files[key]

    def close(self) -> None:
        """Close the open files (they are complete: every batch was fsynced)."""
        for f in self._files.values():
            f.handle.close()
        self._files.clear()


def _created(path: Path) -> float:
    """When the current file was started: its first write, kept across restarts as the
    file's mtime at open would not be."""
    marker = path.with_name(f".{path.name}.started")
    if path.stat().st_size == 0 or not marker.exists():
        marker.write_text(str(time.time()))
    try:
        return float(marker.read_text())
    except ValueError:
        return time.time()
