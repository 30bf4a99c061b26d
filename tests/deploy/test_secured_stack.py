"""The stack is closed by default: Kafka wants SCRAM credentials, the registry basic auth, and
no secret shows where another user of the machine could read it."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from tests.conftest import Bus
from xbus.core.settings import BusSettings
from xbus.deploy.errors import LauncherError
from xbus.deploy.kafka import KafkaConfig, LocalKafka
from xbus.deploy.process import free_port
from xbus.deploy.stack import StackSettings


def _secured(bus: Bus) -> BusSettings:
    if not bus.settings.sasl_mechanism:
        pytest.skip("the bus under test is not secured (containers)")
    return bus.settings


def _refused(settings: BusSettings) -> str:
    admin = AdminClient(settings.kafka_config(**{"socket.timeout.ms": 5000, "logger": _silent()}))
    with pytest.raises(KafkaException) as refused:
        admin.list_topics(timeout=6)
    return str(refused.value)


def _silent() -> object:
    import logging

    quiet = logging.getLogger(f"refused-{uuid.uuid4()}")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


def test_kafka_refuses_a_client_without_credentials_or_with_a_wrong_password(bus: Bus) -> None:
    settings = _secured(bus)
    anonymous = settings.model_copy(
        update={"security_protocol": "PLAINTEXT", "sasl_mechanism": None}
    )
    wrong = settings.model_copy(
        update={"sasl_password_file": None, "sasl_password": SecretStr("not-it")}
    )

    _refused(anonymous)
    _refused(wrong)
    # The right credentials still work.
    assert AdminClient(settings.kafka_config()).list_topics(timeout=10).brokers


def test_the_registry_refuses_anonymous_and_read_only_writes(bus: Bus) -> None:
    settings = _secured(bus)
    subject = f"probe-{uuid.uuid4().hex[:8]}-value"
    url = f"{settings.schema_registry_url}/subjects/{subject}/versions"
    schema = {"schema": '{"type": "string"}'}
    reader = (
        "reader",
        (settings.secrets_dir / "registry" / "reader.password").read_text().strip(),
    )

    assert httpx.post(url, json=schema, timeout=10).status_code == 401
    assert httpx.get(f"{settings.schema_registry_url}/subjects", timeout=10).status_code == 401
    assert httpx.post(url, json=schema, auth=reader, timeout=10).status_code == 403
    assert httpx.get(f"{settings.schema_registry_url}/subjects", auth=reader).status_code == 200
    assert httpx.post(url, json=schema, auth=settings.registry_auth(), timeout=10).is_success
    deleted = httpx.delete(f"{settings.schema_registry_url}/subjects/{subject}", timeout=10)
    assert deleted.status_code == 401


def test_secrets_are_private_files_and_never_on_a_command_line(bus: Bus) -> None:
    settings = _secured(bus)
    files = [p for p in settings.secrets_dir.rglob("*") if p.is_file()]
    secrets = {p: p.read_text().strip() for p in files if not p.name.endswith(".pub")}
    assert {p.name for p in secrets} >= {"admin.password", "office.password"}
    for folder in [
        settings.secrets_dir,
        *(p for p in settings.secrets_dir.rglob("*") if p.is_dir()),
    ]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            lines.append(
                (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
    assert any("kafka.Kafka" in line for line in lines), "the broker's process was not seen"
    for path, secret in secrets.items():
        assert not [line for line in lines if secret in line], f"{path.name} on a command line"


@pytest.mark.broker
def test_a_data_dir_formatted_without_users_is_refused_with_what_to_do(tmp_path: Path) -> None:
    config = KafkaConfig(
        port=free_port(),
        controller_port=free_port(),
        data_dir=tmp_path / "data" / "kafka",
        cache_dir=StackSettings().cache,
        run_dir=tmp_path / "run",
        heap="256m",
        secured=False,
        secrets_dir=tmp_path / "data" / "secrets",
    )
    open_broker = LocalKafka(config)
    open_broker.start()
    open_broker.stop()

    config.secured = True
    with pytest.raises(LauncherError, match="without xbus's Kafka users.*Remove"):
        LocalKafka(config).start()
    assert os.path.exists(tmp_path / "data" / "kafka" / "log" / "meta.properties")


def test_the_engines_registry_user_may_change_only_the_subjects_it_made(bus: Bus) -> None:
    settings = _secured(bus)
    base = settings.schema_registry_url
    engine = ("engine", (settings.secrets_dir / "registry" / "engine.password").read_text().strip())
    tag = uuid.uuid4().hex[:8]
    first = {
        "schema": '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "string"}]}'
    }
    second = {
        "schema": '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "string"}, '
        '{"name": "b", "type": "string", "default": ""}]}'
    }
    dataset, view = f"gov.probe.d{tag}-value", f"deliver.probe.d{tag}-value"
    office = settings.registry_auth()
    assert httpx.post(f"{base}/subjects/{dataset}/versions", json=first, auth=office).is_success

    # A department's dataset, registered by the office: the engine may read it, not change it.
    none = {"compatibility": "NONE"}
    assert httpx.put(f"{base}/config/{dataset}", json=none, auth=engine).status_code == 403
    assert (
        httpx.post(f"{base}/subjects/{dataset}/versions", json=second, auth=engine).status_code
        == 403
    )
    assert httpx.delete(f"{base}/subjects/{dataset}", auth=engine).status_code == 403
    assert httpx.get(f"{base}/subjects/{dataset}/versions/latest", auth=engine).is_success
    # A view subject of its own: it registers, evolves and opens it.
    assert httpx.post(f"{base}/subjects/{view}/versions", json=first, auth=engine).is_success
    assert httpx.put(f"{base}/config/{view}", json=none, auth=engine).is_success
    assert httpx.post(f"{base}/subjects/{view}/versions", json=second, auth=engine).is_success
