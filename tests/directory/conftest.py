"""A published profile with open slots for the world's clinic, and helpers to book."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ketacare.directory import geo
from ketacare.directory.models import ClinicProfile, ConsultationSlot
from ketacare.planning import setup as plan_setup
from ketacare.planning.schemas import PriceListIn


def make_profile(db: Session, clinic_id: int, zip_code: str = "02108", **extra: Any) -> ClinicProfile:
    place = geo.lookup(zip_code)
    assert place is not None
    values: dict[str, Any] = {
        "clinic_id": clinic_id,
        "published": True,
        "street": "1 Test Street",
        "city": place.city,
        "state": place.state,
        "zip": zip_code,
        "lat": place.lat,
        "lon": place.lon,
        "routes": ["iv_infusion", "im"],
        "setting": "ambulatory",
        "room_type": "private",
        "physicians": 1,
        "acls_certified": True,
        "years_experience": 6,
        "equipment": ["spo2", "nibp", "infusion_pump"],
    }
    values.update(extra)
    row = ClinicProfile(**values)
    db.add(row)
    db.flush()
    return row


def make_slots(
    db: Session, clinic_id: int, n: int = 3, start: dt.datetime | None = None
) -> list[ConsultationSlot]:
    first = start or (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(microsecond=0)
    rows = [
        ConsultationSlot(
            clinic_id=clinic_id, starts_at=first + dt.timedelta(hours=k), minutes=30, status="open"
        )
        for k in range(n)
    ]
    db.add_all(rows)
    db.flush()
    return rows


def add_prices(db: Session, world: Any) -> None:
    from ketacare.auth import service as auth

    admin = world.users["admin"]
    plan_setup.save_price_list(
        db,
        auth.principal_for(admin, None, None),
        PriceListIn(
            consultation_usd=350,
            drug_usd_per_mg=1.0,
            premedication_usd_per_session=20,
            session_bands=[(60, 600.0), (240, 1000.0)],
        ),
    )


@pytest.fixture
def front(db: Session, world: Any) -> dict[str, Any]:
    profile = make_profile(db, world.clinic.id)
    slots = make_slots(db, world.clinic.id)
    db.commit()
    return {"profile": profile, "slots": slots}
