"""What the ``xbus`` command prints (one console for results, one for problems; lines are
never wrapped, since they are grepped and piped, and text from outside is never read as
markup), and how a command that needs the catalog gets it or stops."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.settings import bus_settings

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def problem(label: str, text: object) -> None:
    """Print ``label: text`` on stderr, the label in red."""
    errors.print(f"[red]{escape(label)}:[/red] {escape(str(text))}")


def load_catalog() -> Catalog:
    """The catalog of ``XBUS_SCHEMAS_DIR``; exits with what is wrong if it does not load."""
    try:
        return Catalog.load(bus_settings().schemas_dir)
    except XbusError as exc:
        raise fail(exc) from None


def fail(text: object) -> typer.Exit:
    """Print ``error: text`` and return the exit to raise (code 1)."""
    problem("error", text)
    return typer.Exit(1)
