"""The root of every error xbus raises on purpose."""


class XbusError(Exception):
    """Something a person can act on; the message says what was wrong and where."""

    retriable: bool = False


class ConfigurationError(XbusError):
    """A setting, file or argument is wrong."""


class CatalogError(XbusError):
    """A dataset schema is missing or does not carry the metadata xbus needs."""
