"""The ``xbus`` command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from xbus.cli import (
    audit,
    cdc,
    console_accounts,
    gateway,
    grants,
    provision,
    publish,
    run,
    schemas,
    sse,
    stack,
    status,
    tail,
)
from xbus.cli.output import Command
from xbus.core.settings import HOME_ENV

app = Command(
    help="xbus: the city's data exchange bus.", no_args_is_help=True, add_completion=False
)


@app.callback()
def main(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="The stack's working folder (keys, tokens, jar cache, data); default "
            "$XBUS_HOME, else .xbus in the current directory.",
        ),
    ] = None,
) -> None:
    """xbus: the city's data exchange bus."""
    if home is not None:
        # Through the environment, so that the processes this one starts agree.
        os.environ[HOME_ENV] = str(home.expanduser().absolute())


app.add_typer(run.app, name="run")
app.add_typer(stack.app, name="stack")
app.add_typer(schemas.app, name="schemas")
app.add_typer(gateway.app, name="gateway")
app.add_typer(sse.app, name="sse")
app.add_typer(grants.app, name="grants")
app.add_typer(grants.reference, name="reference")
app.add_typer(audit.app, name="audit")
app.add_typer(console_accounts.app, name="console")
app.add_typer(cdc.app, name="cdc")
app.command("publish")(publish.publish)
app.command("tail")(tail.tail)
app.command("provision")(provision.provision)
app.command("status")(status.status)

if __name__ == "__main__":
    app()
