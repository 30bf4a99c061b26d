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
    # Where it listens: loopback unless told otherwise (a proxy or a container maps it out).
    host: str = "127.0.0.1"
    port: int = 8088
    # /metrics on its own port, bound to XBUS_METRICS_HOST (loopback by default); 0: none.
    metrics_port: int = 9108
    # A body over this is refused with 413 before more of it is read.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_batch: int = Field(default=1000, gt=0)
    delivery_timeout: float = 10.0
    # Each key's token bucket: events per second on average, and at most ``burst`` at once
    # (also the largest batch a key may send); a rate of 0 sets no limit.
    rate: float = Field(default=500.0, ge=0)
    burst: int = Field(default=1000, gt=0)
    # How often, at most, the gateway looks whether its keys file changed.
    reload_interval: float = Field(default=1.0, ge=0)
    # Serve /docs and /openapi.json to anyone; otherwise /openapi.json needs a key.
    public_docs: bool = False
