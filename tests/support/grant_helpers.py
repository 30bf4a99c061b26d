"""Reading grant files in tests."""

from __future__ import annotations

from pathlib import Path

from xbus.core.catalog import Catalog
from xbus.core.yaml_files import YamlFile, read_yaml_file
from xbus.streams.grants import Grant, parse_grant
from xbus.streams.policy import CompiledGrant, check_and_compile


def load_grant(path: Path) -> Grant:
    """The grant in ``path``; fails the test with the problems if it is not valid."""
    file = read_yaml_file(path)
    assert isinstance(file, YamlFile), file
    grant = parse_grant(file)
    assert isinstance(grant, Grant), grant
    return grant


def compile_grant(grant: Grant, catalog: Catalog, version: int = 1) -> CompiledGrant:
    """The compiled grant; fails the test with the problems if it does not compile."""
    compiled = check_and_compile(grant, catalog, version)
    assert isinstance(compiled, CompiledGrant), compiled
    return compiled
