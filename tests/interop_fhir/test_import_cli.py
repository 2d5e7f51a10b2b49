"""``ketacare fhir import``: exit 0 when every line is accepted or unchanged, 1 when some are
rejected (with the report file), 2 for bad arguments; on a scratch database of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from ketacare import migrations
from ketacare.auth import service as auth
from ketacare.cli import app
from ketacare.db import make_sessionmaker, transaction
from ketacare.patients.models import Condition, Medication, Patient, PatientObservation
from tests.interop_fhir.test_import_good import GOOD_FILE, PATIENT, ndjson, observation, quantity

runner = CliRunner()


@pytest.fixture
def cli_db(scratch_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    migrations.upgrade(scratch_engine)
    with transaction(make_sessionmaker(scratch_engine)) as db:
        auth.create_clinic(db, None, "Import Clinic", "imp", "IMP", "America/New_York")
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("KETACARE_DATABASE_URL", scratch_engine.url.render_as_string(hide_password=False))
    return scratch_engine


def _count(engine: Engine, model: type) -> int:
    with make_sessionmaker(engine)() as db:
        return int(db.execute(select(func.count()).select_from(model)).scalar_one())


def test_cli_imports_a_good_file_then_finds_it_unchanged(cli_db: Engine, tmp_path: Path) -> None:
    # Patients in a file of their own, after the file that refers to them: Patients go first.
    rest = tmp_path / "rest.ndjson"
    rest.write_bytes(
        b"".join(line + b"\n" for line in GOOD_FILE.splitlines() if b'"Patient"' not in line[:40])
    )
    people = tmp_path / "patients.ndjson"
    people.write_bytes(ndjson(PATIENT))
    report = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "fhir",
            "import",
            str(rest),
            str(people),
            "--clinic",
            "imp",
            "--source",
            "old-ehr",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "9 lines: 9 accepted, 0 unchanged, 0 rejected" in result.output
    written = json.loads(report.read_text())
    assert written["totals"] == {"lines": 9, "accepted": 9, "unchanged": 0, "rejected": 0}
    assert [(x["file"].rsplit("/", 1)[-1], x["line"]) for x in written["lines"]][:2] == [
        ("rest.ndjson", 1),
        ("rest.ndjson", 2),
    ]
    assert (_count(cli_db, Patient), _count(cli_db, Condition), _count(cli_db, Medication)) == (1, 1, 1)
    assert _count(cli_db, PatientObservation) == 4
    again = runner.invoke(
        app, ["fhir", "import", str(rest), str(people), "--clinic", "imp", "--source", "old-ehr"]
    )
    assert again.exit_code == 0 and "0 accepted, 9 unchanged" in again.output
    assert _count(cli_db, Patient) == 1 and _count(cli_db, PatientObservation) == 4


def test_cli_exits_1_with_rejected_lines_and_writes_the_report(cli_db: Engine, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(ndjson(PATIENT) + b"{broken\n" + ndjson({"resourceType": "Encounter", "id": "e"}))
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    result = runner.invoke(
        app, ["fhir", "import", str(mixed), "--clinic", "imp", "--source", "old-ehr", "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    assert "1 accepted, 0 unchanged, 2 rejected" in result.output
    lines = json.loads(report.read_text())["lines"]
    assert [(x["line"], x["outcome"]) for x in lines] == [(1, "accepted"), (2, "rejected"), (3, "rejected")]
    assert "not JSON" in lines[1]["reason"] and "'Encounter' is not imported" in lines[2]["reason"]
    assert _count(cli_db, Patient) == 1  # the accepted line was committed


def test_cli_bad_arguments_exit_2_and_import_nothing(cli_db: Engine, tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson(PATIENT))
    missing = runner.invoke(
        app, ["fhir", "import", str(tmp_path / "nope.ndjson"), "--clinic", "imp", "--source", "old-ehr"]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    unknown = runner.invoke(app, ["fhir", "import", str(good), "--clinic", "atlantis", "--source", "old-ehr"])
    assert unknown.exit_code == 2
    assert _count(cli_db, Patient) == 0
    helped = runner.invoke(app, ["fhir", "import", "--help"])
    text = " ".join(helped.output.replace("│", " ").split())
    assert "1 when some lines were rejected" in text and "2 for bad arguments" in text


def test_cli_needs_a_source_system(cli_db: Engine, tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson(PATIENT))
    missing = runner.invoke(app, ["fhir", "import", str(good), "--clinic", "imp"])
    assert missing.exit_code == 2 and "--source" in missing.output
    blank = runner.invoke(app, ["fhir", "import", str(good), "--clinic", "imp", "--source", "  "])
    assert blank.exit_code == 2
    assert "--source: Name the system the records come from" in " ".join(blank.output.split())
    assert _count(cli_db, Patient) == 0


def test_cli_rejects_a_date_out_of_range_and_writes_the_report(cli_db: Engine, tmp_path: Path) -> None:
    year_one = observation(
        "hr-y1", "8867-4", effectiveDateTime="0001-01-01T00:30:00+01:00", valueQuantity=quantity(64, "/min")
    )
    good_hr = observation("hr-ok", "8867-4", valueQuantity=quantity(64, "/min"))
    records = tmp_path / "records.ndjson"
    records.write_bytes(ndjson(PATIENT, year_one, good_hr))
    report = tmp_path / "report.json"
    result = runner.invoke(
        app,
        ["fhir", "import", str(records), "--clinic", "imp", "--source", "old-ehr", "--report", str(report)],
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "2 accepted, 0 unchanged, 1 rejected" in result.output
    lines = json.loads(report.read_text())["lines"]
    assert [(x["line"], x["outcome"]) for x in lines] == [(1, "accepted"), (2, "rejected"), (3, "accepted")]
    assert "is not an instant KetaCare can keep" in lines[1]["reason"]
    assert (_count(cli_db, Patient), _count(cli_db, PatientObservation)) == (1, 1)
