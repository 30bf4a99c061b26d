"""The office console in ``make run``: the demo's accounts (one per role) and the console
itself, run as the data-sharing office."""

from __future__ import annotations

import secrets
from pathlib import Path

from xbus.console.accounts import Account, Role
from xbus.console.store import ConsoleStore
from xbus.core.secret_files import write_private
from xbus.deploy.stack import LocalStack

CONSOLE_PORT = 8096
CONSOLE_METRICS = 9109
# Who can log in to the demo's console: the office, two departments that own conditional
# datasets, two subscribers of the story, and an operator.
DEMO_ACCOUNTS: dict[str, tuple[Role, str | None]] = {
    "office": (Role.OFFICE, None),
    "market-regulation": (Role.DEPARTMENT, "market_regulation"),
    "civil-affairs": (Role.DEPARTMENT, "civil_affairs"),
    "tax-bureau": (Role.SUBSCRIBER, "tax_bureau"),
    "one-stop-centre": (Role.SUBSCRIBER, "one_stop_centre"),
    "operator": (Role.OPERATOR, None),
}


def demo_logins(stack: LocalStack) -> Path:
    """Make (or keep) the demo's console accounts; the folder of their password files
    (``<account>.password``, 0600, a new random password for an account that has none)."""
    folder = stack.secrets_dir / "console"
    passwords = {}
    for name in DEMO_ACCOUNTS:
        file = folder / f"{name}.password"
        if not file.is_file():
            write_private(file, secrets.token_urlsafe(12) + "\n")
        passwords[name] = file.read_text(encoding="utf-8").strip()
    store = ConsoleStore(
        stack.postgres_dsn, max_size=1, passfile=Path(stack.client_env()["PGPASSFILE"])
    )
    store.open()
    try:
        for name, (role, party) in DEMO_ACCOUNTS.items():
            store.add_account(Account(name, role, party), passwords[name], replace=True)
    finally:
        store.close()
    return folder


def start_console(stack: LocalStack) -> Path:
    """Start ``xbus run console`` as the office (Kafka's ``admin``, the grant-signing key),
    after making the demo's accounts; the folder of their passwords."""
    logins = demo_logins(stack)
    stack.start_component(
        "console",
        [
            "run",
            "console",
            "--port",
            str(CONSOLE_PORT),
            "--metrics-port",
            str(CONSOLE_METRICS),
        ],
        "console.log",
        env={
            "XBUS_GRANT_SIGNING_KEY_FILE": stack.client_env()["XBUS_GRANT_SIGNING_KEY_FILE"],
            # Each grant's live flow, from the stack's Prometheus.
            "XBUS_CONSOLE_PROMETHEUS_URL": stack.monitoring.config.prometheus_url,
        },
    )
    return logins
