"""The provisioning file: what it implies (users, least-privilege ACLs, topics) and every
mistake in it reported with its line; the plan from a cluster's state (no broker needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.support.checkout import ROOT as REPO
from xbus.core.catalog import Catalog
from xbus.deploy.provisioning.access import (
    Acl,
    connect_principal,
    in_namespace,
    principals,
    topics,
)
from xbus.deploy.provisioning.bus_file import BusFile, load_bus_file
from xbus.deploy.provisioning.cluster import ClusterState, make_plan
from xbus.deploy.provisioning.errors import BusFileError, ProvisioningError
from xbus.deploy.provisioning.passwords import keep_password, password_path

DEMO = REPO / "bus.yaml"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(REPO / "schemas")


@pytest.fixture(scope="module")
def demo(catalog: Catalog) -> BusFile:
    return load_bus_file(DEMO, catalog, REPO / "grants")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bus.yaml"
    path.write_text(text)
    return path


def _problems(path: Path, catalog: Catalog, grants: Path | None = None) -> list[str]:
    with pytest.raises(BusFileError) as raised:
        load_bus_file(path, catalog, grants)
    return [str(p) for p in raised.value.problems]


def _acls(bus: BusFile, user: str) -> set[str]:
    (principal,) = [p for p in principals(bus, REPO) if p.user == user]
    return {
        f"{a.operation} {a.resource} {a.name}{'*' if a.pattern == 'PREFIXED' else ''}"
        for a in principal.acls
    }


def test_the_demo_file_names_a_user_per_department_subscriber_and_service(demo: BusFile) -> None:
    users = {p.user for p in principals(demo, REPO)}
    assert "department.market_regulation" in users
    assert "subscriber.tax_bureau" in users
    services = {"engine", "connectors", "sse", "gateway", "connect", "cdc_bridge"}
    assert {f"service.{s}" for s in services} <= users
    assert all(in_namespace(u) for u in users)
    assert len(users) == 5 + 6 + 6


def test_a_department_may_only_write_its_own_topics(demo: BusFile) -> None:
    assert _acls(demo, "department.health") == {
        "WRITE TOPIC gov.health.*",
        "DESCRIBE TOPIC gov.health.*",
        # What the CDC bridge could not republish of its own database's rows.
        "READ TOPIC cdc.health._dead_letters",
        "DESCRIBE TOPIC cdc.health._dead_letters",
    }


def test_a_subscriber_may_only_read_its_own_topics_and_use_its_own_groups(demo: BusFile) -> None:
    assert _acls(demo, "subscriber.open_data") == {
        "READ TOPIC deliver.open_data.*",
        "DESCRIBE TOPIC deliver.open_data.*",
        "READ GROUP open_data.*",
    }


def test_no_one_but_the_office_may_write_grants_or_read_dead_letters(demo: BusFile) -> None:
    every = [a for p in principals(demo, REPO) for a in p.acls]
    assert not [
        a
        for a in every
        if a.name == "_xbus.grants" and a.operation != "READ" and a.operation != "DESCRIBE"
    ]
    for topic in ("_xbus.audit", "_xbus.dead-letters"):
        assert {a.user for a in every if a.name == topic} == {"service.engine"}
    # The engine reads the audit trail to continue its hash chains, never its dead letters.
    assert {a.operation for a in every if a.name == "_xbus.audit"} == {"WRITE", "DESCRIBE", "READ"}
    assert {a.operation for a in every if a.name == "_xbus.dead-letters"} == {"WRITE", "DESCRIBE"}
    # Nobody holds a wildcard, a cluster right or a topic prefix that reaches _xbus.*.
    assert not [a for a in every if a.resource not in ("TOPIC", "GROUP")]
    assert not [a for a in every if a.pattern == "PREFIXED" and "_xbus.".startswith(a.name)]


def test_the_gateway_writes_sources_and_reads_nothing(demo: BusFile) -> None:
    assert _acls(demo, "service.gateway") == {"WRITE TOPIC gov.*", "DESCRIBE TOPIC gov.*"}


def test_the_connect_worker_writes_cdc_and_its_own_topics_only(demo: BusFile) -> None:
    assert _acls(demo, "service.connect") == {
        *(
            f"{op} TOPIC _xbus.connect.*"
            for op in ("READ", "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS")
        ),
        "READ GROUP _xbus.connect",
        "WRITE TOPIC cdc.*",
        "DESCRIBE TOPIC cdc.*",
        "CREATE TOPIC cdc.*",
    }
    (principal,) = [p for p in principals(demo, REPO) if p.user == "service.connect"]
    assert principal == connect_principal()


def test_the_cdc_bridge_reads_cdc_and_writes_sources(demo: BusFile) -> None:
    assert _acls(demo, "service.cdc_bridge") == {
        "READ TOPIC cdc.*",
        "DESCRIBE TOPIC cdc.*",
        # Each department's CDC dead letters, and no other cdc.* topic.
        *(f"WRITE TOPIC cdc.{d}._dead_letters" for d in demo.departments),
        "READ GROUP xbus-cdc-bridge*",
        "WRITE TOPIC gov.*",
        "DESCRIBE TOPIC gov.*",
    }


def test_topics_carry_the_settings_of_the_file(demo: BusFile) -> None:
    made = {t.name: t for t in topics(demo)}
    assert made["cdc.civil_affairs._dead_letters"].partitions == 1
    assert made["gov.market_regulation.business_licence"].config["retention.ms"] == "2592000000"
    assert made["gov.health.clinic"].partitions == 12  # the default: workers share a dataset
    assert made["_xbus.grants"].config == {"cleanup.policy": "compact", "retention.ms": "-1"}
    assert made["_xbus.reference.districts"].config["cleanup.policy"] == "compact"
    assert made["_xbus.audit"].config == {"retention.ms": "-1"}
    assert made["deliver.tax_bureau._dead_letters"].partitions == 1
    assert not [n for n in made if n.startswith("deliver.") and not n.endswith("_dead_letters")]


def test_an_unknown_key_is_an_error_with_its_line(tmp_path: Path, catalog: Catalog) -> None:
    path = _write(tmp_path, "version: 1\nsubscribers:\n  tax_bureau: {pasword_file: x}\n")
    (found,) = [p for p in _problems(path, catalog) if "pasword_file" in p]
    assert found.startswith(f"{path}:3: subscribers.tax_bureau.pasword_file: unknown key")


def test_a_dataset_the_catalog_lacks_is_an_error_with_its_line(
    tmp_path: Path, catalog: Catalog
) -> None:
    text = DEMO.read_text().replace("      clinic: {}", "      clinics: {}")
    path = _write(tmp_path, text)
    found = _problems(path, catalog)
    line = text.splitlines().index("      clinics: {}") + 1
    assert f"{path}:{line}: the catalog has no dataset health.clinics" in found[0]
    assert any("dataset health.clinic is in the catalog" in p for p in found)


def test_a_catalog_department_left_out_is_an_error(tmp_path: Path, catalog: Catalog) -> None:
    text = DEMO.read_text().replace("  human_resources:\n", "  human_resourcez:\n")
    found = _problems(_write(tmp_path, text), catalog)
    assert any(
        "department human_resources owns human_resources.insurance_contribution in the catalog" in p
        and "insurance_contribution.avsc" in p
        for p in found
    )


def test_a_subscriber_named_by_a_grant_must_be_declared(tmp_path: Path, catalog: Catalog) -> None:
    text = DEMO.read_text().replace("  district_cdc: {}\n", "")
    found = _problems(_write(tmp_path, text), catalog, REPO / "grants")
    assert len(found) == 1
    assert "subscriber district_cdc is named by the grant" in found[0]
    assert "grants/district_cdc/vaccination_record.yaml:" in found[0]


def test_bad_names_and_values_are_errors(tmp_path: Path, catalog: Catalog) -> None:
    text = (
        DEMO.read_text()
        .replace("  open_data: {}", "  Open-Data: {}")
        .replace("business_licence: {partitions: 12", "business_licence: {partitions: 0")
    )
    found = _problems(_write(tmp_path, text), catalog)
    assert any("partitions: Input should be greater than or equal to 1" in p for p in found)


def _state(**overrides: object) -> ClusterState:
    values: dict[str, object] = {
        "topics": {},
        "configs": {},
        "users": frozenset(),
        "acls": frozenset(),
    }
    values.update(overrides)
    return ClusterState(**values)  # type: ignore[arg-type]


def test_an_empty_cluster_gets_everything_and_a_provisioned_one_nothing(
    demo: BusFile, tmp_path: Path
) -> None:
    wanted, users = topics(demo), principals(demo, REPO)
    first = make_plan(_state(), users, wanted, tmp_path)
    assert len(first.topics_to_create) == len(wanted)
    assert {p.user for p in first.passwords} == {p.user for p in users}
    assert all(p.create for p in first.passwords)
    assert first.passwords[0].password not in repr(first.passwords[0])

    for change in first.passwords:
        keep_password(tmp_path, change.user, change.password)
    done = _state(
        topics={t.name: t.partitions for t in wanted},
        configs={t.name: dict(t.config) for t in wanted},
        users=frozenset(p.user for p in users),
        acls=frozenset(a for p in users for a in p.acls),
    )
    assert make_plan(done, users, wanted, tmp_path).empty


def test_what_the_file_no_longer_names_is_removed_but_only_in_its_namespaces(
    demo: BusFile, tmp_path: Path
) -> None:
    wanted, users = topics(demo), principals(demo, REPO)
    for p in users:
        keep_password(tmp_path, p.user, "x" * 20)
    stale = Acl("subscriber.gone", "TOPIC", "deliver.gone.", "PREFIXED", "READ")
    state = _state(
        topics={**{t.name: t.partitions for t in wanted}, "gov.gone.x": 3, "deliver.gone.x": 3},
        configs={t.name: dict(t.config) for t in wanted},
        users=frozenset({*(p.user for p in users), "subscriber.gone"}),
        acls=frozenset({*(a for p in users for a in p.acls), stale}),
    )
    plan = make_plan(state, users, wanted, tmp_path)
    assert plan.users_to_remove == ["subscriber.gone"]
    assert plan.acls_to_remove == [stale]
    assert plan.topics_to_remove == []
    with_topics = make_plan(state, users, wanted, tmp_path, remove_topics=True)
    assert with_topics.topics_to_remove == ["deliver.gone.x", "gov.gone.x"]


def test_changed_settings_are_altered_and_partitions_only_added(
    demo: BusFile, tmp_path: Path
) -> None:
    wanted = topics(demo)
    configs = {t.name: dict(t.config) for t in wanted}
    configs["_xbus.grants"]["cleanup.policy"] = "delete"
    counts = {t.name: t.partitions for t in wanted}
    counts["gov.market_regulation.business_licence"] = 2
    counts["gov.health.clinic"] = 16
    plan = make_plan(_state(topics=counts, configs=configs), [], wanted, tmp_path)
    assert plan.configs_to_alter == {"_xbus.grants": {"cleanup.policy": "compact"}}
    assert plan.partitions_to_add == {"gov.market_regulation.business_licence": (2, 12)}
    assert [n.target for n in plan.notes] == ["gov.health.clinic"]


def test_a_lost_password_is_reset_and_rotation_gives_a_new_one(
    demo: BusFile, tmp_path: Path
) -> None:
    users = [p for p in principals(demo, REPO) if p.user == "department.health"]
    state = _state(users=frozenset({"department.health"}), acls=frozenset(users[0].acls))
    (lost,) = make_plan(state, users, [], tmp_path).passwords
    assert not lost.create and "missing" in lost.why
    keep_password(tmp_path, "department.health", "old-password-kept")
    assert make_plan(state, users, [], tmp_path).empty
    (rotated,) = make_plan(state, users, [], tmp_path, rotate={"department.health"}).passwords
    assert rotated.password != "old-password-kept"
    with pytest.raises(ProvisioningError, match="admin: not a user the file names"):
        make_plan(state, users, [], tmp_path, rotate={"admin"})


def test_a_password_file_named_by_the_file_is_used(tmp_path: Path, catalog: Catalog) -> None:
    (tmp_path / "gw.password").write_text("a-long-enough-password\n")
    text = DEMO.read_text().replace("  gateway: {}", "  gateway: {password_file: gw.password}")
    bus = load_bus_file(_write(tmp_path, text), catalog, None)
    users = [p for p in principals(bus, tmp_path) if p.user == "service.gateway"]
    (made,) = make_plan(_state(), users, [], tmp_path / "secrets").passwords
    assert made.password == "a-long-enough-password"


def test_kept_passwords_are_private_files(tmp_path: Path) -> None:
    path = keep_password(tmp_path / "secrets", "department.health", "s3cret-s3cret")
    assert path == password_path(tmp_path / "secrets", "department.health")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
