"""A prescriber with valid credentials in NY, a patient in NY with an address, and helpers that
take a take-home prescription from draft to signed over the JSON API and the service."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.prescribing.models import DeaRegistration, PrescriberProfile, StateLicence
from tests.helpers import clinic_today

# The prescriber of the test world is "Prescriber": DEA numbers start A P (practitioner, "P").
DEA_VALID = "AP5836727"  # worked example of takerx.com/verify.html: 5+3+7 + 2*(8+6+2) = 47
NPI_VALID = "1234567893"  # CMS example: 123456789 with check digit 3
TODAY = clinic_today()
FAR = TODAY + dt.timedelta(days=700)


@dataclass
class Ready:
    patient_id: int
    prescriber: Principal
    admin: Principal
    nurse: Principal


def principal(world, key: str) -> Principal:  # type: ignore[no-untyped-def]
    return auth.principal_for(world.users[key], None, "127.0.0.1")


def give_credentials(db: Session, world, state: str = "NY", licence_until: dt.date = FAR) -> None:  # type: ignore[no-untyped-def]
    user = world.users["prescriber"]
    db.add_all(
        [
            StateLicence(
                clinic_id=world.clinic.id,
                user_id=user.id,
                state=state,
                number=f"{state}-123456",
                profession="Medicine",
                expires_on=licence_until,
            ),
            DeaRegistration(
                clinic_id=world.clinic.id, user_id=user.id, number=DEA_VALID, state=state, expires_on=FAR
            ),
            PrescriberProfile(clinic_id=world.clinic.id, user_id=user.id, npi=NPI_VALID),
        ]
    )
    db.commit()


def with_address(db: Session, patient, state: str = "NY") -> None:  # type: ignore[no-untyped-def]
    patient.address_line, patient.city, patient.state, patient.postal_code = (
        "1 Main St",
        "Albany",
        state,
        "12207",
    )
    db.commit()


@pytest.fixture
def ready(db, world) -> Ready:  # type: ignore[no-untyped-def]
    give_credentials(db, world)
    with_address(db, world.patient_a)
    return Ready(
        world.patient_a.id,
        principal(world, "prescriber"),
        principal(world, "admin"),
        principal(world, "nurse"),
    )


def in_person(client, patient_id: int, on: dt.date = TODAY, state: str = "NY") -> int:  # type: ignore[no-untyped-def]
    r = client.api(
        "POST",
        f"/api/v1/patients/{patient_id}/encounters",
        json={
            "kind": "in_person",
            "modality": "in_person",
            "occurred_on": on.isoformat(),
            "patient_state": state,
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def telehealth(client, patient_id: int, modality: str = "audio_video", on: dt.date = TODAY) -> int:  # type: ignore[no-untyped-def]
    r = client.api(
        "POST",
        f"/api/v1/patients/{patient_id}/encounters",
        json={
            "kind": "telehealth",
            "modality": modality,
            "occurred_on": on.isoformat(),
            "patient_state": "NY",
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def pdmp(client, patient_id: int, on: dt.date = TODAY) -> None:  # type: ignore[no-untyped-def]
    r = client.api(
        "POST",
        f"/api/v1/patients/{patient_id}/pdmp-checks",
        json={"checked_on": on.isoformat(), "state": "NY"},
    )
    assert r.status_code == 201, r.text


ACK = "Risks of compounded ketamine at home discussed; caregiver present for the first doses."


def lozenge(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "product_key": "ketamine_sl_lozenge_50",
        "quantity": 30,
        "days_supply": 30,
        "directions": "One lozenge under the tongue once daily for pain.",
        "refills": 0,
        "compounded_ack": ACK,
    }
    body.update(changes)
    return body


def draft(client, patient_id: int, **changes: object) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = client.api("POST", f"/api/v1/patients/{patient_id}/prescriptions", json=lozenge(**changes))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def check(body: dict, key: str) -> dict:  # type: ignore[type-arg]
    return next(c for c in body["checks"] if c["key"] == key)
