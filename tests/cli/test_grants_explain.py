"""``xbus grants explain`` given what a person may give it: every mistake is one clear line
and exit 1, never a traceback, and never a personal or sensitive value quoted back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.checkout import ROOT
from xbus.cli.main import app
from xbus.core.values import to_json
from xbus.producers.demodata import DemoData
from xbus.streams.decision import Decision
from xbus.streams.explanation import Explanation, explain_json

GRANT = ROOT / "grants" / "one_stop_centre" / "business_licence.yaml"
LICENCE = json.loads(to_json(DemoData(seed=7).business_licence()))


@pytest.fixture(autouse=True)
def _catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_SCHEMAS_DIR", str(ROOT / "schemas"))
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "explain-test-secret-key")


def _explain(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["grants", "explain", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _event(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "event.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_event_is_explained_as_strict_json(tmp_path: Path) -> None:
    event = _event(tmp_path, json.dumps({"op": "CREATE", "after": LICENCE}))
    code, out = _explain("--grant", str(GRANT), "--event", str(event))
    assert code == 0, out
    explained = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert explained["decision"] in ("delivered", "filtered")
    assert explained["row_filter"].startswith("reads district_code (public)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"op": "CREATE",\n  "after": {"name": }', "event.json:2:21: not JSON: Expecting value"),
        ("", "event.json: empty; give one change event as a JSON object"),
        ("  \n", "event.json: empty; give one change event as a JSON object"),
        ("[1, 2]", "event.json: give one change event as a JSON object"),
        ('{"op": "CREATE", "after": {"n": NaN}}', "event.json: not JSON: NaN is not a JSON number"),
        (json.dumps({"after": LICENCE}), "event.json: no op; say which it is: CREATE, UPDATE"),
        (json.dumps({"op": "CREATE"}), "event.json: CREATE carries after; after is missing"),
        (
            json.dumps({"op": "UPDATE", "after": LICENCE}),
            "event.json: UPDATE carries before and after; before is missing",
        ),
        (
            json.dumps({"op": "DELETE", "after": LICENCE}),
            "DELETE carries before; before is missing",
        ),
    ],
)
def test_a_bad_event_file_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    event = _event(tmp_path, text)
    code, out = _explain("--grant", str(GRANT), "--event", str(event))
    assert code == 1
    assert expected in " ".join(out.split()), out
    assert "Traceback" not in out


def test_folders_and_missing_files_are_refused(tmp_path: Path) -> None:
    event = _event(tmp_path, json.dumps({"op": "CREATE", "after": LICENCE}))
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, expected in (
        (["--grant", str(GRANT), "--event", str(tmp_path)], "a folder; give one change event"),
        (["--grant", str(empty), "--event", str(event)], "give one grant file"),
        (["--grant", str(ROOT / "grants"), "--event", str(event)], "give one grant file"),
        (["--grant", str(GRANT), "--event", str(tmp_path / "no.json")], "no such file"),
        (["--grant", str(tmp_path / "no.yaml"), "--event", str(event)], "give one grant file"),
    ):
        code, out = _explain(*args)
        assert code == 1 and expected in " ".join(out.split()), out


@pytest.mark.parametrize("at", ["", "  ", "yesterday", "2026-11-30T10:00:00"])
def test_a_bad_moment_is_refused(tmp_path: Path, at: str) -> None:
    event = _event(tmp_path, json.dumps({"op": "CREATE", "after": LICENCE}))
    code, out = _explain("--grant", str(GRANT), "--event", str(event), "--at", at)
    assert code == 1 and "--at" in out, out


def test_a_protected_value_is_never_quoted_back(tmp_path: Path) -> None:
    secret_id = "31011519900101123X-not-valid"
    event = _event(
        tmp_path,
        json.dumps(
            {
                "op": "CREATE",
                "after": {
                    **LICENCE,
                    "legal_representative_id": secret_id,
                    "contact_phone": 13917263548,
                },
            }
        ),
    )
    code, out = _explain("--grant", str(GRANT), "--event", str(event))
    flat = " ".join(out.split())
    assert code == 1
    assert "after.contact_phone" in flat and "got a int (not shown: the field is personal)" in flat
    assert "13917263548" not in flat and secret_id not in flat and secret_id[:10] not in flat


def test_a_pseudonym_without_its_secret_is_the_decision_failed_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XBUS_PSEUDONYM_KEY")
    monkeypatch.delenv("XBUS_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("XBUS_HOME", str(tmp_path / "home"))
    record = json.loads(to_json(DemoData(seed=7).vaccination_record()))
    event = _event(tmp_path, json.dumps({"op": "CREATE", "after": record}))
    grant = ROOT / "grants" / "district_cdc" / "vaccination_record.yaml"
    code, out = _explain("--grant", str(grant), "--event", str(event))
    assert code == 0, out
    explained = json.loads(out)
    assert explained["decision"] == "failed"
    assert "XBUS_PSEUDONYM_KEY" in explained["reason"]
    assert record["person"]["id_number"] not in out


def test_a_double_that_is_no_number_is_written_as_a_string() -> None:
    explanation = Explanation(
        "g", 1, Decision("delivered", "", {"after": {"ratio": float("nan"), "x": float("inf")}}), {}
    )
    text = explain_json(explanation)
    assert json.loads(text)["received"]["after"] == {"ratio": "NaN", "x": "Infinity"}
    assert "NaN," not in text and ": NaN" not in text
