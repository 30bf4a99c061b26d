"""``xbus console accounts``: the people who may log in to the office console."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from xbus.cli.output import console, fail
from xbus.core.errors import XbusError

if TYPE_CHECKING:
    from xbus.console.store import ConsoleStore

app = typer.Typer(help="The office console's accounts.", no_args_is_help=True)
accounts = typer.Typer(help="Add, list and remove console accounts.", no_args_is_help=True)
app.add_typer(accounts, name="accounts")

PASSWORD_ENV = "XBUS_CONSOLE_PASSWORD"


def _store() -> ConsoleStore:
    from xbus.console.settings import ConsoleSettings
    from xbus.console.store import ConsoleStore

    store = ConsoleStore(ConsoleSettings().database(), max_size=1)
    store.open()
    return store


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        return password_file.read_text(encoding="utf-8").strip()
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        fail("the two passwords differ; nothing was changed")
    return first


@accounts.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[str, typer.Option(help="office, department, subscriber or operator.")],
    party: Annotated[
        str | None,
        typer.Option(help="The department or subscriber the account speaks for (bus.yaml)."),
    ] = None,
    language: Annotated[str, typer.Option(help="zh-CN or en.")] = "zh-CN",
    password_file: Annotated[
        Path | None,
        typer.Option(help=f"Read the password from this file (else ${PASSWORD_ENV}, else asked)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Replace an account of this name (and end its sessions).")
    ] = False,
) -> None:
    """Add an account; its password is kept only as an Argon2id hash."""
    from xbus.console.accounts import Account, Role

    try:
        chosen = Role(role)
    except ValueError:
        fail(f"--role {role!r}: one of {', '.join(r.value for r in Role)}")
    try:
        store = _store()
        try:
            store.add_account(
                Account(name, chosen, party, language), _password(password_file), replace=replace
            )
        finally:
            store.close()
    except XbusError as exc:
        fail(str(exc))
    console.print(f"account {name} ({chosen.value}{f', {party}' if party else ''}) saved")


@accounts.command("list")
def list_accounts() -> None:
    """Every account, its role, party and language (never a password)."""
    try:
        store = _store()
        try:
            found = store.accounts()
        finally:
            store.close()
    except XbusError as exc:
        fail(str(exc))
    table = Table("account", "role", "party", "language")
    for a in found:
        table.add_row(a.name, a.role.value, a.party or "", a.language)
    console.print(table)


@accounts.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The login name.")]) -> None:
    """Remove an account and end its sessions (the steps it took stay recorded)."""
    try:
        store = _store()
        try:
            removed = store.remove_account(name)
        finally:
            store.close()
    except XbusError as exc:
        fail(str(exc))
    if not removed:
        fail(f"there is no account named {name}")
    console.print(f"account {name} removed")
