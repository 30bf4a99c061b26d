"""What the ``xbus`` command prints (one console for results, one for problems; lines are
never wrapped, since they are grepped and piped, and text from outside is never read as
markup), and how a command that needs the catalog gets it or stops."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import typer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.markup import escape

from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.settings import BusSettings, bus_settings

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


# Kafka's answers that mean "not allowed": an ACL is missing, not a link.
_REFUSALS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
}
# What librdkafka reports when it never got a working connection: a broker that is down, but
# also one that closed the connection because the SASL login failed or was never tried.
_NO_LINK = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._TIMED_OUT}
_CREDENTIALS = (
    "XBUS_SECURITY_PROTOCOL=SASL_PLAINTEXT, XBUS_SASL_MECHANISM=SCRAM-SHA-512, "
    "XBUS_SASL_USERNAME and XBUS_SASL_PASSWORD_FILE"
)


def kafka_unreachable(exc: BaseException) -> str:
    """One line for a Kafka client error: which bootstrap servers, and what failed. A login
    refused, a client without credentials facing a secured bus, and an ACL refusal are each
    told as such, with the settings to check."""
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    detail = error.str() if error is not None else str(exc)
    code = error.code() if error is not None else None
    try:
        settings: BusSettings | None = bus_settings()
    except Exception:  # settings that do not load are not what this line is about
        settings = None
    where = settings.bootstrap_servers if settings else "the configured bootstrap servers"
    user = settings.sasl_username if settings and settings.sasl_mechanism else None
    if code in _REFUSALS:
        return (
            f"Kafka at {where} refused {f'user {user}' if user else 'an anonymous client'}: "
            f"{detail}; no ACL allows it (the office gives rights in bus.yaml, `xbus provision`)"
        )
    login_failed = code == KafkaError._AUTHENTICATION or (
        settings is not None
        and settings.sasl_mechanism
        and (code in _NO_LINK or isinstance(exc, TimeoutError))
        and login_refused(settings)
    )
    if login_failed:
        return (
            f"Kafka at {where} refused the login of {user!r}: wrong user name or password "
            "(check XBUS_SASL_USERNAME and XBUS_SASL_PASSWORD_FILE; `xbus provision` keeps "
            "each user's password in <secrets>/kafka/<user>.password)"
        )
    if settings is not None and not settings.sasl_mechanism and code in _NO_LINK:
        return (
            f"could not reach Kafka at {where}: {detail} (is it running? `xbus stack up`, or "
            f"set XBUS_BOOTSTRAP_SERVERS; a secured bus closes the connection of a client "
            f"without credentials: set {_CREDENTIALS})"
        )
    return (
        f"could not reach Kafka at {where}: {detail} "
        "(is it running? `xbus stack up`, or set XBUS_BOOTSTRAP_SERVERS)"
    )


def login_refused(settings: BusSettings, wait: float = 5.0) -> bool:
    """Whether Kafka refuses the SASL login of ``settings``' user: a short probe, since
    librdkafka only reports a refused login to an error callback and then gives up as if the
    broker were down."""
    refused = threading.Event()

    def seen(error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            refused.set()

    admin = AdminClient(settings.kafka_config(error_cb=seen, logger=_QUIET))
    deadline = time.monotonic() + wait
    while not refused.is_set() and time.monotonic() < deadline:
        admin.poll(0.1)
    return refused.is_set()


def _quiet_logger() -> logging.Logger:
    quiet = logging.getLogger("xbus.cli.kafka-probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


_QUIET = _quiet_logger()


class Command(typer.Typer):
    """The ``xbus`` command: a Kafka error or timeout that a subcommand did not handle ends
    in one line (``fail``) and exit 1, never a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (KafkaException, TimeoutError) as exc:
            problem("error", kafka_unreachable(exc))
            raise SystemExit(1) from None
