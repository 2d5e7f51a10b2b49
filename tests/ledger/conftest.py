"""A clinic with a registration, three products (two approved vials, one compounded), an initial
inventory, a delivery on an invoice, and a treatment session to administer into."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.ledger import inventories, movements, setup
from ketacare.ledger.models import Lot, Product, Registration
from ketacare.ledger.schemas import InitialInventoryIn, ProductIn, ReceiptIn, RegistrationIn
from ketacare.planning.models import Chair, PlanSession, TreatmentPlan
from ketacare.sessions.models import TreatmentSession
from tests.helpers import clinic_today

CLINIC_DEA = "AB1234563"
SECOND_DEA = "BK2718281"
SUPPLIER_DEA = "PS7654329"


def principal(user) -> Principal:  # type: ignore[no-untyped-def]
    return auth.principal_for(user, None, "127.0.0.1")


def treatment_session(db: Session, clinic_id: int, patient_id: int, staff_id: int) -> int:
    """A checked-in session row, written directly (the session flow is tested in tests/sessions)."""
    chair = Chair(clinic_id=clinic_id, room="Room 9", name="Ledger chair", active=True)
    db.add(chair)
    db.flush()
    today = clinic_today()
    plan = TreatmentPlan(
        clinic_id=clinic_id,
        patient_id=patient_id,
        purpose="series",
        status="scheduled",
        protocol_key="outpatient_series",
        protocol_version=1,
        protocol_snapshot={},
        eligibility_status="eligible",
        route="iv_infusion",
        dose=0.35,
        dose_unit="mg/kg/h",
        session_duration_min=60,
        sessions=1,
        interval_days=7,
        start_date=today,
        end_date=today,
        preferred_time="09:00",
        concentration_mg_per_ml=1.0,
        premedication=[],
        weight_kg=80,
        weight_measured_on=today,
        session_doses=[],
        findings=[],
    )
    db.add(plan)
    db.flush()
    now = dt.datetime.now(dt.UTC)
    booked = PlanSession(
        plan_id=plan.id,
        clinic_id=clinic_id,
        number=1,
        starts_at=now,
        ends_at=now + dt.timedelta(hours=1),
        chair_id=chair.id,
        staff_id=staff_id,
    )
    db.add(booked)
    db.flush()
    row = TreatmentSession(
        clinic_id=clinic_id,
        patient_id=patient_id,
        plan_id=plan.id,
        plan_session_id=booked.id,
        number=1,
        status="running",
        route="iv_infusion",
        drug="ketamine",
        planned_duration_min=60,
        concentration_mg_per_ml=1.0,
        chair_id=chair.id,
    )
    db.add(row)
    db.flush()
    return row.id


@dataclass
class Stock:
    admin: Principal
    nurse: Principal
    prescriber: Principal
    registration: Registration
    vial_50: Product  # 50 mg/mL x 10 mL = 500 mg
    vial_10: Product  # 10 mg/mL x 20 mL = 200 mg
    troche: Product  # compounded
    lot_50: Lot  # two vials received: 1000 mg
    lot_10: Lot  # opened by the initial inventory: 150 mg
    session_id: int


def setup_stock(db: Session, world) -> Stock:  # type: ignore[no-untyped-def]
    admin = principal(world.users["admin"])
    reg = setup.create_registration(
        db,
        admin,
        RegistrationIn(
            dea_number=CLINIC_DEA,
            location_name="Main clinic",
            address="1 Test Street, Boston MA",
            state="MA",
        ),
    )
    vial_50 = setup.create_product(
        db,
        admin,
        ProductIn(
            name="Ketamine HCl",
            ndc="0409-2051-05",
            strength_mg_per_ml=50,
            container_ml=10,
            ingredient="ketamine",
            dosage_form="injection, solution",
        ),
    )
    vial_10 = setup.create_product(
        db,
        admin,
        ProductIn(
            name="Ketamine HCl",
            ndc="42023-113-10",
            strength_mg_per_ml=10,
            container_ml=20,
            ingredient="ketamine",
            dosage_form="injection, solution",
        ),
    )
    troche = setup.create_product(
        db,
        admin,
        ProductIn(
            name="Ketamine troche (compounded)",
            strength_mg_per_ml=100,
            container_ml=1,
            ingredient="ketamine",
            dosage_form="sublingual troche",
            compounded=True,
        ),
    )
    expiry = clinic_today() + dt.timedelta(days=400)
    inventories.take_initial_inventory(
        db,
        admin,
        InitialInventoryIn(
            registration_id=reg.id,
            lines=[
                {
                    "product_id": vial_10.id,
                    "lot_number": "OPEN-10",
                    "expires_on": expiry,
                    "supplier": "Acme Pharma",
                    "counted": 150,
                }
            ],
        ),
    )
    movements.record_receipt(db, admin, receipt(reg.id, vial_50.id, "L50-A", expiry, containers=2))
    db.flush()
    lots = {lot.lot_number: lot for lot in db.query(Lot).filter_by(clinic_id=world.clinic.id)}
    session_id = treatment_session(db, world.clinic.id, world.patient_a.id, world.users["nurse"].id)
    db.commit()
    return Stock(
        admin,
        principal(world.users["nurse"]),
        principal(world.users["prescriber"]),
        reg,
        vial_50,
        vial_10,
        troche,
        lots["L50-A"],
        lots["OPEN-10"],
        session_id,
    )


def receipt(
    registration_id: int, product_id: int, lot_number: str, expires_on: dt.date, containers: int = 1
) -> ReceiptIn:
    return ReceiptIn(
        registration_id=registration_id,
        product_id=product_id,
        lot_number=lot_number,
        expires_on=expires_on,
        supplier="Acme Pharma",
        supplier_dea_number=SUPPLIER_DEA,
        invoice_number="INV-1001",
        containers=containers,
    )


@pytest.fixture
def stock(db, world) -> Stock:  # type: ignore[no-untyped-def]
    return setup_stock(db, world)
