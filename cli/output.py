"""What the ``xbus`` command prints: one console for results, one for problems. Lines are
never wrapped (they are grepped and piped) and text from outside is never read as markup."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def problem(label: str, text: object) -> None:
    """Print ``label: text`` on stderr, the label in red."""
    errors.print(f"[red]{escape(label)}:[/red] {escape(str(text))}")


def fail(text: object) -> typer.Exit:
    """Print ``error: text`` and return the exit to raise (code 1)."""
    problem("error", text)
    return typer.Exit(1)
