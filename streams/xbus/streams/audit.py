"""The audit trail's hash chains: how a record is sealed, and how a trail is verified.

A chain per source partition, ``"<source topic>/<source partition>"``: the one engine worker
that owns a source partition is the one writer of its chain, and the chain id is the audit
record's key, so a chain lives whole, in order, in one partition of ``_xbus.audit``.

Each record carries ``chain``, ``seq`` (0 at the chain's start), ``prev`` (the previous
record's ``hash``; ``GENESIS`` at seq 0) and ``hash``: the SHA-256, in lower-case hex, of the
record's canonical encoding without its ``hash`` field (which holds ``prev``, so each hash
covers the chain before it). The canonical encoding is JSON with keys sorted, no whitespace,
non-ASCII characters as themselves, in UTF-8: what Python's ``json.dumps(record,
sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`` gives. Records hold no
floats, so no two JSON writers disagree on it.

Nothing here touches Kafka: ``AuditChains`` seals records from heads it is given (the worker
recovers them from the topic, ``xbus.streams.audit_trail``), ``verify`` judges records it is
handed. See ``docs/audit.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

GENESIS = "0" * 64
"""The ``prev`` of a chain's first record."""


def chain_of(topic: str, partition: int) -> str:
    """The id of the chain that audits source partition ``partition`` of ``topic``."""
    return f"{topic}/{partition}"


def canonical(content: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash is taken over: ``content`` (the record without ``hash``)
    as JSON with sorted keys, no whitespace, UTF-8 (what ``json.dumps(content,
    sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` gives)."""
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def record_hash(content: Mapping[str, Any]) -> str:
    """The ``hash`` a record with ``content`` (everything but ``hash``) must carry."""
    return hashlib.sha256(canonical(content)).hexdigest()


class Head(NamedTuple):
    """The last record of a chain: its seq and hash (seq -1 and ``GENESIS``: no record yet)."""

    seq: int
    hash: str


EMPTY = Head(-1, GENESIS)


class AuditChains:
    """The heads of the chains one worker writes, and the sealing of new records onto them.

    A head this object does not know is asked of ``recover`` (the worker reads it from the
    audit topic; the worker calls ``prepare`` before each batch so that this happens off the
    event loop); without ``recover``, every chain starts at seq 0 (for tests and
    ``explain``)."""

    def __init__(self, recover: Callable[[set[str]], Mapping[str, Head]] | None = None) -> None:
        self._recover = recover
        self._heads: dict[str, Head] = {}

    def prepare(self, chains: Iterable[str]) -> set[str]:
        """Make sure the heads of ``chains`` are known, recovering the missing ones in one go;
        returns those that were recovered."""
        missing = {c for c in chains if c not in self._heads}
        if missing:
            found = self._recover(missing) if self._recover is not None else {}
            for chain in missing:
                self._heads[chain] = found.get(chain, EMPTY)
        return missing

    def seal(self, chain: str, content: dict[str, Any]) -> bytes:
        """The audit record for ``content`` as the next of ``chain``: ``content`` with
        ``chain``, ``seq``, ``prev`` and ``hash`` added, as JSON bytes; the chain's head moves
        on to it."""
        head = self._heads.get(chain)
        if head is None:
            self.prepare((chain,))
            head = self._heads[chain]
        body = {**content, "chain": chain, "seq": head.seq + 1, "prev": head.hash}
        encoded = canonical(body)
        digest = hashlib.sha256(encoded).hexdigest()
        self._heads[chain] = Head(head.seq + 1, digest)
        # The value is the canonical body with ``hash`` appended (one encoding per record);
        # a verifier drops ``hash`` and encodes again, so where it stands does not matter.
        return encoded[:-1] + b',"hash":"' + digest.encode() + b'"}'

    def mark(self) -> dict[str, Head]:
        """The heads as they are, for ``restore`` if what was sealed since is never written."""
        return dict(self._heads)

    def restore(self, mark: dict[str, Head]) -> None:
        """Go back to the heads of ``mark`` (the records sealed since were not written)."""
        self._heads = dict(mark)

    def forget(self, chains: Iterable[str] | None = None) -> None:
        """Drop the heads of ``chains`` (all if ``None``): the next record of each is sealed
        onto its head as recovered again (after a failed write, or a partition that another
        worker may have extended meanwhile)."""
        if chains is None:
            self._heads.clear()
        else:
            for chain in chains:
                self._heads.pop(chain, None)

    def known(self) -> set[str]:
        """The chains whose heads are held."""
        return set(self._heads)


# Verification -----------------------------------------------------------------------------


class AuditEntry(NamedTuple):
    """One record as read from the trail: where it is, its key and its value."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


Tampering = Literal["altered", "removed", "inserted", "reordered"]


@dataclass(frozen=True)
class Break:
    """The first place where the trail is not what its writers wrote: the record's
    coordinates (for a removal, of the record after the gap), what kind of change it is,
    and what exactly is wrong."""

    partition: int
    offset: int
    chain: str
    seq: int | None
    kind: Tampering
    detail: str

    def __str__(self) -> str:
        seq = "?" if self.seq is None else self.seq
        return (
            f"{self.kind}: partition {self.partition} offset {self.offset} "
            f"(chain {self.chain or '?'}, seq {seq}): {self.detail}"
        )


@dataclass
class Verdict:
    """What ``verify`` found: how many records in how many chains, the chains taken from a
    first record past their start (``since`` only), and the first break, if any."""

    records: int = 0
    chains: int = 0
    begun_midway: dict[str, int] = field(default_factory=dict)
    first_break: Break | None = None

    @property
    def intact(self) -> bool:
        return self.first_break is None


class _Link(NamedTuple):
    seq: int
    hash: str
    prev: str
    partition: int
    offset: int


class _Parsed(NamedTuple):
    chain: str
    seq: int
    prev: str
    hash: str
    valid: bool


def _parse(entry: AuditEntry) -> _Parsed | str:
    """The chain fields of ``entry`` and whether its hash holds, or what is wrong with it."""
    try:
        record = json.loads(entry.value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON ({exc})"
    if not isinstance(record, dict):
        return "not a JSON object"
    chain, seq, prev, digest = (record.get(k) for k in ("chain", "seq", "prev", "hash"))
    if not (isinstance(chain, str) and isinstance(prev, str) and isinstance(digest, str)):
        return "chain, prev or hash missing or not text"
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return f"seq {seq!r} is not a non-negative integer"
    content = {k: v for k, v in record.items() if k != "hash"}
    return _Parsed(chain, seq, prev, digest, record_hash(content) == digest)


def _chain_seq(entry: AuditEntry) -> tuple[str, int] | None:
    parsed = _parse(entry)
    return None if isinstance(parsed, str) else (parsed.chain, parsed.seq)


def verify(entries: Iterable[AuditEntry], *, midway: bool = False) -> Verdict:
    """Check every chain in ``entries`` (each partition's records in offset order; partitions
    may interleave) and stop at the first break. A chain must start at seq 0 with ``prev``
    ``GENESIS``, unless ``midway`` (the trail is read from some point on): then it is taken
    from its first record seen, and named in ``begun_midway``. The rest of the trail is read
    after a gap to tell a removed record from one moved later (reordered)."""
    verdict = Verdict()
    heads: dict[str, _Link] = {}
    rivals: dict[str, _Link] = {}  # a second record with a chain's last seq and prev
    homes: dict[str, int] = {}
    it: Iterator[AuditEntry] = iter(entries)

    def stop(entry: AuditEntry, chain: str, seq: int | None, kind: Tampering, what: str) -> Verdict:
        verdict.first_break = Break(entry.partition, entry.offset, chain, seq, kind, what)
        verdict.chains = len(heads)
        return verdict

    for entry in it:
        parsed = _parse(entry)
        if isinstance(parsed, str):
            return stop(entry, _text(entry.key), None, "altered", f"not an audit record: {parsed}")
        chain, seq = parsed.chain, parsed.seq
        if not parsed.valid:
            return stop(
                entry, chain, seq, "altered", "its content does not match its hash (edited)"
            )
        if entry.key != chain.encode():
            return stop(
                entry,
                chain,
                seq,
                "altered",
                f"its key {_text(entry.key)!r} is not its chain (moved from another chain?)",
            )
        home = homes.setdefault(chain, entry.partition)
        if home != entry.partition:
            return stop(
                entry,
                chain,
                seq,
                "inserted",
                f"the chain lives in partition {home}; this record cannot belong to it",
            )
        link = _Link(seq, parsed.hash, parsed.prev, entry.partition, entry.offset)
        head = heads.get(chain)
        rival = rivals.pop(chain, None)
        if rival is not None and head is not None:
            # Two records claimed the same place; the one this record links to is the chain.
            if parsed.prev == rival.hash:
                head, rival = rival, head
            if parsed.prev == head.hash:
                return stop(
                    _entry_at(rival),
                    chain,
                    rival.seq,
                    "inserted",
                    f"a second record with seq {rival.seq} and the same prev; the chain goes "
                    f"on from the one at offset {head.offset}",
                )
        if head is None:
            if seq == 0 and parsed.prev != GENESIS:
                return stop(entry, chain, seq, "inserted", "seq 0 does not start from genesis")
            if seq != 0 and not midway:
                return stop(
                    entry,
                    chain,
                    seq,
                    "removed",
                    f"the chain begins at seq {seq}: its records 0 to {seq - 1} are missing",
                )
            if seq != 0:
                verdict.begun_midway[chain] = seq
        elif seq == head.seq + 1 and parsed.prev == head.hash:
            pass
        elif seq == head.seq + 1:
            return stop(
                _entry_at(head),
                chain,
                head.seq,
                "altered",
                f"the next record (offset {entry.offset}) links to another record than this "
                "one: it was edited and hashed again, or put in place of the one written",
            )
        elif seq == head.seq and parsed.prev == head.prev and parsed.hash != head.hash:
            rivals[chain] = link
            verdict.records += 1
            continue
        elif seq > head.seq + 1:
            missing = head.seq + 1
            later = _find(it, chain, missing)
            if later is not None:
                return stop(
                    entry,
                    chain,
                    seq,
                    "reordered",
                    f"seq {seq} comes before seq {missing}, which is at offset {later}",
                )
            gone = f"seq {missing}" if seq == missing + 1 else f"seqs {missing} to {seq - 1}"
            return stop(
                entry,
                chain,
                seq,
                "removed",
                f"{gone} missing: between offsets {head.offset} and {entry.offset}",
            )
        else:
            return stop(
                entry,
                chain,
                seq,
                "inserted",
                f"seq {seq} after seq {head.seq} (offset {head.offset}): a copy or a forgery",
            )
        heads[chain] = link
        verdict.records += 1
    verdict.chains = len(heads)
    for chain, rival in rivals.items():
        head = heads[chain]
        return stop(
            _entry_at(rival),
            chain,
            rival.seq,
            "inserted",
            f"two records with seq {rival.seq} and the same prev (offsets {head.offset} and "
            f"{rival.offset}) end the chain: one of them was inserted",
        )
    return verdict


def _entry_at(link: _Link) -> AuditEntry:
    return AuditEntry(link.partition, link.offset, None, None)


def _find(entries: Iterator[AuditEntry], chain: str, seq: int) -> int | None:
    """The offset of ``chain``'s record ``seq`` further on in ``entries``, if any."""
    for entry in entries:
        if _chain_seq(entry) == (chain, seq):
            return entry.offset
    return None


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
