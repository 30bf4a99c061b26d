"""The ``xbus`` command."""

from __future__ import annotations

import typer

from cli import gateway, grants, publish, run, schemas, sse, stack, tail

app = typer.Typer(
    help="xbus: the city's data exchange bus.", no_args_is_help=True, add_completion=False
)
app.add_typer(run.app, name="run")
app.add_typer(stack.app, name="stack")
app.add_typer(schemas.app, name="schemas")
app.add_typer(gateway.app, name="gateway")
app.add_typer(sse.app, name="sse")
app.add_typer(grants.app, name="grants")
app.add_typer(grants.reference, name="reference")
app.command("publish")(publish.publish)
app.command("tail")(tail.tail)

if __name__ == "__main__":
    app()
