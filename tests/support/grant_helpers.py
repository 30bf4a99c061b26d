"""Reading grant files in tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from xbus.core.catalog import Catalog
from xbus.core.yaml_files import YamlFile, read_yaml_file
from xbus.streams.grant_files import load_grants
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


# The head of a valid grant on the licences, for tests that write the rest.
HEADER = """\
grant: test-grant
subscriber: tester
dataset: market_regulation.business_licence
purpose: testing
legal_basis: none
approval: T-1
valid_from: 2026-01-01T00:00:00+08:00
"""


def grant_problems(tmp_path: Path, body: str, catalog: Catalog, header: str = HEADER) -> list[str]:
    """The problems ``xbus grants validate`` finds in ``header`` + ``body``, each without the
    file's path."""
    path = tmp_path / "grant.yaml"
    path.write_text(header + textwrap.dedent(body))
    _, problems = load_grants([path], catalog)
    return [str(p).removeprefix(f"{path}:") for p in problems]
