"""The grant an answer to a sharing request makes, as YAML, and what it changes.

The grant is an ordinary one: the same model as a grant file, checked by the same rules as
``xbus grants validate`` (``xbus.streams.grant_files.check_grant``), signed and written like
``xbus grants apply``. Its approval reference is the request's; a personal or sensitive
field goes in clear only where the owning department approved that explicitly, under the same
reference.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Any

import yaml

from xbus.console.sharing import SharingRequest, Terms
from xbus.streams.grants import GRANT_ID, Grant

_NOT_IN_ID = re.compile(r"[^a-z0-9-]+")


def grant_id_for(subscriber: str, dataset: str) -> str:
    """A new grant's id: the subscriber and the dataset, as a grant id may spell them."""
    name = dataset.split(".", 1)[-1]
    text = _NOT_IN_ID.sub("-", f"{subscriber}-{name}".lower()).strip("-")[:63].rstrip("-")
    if not GRANT_ID.match(text):
        raise ValueError(f"no grant id can be made of {subscriber!r} and {dataset!r}")
    return text


def draft_grant(
    request: SharingRequest,
    terms: Terms,
    grant_id: str,
    valid_from: dt.datetime,
) -> Grant:
    """The grant that gives ``request``'s subscriber ``terms`` from ``valid_from`` for
    ``terms.days`` days. Not checked: ``check_grant`` says what is wrong with it."""
    reference = request.reference
    fields: dict[str, Any] = {}
    for f in terms.fields:
        rule: dict[str, Any] = {}
        if f.mask is not None:
            rule["mask"] = dict(f.mask)
        elif f.unmasked_approved:
            rule["approved_unmasked"] = reference
        fields[f.path] = rule
    return Grant.model_validate(
        {
            "grant": grant_id,
            "subscriber": request.subscriber,
            "dataset": request.dataset,
            "purpose": request.purpose,
            "legal_basis": request.legal_basis,
            "approval": reference,
            "valid_from": valid_from,
            "valid_until": valid_from + dt.timedelta(days=terms.days),
            "operations": list(terms.operations),
            "rows": terms.rows or None,
            "fields": fields,
        }
    )


def grant_yaml(grant: Grant | None) -> str:
    """``grant`` as a grant file would hold it (empty for none)."""
    if grant is None:
        return ""
    content = grant.model_dump(mode="json", exclude_defaults=True)
    content.setdefault("operations", [op.value for op in grant.operations])
    return yaml.safe_dump(content, allow_unicode=True, sort_keys=False, width=100)


def grant_diff(in_force: Grant | None, version: int | None, draft: Grant) -> str:
    """A unified diff from the grant in force (none: empty), at ``version``, to ``draft``."""
    return "".join(
        difflib.unified_diff(
            grant_yaml(in_force).splitlines(keepends=True),
            grant_yaml(draft).splitlines(keepends=True),
            fromfile=f"in force: {in_force.grant} v{version}" if in_force else "in force: none",
            tofile=f"draft: {draft.grant}",
        )
    )
