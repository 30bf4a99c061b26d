"""Settings shared by every component, read from the environment (prefix ``XBUS_``).

Files people write (schemas, grants, delivery files) and the stack's working folder are
found relative to the current directory unless a setting says otherwise; nothing is looked
for next to the installed package.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from xbus.core.errors import ConfigurationError

HOME_ENV = "XBUS_HOME"


def home_dir() -> Path:
    """The working folder of the local stack and of the files it makes (keys, tokens, data):
    ``XBUS_HOME``, else ``.xbus`` in the current directory; always absolute."""
    return Path(os.environ.get(HOME_ENV) or ".xbus").expanduser().absolute()


class BusSettings(BaseSettings):
    """Where the bus's Kafka cluster and schema registry are, and how to reach them."""

    model_config = SettingsConfigDict(env_prefix="XBUS_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    # Kafka's client security: PLAINTEXT, SASL_PLAINTEXT or SASL_SSL; with SASL, a user and
    # its password (the value, or a file that holds it), and for SASL_SSL the CA to trust.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_ca_location: Path | None = None
    # The registry's HTTP basic credentials (none: anonymous).
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    schema_registry_password_file: Path | None = None
    # The CA that signed the registry's HTTPS certificate, if not one the system trusts (kept
    # apart from Kafka's ``ssl_ca_location``: the two may be signed by different CAs).
    schema_registry_ssl_ca_location: Path | None = None
    # Partitions of a dataset's gov.* topic when the engine makes it (provisioning says its
    # own): as many as engine workers may share one dataset.
    source_partitions: Annotated[int, Field(ge=1)] = 12
    schemas_dir: Path = Path("schemas")
    grants_dir: Path = Path("grants")
    deliveries_dir: Path = Path("deliveries")
    metrics_host: str = "127.0.0.1"
    # Where generated secrets are kept (a 0700 folder of 0600 files): Kafka users' passwords
    # under ``kafka/``, the registry's under ``registry/``, the office's signing keys.
    secrets_dir: Path = Path(".xbus/secrets")
    # The secret of keyed pseudonyms and hashes: the value, or a file that holds it.
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None
    # The data-sharing office's Ed25519 keys (PEM files): the private one signs grants on
    # ``xbus grants apply`` (the office's machine only); the engine holds only the public one.
    grant_signing_key_file: Path | None = None
    grant_verify_key_file: Path | None = None

    @field_validator("schemas_dir", "grants_dir", "deliveries_dir", "secrets_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # Fixed where the settings are read, so a process started elsewhere finds the same.
        return path.expanduser().absolute()

    def pseudonym_secret(self) -> bytes:
        """The secret of keyed pseudonyms: ``XBUS_PSEUDONYM_KEY``, else the contents of
        ``XBUS_PSEUDONYM_KEY_FILE``; at least 16 characters, or ``ConfigurationError``."""
        key = secret_setting(self.pseudonym_key, self.pseudonym_key_file, "the pseudonym key")
        if len(key) < 16:
            raise ConfigurationError(
                "keyed pseudonyms need a secret of at least 16 characters in "
                "XBUS_PSEUDONYM_KEY or in a file named by XBUS_PSEUDONYM_KEY_FILE"
            )
        return key.encode()

    def kafka_password(self) -> str:
        """The SASL password: ``XBUS_SASL_PASSWORD``, else the contents of
        ``XBUS_SASL_PASSWORD_FILE``, else empty."""
        return secret_setting(self.sasl_password, self.sasl_password_file, "the Kafka password")

    def registry_password(self) -> str:
        """The registry password: ``XBUS_SCHEMA_REGISTRY_PASSWORD``, else the contents of
        ``XBUS_SCHEMA_REGISTRY_PASSWORD_FILE``, else empty."""
        return secret_setting(
            self.schema_registry_password,
            self.schema_registry_password_file,
            "the schema registry password",
        )

    def registry_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for the registry's HTTP basic auth, or ``None`` (anonymous)."""
        if not self.schema_registry_username:
            return None
        return (self.schema_registry_username, self.registry_password())

    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration for a client of this cluster, with ``overrides`` on top."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username or ""
            config["sasl.password"] = self.kafka_password()
        if self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        config.update(overrides)
        return config

    def producer_config(self, **overrides: Any) -> dict[str, Any]:
        """A durable producer: idempotent, acks from all in-sync replicas, batched on purpose,
        and keys partitioned as Kafka's Java client does (murmur2), so a record's key lands
        on the same partition whoever writes it."""
        return self.kafka_config(
            **{
                # librdkafka's default (consistent_random, CRC32) sends a key elsewhere than
                # Java writers (Kafka Connect, Debezium, Kafka Streams) would, which breaks
                # the order per key. murmur2_random is Java's choice, null keys spread alike.
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.size": 256 * 1024,
                "compression.type": "lz4",
                **overrides,
            }
        )

    def consumer_config(self, group_id: str, **overrides: Any) -> dict[str, Any]:
        """A consumer that commits only what the caller says it has finished with."""
        return self.kafka_config(
            **{
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **overrides,
            }
        )

    def registry_config(self) -> dict[str, Any]:
        """The configuration of a confluent-kafka ``SchemaRegistryClient``."""
        config: dict[str, Any] = {"url": self.schema_registry_url}
        auth = self.registry_auth()
        if auth is not None:
            config["basic.auth.user.info"] = f"{auth[0]}:{auth[1]}"
        if self.schema_registry_ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.schema_registry_ssl_ca_location)
        return config


def secret_setting(value: SecretStr | None, file: Path | None, what: str) -> str:
    """A secret given as a value or as a file holding it (trailing whitespace dropped)."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if file is None:
        return ""
    try:
        return file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} from {file}: {exc}") from exc


def secret_from_env(variable: str, what: str) -> SecretStr:
    """The secret held by the environment variable a person named in a file (a webhook's
    ``secret_env``, a database's ``dsn_env``); ``ConfigurationError`` if it is unset or
    empty. Kept as ``SecretStr`` so that it never shows in a log or a repr."""
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigurationError(f"${variable} ({what}) is not set or empty")
    return SecretStr(value)


@lru_cache(maxsize=1)
def bus_settings() -> BusSettings:
    """The settings of this process, read once."""
    return BusSettings()
