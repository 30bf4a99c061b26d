"""The catalogue's pages: every department's datasets, searchable, and one dataset's
fields, sharing class, schema versions and grants."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from xbus.console.accounts import Role
from xbus.console.catalogue import (
    compatibility,
    fields_of,
    legal_basis,
    schema_versions,
    search,
)
from xbus.console.errors import NotFound
from xbus.console.web import Who, console_of, page
from xbus.core.catalog import Dataset
from xbus.core.errors import CatalogError
from xbus.core.serde import registry_client

router = APIRouter()


@router.get("/catalogue", response_class=HTMLResponse)
def catalogue(request: Request, who: Who, q: str = "") -> Response:
    flow = console_of(request).flow
    by_department: dict[str, list[Dataset]] = defaultdict(list)
    for dataset in search(flow.catalog, q):
        by_department[dataset.department].append(dataset)
    return page(
        request,
        "catalogue.html",
        who,
        query=q,
        departments=dict(sorted(by_department.items())),
        fields_of=fields_of,
    )


@router.get("/catalogue/{department}/{name}", response_class=HTMLResponse)
def dataset_page(request: Request, who: Who, department: str, name: str) -> Response:
    flow = console_of(request).flow
    try:
        dataset = flow.catalog.get(department, name)
    except CatalogError as exc:
        raise NotFound(str(exc)) from exc
    registry = registry_client(flow.settings)
    versions = schema_versions(registry, dataset)
    grants = [
        c.grant
        for c in flow.grants_in_force().values()
        if c.grant.dataset == dataset.qualified_name
    ]
    account = who.account
    if account.role is Role.SUBSCRIBER:
        # A subscriber sees its own grants only, not who else receives the dataset.
        grants = [g for g in grants if g.subscriber == account.party]
    latest_protected = versions[-1].added_protected if versions else ()
    return page(
        request,
        "dataset.html",
        who,
        dataset=dataset,
        fields=fields_of(dataset.schema),
        basis=legal_basis(dataset),
        versions=versions,
        compatibility=compatibility(registry, dataset),
        grants=sorted(grants, key=lambda g: g.subscriber),
        touched=grants if latest_protected else [],
        latest_protected=latest_protected,
        may_request=account.role is Role.SUBSCRIBER and dataset.sharing != "none",
    )
