"""The engine's view subjects in the real, secured registry, which lets only a subject's owner
change it: a subject someone else made (the office, by hand, or an engine run under the
office's login) still serves the engine's own user for the views it holds already."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema

from tests.conftest import Bus
from tests.support.grant_helpers import compile_grant, licence_grant
from xbus.core.catalog import Catalog
from xbus.core.contracts import set_subject_compatibility
from xbus.core.serde import registry_client
from xbus.core.topics import value_subject
from xbus.streams.routing import ViewEncoders

pytestmark = pytest.mark.broker


def test_a_view_subject_the_office_made_serves_the_engines_own_user(registered: Bus) -> None:
    office = registered.settings
    if not office.schema_registry_username:
        pytest.skip("the registry has no users to tell apart")
    engine = office.model_copy(
        update={
            "schema_registry_username": "engine",
            "schema_registry_password": None,
            "schema_registry_password_file": office.secrets_dir / "registry" / "engine.password",
        }
    )
    catalog = Catalog.load(office.schemas_dir)
    grant = compile_grant(
        licence_grant(f"g-{uuid.uuid4().hex[:8]}", f"sub_{uuid.uuid4().hex[:8]}"), catalog
    )
    subject = value_subject(grant.topic)
    as_office = registry_client(office)
    made = as_office.register_schema(subject, Schema(json.dumps(grant.view_schema), "AVRO"))
    set_subject_compatibility(as_office, subject, "NONE")

    encoder, _ = ViewEncoders(registry_client(engine))(grant)

    assert encoder.schema_id == made
    # A view the subject does not hold yet would have to be written: that stays the owner's.
    other = compile_grant(
        licence_grant(grant.grant.grant, grant.grant.subscriber, "  credit_code: {}\n  name: {}\n"),
        catalog,
        version=2,
    )
    with pytest.raises(Exception, match="refused|403|not authorized|Forbidden"):
        ViewEncoders(registry_client(engine))(other)
