"""What would a subscriber see: the grant run by the engine's decision over the dataset's
latest events, source and view side by side, for the office and the owning department only."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.console.conftest import Served
from tests.console.test_requests import LICENCE, _file, _logged_in
from xbus.console.accounts import Role
from xbus.console.drafts import grant_yaml
from xbus.core.envelope import Op
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher
from xbus.streams.grant_files import apply_grants
from xbus.streams.grants import Grant


def _licence_in_pudong(served: Served) -> dict[str, object]:
    licence = {**DemoData(seed=int(uuid.uuid4().hex[:6], 16)).business_licence()}
    licence["district_code"] = "310115"
    with Publisher(
        "market_regulation", system="console-test", settings=served.flow.settings
    ) as publisher:
        publisher.publish_sync("business_licence", Op.CREATE, after=licence)
    return licence


def _grant_in_force(served: Served, tmp_path: Path) -> str:
    tag = uuid.uuid4().hex[:8]
    grant = Grant.model_validate(
        {
            "grant": f"preview-{tag}",
            "subscriber": f"centre_{tag}",
            "dataset": LICENCE,
            "purpose": "p",
            "legal_basis": "b",
            "approval": "SH-TEST-1",
            "valid_from": "2026-01-01T00:00:00+08:00",
            "rows": "after != null && after.district_code == '310115'",
            "fields": {
                "credit_code": {},
                "legal_representative_id": {"mask": {"type": "show_last", "n": 4}},
            },
        }
    )
    file = tmp_path / "grant.yaml"
    file.write_text(grant_yaml(grant))
    apply_grants(served.flow.settings, served.flow.catalog, [file])
    return grant.grant


def test_the_office_and_the_owner_see_source_and_view_side_by_side_with_the_mask_marked(
    console_server: Served, tmp_path: Path
) -> None:
    grant_id = _grant_in_force(console_server, tmp_path)
    licence = _licence_in_pudong(console_server)
    source_id = str(licence["legal_representative_id"])
    for viewer in (
        _logged_in(console_server, Role.OFFICE),
        _logged_in(console_server, Role.DEPARTMENT, "market_regulation"),
    ):
        page = viewer.get(f"/grants/{grant_id}/preview")
        assert page.status_code == 200, page.text
        assert source_id in page.text  # the source, in full
        assert f"**************{source_id[-4:]}" in page.text  # the view, masked
        assert "delivered" in page.text and 'class="tag">masked' in page.text
        assert "withheld" in page.text  # a field the grant does not name


def test_nobody_else_sees_source_values(console_server: Served, tmp_path: Path) -> None:
    grant_id = _grant_in_force(console_server, tmp_path)
    licence = _licence_in_pudong(console_server)
    for viewer in (
        _logged_in(console_server, Role.SUBSCRIBER, f"centre_{grant_id[-8:]}"),
        _logged_in(console_server, Role.DEPARTMENT, "health"),
        _logged_in(console_server, Role.OPERATOR),
    ):
        page = viewer.get(f"/grants/{grant_id}/preview")
        assert page.status_code == 403
        assert str(licence["legal_representative_id"]) not in page.text
        assert f"/grants/{grant_id}/preview" not in viewer.get("/grants").text


def test_a_draft_under_review_is_previewed_by_the_owner_not_by_the_subscriber(
    console_server: Served,
) -> None:
    subscriber = f"sub_{uuid.uuid4().hex[:8]}"
    asker = _logged_in(console_server, Role.SUBSCRIBER, subscriber)
    number = _file(asker, LICENCE, {"credit_code": "", "legal_representative_id": "redact"})
    licence = _licence_in_pudong(console_server)
    owner = _logged_in(console_server, Role.DEPARTMENT, "market_regulation")
    page = owner.get(f"/requests/{number}/preview")
    assert page.status_code == 200, page.text
    assert str(licence["legal_representative_id"]) in page.text
    assert "(draft)" in page.text
    mine = asker.get(f"/requests/{number}/preview")
    assert mine.status_code == 403
    assert str(licence["legal_representative_id"]) not in mine.text
