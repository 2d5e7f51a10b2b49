"""Demo planning: chairs, a few plans made through the real use-cases (dose-checked,
eligibility-gated, scheduled), care-plan items and one signed consent.

(design) Everything here is demo content, not facts.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.errors import InvalidInput
from ketacare.patients import service as patients
from ketacare.patients.schemas import MeasurementCreate
from ketacare.planning import bookings, consent, plans, setup
from ketacare.planning.models import Chair, DutyShift
from ketacare.planning.schemas import CareCategory, CareItemIn, PlanIn, SignIn
from ketacare.screening.demo_data import DemoClinic

ROSTER_DAYS = 60
CHAIRS = [("Infusion room 1", "Chair A"), ("Infusion room 1", "Chair B"), ("Infusion room 2", "Chair C")]
CARE = [
    (
        CareCategory.physical_therapy,
        "Graded motor imagery and desensitisation, twice weekly",
        "Physiotherapist",
    ),
    (CareCategory.cbt, "Pain-focused CBT, 8 sessions", "Clinic psychologist"),
    (CareCategory.sleep, "Sleep hygiene plan and diary", "Patient"),
    (CareCategory.exercise, "Walking programme, 20 minutes a day", "Patient"),
]


def _principal(user: Any, role: Role) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role,
        clinic_id=user.clinic_id,
        client_addr="demo",
        patient_id=user.patient_id,
    )


def seed(db: Session, rng: random.Random, clinic: DemoClinic, patient_ids: list[int]) -> None:
    db.add_all([Chair(clinic_id=clinic.id, room=room, name=name, active=True) for room, name in CHAIRS])
    db.flush()
    dr = _principal(auth.user_by_username(db, f"dr.{clinic.slug}"), Role.prescriber)
    admin = _principal(auth.user_by_username(db, f"admin.{clinic.slug}"), Role.clinic_admin)
    today = clinic_time.today(db, clinic.id)
    # The duty roster: every nurse and prescriber on duty 08:00-18:00 for the next weeks.
    db.add_all(
        [
            DutyShift(
                clinic_id=clinic.id,
                user_id=user.id,
                on_date=today + dt.timedelta(days=day),
                start_time=dt.time(8),
                end_time=dt.time(18),
            )
            for user in setup.duty_candidates(db, admin)
            for day in range(ROSTER_DAYS)
        ]
    )
    db.flush()
    # Patient A and a few screened patients get a fresh weight and a 5-day series.
    for offset, pid in enumerate([patient_ids[0], *patient_ids[4:8]]):
        weight = patients.record(db, dr, pid).latest_weight
        kg = weight.weight_kg if weight and weight.weight_kg else 75.0
        patients.add_measurement(db, dr, pid, MeasurementCreate(weight_kg=kg, measured_on=today))
        data = PlanIn(
            protocol_key="outpatient_series",
            dose=0.35,
            dose_unit="mg/kg/h",
            titration_start=0.2,
            sessions=5,
            start_date=today + dt.timedelta(days=1 + 7 * offset),
            preferred_time="09:00",
            premedication=["ondansetron"],
        )
        try:
            plan = plans.create_plan(db, dr, pid, data)
        except InvalidInput:
            continue  # (design) a demo patient whose screening says no simply has no plan
        bookings.schedule(db, dr, plan.id)
        for category, text, owner in CARE[: 2 + offset % 3]:
            plans.add_care_item(
                db,
                dr,
                plan.id,
                CareItemIn(
                    category=category, description=text, owner=owner, due_on=today + dt.timedelta(days=30)
                ),
            )
        if pid == patient_ids[0]:
            patient_user = auth.user_by_username(db, f"patienta.{clinic.slug}")
            record = patients.record(db, dr, pid)
            consent.sign_consent(
                db,
                _principal(patient_user, Role.patient),
                plan.id,
                SignIn(
                    typed_name=f"{record.patient.given_name} {record.patient.family_name}",
                    signed_on=today,
                    agree=True,
                ),
            )
