"""What a request must pass before its events are read: a key in force that speaks for the
department that owns the dataset, room in the key's rate, a body within bounds, and JSON
no deeper than ``MAX_DEPTH``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from xbus.core.catalog import Catalog, Dataset
from xbus.core.errors import CatalogError
from xbus.core.metrics import EVENTS_REJECTED, GATEWAY_RATE_LIMITED
from xbus.core.token_files import Holder, TokenFile
from xbus.producers.gateway.errors import GatewayError, rejected
from xbus.producers.gateway.throttle import KeyRates
from xbus.producers.jsonevents import loads

# Arrays and objects inside one another, at most: an event is an envelope with two records,
# a batch one level more, so this leaves nested records ample room. Python's JSON parser
# recurses once a level, so a body nested far deeper would end in a RecursionError.
MAX_DEPTH = 64

# A JSON string, escapes included: its brackets are text, not nesting.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")


def nesting_depth(body: bytes, limit: int = MAX_DEPTH) -> int:
    """How deep arrays and objects nest in the JSON text ``body``, counted only up to
    ``limit + 1`` (enough to refuse it); read without parsing, so without recursion."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in _OPENING else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


UNAUTHORIZED = GatewayError(
    401,
    "unauthorized",
    "a valid API key is required: Authorization: Bearer <key>",
    headers={"WWW-Authenticate": 'Bearer realm="xbus-gateway"'},
)


@dataclass(frozen=True)
class Admitted:
    """A request let in: who sent it, and its JSON body."""

    holder: Holder
    body: Any


class Admission:
    """Authenticates and authorises a request, holds each key to its rate, bounds the body's
    size and parses it."""

    def __init__(
        self, keys: TokenFile, catalog: Catalog, max_body_bytes: int, rates: KeyRates
    ) -> None:
        self._keys = keys
        self._catalog = catalog
        self._max_body_bytes = max_body_bytes
        self._rates = rates

    async def admit(self, request: Request, department: str, dataset: str) -> Admitted:
        """The sender and JSON body of a request to publish to ``department.dataset``, one
        event taken from its key's rate; ``GatewayError`` (401, 403, 404, 429, 413 or 400) for
        a request that may not or cannot be read."""
        holder = self.authenticate(request, department, dataset)
        self._check_owner(holder.principal, department, dataset)
        self.charge(holder, department, dataset, 1)
        body = await self._body(request, department, dataset)
        too_deep = GatewayError(
            400,
            "too_deep",
            f"the body nests arrays and objects more than {MAX_DEPTH} levels deep; "
            "an event's records need far fewer",
        )
        if nesting_depth(body) > MAX_DEPTH:
            raise rejected(department, dataset, too_deep)
        try:
            return Admitted(holder, loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise rejected(
                department,
                dataset,
                GatewayError(400, "invalid_json", f"the body is not valid JSON: {exc}"),
            ) from None
        except RecursionError:  # nesting the count above missed: never a 500
            raise rejected(department, dataset, too_deep) from None

    def _known(self, department: str, dataset: str) -> tuple[str, str]:
        """Metric labels for a request to ``department.dataset``: the names if the catalog
        has the dataset, else ``unknown``, so that callers without a key cannot make up
        label values (and series) of their own."""
        try:
            self._catalog.get(department, dataset)
        except CatalogError:
            return "unknown", "unknown"
        return department, dataset

    def authenticate(self, request: Request, department: str = "", dataset: str = "") -> Holder:
        """Who the request's key speaks for; 401 alike for a missing, unknown, revoked or
        expired key, so the answer never says whether a key or department exists."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        holder = self._keys.holder_of(key.strip()) if scheme.lower() == "bearer" else None
        if holder is None:
            raise rejected(*self._known(department, dataset), UNAUTHORIZED)
        return holder

    def charge(
        self, holder: Holder, department: str, dataset: str, events: int, taken: int = 0
    ) -> None:
        """Take ``events`` from the key's rate, less the ``taken`` already taken for this
        request: 429 with ``Retry-After`` when it has not that many left, 413 for more than
        it may ever send at once (its burst)."""
        if events > self._rates.burst:
            raise rejected(
                department,
                dataset,
                GatewayError(
                    413,
                    "too_large",
                    f"{events} events in one request; a key may send at most "
                    f"{self._rates.burst} at once (XBUS_GATEWAY_BURST)",
                ),
                events,
            )
        wait = self._rates.take(holder.token_id, events - taken)
        if wait:
            GATEWAY_RATE_LIMITED.labels(holder.principal).inc()
            raise rejected(
                department,
                dataset,
                GatewayError(
                    429,
                    "rate_limited",
                    f"this key may send {self._rates.rate:g} events a second, at most "
                    f"{self._rates.burst} at once; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                ),
                events,
            )

    def _check_owner(self, caller: str, department: str, dataset: str) -> None:
        """Refuse unless ``caller`` is ``department`` and owns ``dataset``: 403 for another
        department's dataset, or the caller's own under another department's name; 404 when
        neither that department nor the caller has a dataset of that name."""
        owned: Dataset
        try:
            owned = self._catalog.get(department, dataset)
        except CatalogError:
            owners = [d.department for d in self._catalog if d.name == dataset]
            if caller not in owners:
                EVENTS_REJECTED.labels("unknown", "unknown", "unknown_dataset").inc()
                raise GatewayError(
                    404, "unknown_dataset", f"no dataset {department}.{dataset}"
                ) from None
            owned = self._catalog.get(caller, dataset)
        if caller != owned.department or caller != department:
            raise rejected(
                *self._known(department, dataset),
                GatewayError(
                    403,
                    "forbidden",
                    f"this key speaks for {caller}, which does not own {department}.{dataset}",
                ),
            )

    async def _body(self, request: Request, department: str, dataset: str) -> bytes:
        """The body, read no further than the limit: a declared length over it is refused
        before reading anything, a chunked body as soon as it goes past it."""
        limit = self._max_body_bytes
        too_large = GatewayError(
            413,
            "too_large",
            f"the body is over the limit of {limit} bytes per request "
            "(XBUS_GATEWAY_MAX_BODY_BYTES); send fewer events per request",
        )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise rejected(department, dataset, too_large)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise rejected(department, dataset, too_large)
        return bytes(body)
