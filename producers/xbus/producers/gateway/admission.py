"""What a request must pass before its events are read: a key that speaks for the department
that owns the dataset, a body within bounds, and JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from xbus.core.catalog import Catalog, Dataset
from xbus.core.errors import CatalogError
from xbus.producers.gateway.errors import GatewayError, rejected
from xbus.producers.gateway.keys import GatewayKeys
from xbus.producers.jsonevents import loads


class Admission:
    """Authenticates and authorises a request, bounds its size and parses its body."""

    def __init__(self, keys: GatewayKeys, catalog: Catalog, max_body_bytes: int) -> None:
        self._keys = keys
        self._catalog = catalog
        self._max_body_bytes = max_body_bytes

    async def admit(self, request: Request, department: str, dataset: str) -> Any:
        """The JSON body of a request to publish to ``department.dataset``; ``GatewayError``
        (401, 403, 404, 413 or 400) for a request that may not or cannot be read."""
        caller = self._caller(request, department, dataset)
        self._check_owner(caller, department, dataset)
        body = await self._body(request, department, dataset)
        try:
            return loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise rejected(
                department,
                dataset,
                GatewayError(400, "invalid_json", f"the body is not valid JSON: {exc}"),
            ) from None

    def _caller(self, request: Request, department: str, dataset: str) -> str:
        """The department the request's key speaks for."""
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        caller = self._keys.department_of(key) if key else None
        if caller is None:
            raise rejected(
                department,
                dataset,
                GatewayError(
                    401,
                    "unauthorized",
                    "a valid API key is required: Authorization: Bearer <key>",
                    headers={"WWW-Authenticate": "Bearer"},
                ),
            )
        return caller

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
                raise rejected(
                    department,
                    dataset,
                    GatewayError(404, "unknown_dataset", f"no dataset {department}.{dataset}"),
                ) from None
            owned = self._catalog.get(caller, dataset)
        if caller != owned.department or caller != department:
            raise rejected(
                department,
                dataset,
                GatewayError(
                    403,
                    "forbidden",
                    f"this key speaks for {caller}, which does not own {department}.{dataset}",
                ),
            )

    async def _body(self, request: Request, department: str, dataset: str) -> bytes:
        """The body, read no further than the limit (a declared length over it is refused
        before reading)."""
        limit = self._max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise rejected(
                department,
                dataset,
                GatewayError(413, "too_large", f"the body has {declared} bytes; at most {limit}"),
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise rejected(
                    department,
                    dataset,
                    GatewayError(413, "too_large", f"the body exceeds {limit} bytes"),
                )
        return bytes(body)
