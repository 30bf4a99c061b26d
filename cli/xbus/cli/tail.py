"""``xbus tail``: print what a topic carries, one JSON line per record, decoded.

Avro records in the Confluent wire format (``gov.*``, ``deliver.*``) are decoded with the
registry; JSON records (``_xbus.audit``, ``_xbus.grants``) are printed as they are;
anything else as base64. Nothing is committed: tailing never moves anyone's position.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Annotated, Any

import typer
from confluent_kafka import Consumer, KafkaException, Message

from xbus.cli.output import fail
from xbus.consumers.delivery import message_headers
from xbus.core.errors import RegistryUnavailable
from xbus.core.serde import Undecodable, WriterSchemas, registry_client
from xbus.core.settings import bus_settings
from xbus.core.values import to_json


def _value(message: Message, schemas: WriterSchemas) -> Any:
    value = message.value()
    if value is None:
        return None
    try:
        return schemas.decode(value)
    except Undecodable:
        pass
    try:
        return json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"base64": base64.b64encode(value).decode("ascii")}


def tail(
    topic: Annotated[
        str, typer.Argument(help="The topic, e.g. deliver.tax_bureau.business_licence.")
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record kept.")
    ] = False,
    count: Annotated[int, typer.Option(help="Stop after this many records (0: follow).")] = 0,
    headers: Annotated[bool, typer.Option(help="Show each record's headers too.")] = False,
) -> None:
    """Print a topic's records as JSON lines (partition, offset, key, value), decoded."""
    settings = bus_settings()
    schemas = WriterSchemas(registry_client(settings))
    consumer = Consumer(
        settings.consumer_config(
            f"xbus-tail-{uuid.uuid4()}",
            **{"auto.offset.reset": "earliest" if from_beginning else "latest"},
        )
    )
    if topic not in consumer.list_topics(timeout=10).topics:
        consumer.close()
        raise fail(f"no topic {topic!r} on {settings.bootstrap_servers}")
    consumer.subscribe([topic])
    printed = 0
    try:
        while not count or printed < count:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            try:
                value = _value(message, schemas)
            except RegistryUnavailable as exc:
                raise fail(exc) from None
            line: dict[str, Any] = {
                "partition": message.partition(),
                "offset": message.offset(),
                "key": (message.key() or b"").decode("utf-8", errors="replace"),
                "value": value,
            }
            if headers:
                line["headers"] = {
                    name: data.decode("utf-8", "replace") for name, data in message_headers(message)
                }
            print(to_json(line), flush=True)
            printed += 1
    except KeyboardInterrupt:
        pass
    except KafkaException as exc:
        raise fail(exc) from None
    finally:
        consumer.close()
