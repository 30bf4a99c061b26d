"""``xbus gateway ...``: manage the ingest gateway's API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xbus.cli.output import fail, load_catalog
from xbus.cli.token_commands import add_lifecycle_commands
from xbus.core.errors import XbusError
from xbus.producers.gateway.keys import GATEWAY_KEYS, new_key
from xbus.producers.gateway.settings import GatewaySettings

app = typer.Typer(
    help="Manage the ingest gateway's API keys (the gateway sees each change within seconds).",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Look at the gateway's API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _check_department(department: str) -> None:
    departments = sorted({d.department for d in load_catalog()})
    if department not in departments:
        raise fail(
            f"{department!r} is not a department of the catalog; its departments: "
            + ", ".join(departments)
        )


def _keys_file() -> Path:
    return GatewaySettings().keys_file


@app.command("new-key")
def new_key_command(
    department: Annotated[str, typer.Option(help="The department the key speaks for.")],
    keys_file: Annotated[
        Path | None, typer.Option(help="The keys file (default: XBUS_GATEWAY_KEYS_FILE).")
    ] = None,
) -> None:
    """Make an API key for a department; prints it once, stores only its SHA-256."""
    _check_department(department)
    path = keys_file or _keys_file()
    try:
        key = new_key(path, department)
    except XbusError as exc:
        raise fail(exc) from None
    typer.echo(key)
    typer.echo(f"(its digest was added to {path}; the gateway takes it within seconds)", err=True)


add_lifecycle_commands(app, keys_app, GATEWAY_KEYS, _keys_file, _check_department)
