"""How a Kubernetes manifest made from one of the repository's own files is written: as YAML
under a header naming that file and the command that made it, so that a reader knows not to
edit it and ``make manifests`` makes it again byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (rule expressions, whole files) as literal blocks, readable as in
    the file they came from."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render(resource: dict[str, Any], *, what: str, source: Path, module: str) -> str:
    """``resource`` as YAML, under a header saying it holds ``what`` of ``source``, made by
    ``python -m module source``."""
    header = (
        f"# {what} of {source.as_posix()}, made by\n"
        f"# `python -m {module} {source.as_posix()}` (`make manifests`):\n"
        "# change that file and make this one again; never edit this one.\n"
    )
    return header + yaml.dump(
        resource, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
