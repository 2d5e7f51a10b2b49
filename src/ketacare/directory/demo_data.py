"""Demo data for the front door: a published profile per clinic, consultation slots over the
next two weeks, a few requests (one with shared answers) and reviews. The North clinic gets
the knowledge defaults as its price list (via planning's service); Bay has none, so the demo
shows the "no price list" message. Profile details are (design) demo values, not facts."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from typing import Any

from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.directory import geo
from ketacare.directory.models import ClinicProfile, ClinicReview, ConsultationRequest, ConsultationSlot
from ketacare.knowledge.billing import default_prices
from ketacare.planning import setup as plan_setup
from ketacare.planning.schemas import PriceListIn

PROFILES = {
    "north": {
        "street": "120 Main Street",
        "city": "Huntington",
        "state": "NY",
        "zip": "11743",
        "routes": ["iv_infusion", "im", "esketamine_nasal"],
        "setting": "ambulatory",
        "room_type": "private",
        "physicians": 2,
        "crnas": 1,
        "nurse_practitioners": 1,
        "acls_certified": True,
        "board_certified": True,
        "years_experience": 8,
        "equipment": ["infusion_pump", "nibp", "spo2", "ecg", "oxygen", "suction", "bvm", "crash_cart"],
        "insurance_policy": "Self-pay; we give a superbill for you to claim from your insurer.",
        "offers_superbill": True,
    },
    "bay": {
        "street": "500 Mission Street",
        "city": "San Francisco",
        "state": "CA",
        "zip": "94105",
        "routes": ["iv_infusion", "intranasal", "oral"],
        "setting": "office",
        "room_type": "shared",
        "physicians": 1,
        "crnas": 0,
        "nurse_practitioners": 2,
        "acls_certified": True,
        "board_certified": False,
        "years_experience": 3,
        "equipment": ["infusion_pump", "nibp", "spo2", "oxygen"],
        "insurance_policy": "Self-pay only.",
        "offers_superbill": False,
    },
}
REVIEWS = [
    (5, "Calm private room and the nurse checked on me every few minutes. Clear about what to expect."),
    (4, "Helpful consultation; they were honest that the evidence for my condition is weak."),
    (4, "Good monitoring and a clear discharge sheet. The drive home rule was explained up front."),
    (2, "Waited a long time on the first day and the price changed from the phone quote."),
]
DEMO_ANSWERS = {
    "condition": "crps1",
    "pain_started": "2022-03-01",
    "pain_now": 7,
    "pain_average": 6,
    "treatments_tried": ["anticonvulsant", "antidepressant", "physical_therapy"],
    "screening": {
        "prior_reaction": "no",
        "aneurysm_bleed": "no",
        "psychosis": "no",
        "pregnant": "no",
        "liver_severe": "no",
        "raised_icp": "no",
        "heart_disease": "no",
        "blood_pressure": "no",
        "breastfeeding": "no",
        "liver_moderate": "no",
        "eye_pressure": "no",
        "substance_use": "no",
        "opioids": "yes",
        "benzodiazepines": "no",
    },
    "opioid_details": "oxycodone 10 mg twice a day",
}


def seed(db: Session, rng: random.Random, clinic: Any, patient_ids: list[int]) -> None:
    values = PROFILES.get(clinic.slug)
    if values is None:
        return
    place = geo.lookup(str(values["zip"]))
    assert place is not None
    db.add(
        ClinicProfile(
            clinic_id=clinic.id,
            published=True,
            description=f"{clinic.name}: outpatient ketamine therapy for chronic pain.",
            lat=place.lat,
            lon=place.lon,
            public_phone="555-0100",
            **values,
        )
    )
    if clinic.slug == "north":
        admin = auth.user_by_username(db, f"admin.{clinic.slug}")
        d = default_prices()
        plan_setup.save_price_list(
            db,
            auth.principal_for(admin, None, None),
            PriceListIn(
                consultation_usd=d.consultation_usd,
                drug_usd_per_mg=d.drug_usd_per_mg,
                premedication_usd_per_session=d.premedication_usd_per_session,
                session_bands=list(d.session_bands),
            ),
        )
    zone = zoneinfo.ZoneInfo(clinic.time_zone)
    today = dt.datetime.now(zone).date()
    slots = []
    for day in range(1, 15):
        date = today + dt.timedelta(days=day)
        if date.weekday() >= 5:
            continue
        for hour in (9, 10, 11, 14, 15):
            start = dt.datetime(date.year, date.month, date.day, hour, tzinfo=zone)
            slots.append(ConsultationSlot(clinic_id=clinic.id, starts_at=start, minutes=45, status="open"))
    db.add_all(slots)
    db.flush()
    for n, slot in enumerate(rng.sample(slots[5:], 3)):
        slot.status = "booked"
        shared = n == 0
        db.add(
            ConsultationRequest(
                clinic_id=clinic.id,
                slot_id=slot.id,
                starts_at=slot.starts_at,
                reference=f"KC-DEMO{clinic.id}{n:03d}",
                name=["Jordan Demo", "Casey Example", "Riley Sample"][n],
                email=f"demo{n}@example.org",
                route_wanted="iv_infusion",
                answers=DEMO_ANSWERS if shared else None,
                outcome="review" if shared else None,
            )
        )
    now = dt.datetime.now(dt.UTC)
    for (rating, body), patient_id in zip(REVIEWS, patient_ids[2:6], strict=False):
        hidden = rating <= 2 and clinic.slug == "bay"
        db.add(
            ClinicReview(
                clinic_id=clinic.id,
                patient_id=patient_id,
                rating=rating,
                body=body,
                status="hidden" if hidden else "published",
                moderation_reason="Mentions a price quote we cannot verify" if hidden else "",
                moderated_at=now,
            )
        )
    db.flush()
