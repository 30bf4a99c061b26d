"""The Kafka Connect worker's configuration, without starting it: its Kafka login in every
client's prefix, its REST API on loopback behind basic auth, the only folder its connectors'
secrets may come from, and no secret on its command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from xbus.deploy.connect import ConnectConfig, LocalConnect, worker_properties
from xbus.deploy.errors import LauncherError
from xbus.deploy.kafka import KafkaConfig
from xbus.deploy.stack import LocalStack, StackSettings


def _config(tmp_path: Path, *, secured: bool = True) -> ConnectConfig:
    kafka = KafkaConfig(secured=secured, secrets_dir=tmp_path / "secrets")
    return ConnectConfig(
        bootstrap_servers=kafka.bootstrap_servers,
        kafka_login=kafka.client_config("service.connect"),
        secured=secured,
        secrets_dir=tmp_path / "secrets",
        port=18083,
    )


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_the_worker_logs_in_with_every_client_and_reads_secrets_from_one_folder(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    found = _properties(worker_properties(config, tmp_path / "plugins"))
    password = (tmp_path / "secrets" / "kafka" / "service.connect.password").read_text()
    for prefix in ("", "producer.", "consumer.", "admin."):
        assert found[f"{prefix}security.protocol"] == "SASL_PLAINTEXT"
        assert found[f"{prefix}sasl.mechanism"] == "SCRAM-SHA-512"
        assert 'username="service.connect"' in found[f"{prefix}sasl.jaas.config"]
        assert password in found[f"{prefix}sasl.jaas.config"]
    assert found["group.id"] == "_xbus.connect"
    assert {found[f"{k}.storage.topic"] for k in ("config", "offset", "status")} == {
        "_xbus.connect.configs",
        "_xbus.connect.offsets",
        "_xbus.connect.status",
    }
    assert found["listeners"] == "http://127.0.0.1:18083"
    assert found["rest.extension.classes"].endswith("BasicAuthSecurityRestExtension")
    assert found["config.providers.dir.param.allowed.paths"] == str(config.secrets_folder)
    assert found["connector.client.config.override.policy"] == "None"
    assert stat.S_IMODE(config.secrets_folder.stat().st_mode) == 0o700


def test_unsecured_the_worker_wants_no_login(tmp_path: Path) -> None:
    config = _config(tmp_path, secured=False)
    found = _properties(worker_properties(config, tmp_path / "plugins"))
    assert not [k for k in found if "sasl" in k or k == "rest.extension.classes"]
    assert config.auth() is None
    assert set(config.client_env()) == {"XBUS_CONNECT_URL", "XBUS_CDC_SECRETS_DIR"}


def test_the_office_gets_its_login_by_file_and_no_secret_is_on_the_command_line(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    env = config.client_env()
    assert env["XBUS_CONNECT_URL"] == "http://127.0.0.1:18083"
    assert env["XBUS_CONNECT_USERNAME"] == "office"
    password = Path(env["XBUS_CONNECT_PASSWORD_FILE"]).read_text()
    assert config.auth() == ("office", password)
    assert stat.S_IMODE(Path(env["XBUS_CONNECT_PASSWORD_FILE"]).stat().st_mode) == 0o600
    worker = LocalConnect(config)
    jaas = worker._write_security_files()  # noqa: SLF001
    users = (config.folder / "rest-users.properties").read_text()
    assert users == f"office={password}\n"  # a generated password needs no escaping
    assert f'file="{config.folder / "rest-users.properties"}"' in jaas.read_text()
    argv = " ".join(worker.argv(tmp_path / "jars", tmp_path / "worker.properties", jaas))
    kafka_password = (tmp_path / "secrets" / "kafka" / "service.connect.password").read_text()
    assert password not in argv and kafka_password not in argv


def test_a_secret_reference_names_a_file_of_the_secrets_folder(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.secret_reference("health.password") == (
        f"${{dir:{config.secrets_folder}:health.password}}"
    )
    for bad in ("", "..", "../kafka/admin.password"):
        with pytest.raises(LauncherError):
            config.secret_reference(bad)


def test_the_rest_api_listens_on_loopback_only(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config.host = "0.0.0.0"
    with pytest.raises(LauncherError, match="loopback only"):
        LocalConnect(config).start()


def test_a_stack_with_cdc_gives_its_command_the_workers_address_and_its_components_none(
    tmp_path: Path,
) -> None:
    stack = LocalStack.ephemeral(StackSettings(home=tmp_path, cdc=True, secured=True))
    try:
        env = stack.client_env()
        assert env["XBUS_CONNECT_URL"] == f"http://127.0.0.1:{stack.settings.connect_port}"
        assert env["XBUS_CDC_SECRETS_DIR"] == str(stack.secrets_dir / "cdc")
        assert "XBUS_CONNECT_PASSWORD_FILE" in env
        component = stack.component_env("service.cdc_bridge")
        assert "XBUS_CONNECT_PASSWORD_FILE" not in component
        without = LocalStack.ephemeral(StackSettings(home=tmp_path, cdc=False))
        assert "XBUS_CONNECT_URL" not in without.client_env()
        without.remove_data()
    finally:
        stack.remove_data()
