"""Make a test patient ready for a plan: CRPS on record, today's weight, a clean screening, chairs."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.knowledge.contraindications import contraindications, risk_factors
from ketacare.planning.models import Chair

ALL_NO = {c.key: "no" for c in contraindications()} | {r.key: "no" for r in risk_factors()}
TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()


def screening_body(**answers: str) -> dict[str, object]:
    return {
        "referred_on": dt.date.today().isoformat(),
        "referral_source": "GP",
        "answers": {**ALL_NO, **answers},
        "prior_therapies": ["anticonvulsant", "physical_therapy"],
        "sbp_mmhg": 124,
        "dbp_mmhg": 78,
        "lft_on": dt.date.today().isoformat(),
    }


def make_ready(client, patient_id: int, weight: float = 80.0, **answers: str) -> None:  # type: ignore[no-untyped-def]
    base = f"/api/v1/patients/{patient_id}"
    assert client.api("POST", f"{base}/conditions", json={"icd10_code": "G90.512"}).status_code == 201
    measured = {"weight_kg": weight, "measured_on": dt.date.today().isoformat()}
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


@pytest.fixture
def chairs(db, world):  # type: ignore[no-untyped-def]
    rows = [Chair(clinic_id=world.clinic.id, room="Room 1", name="Chair A", active=True)]
    db.add_all(rows)
    db.commit()
    return rows
