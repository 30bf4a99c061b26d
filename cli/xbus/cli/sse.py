"""``xbus sse ...``: manage the live stream's subscriber tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xbus.cli.output import fail
from xbus.cli.token_commands import add_lifecycle_commands
from xbus.consumers.sse.service import StreamSettings
from xbus.consumers.sse.tokens import STREAM_TOKENS, new_token
from xbus.core.errors import XbusError
from xbus.core.topics import delivery_topics_pattern

app = typer.Typer(
    help="Manage the live stream's subscriber tokens (the service sees each change within "
    "seconds).",
    no_args_is_help=True,
)
tokens_app = typer.Typer(help="Look at the live stream's tokens.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


def _check_subscriber(subscriber: str) -> None:
    try:
        delivery_topics_pattern(subscriber)
    except XbusError as exc:
        raise fail(exc) from None


def _tokens_file() -> Path:
    return StreamSettings().tokens_file


@app.command("new-token")
def new_token_command(
    subscriber: Annotated[str, typer.Option(help="The subscriber whose stream the token opens.")],
    tokens_file: Annotated[
        Path | None, typer.Option(help="The tokens file (default: XBUS_SSE_TOKENS_FILE).")
    ] = None,
) -> None:
    """Make a stream token for a subscriber; prints it once, stores only its SHA-256."""
    path = tokens_file or _tokens_file()
    try:
        token = new_token(path, subscriber)
    except XbusError as exc:
        raise fail(exc) from None
    typer.echo(token)
    typer.echo(f"(its digest was added to {path}; the stream takes it within seconds)", err=True)


add_lifecycle_commands(app, tokens_app, STREAM_TOKENS, _tokens_file, _check_subscriber)
