"""The console's own settings (environment prefix ``XBUS_CONSOLE_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from xbus.core.errors import ConfigurationError


class ConsoleSettings(BaseSettings):
    """Where the console listens, where it keeps its tables, and how its sessions behave."""

    model_config = SettingsConfigDict(env_prefix="XBUS_CONSOLE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8096
    metrics_port: int = 9109
    # The database of the console's tables (no password here: libpq's PGPASSFILE has it);
    # default: the bus's own PostgreSQL, XBUS_POSTGRES_DSN.
    dsn: str | None = None
    # Holidays and adjusted working days for the deadlines (xbus.console.working_days).
    calendar_file: Path | None = None
    # Cookies only over HTTPS, and named ``__Host-...`` so no subdomain can set them.
    # Browsers treat http://127.0.0.1 and http://localhost as secure, so the local stack
    # keeps this on.
    secure_cookies: bool = True
    session_hours: Annotated[int, Field(ge=1, le=24)] = 8
    # Seconds between the console's rounds of escalating overdue requests and expiring
    # lapsed grants.
    tick_interval: Annotated[float, Field(gt=0)] = 30.0

    # Where the live flow of each grant is read: Prometheus (its URL), else the components'
    # /metrics endpoints, each NAME=URL or a URL (comma-separated).
    prometheus_url: str | None = None
    metrics_endpoints: str = ""
    # Seconds between two updates of a grant's live flow.
    flow_interval: Annotated[float, Field(gt=0)] = 2.0

    def database(self) -> str:
        """The console's database: ``XBUS_CONSOLE_DSN``, else ``XBUS_POSTGRES_DSN``."""
        dsn = self.dsn or os.environ.get("XBUS_POSTGRES_DSN")
        if not dsn:
            raise ConfigurationError(
                "the console keeps its requests in PostgreSQL: set XBUS_CONSOLE_DSN or "
                "XBUS_POSTGRES_DSN (postgresql://user@host:port/db; the password in PGPASSFILE)"
            )
        return dsn
