"""Grants: which subscriber may see which fields of which dataset, and the view it receives."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from xbus.catalog import Dataset
from xbus.envelope import envelope_schema
from xbus.topics import delivery_topic


@dataclass(frozen=True)
class Grant:
    """A projection of one dataset for one subscriber: only ``fields`` leave the department."""

    grant_id: str
    version: int
    subscriber: str
    department: str
    dataset: str
    fields: tuple[str, ...]

    @property
    def topic(self) -> str:
        """The subscriber's topic for this dataset."""
        return delivery_topic(self.subscriber, self.dataset)


def view_record_schema(dataset: Dataset, grant: Grant) -> dict[str, Any]:
    """The Avro record schema of what ``grant`` lets its subscriber see of ``dataset``."""
    fields = [copy.deepcopy(dataset.field(name)) for name in grant.fields]
    return {
        "type": "record",
        "name": f"{dataset.schema['name']}View",
        "namespace": f"deliver.{grant.subscriber}",
        "doc": f"{grant.subscriber}'s view of {dataset.department}.{dataset.name} "
        f"under grant {grant.grant_id} v{grant.version}.",
        "fields": fields,
    }


def view_schema(dataset: Dataset, grant: Grant, envelope: dict[str, Any]) -> dict[str, Any]:
    """The schema of the subscriber's topic under ``grant``: the ``envelope`` template around
    the subscriber's view of the record."""
    return envelope_schema(view_record_schema(dataset, grant), envelope, name="DeliveredEvent")


def project(record: dict[str, Any] | None, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """Only the granted ``fields`` of ``record`` (default deny: nothing else is copied)."""
    if record is None:
        return None
    return {name: record[name] for name in fields}


def apply_grant(event: dict[str, Any], grant: Grant) -> dict[str, Any]:
    """The event as ``grant``'s subscriber may see it."""
    return {
        **event,
        "before": project(event["before"], grant.fields),
        "after": project(event["after"], grant.fields),
    }


# The one grant in force until grants are read from the grants topic: the tax bureau receives
# what it needs to open a tax account for a newly registered company.
TAX_BUREAU_LICENCES = Grant(
    grant_id="tax-bureau-business-licence",
    version=1,
    subscriber="tax_bureau",
    department="market_regulation",
    dataset="business_licence",
    fields=(
        "credit_code",
        "name",
        "enterprise_type",
        "legal_representative",
        "registered_capital",
        "established_on",
        "district_code",
        "address",
    ),
)
