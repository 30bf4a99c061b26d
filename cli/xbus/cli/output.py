"""What the ``xbus`` command prints (one console for results, one for problems; lines are
never wrapped, since they are grepped and piped, and text from outside is never read as
markup), and how a command that needs the catalog gets it or stops."""

from __future__ import annotations

from typing import Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.markup import escape

from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.settings import bus_settings

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def problem(label: str, text: object) -> None:
    """Print ``label: text`` on stderr, the label in red."""
    errors.print(f"[red]{escape(label)}:[/red] {escape(str(text))}")


def load_catalog() -> Catalog:
    """The catalog of ``XBUS_SCHEMAS_DIR``; exits with what is wrong if it does not load."""
    try:
        return Catalog.load(bus_settings().schemas_dir)
    except XbusError as exc:
        raise fail(exc) from None


def fail(text: object) -> typer.Exit:
    """Print ``error: text`` and return the exit to raise (code 1); a Kafka error or a
    timeout is told as Kafka being out of reach, with where the command looked for it."""
    if isinstance(text, KafkaException | TimeoutError):
        text = kafka_unreachable(text)
    problem("error", text)
    return typer.Exit(1)


def kafka_unreachable(exc: BaseException) -> str:
    """One line for a Kafka client error: which bootstrap servers, and what failed."""
    detail = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
    try:
        where = bus_settings().bootstrap_servers
    except Exception:  # settings that do not load are not what this line is about
        where = "the configured bootstrap servers"
    return (
        f"could not reach Kafka at {where}: {detail} "
        "(is it running? `xbus stack up`, or set XBUS_BOOTSTRAP_SERVERS)"
    )


class Command(typer.Typer):
    """The ``xbus`` command: a Kafka error or timeout that a subcommand did not handle ends
    in one line (``fail``) and exit 1, never a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (KafkaException, TimeoutError) as exc:
            problem("error", kafka_unreachable(exc))
            raise SystemExit(1) from None
