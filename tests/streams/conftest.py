"""The office secret for the engine's tests: keyed hashes and pseudonyms, and the record keys
of grants that do not send their key field, need it, as the engine does."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _office_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.environ.get("XBUS_PSEUDONYM_KEY") and not os.environ.get("XBUS_PSEUDONYM_KEY_FILE"):
        monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "streams-test-office-secret")
