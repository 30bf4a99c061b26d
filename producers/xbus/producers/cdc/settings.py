"""Where Kafka Connect is, where the CDC source files and secrets are (``XBUS_`` settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from xbus.core.settings import home_dir, secret_setting


def _default_secrets() -> Path:
    return home_dir() / "data" / "secrets" / "cdc"


class CdcSettings(BaseSettings):
    """Kafka Connect's REST API and its credentials; the CDC source files; the folder of the
    replication users' passwords (the one Kafka Connect reads secrets from)."""

    model_config = SettingsConfigDict(env_prefix="XBUS_", extra="ignore")

    connect_url: str = "http://127.0.0.1:8083"
    connect_username: str | None = None
    connect_password: SecretStr | None = None
    connect_password_file: Path | None = None
    cdc_sources_dir: Path = Path("cdc")
    cdc_secrets_dir: Path = Field(default_factory=_default_secrets)

    def connect_auth(self) -> tuple[str, str] | None:
        """HTTP basic credentials for Kafka Connect's REST API; none if no user is set."""
        if not self.connect_username:
            return None
        password = secret_setting(
            self.connect_password, self.connect_password_file, "Kafka Connect's password"
        )
        return (self.connect_username, password)
