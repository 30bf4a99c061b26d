"""Reading grant files in tests, and writing grant records as an attacker with write access
to the grants topic could (the office's own go through ``apply_grants``, which signs them)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import yaml
from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.producing import Record, produce_and_confirm
from xbus.core.settings import BusSettings
from xbus.core.signatures import load_private_key
from xbus.core.topics import GRANTS_TOPIC
from xbus.core.yaml_files import YamlFile, read_yaml_file
from xbus.streams.grant_files import load_grants
from xbus.streams.grants import Grant, parse_grant
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.policy_records import grant_key, grant_value


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


def licence_grant(grant_id: str, subscriber: str, fields: str = "  credit_code: {}\n") -> Grant:
    """A grant of ``subscriber`` on the business licences with ``fields`` (YAML lines, each
    indented two spaces); only its form is checked, not its rules against the catalog."""
    content = yaml.safe_load(
        HEADER.replace("grant: test-grant", f"grant: {grant_id}").replace(
            "subscriber: tester", f"subscriber: {subscriber}"
        )
        + f"fields:\n{fields}"
    )
    return Grant.model_validate(content)


def office_key(settings: BusSettings) -> Ed25519PrivateKey:
    """The office's signing key the stack made (``XBUS_GRANT_SIGNING_KEY_FILE``)."""
    assert settings.grant_signing_key_file is not None, "run under `xbus stack exec`"
    return load_private_key(settings.grant_signing_key_file)


def write_grant_record(settings: BusSettings, grant_id: str, value: bytes | None) -> None:
    """Write ``value`` under ``grant_id`` on the grants topic as anyone with write access to
    it could: with valid Kafka credentials, bypassing ``xbus grants apply``."""
    ensure_topics(settings, {GRANTS_TOPIC: 1}, config={GRANTS_TOPIC: {"cleanup.policy": "compact"}})
    produce_and_confirm(
        Producer(settings.producer_config()),
        [Record(GRANTS_TOPIC, value, grant_key(grant_id))],
        timeout=30,
        what=f"a record of {grant_id}",
    )


def forged_records(settings: BusSettings, tag: str) -> dict[str, tuple[str, bytes]]:
    """One record by refusal reason, each granting its own subscriber the licences' credit
    codes: ``{reason: (grant id, value)}``. Only ``invalid`` is signed by the office (it
    sends the sensitive ID number unmasked, without approval)."""
    office, stranger = office_key(settings), Ed25519PrivateKey.generate()
    unsigned = licence_grant(f"unsigned-{tag}", f"unsigned_{tag}")
    foreign = licence_grant(f"foreign-{tag}", f"foreign_{tag}")
    unmasked = licence_grant(
        f"unmasked-{tag}", f"unmasked_{tag}", "  credit_code: {}\n  legal_representative_id: {}\n"
    )
    content = unsigned.model_dump(mode="json", exclude_defaults=True)
    return {
        "unsigned": (unsigned.grant, json.dumps({"grant": content, "version": 1}).encode()),
        "bad_signature": (foreign.grant, grant_value(foreign, 1, stranger)),
        "invalid": (unmasked.grant, grant_value(unmasked, 1, office)),
        "unreadable": (f"garbled-{tag}", b'{"grant": "not json'),
    }
