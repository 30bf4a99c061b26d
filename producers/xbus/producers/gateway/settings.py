"""The gateway's own settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from xbus.core.settings import home_dir


class GatewaySettings(BaseSettings):
    """The gateway's own settings (environment prefix ``XBUS_GATEWAY_``)."""

    model_config = SettingsConfigDict(env_prefix="XBUS_GATEWAY_", extra="ignore")

    keys_file: Path = Field(default_factory=lambda: home_dir() / "gateway-keys.toml")
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 1000
    delivery_timeout: float = 10.0
