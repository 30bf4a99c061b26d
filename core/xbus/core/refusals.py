"""The JSON answer to an HTTP request the bus refuses, alike for the ingest gateway and the
live stream, so a client reads every refusal the same way:
``{"error": {"code": <reason>, "message": <what was wrong and what to do>, ...}}``."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from xbus.core.errors import HttpRefusal


def refusal_response(refusal: HttpRefusal, **details: Any) -> JSONResponse:
    """``refusal`` with its status and headers; ``details`` join ``code`` and ``message`` in
    the error body (the gateway's ``records``, say)."""
    body = {"error": {"code": refusal.reason, "message": str(refusal), **details}}
    return JSONResponse(body, status_code=refusal.status, headers=refusal.headers)
