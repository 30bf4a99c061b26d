"""Where the console sends a browser after a login: its own pages only."""

from __future__ import annotations

import pytest

from xbus.console.web import safe_next


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "/\\evil.example", "https://evil.example/", "/\t/evil.example", "", None],
)
def test_a_login_never_sends_the_browser_elsewhere(target: str | None) -> None:
    assert safe_next(target) == "/"


def test_a_login_returns_to_the_page_asked_for() -> None:
    assert safe_next("/requests/7?done=filed") == "/requests/7?done=filed"
