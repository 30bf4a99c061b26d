"""``xbus gateway ...``: manage the ingest gateway's API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xbus.cli.output import fail, load_catalog
from xbus.core.errors import XbusError
from xbus.producers.gateway.keys import new_key
from xbus.producers.gateway.settings import GatewaySettings

app = typer.Typer(help="Manage the ingest gateway's API keys.", no_args_is_help=True)


@app.command("new-key")
def new_key_command(
    department: Annotated[str, typer.Option(help="The department the key speaks for.")],
    keys_file: Annotated[
        Path | None, typer.Option(help="The keys file (default: XBUS_GATEWAY_KEYS_FILE).")
    ] = None,
) -> None:
    """Make an API key for a department; prints it once, stores only its SHA-256."""
    departments = sorted({d.department for d in load_catalog()})
    if department not in departments:
        raise fail(
            f"{department!r} is not a department of the catalog; its departments: "
            + ", ".join(departments)
        )
    path = keys_file or GatewaySettings().keys_file
    try:
        key = new_key(path, department)
    except XbusError as exc:
        raise fail(exc) from None
    typer.echo(key)
    typer.echo(f"(its digest was added to {path}; the gateway reads the file at start)", err=True)
