"""The registry from the real database: by role, the clinic report, the research report (no
identities, small cells suppressed), CSV and the de-identified export."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from sqlalchemy.orm import Session

from ketacare.analytics import extract, registry
from ketacare.planning.models import Chair, PlanSession, TreatmentPlan
from ketacare.sessions.models import TreatmentSession
from tests.helpers import audit_entries, clinic_today


def discharged_series(db: Session, clinic_id: int, patient_id: int, staff_id: int, day: dt.date) -> int:
    """A one-session series discharged on ``day``, written directly (the flow is tested in tests/sessions)."""
    chair = Chair(clinic_id=clinic_id, room="R", name=f"Registry chair {patient_id}", active=True)
    db.add(chair)
    db.flush()
    plan = TreatmentPlan(
        clinic_id=clinic_id,
        patient_id=patient_id,
        purpose="series",
        status="scheduled",
        protocol_key="outpatient_series",
        protocol_version=1,
        protocol_snapshot={},
        indication="CRPS",
        eligibility_status="eligible",
        route="iv_infusion",
        dose=0.35,
        dose_unit="mg/kg/h",
        session_duration_min=60,
        sessions=1,
        interval_days=7,
        start_date=day,
        end_date=day,
        preferred_time="09:00",
        concentration_mg_per_ml=1.0,
        premedication=[],
        weight_kg=80,
        weight_measured_on=day,
        session_doses=[],
        findings=[],
    )
    db.add(plan)
    db.flush()
    at = dt.datetime(day.year, day.month, day.day, 9, tzinfo=dt.UTC)
    booked = PlanSession(
        plan_id=plan.id,
        clinic_id=clinic_id,
        number=1,
        starts_at=at,
        ends_at=at + dt.timedelta(hours=1),
        chair_id=chair.id,
        staff_id=staff_id,
    )
    db.add(booked)
    db.flush()
    db.add(
        TreatmentSession(
            clinic_id=clinic_id,
            patient_id=patient_id,
            plan_id=plan.id,
            plan_session_id=booked.id,
            number=1,
            status="discharged",
            route="iv_infusion",
            drug="ketamine",
            planned_duration_min=60,
            concentration_mg_per_ml=1.0,
            chair_id=chair.id,
            started_at=at,
            discharged_at=at + dt.timedelta(hours=2),
        )
    )
    db.flush()
    return plan.id


@pytest.fixture
def seeded(db, world):  # type: ignore[no-untyped-def]
    day = clinic_today() - dt.timedelta(days=40)
    discharged_series(db, world.clinic.id, world.patient_a.id, world.users["nurse"].id, day)
    discharged_series(
        db, world.other_clinic.id, world.other_patient.id, world.users["outsider_nurse"].id, day
    )
    db.commit()
    return world


def test_extract_reads_the_clinic_only(db, seeded) -> None:  # type: ignore[no-untyped-def]
    ex = extract.extract(db, seeded.clinic.id)
    assert set(ex.sessions["patient_id"]) == {seeded.patient_a.id}
    report = registry.build(ex, clinic_today(), research=False)
    assert report.table("summary").rows[0]["patients"] == 1


@pytest.mark.parametrize(
    ("role", "clinic", "research"),
    [
        ("admin", 200, 403),
        ("prescriber", 200, 403),
        ("nurse", 403, 403),
        ("researcher", 403, 200),
        ("auditor", 403, 403),
        ("patient_a", 403, 403),
    ],
)
def test_registry_by_role(as_role, seeded, role, clinic, research) -> None:  # type: ignore[no-untyped-def]
    client = as_role(role)
    for url in ("/registry", "/registry/summary.csv", "/registry/report.html"):
        assert client.get(url).status_code == clinic, url
    for url in ("/research/registry", "/research/registry/summary.csv", "/research/export.zip"):
        assert client.get(url).status_code == research, url


def test_clinic_report_page_and_csv(as_role, seeded, db) -> None:  # type: ignore[no-untyped-def]
    client = as_role("admin")
    page = client.get("/registry")
    assert "Clinic registry" in page.text and 'id="registry-responders"' in page.text
    csv = client.get("/registry/summary.csv")
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith(
        "dimension,group,patients"
    )
    assert "all,all,1," in csv.text  # the other clinic's patient is not counted
    assert client.get("/registry/nope.csv").status_code == 404
    assert audit_entries(db, "registry.read")


def test_research_sees_no_identity_and_small_cells_suppressed(as_role, seeded) -> None:  # type: ignore[no-untyped-def]
    client = as_role("researcher")
    page = client.get("/research/registry")
    assert "de-identified" in page.text and "suppressed (&lt; 11 patients)" in page.text
    for secret in ("Lovelace", "Ada", "TST-900001", "Otto"):
        assert secret not in page.text
    archive = zipfile.ZipFile(io.BytesIO(client.get("/research/export.zip").content))
    assert {"patients.parquet", "sessions.parquet", "data_dictionary.csv"} <= set(archive.namelist())
    blob = b"".join(archive.read(n) for n in archive.namelist())
    assert b"Lovelace" not in blob and b"TST-900001" not in blob


def test_research_export_holds_only_the_researchers_clinic(as_role, seeded) -> None:  # type: ignore[no-untyped-def]
    # found in review: the export pooled every clinic on the server for any research token
    import pyarrow.parquet as pq

    client = as_role("researcher")
    archive = zipfile.ZipFile(io.BytesIO(client.get("/research/export.zip").content))
    sessions = pq.read_table(io.BytesIO(archive.read("sessions.parquet")))
    patients = pq.read_table(io.BytesIO(archive.read("patients.parquet")))
    assert sessions.num_rows == 1  # the other clinic's series is not in it
    assert len(set(patients.column("clinic").to_pylist())) == 1


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        ("responders, complete-case and missing as no response (IMMPACT)", "counted as no response"),
        ("baseline look-back (design, clinic-editable)", "within 30 days before the first session"),
        ("relief: interval-censored, censored at the last follow-up, boosters", "interval-censored"),
        ("relief: informative censoring", "informative censoring"),
        ("AE rates: aborted sessions in numerator and denominator", "aborted sessions in both"),
        ("opioid users only, non-users apart", "patients on no opioid shown apart"),
        ("clustering by patient and adjusted p-values", "Benjamini-Hochberg"),
    ],
)
def test_the_registry_page_explains_each_definition(as_role, seeded, definition, words) -> None:  # type: ignore[no-untyped-def]
    for role, url in (("admin", "/registry"), ("researcher", "/research/registry")):
        page = as_role(role).get(url)
        assert page.status_code == 200 and words in page.text, (definition, url)
