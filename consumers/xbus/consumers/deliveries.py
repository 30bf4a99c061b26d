"""Subscriber delivery files: how each subscriber receives what it is granted, declared
next to its grants and run by ``xbus run deliveries``.

    # deliveries/tax_bureau.yaml
    subscriber: tax_bureau
    deliveries:
      - kind: webhook
        url: https://tax.example.gov.cn/xbus/events
        secret_file: /etc/xbus/tax_bureau.secret
      - kind: postgres
        dsn_env: TAX_BUREAU_DSN
      - kind: file
        dir: /var/lib/xbus
        rotate_minutes: 60

Secrets are never written in the file: a webhook's signing secret comes from a file or an
environment variable, a database's DSN (which may carry a password) from an environment
variable.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xbus.consumers.sinks.base import Sink
from xbus.consumers.sinks.file import FileSink
from xbus.consumers.sinks.postgres import PostgresSink
from xbus.consumers.sinks.signing import checked_secret
from xbus.consumers.sinks.webhook import WebhookSink
from xbus.core.errors import ConfigurationError
from xbus.core.settings import secret_from_env
from xbus.core.topics import delivery_topic
from xbus.core.yaml_files import FileProblem, read_yaml_targets


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(secret_file: Path | None, secret_env: str | None) -> bytes:
    """A webhook's signing secret from ``secret_file`` (surrounding whitespace dropped), else
    from the variable ``secret_env``; raises ``ConfigurationError`` naming where it looked
    if it cannot be read, and ``WeakWebhookSecret`` if it is shorter than 32 bytes."""
    if secret_file is not None:
        try:
            value = secret_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the secret file {secret_file}: {exc}") from exc
    elif secret_env is not None:
        value = (
            secret_from_env(secret_env, "a webhook's signing secret").get_secret_value().encode()
        )
    else:
        raise ConfigurationError("a webhook needs secret_file or secret_env")
    return checked_secret(value, f"the signing secret ({secret_file or f'${secret_env}'})")


class WebhookDelivery(_Strict):
    """POST each event, signed, to the subscriber's endpoint."""

    kind: Literal["webhook"]
    url: str
    secret_file: Path | None = None
    secret_env: str | None = None
    events_per_request: int = Field(default=1, ge=1, le=1000)
    timeout_seconds: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=8, ge=1, le=64)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    def secret(self) -> bytes:
        """The signing secret, read now from its file or variable."""
        return read_secret(self.secret_file, self.secret_env)


class PostgresDelivery(_Strict):
    """Keep one table per dataset in the subscriber's database."""

    kind: Literal["postgres"]
    dsn_env: str = "XBUS_POSTGRES_DSN"
    db_schema: str | None = None

    def dsn(self) -> str:
        """The DSN, read now from its variable."""
        return secret_from_env(self.dsn_env, "the database's DSN").get_secret_value()


class FileDelivery(_Strict):
    """Append JSON lines under a folder."""

    kind: Literal["file"]
    dir: Path
    rotate_mb: float = Field(default=64.0, ge=0)
    rotate_minutes: float = Field(default=0.0, ge=0)


DeliverySpec = Annotated[
    WebhookDelivery | PostgresDelivery | FileDelivery, Field(discriminator="kind")
]


class SubscriberDeliveries(_Strict):
    """Every way one subscriber receives its data."""

    subscriber: str
    deliveries: list[DeliverySpec] = Field(min_length=1)

    @field_validator("subscriber")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            delivery_topic(value, "x")
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value


def load_deliveries(
    targets: Iterable[Path],
) -> tuple[list[SubscriberDeliveries], list[FileProblem]]:
    """Every subscriber's deliveries under ``targets`` and every problem, with file and line."""
    found: list[SubscriberDeliveries] = []
    problems: list[FileProblem] = []
    seen: dict[str, Path] = {}
    for file in read_yaml_targets(targets):
        if isinstance(file, FileProblem):
            problems.append(file)
            continue
        path = file.path
        try:
            parsed = SubscriberDeliveries.model_validate(file.content)
        except ValidationError as exc:
            for error in exc.errors():
                location = tuple(
                    p for p in error["loc"] if p not in ("webhook", "postgres", "file")
                )
                where = ".".join(str(p) for p in location)
                message = error["msg"]
                if error["type"] == "union_tag_invalid":
                    message = "kind must be webhook, postgres or file"
                problems.append(
                    FileProblem(str(path), file.line_of(location), f"{where}: {message}")
                )
            continue
        if parsed.subscriber in seen:
            problems.append(
                FileProblem(
                    str(path),
                    file.line_of(("subscriber",)),
                    f"subscriber {parsed.subscriber} is already declared in "
                    f"{seen[parsed.subscriber]}; keep one file per subscriber",
                )
            )
            continue
        seen[parsed.subscriber] = path
        found.append(parsed)
    return found, problems


def build_sink(
    subscriber: str, delivery: WebhookDelivery | PostgresDelivery | FileDelivery
) -> Sink:
    """The sink a delivery declares, with its secrets read now."""
    if isinstance(delivery, WebhookDelivery):
        return WebhookSink(
            delivery.url,
            delivery.secret(),
            batch_size=delivery.events_per_request,
            timeout=delivery.timeout_seconds,
            concurrency=delivery.concurrency,
        )
    if isinstance(delivery, PostgresDelivery):
        return PostgresSink(delivery.dsn(), delivery.db_schema or subscriber)
    return FileSink.rotating(delivery.dir, delivery.rotate_mb, delivery.rotate_minutes)
