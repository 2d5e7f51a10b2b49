"""Patients in running treatment sessions on a real, committed database, for the HL7 tests and
the benchmark (``bench/hl7_ingest.py`` imports this).

The rows are inserted directly, not walked through check-in and pre-checks: the HL7 path only
needs a session in progress, and a threaded listener or a subprocess needs committed data, which
the per-test rolled-back fixtures cannot give. tests/sessions walks the real state machine.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ketacare import migrations
from ketacare.auth.models import Clinic, User
from ketacare.db import make_sessionmaker, transaction
from ketacare.interop.hl7v2.monitor import DEFAULT_BASELINE
from ketacare.patients.models import Patient
from ketacare.planning.models import Chair, PlanSession, TreatmentPlan
from ketacare.sessions import rules
from ketacare.sessions.models import Alarm, DeviceMessage, TreatmentSession, VitalSign


def seed_running_sessions(
    engine: Engine,
    *,
    clinic_slug: str = "north",
    patients: int = 1,
    prefix: str = "NSP",
    migrate: bool = True,
) -> list[str]:
    """A clinic with ``patients`` patients, each in a running session; their record numbers."""
    if migrate:
        migrations.upgrade(engine)
    now = dt.datetime.now(dt.UTC)
    records = [f"{prefix}-{n:06d}" for n in range(1, patients + 1)]
    with transaction(make_sessionmaker(engine)) as db:
        clinic = Clinic(
            name=f"{clinic_slug.title()} Clinic",
            slug=clinic_slug,
            record_prefix=prefix,
            time_zone="America/New_York",
        )
        db.add(clinic)
        db.flush()
        prescriber = User(
            clinic_id=clinic.id,
            username=f"dr.{clinic_slug}",
            full_name="Dr Hl7",
            role="prescriber",
            prescriber_kind="physician",
            password_hash="!",  # cannot log in
        )
        db.add(prescriber)
        db.flush()
        for n, record in enumerate(records, start=1):
            _running_session(db, clinic.id, prescriber.id, record, n, now)
    return records


def _running_session(
    db: Session, clinic_id: int, prescriber_id: int, record: str, n: int, now: dt.datetime
) -> None:
    chair = Chair(clinic_id=clinic_id, room="Infusion", name=f"Chair {n}")
    patient = Patient(
        clinic_id=clinic_id,
        record_number=record,
        given_name="Test",
        family_name=f"Patient {n}",
        date_of_birth=dt.date(1975, 1, 1),
        sex="female",
    )
    db.add_all([chair, patient])
    db.flush()
    plan = TreatmentPlan(
        clinic_id=clinic_id,
        patient_id=patient.id,
        purpose="series",
        status="scheduled",
        protocol_key="test",
        protocol_version=1,
        protocol_snapshot={},
        eligibility_status="eligible",
        route="iv_infusion",
        dose=0.5,
        dose_unit="mg/kg",
        session_duration_min=240,
        sessions=1,
        interval_days=1,
        start_date=now.date(),
        end_date=now.date(),
        preferred_time="09:00",
        concentration_mg_per_ml=1.0,
        premedication=[],
        weight_kg=70.0,
        weight_measured_on=now.date(),
        session_doses=[],
        findings=[],
    )
    db.add(plan)
    db.flush()
    booked = PlanSession(
        plan_id=plan.id,
        clinic_id=clinic_id,
        number=1,
        starts_at=now - dt.timedelta(minutes=30),
        ends_at=now + dt.timedelta(hours=4),
        chair_id=chair.id,
        staff_id=prescriber_id,
    )
    db.add(booked)
    db.flush()
    db.add(
        TreatmentSession(
            clinic_id=clinic_id,
            patient_id=patient.id,
            plan_id=plan.id,
            plan_session_id=booked.id,
            number=1,
            status=rules.RUNNING,
            route="iv_infusion",
            drug="ketamine",
            planned_duration_min=240,
            concentration_mg_per_ml=1.0,
            chair_id=chair.id,
            weight_kg=70.0,
            prescriber_id=prescriber_id,
            baseline=dict(DEFAULT_BASELINE),
            checked_in_at=now - dt.timedelta(minutes=30),
            prechecks_at=now - dt.timedelta(minutes=25),
            started_at=now - dt.timedelta(minutes=20),
        )
    )


def counts(engine: Engine) -> dict[str, int]:
    """Rows the HL7 path writes: vitals, device messages (one per stored message), alarms."""
    with Session(engine) as db:
        return {
            name: int(db.execute(select(func.count()).select_from(model)).scalar_one())
            for name, model in (("vitals", VitalSign), ("messages", DeviceMessage), ("alarms", Alarm))
        }


def stored_control_ids(engine: Engine) -> list[str]:
    with Session(engine) as db:
        return list(db.execute(select(DeviceMessage.control_id).order_by(DeviceMessage.id)).scalars())


def vitals(engine: Engine) -> list[tuple[str, str, float, dt.datetime]]:
    """Every stored vital as (device id, kind, value, observed at)."""
    with Session(engine) as db:
        rows = db.execute(
            select(VitalSign.device_id, VitalSign.kind, VitalSign.value, VitalSign.observed_at)
        ).all()
    return [(str(d), str(k), float(v), t) for d, k, v, t in rows]
