"""A seeded generator of demo data: two clinics, staff of every role, and patients.

Condition weights and ages come from ``knowledge/data/demo_mix.toml``, which is marked (design):
the clinical facts give no prevalence of conditions in ketamine clinics. Weights, heights and
co-medications below are likewise engineering defaults for realistic-looking data, never facts.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import random
from dataclasses import dataclass
from importlib.util import find_spec

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.models import Clinic, PrescriberKind, Role, User
from ketacare.auth.passwords import hash_password
from ketacare.features import FEATURES
from ketacare.knowledge import demo_mix, pain_conditions
from ketacare.patients.models import Allergy, Condition, Measurement, Medication, Patient

DEMO_PASSWORD = "ketacare-demo-password"  # noqa: S105 (printed for the demo only)

GIVEN_FEMALE = [
    "Ada",
    "Maria",
    "Grace",
    "Aisha",
    "Sofia",
    "Mei",
    "Olivia",
    "Fatima",
    "Emma",
    "Lucia",
    "Hannah",
    "Priya",
    "Chloe",
    "Zoe",
    "Nora",
    "Leah",
    "Rosa",
    "Elena",
    "Amara",
    "Julia",
]
GIVEN_MALE = [
    "James",
    "Mateo",
    "Noah",
    "Omar",
    "Wei",
    "Liam",
    "Daniel",
    "Samuel",
    "Arjun",
    "Lucas",
    "Ethan",
    "Kofi",
    "Diego",
    "Henry",
    "Isaac",
    "Leo",
    "Marcus",
    "Ravi",
    "Tomas",
    "Victor",
]
FAMILY = [
    "Smith",
    "Johnson",
    "Garcia",
    "Nguyen",
    "Patel",
    "Kim",
    "Brown",
    "Lopez",
    "Okafor",
    "Cohen",
    "Rossi",
    "Muller",
    "Silva",
    "Wang",
    "Jones",
    "Martin",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "Hall",
    "Allen",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Ramirez",
    "Campbell",
    "Mitchell",
    "Roberts",
    "Carter",
    "Phillips",
    "Evans",
    "Turner",
    "Torres",
    "Parker",
    "Collins",
    "Edwards",
    "Stewart",
    "Flores",
    "Morris",
    "Murphy",
    "Rivera",
    "Cook",
    "Rogers",
]

# (design) co-medication patterns for demo patients; fractions are not clinical facts.
DEMO_MEDICATIONS = [
    (0.35, "Oxycodone", "opioid", 10.0, "mg", 3.0, "oral"),
    (0.10, "Morphine ER", "opioid", 30.0, "mg", 2.0, "oral"),
    (0.05, "Fentanyl patch", "opioid", 25.0, "mcg/h", 1.0, "transdermal"),
    (0.40, "Gabapentin", "anticonvulsant", 300.0, "mg", 3.0, "oral"),
    (0.20, "Pregabalin", "anticonvulsant", 75.0, "mg", 2.0, "oral"),
    (0.30, "Duloxetine", "antidepressant", 60.0, "mg", 1.0, "oral"),
    (0.15, "Amitriptyline", "antidepressant", 25.0, "mg", 1.0, "oral"),
    (0.12, "Lorazepam", "benzodiazepine", 1.0, "mg", 1.0, "oral"),
    (0.25, "Ibuprofen", "nsaid", 400.0, "mg", 3.0, "oral"),
    (0.15, "Lisinopril", "antihypertensive", 10.0, "mg", 1.0, "oral"),
]
DEMO_ALLERGIES = [
    (0.08, "Penicillin", "rash", "moderate"),
    (0.05, "Latex", "hives", "mild"),
    (0.04, "Sulfonamides", "rash", "mild"),
    (0.02, "Codeine", "nausea and vomiting", "mild"),
]

CLINICS = [
    ("North Shore Pain Center", "north", "NSP", "America/New_York"),
    ("Bayview Pain and Infusion Clinic", "bay", "BPI", "America/Los_Angeles"),
]
STAFF = [
    ("admin", "Alex Admin", Role.clinic_admin, None),
    ("dr", "Dana Okafor MD", Role.prescriber, PrescriberKind.physician),
    ("np", "Pat Rivera NP", Role.prescriber, PrescriberKind.nurse_practitioner),
    ("nurse", "Sam Lee RN", Role.nurse, None),
    ("researcher", "Robin Research", Role.researcher, None),
    ("auditor", "Aud Itor", Role.auditor, None),
]


@dataclass(frozen=True)
class DemoLogin:
    clinic: str
    username: str
    role: str
    password: str
    totp_secret: str | None


def _totp_secret(rng: random.Random) -> str:
    return base64.b32encode(rng.randbytes(20)).decode()


def _pick_condition(rng: random.Random) -> tuple[str, str]:
    weights = demo_mix()["condition_weights"]
    by_key = {c.key: c for c in pain_conditions()}
    keys = list(weights)
    key = rng.choices(keys, weights=[weights[k] for k in keys])[0]
    code = rng.choice(by_key[key].codes)
    return code.code, code.display


def _birth_date(rng: random.Random, today: dt.date) -> dt.date:
    ages = demo_mix()["age_years"]
    age = min(max(rng.gauss(ages["mean"], ages["sd"]), ages["min"]), ages["max"])
    return today - dt.timedelta(days=int(age * 365.25) + rng.randrange(0, 365))


def seed(db: Session, *, patients_per_clinic: int = 150, rng_seed: int = 2026) -> list[DemoLogin]:
    """Fill an empty, migrated database. Returns the demo logins to print."""
    if db.execute(select(func.count()).select_from(Clinic)).scalar_one():
        raise RuntimeError("the database already has clinics; demo data goes only into an empty one")
    rng = random.Random(rng_seed)
    today = dt.date.today()
    password_hash = hash_password(DEMO_PASSWORD)
    logins: list[DemoLogin] = []
    for name, slug, prefix, zone in CLINICS:
        clinic = Clinic(name=name, slug=slug, record_prefix=prefix, time_zone=zone, next_record_number=1)
        db.add(clinic)
        db.flush()
        patient_ids = _seed_patients(db, rng, clinic, patients_per_clinic, today)
        for short, full_name, role, kind in STAFF:
            secret = _totp_secret(rng) if role in (Role.clinic_admin, Role.prescriber) else None
            user = User(
                clinic_id=clinic.id,
                username=f"{short}.{slug}",
                full_name=full_name,
                role=role.value,
                prescriber_kind=kind.value if kind else None,
                password_hash=password_hash,
                totp_secret=secret,
                totp_enrolled=secret is not None,
            )
            db.add(user)
            logins.append(DemoLogin(slug, user.username, role.value, DEMO_PASSWORD, secret))
        for letter, patient_id in zip("ab", patient_ids[:2], strict=True):
            username = f"patient{letter}.{slug}"
            db.add(
                User(
                    clinic_id=clinic.id,
                    username=username,
                    full_name=f"Demo patient {letter.upper()}",
                    role=Role.patient.value,
                    patient_id=patient_id,
                    password_hash=password_hash,
                )
            )
            logins.append(DemoLogin(slug, username, Role.patient.value, DEMO_PASSWORD, None))
        db.flush()
        _seed_features(db, rng, clinic, patient_ids)
        audit.record(
            db,
            None,
            "demo.seed",
            "clinic",
            resource_id=clinic.id,
            clinic_id=clinic.id,
            username="ketacare-demo",
            detail=f"{patients_per_clinic} demo patients",
        )
    return logins


def _seed_features(db: Session, rng: random.Random, clinic: Clinic, patient_ids: list[int]) -> None:
    """Each feature extends the demo from its own ``demo_data.seed(db, rng, clinic, patient_ids)``."""
    for feature in FEATURES:
        name = f"ketacare.{feature}.demo_data"
        if find_spec(name) is not None:
            importlib.import_module(name).seed(db, rng, clinic, patient_ids)


def _seed_patients(db: Session, rng: random.Random, clinic: Clinic, count: int, today: dt.date) -> list[int]:
    """Bulk inserts: ten thousand patients take seconds, not minutes."""
    rows = []
    for n in range(1, count + 1):
        sex = rng.choice(["female", "female", "male"])  # (design) demo skew only
        given = rng.choice(GIVEN_FEMALE if sex == "female" else GIVEN_MALE)
        family = rng.choice(FAMILY)
        rows.append(
            {
                "clinic_id": clinic.id,
                "record_number": f"{clinic.record_prefix}-{n:06d}",
                "given_name": given,
                "family_name": family,
                "date_of_birth": _birth_date(rng, today),
                "sex": sex,
                "email": f"{given.lower()}.{family.lower()}{n}@example.org",
                "phone": f"555-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
                "state": "NY" if clinic.slug == "north" else "CA",
                "postal_code": f"{rng.randrange(10000, 99999)}",
            }
        )
    clinic.next_record_number = count + 1
    ids = list(
        db.execute(insert(Patient).returning(Patient.id, sort_by_parameter_order=True), rows).scalars()
    )
    measurements, conditions, medications, allergies = [], [], [], []
    for pid, row in zip(ids, rows, strict=True):
        male = row["sex"] == "male"
        height = min(max(rng.gauss(176 if male else 163, 7), 145), 205)
        weight = min(max(rng.gauss(88 if male else 76, 17), 45), 170)
        measured = today - dt.timedelta(days=rng.randrange(0, 120))
        measurements.append(
            {
                "patient_id": pid,
                "weight_kg": round(weight, 1),
                "height_cm": round(height, 1),
                "measured_on": measured,
            }
        )
        codes = {_pick_condition(rng) for _ in range(1 if rng.random() < 0.75 else 2)}
        for code, display in sorted(codes):
            onset = today - dt.timedelta(days=rng.randrange(180, 3650))
            conditions.append(
                {"patient_id": pid, "icd10_code": code, "display": display, "onset_date": onset}
            )
        for p, name, cls, amount, unit, per_day, route in DEMO_MEDICATIONS:
            if rng.random() < p:
                medications.append(
                    {
                        "patient_id": pid,
                        "name": name,
                        "drug_class": cls,
                        "dose_amount": amount,
                        "dose_unit": unit,
                        "doses_per_day": per_day,
                        "route": route,
                    }
                )
        for p, substance, reaction, severity in DEMO_ALLERGIES:
            if rng.random() < p:
                allergies.append(
                    {"patient_id": pid, "substance": substance, "reaction": reaction, "severity": severity}
                )
    for model, batch in (
        (Measurement, measurements),
        (Condition, conditions),
        (Medication, medications),
        (Allergy, allergies),
    ):
        if batch:
            db.execute(insert(model), batch)
    return ids
