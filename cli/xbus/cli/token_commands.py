"""The lifecycle commands of a tokens file, alike for the gateway's keys and the live
stream's tokens: list them, rotate a principal's, revoke one by its id."""

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from xbus.cli.output import console, fail
from xbus.core.errors import XbusError
from xbus.core.token_files import TokenEntry, TokenKind, now_utc, read_entries, revoke, rotate

DEFAULT_GRACE = "24h"
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_grace(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``7d`` or plain seconds as a duration; ``typer.BadParameter``
    otherwise."""
    found = _DURATION.match(text.strip())
    if not found:
        raise typer.BadParameter(f"{text!r} is no duration: write e.g. 90s, 15m, 24h or 7d")
    return timedelta(seconds=int(found[1]) * _UNITS[found[2]])


def _state(entry: TokenEntry) -> str:
    if entry.expires is None:
        return "active"
    if not entry.valid_at(now_utc()):
        return "expired"
    return f"until {entry.expires:%Y-%m-%dT%H:%M:%SZ}"


def add_lifecycle_commands(
    app: typer.Typer,
    list_app: typer.Typer,
    kind: TokenKind,
    default_file: Callable[[], Path],
    check_principal: Callable[[str], None],
) -> None:
    """Add ``list`` to ``list_app`` and ``revoke``, ``rotate`` to ``app``, for files of
    ``kind`` (``--file`` or ``default_file()``); ``check_principal`` refuses a name (by
    raising ``typer.Exit``) before anything is written."""
    noun, principal = kind.noun, kind.principal
    File = Annotated[
        Path | None, typer.Option(f"--{noun}s-file", help=f"The {noun}s file (default: settings).")
    ]

    @list_app.command(
        "list", help=f"List the {noun}s: id, {principal}, created, until when (no secret)."
    )
    def list_command(file: File = None) -> None:
        path = file or default_file()
        try:
            entries = read_entries(path, kind)
        except XbusError as exc:
            raise fail(exc) from None
        if not entries:
            console.print(f"no {noun}s in {escape(str(path))}")
            return
        console.print(f"{'id':<14}{principal:<24}{'created':<22}state")
        for e in sorted(entries, key=lambda e: (e.principal, e.created or now_utc())):
            created = f"{e.created:%Y-%m-%dT%H:%M:%SZ}" if e.created else "unknown"
            console.print(f"{e.id:<14}{e.principal:<24}{created:<22}{_state(e)}")

    @app.command(
        "revoke", help=f"Revoke a {noun} by its id: refused on its next use, within seconds."
    )
    def revoke_command(
        token_id: Annotated[str, typer.Argument(metavar="ID", help=f"The {noun}'s id (list).")],
        file: File = None,
    ) -> None:
        path = file or default_file()
        try:
            gone = revoke(path, kind, token_id)
        except XbusError as exc:
            raise fail(exc) from None
        console.print(f"revoked {noun} {gone.id} of {gone.principal}")

    @app.command(
        "rotate",
        help=f"Make a new {noun} for a {principal}, printed once; its current ones stay valid "
        f"for --grace ({DEFAULT_GRACE} by default), or are revoked at once with --now.",
    )
    def rotate_command(
        name: Annotated[str, typer.Option(f"--{principal}", help=f"The {principal}.")],
        grace: Annotated[
            str,
            typer.Option(
                help=f"How long the {principal}'s current {noun}s stay valid (90s, 15m, 24h, 7d)."
            ),
        ] = DEFAULT_GRACE,
        now: Annotated[
            bool, typer.Option("--now", help=f"Revoke the current {noun}s at once instead.")
        ] = False,
        file: File = None,
    ) -> None:
        check_principal(name)
        path = file or default_file()
        period = timedelta(0) if now else parse_grace(grace)
        try:
            issued, old = rotate(path, kind, name, period)
        except XbusError as exc:
            raise fail(exc) from None
        typer.echo(issued.token)
        typer.echo(f"(new {noun} {issued.entry.id}; only its digest is kept in {path})", err=True)
        for entry in old:
            if now:
                typer.echo(f"revoked {noun} {entry.id}", err=True)
            else:
                typer.echo(f"{noun} {entry.id} stays valid {_state(entry)}", err=True)
