"""Errors of the local launcher."""

from xbus.core.errors import XbusError


class LauncherError(XbusError):
    """A part of the local stack could not be fetched, started or reached."""
