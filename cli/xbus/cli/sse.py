"""``xbus sse ...``: manage the live stream's subscriber tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xbus.cli.output import fail
from xbus.consumers.sse.service import StreamSettings
from xbus.consumers.sse.tokens import new_token
from xbus.core.errors import XbusError

app = typer.Typer(help="Manage the live stream's subscriber tokens.", no_args_is_help=True)


@app.command("new-token")
def new_token_command(
    subscriber: Annotated[str, typer.Option(help="The subscriber whose stream the token opens.")],
    tokens_file: Annotated[
        Path | None, typer.Option(help="The tokens file (default: XBUS_SSE_TOKENS_FILE).")
    ] = None,
) -> None:
    """Make a stream token for a subscriber; prints it once, stores only its SHA-256."""
    path = tokens_file or StreamSettings().tokens_file
    try:
        token = new_token(path, subscriber)
    except XbusError as exc:
        raise fail(exc) from None
    typer.echo(token)
    typer.echo(f"(its digest was added to {path}; the stream reads the file at start)", err=True)
