"""Make a test patient ready for a plan: CRPS on record, today's weight, a clean screening, chairs."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.knowledge.contraindications import contraindications, risk_factors
from ketacare.planning.models import Chair, DutyShift
from tests.helpers import clinic_today

ALL_NO = {c.key: "no" for c in contraindications()} | {r.key: "no" for r in risk_factors()}
TOMORROW = (clinic_today() + dt.timedelta(days=1)).isoformat()


def screening_body(**answers: str) -> dict[str, object]:
    return {
        "referred_on": clinic_today().isoformat(),
        "referral_source": "GP",
        "answers": {**ALL_NO, **answers},
        "prior_therapies": ["anticonvulsant", "physical_therapy"],
        "sbp_mmhg": 124,
        "dbp_mmhg": 78,
        "lft_on": clinic_today().isoformat(),
    }


def make_ready(client, patient_id: int, weight: float = 80.0, **answers: str) -> None:  # type: ignore[no-untyped-def]
    base = f"/api/v1/patients/{patient_id}"
    assert client.api("POST", f"{base}/conditions", json={"icd10_code": "G90.512"}).status_code == 201
    measured = {"weight_kg": weight, "measured_on": clinic_today().isoformat()}
    assert client.api("POST", f"{base}/measurements", json=measured).status_code == 201
    saved = client.api("POST", f"{base}/screening", json=screening_body(**answers))
    assert saved.status_code == 201, saved.text


def crps_plan(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "protocol_key": "outpatient_series",
        "dose": 0.35,
        "dose_unit": "mg/kg/h",
        "titration_start": 0.2,
        "sessions": 5,
        "start_date": TOMORROW,
        "premedication": ["ondansetron"],
    }
    body.update(changes)
    return body


def roster(db, clinic_id: int, users, days: int = 40, start: str = "08:00", end: str = "18:00") -> None:  # type: ignore[no-untyped-def]
    """Put ``users`` on duty from today for ``days`` days, ``start`` to ``end``."""
    today = clinic_today()
    db.add_all(
        [
            DutyShift(
                clinic_id=clinic_id,
                user_id=user.id,
                on_date=today + dt.timedelta(days=n),
                start_time=dt.time.fromisoformat(start),
                end_time=dt.time.fromisoformat(end),
            )
            for user in users
            for n in range(days)
        ]
    )
    db.commit()


@pytest.fixture
def chairs(db, world):  # type: ignore[no-untyped-def]
    """One chair, and the nurse and the prescriber on duty 08:00-18:00 for the next 40 days."""
    rows = [Chair(clinic_id=world.clinic.id, room="Room 1", name="Chair A", active=True)]
    db.add_all(rows)
    db.commit()
    roster(db, world.clinic.id, [world.users["nurse"], world.users["prescriber"]])
    return rows


@pytest.fixture
def chair_only(db, world):  # type: ignore[no-untyped-def]
    """One chair and nobody on the duty roster."""
    rows = [Chair(clinic_id=world.clinic.id, room="Room 1", name="Chair A", active=True)]
    db.add_all(rows)
    db.commit()
    return rows
