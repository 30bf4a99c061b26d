"""The vendored scripts are the pinned files from npm, byte for byte."""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files


def test_every_vendored_script_matches_its_pinned_digest() -> None:
    static = files("xbus.console").joinpath("static")
    table = static.joinpath("VENDORED.md").read_text(encoding="utf-8")
    pinned = dict(re.findall(r"\| `([^`]+\.js)` \|.*\| `([0-9a-f]{64})` \|", table))
    assert set(pinned) == {"htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.min.js"}
    for name, digest in pinned.items():
        assert hashlib.sha256(static.joinpath(name).read_bytes()).hexdigest() == digest, name


def test_the_pages_load_the_pinned_htmx() -> None:
    base = files("xbus.console").joinpath("templates", "base.html").read_text(encoding="utf-8")
    assert "/static/htmx-2.0.11.min.js" in base
