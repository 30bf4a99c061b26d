"""A command that needs Kafka while Kafka is down ends in one line naming where it looked,
and exit 1, never a traceback."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from xbus.cli import output
from xbus.cli.output import Command, fail
from xbus.core.settings import BusSettings


def _bootstrap(monkeypatch: pytest.MonkeyPatch, servers: str) -> None:
    settings = BusSettings(bootstrap_servers=servers)
    monkeypatch.setattr(output, "bus_settings", lambda: settings)


def _command(error: BaseException) -> Command:
    app = Command(add_completion=False)

    @app.command()
    def grants() -> None:
        raise error

    @app.command()
    def other() -> None:  # two commands, so the name is required, as in xbus
        pass

    return app


@pytest.mark.parametrize(
    "error",
    [
        KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata")),
        TimeoutError("no answer within 30 s"),
    ],
)
def test_an_unhandled_kafka_error_is_one_line_naming_the_bootstrap_servers(
    error: BaseException, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _bootstrap(monkeypatch, "127.0.0.1:1")

    with pytest.raises(SystemExit) as exited:
        _command(error)(["grants"])

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not reach Kafka at 127.0.0.1:1: ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_fail_tells_a_kafka_error_as_kafka_out_of_reach(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _bootstrap(monkeypatch, "kafka.example:9092")

    fail(KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all brokers down")))

    err = capsys.readouterr().err
    assert "could not reach Kafka at kafka.example:9092: all brokers down" in err
