"""Errors of provisioning."""

from __future__ import annotations

from xbus.core.errors import ConfigurationError, XbusError
from xbus.core.yaml_files import FileProblem


class BusFileError(ConfigurationError):
    """The provisioning file is wrong; ``problems`` says each mistake, where."""

    def __init__(self, problems: list[FileProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class ProvisioningError(XbusError):
    """The cluster refused a change, or could not be read; the message names what."""

    reason = "provisioning"
