"""Nothing typed as free text reaches a research output. Identifiers (a name, a phone number, an
e-mail address, a record number, a date) are planted in every text and JSON column of the
database (adverse-event terms and notes, allergies, medications, notes, reasons, questionnaire
answers, addresses, indications, routes, protocol keys ...; only the log-in, audit and hash-chain
tables and the status/instrument/timepoint codes the registry counts by are left as they are),
and every research output is searched for them: the researcher's page, its CSVs and standalone
HTML, the operator's report files (what ``ketacare report registry`` writes), the Safe Harbor
and limited-data-set exports (every Parquet value, the data dictionary, the README)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ketacare import models
from ketacare.analytics import report as rendering
from ketacare.analytics import service
from ketacare.analytics.schemas import AgreementIn
from tests.analytics.random_cohort import BASE_ID, fill
from tests.helpers import clinic_today

IDENTIFIERS = ("Zebulon Quackenbush", "555-867-5309", "zq@example.org", "TST-4242", "1961-04-12")
FULL = " ".join(IDENTIFIERS)
LEFT_ALONE_TABLES = {
    "users", "login_sessions", "login_attempts", "api_tokens", "audit_entries", "audit_head",
    "ledger_heads", "ledger_entries", "fhir_import_links", "fhir_export_jobs", "fhir_export_files",
    "research_data_use_agreements", "alembic_version",
}  # fmt: skip
LEFT_ALONE_COLUMNS = {
    "status",
    "instrument",
    "timepoint",
    "time_zone",
    "slug",
    "record_prefix",
    "role",
    "term_key",
}
# the free-text fields the issue names: each must have been planted
MUST_PLANT = {
    ("adverse_events", "term"), ("adverse_events", "description"), ("adverse_events", "review_note"),
    ("adverse_events", "medication_given"), ("patient_allergies", "substance"),
    ("patient_allergies", "reaction"), ("patient_medications", "name"), ("outcome_diary", "note"),
    ("treatment_plans", "notes"), ("treatment_plans", "cancel_reason"), ("treatment_plans", "indication"),
    ("treatment_sessions", "abort_reason"),
    ("patients", "address_line"), ("patients", "given_name"), ("patients", "family_name"),
    ("screening_assessments", "notes"), ("outcome_follow_ups", "draft"), ("treatment_plans", "route"),
}  # fmt: skip


def _plant(db: Session) -> set[tuple[str, str]]:
    planted: set[tuple[str, str]] = set()
    for table in models.metadata.sorted_tables:
        if table.name in LEFT_ALONE_TABLES:
            continue
        for column in table.columns:
            if column.primary_key or column.foreign_keys or column.name in LEFT_ALONE_COLUMNS:
                continue
            if column.name.endswith(("_sha256", "_hash", "_status")):
                continue
            value: Any
            if isinstance(column.type, sa.JSON):
                value = {"comment": FULL}
            elif isinstance(column.type, sa.String | sa.Text):
                length = column.type.length or 10_000
                fitting = [s for s in (FULL, *IDENTIFIERS) if len(s) <= length]
                if not fitting:
                    continue
                value = fitting[0]
            else:
                continue
            try:
                with db.begin_nested():
                    db.execute(table.update().values({column.name: value}))
                planted.add((table.name, column.name))
            except sa.exc.DBAPIError:
                pass  # a CHECK or unique constraint refused it: the column holds a code
    # some adverse events as "other": their name typed as free text
    ae = models.metadata.tables["adverse_events"]
    db.execute(ae.update().where(ae.c.id % 2 == 0).values(term_key="other"))
    db.flush()
    return planted


def _leaks(name: str, text: str) -> list[str]:
    return [f"{name}: {s}" for s in (*IDENTIFIERS, "Quackenbush", "867-5309") if s in text]


def _zip_text(content: bytes) -> dict[str, str]:
    out = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if name.endswith(".parquet"):
                out[name] = pd.read_parquet(io.BytesIO(data)).to_csv(index=False)
            else:
                out[name] = data.decode("utf-8")
    return out


def _dir_text(path: Path) -> dict[str, str]:
    return {
        p.name: pd.read_parquet(p).to_csv(index=False) if p.suffix == ".parquet" else p.read_text("utf-8")
        for p in path.iterdir()
    }


def test_identifiers_planted_in_every_free_text_field_reach_no_research_output(  # type: ignore[no-untyped-def]
    db, world, as_role, tmp_path
) -> None:
    fill(db.connection(), 21, patients=150)
    # the researcher's own clinic gets the cohort's first clinic's series too
    db.execute(sa.text("UPDATE treatment_plans SET clinic_id = :c WHERE clinic_id = :r"),
               {"c": world.clinic.id, "r": BASE_ID + 1})  # fmt: skip
    for t in (
        "treatment_sessions",
        "adverse_events",
        "outcome_follow_ups",
        "outcome_scores",
        "outcome_mme",
        "patients",
    ):
        db.execute(
            sa.text(f"UPDATE {t} SET clinic_id = :c WHERE clinic_id = :r"),
            {"c": world.clinic.id, "r": BASE_ID + 1},
        )
    planted = _plant(db)
    assert planted >= MUST_PLANT, MUST_PLANT - planted
    texts: dict[str, str] = {}
    # the operator's command line: the report over every clinic and both exports
    today = clinic_today()
    report = service.operator_report(db, None, today)
    assert report.scope == "research" and report.table("summary").rows
    texts |= {
        f"cli report {k}": v for k, v in _dir_text(_write(rendering.write, report, tmp_path / "r")).items()
    }
    safe = service.deidentified(db, None, "safe_harbor")
    safe.write(tmp_path / "sh")
    texts |= {f"safe harbor {k}": v for k, v in _dir_text(tmp_path / "sh").items()}
    dua = service.record_agreement(
        db, None, world.clinic.id,
        AgreementIn(recipient="Research group", purpose="outcomes study", starts_on=today,
                    ends_on=today + dt.timedelta(days=30), approved_by="Privacy officer"),
    )  # fmt: skip
    lds = service.deidentified(db, None, "limited", dua.id, today, clinic_id=world.clinic.id)
    assert lds.frames["sessions"]["started_on"].notna().any()
    lds.write(tmp_path / "lds")
    texts |= {f"limited {k}": v for k, v in _dir_text(tmp_path / "lds").items()}
    db.commit()
    # the researcher in the app
    client = as_role("researcher")
    for url in ("/research/registry", "/research/registry/report.html", "/research/registry/summary.csv",
                "/research/registry/adverse_events.csv", "/research/registry/relief.csv"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 200, url
        texts[url] = response.text
    assert "other (not coded)" in texts["/research/registry/adverse_events.csv"]
    for url in ("/research/export.zip", f"/research/export.zip?method=limited&agreement={dua.id}"):
        response = client.get(url)
        assert response.status_code == 200, url
        texts |= {f"{url} {k}": v for k, v in _zip_text(response.content).items()}
    leaks = [leak for name, text in texts.items() for leak in _leaks(name, text)]
    assert leaks == []
    assert len(texts) >= 30


def _write(write: Any, report: Any, out: Path) -> Path:
    write(report, out)
    return out
