"""Demo ledger: a DEA registration, three products (ketamine 50 mg/mL in 10 mL vials, 10 mg/mL in
20 mL vials, and a compounded nasal spray), an initial inventory two years ago, deliveries on
invoices (one lot expiring soon), a few witnessed wastes, and a biennial count this week that
finds 2 mL missing from one lot, with its investigation open. Everything goes through the real
use-cases, so the demo chain verifies.

(design) Demo content, not facts: the DEA numbers only satisfy the check-digit rule, and the
NDCs use the labeler code 99999, which belongs to no manufacturer.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.demo import DEMO_PASSWORD
from ketacare.ledger import inventories, lots, movements, rules, setup
from ketacare.ledger.schemas import (
    BiennialInventoryIn,
    CountLineIn,
    InitialInventoryIn,
    NoteIn,
    OpeningLineIn,
    ProductIn,
    ReceiptIn,
    RegistrationIn,
)
from ketacare.prescribing.identifiers import dea_check_digit
from ketacare.screening.demo_data import DemoClinic

SUPPLIER = "Demo Pharma Distribution"
SUPPLIER_DIGITS = "765432"


def _principal(user: Any, role: Role) -> Principal:
    return Principal(
        user_id=user.id, username=user.username, role=role, clinic_id=user.clinic_id, client_addr="demo"
    )


def _dea(letters: str, number: int) -> str:
    digits = f"{number:06d}"[-6:]
    return f"{letters}{digits}{dea_check_digit(digits)}"


def seed(db: Session, rng: random.Random, clinic: DemoClinic, patient_ids: list[int]) -> None:
    own = random.Random(f"{rng.getstate()!r}/ledger/{clinic.slug}")
    admin = _principal(auth.user_by_username(db, f"admin.{clinic.slug}"), Role.clinic_admin)
    nurse = _principal(auth.user_by_username(db, f"nurse.{clinic.slug}"), Role.nurse)
    prescriber = auth.user_by_username(db, f"dr.{clinic.slug}")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = now.date()
    reg = setup.create_registration(
        db,
        admin,
        RegistrationIn(
            dea_number=_dea("FK", 314159 + clinic.id),
            location_name="Main infusion suite",
            address="1 Demo Street, Suite 200",
            state="MA",
            expires_on=today + dt.timedelta(days=400),
        ),
    )
    vial_50 = setup.create_product(
        db,
        admin,
        ProductIn(
            name="Ketamine HCl injection",
            ndc="99999-050-10",
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
            name="Ketamine HCl injection",
            ndc="99999-010-20",
            strength_mg_per_ml=10,
            container_ml=20,
            ingredient="ketamine",
            dosage_form="injection, solution",
        ),
    )
    spray = setup.create_product(
        db,
        admin,
        ProductIn(
            name="Ketamine nasal spray (compounded)",
            strength_mg_per_ml=100,
            container_ml=5,
            ingredient="ketamine",
            dosage_form="nasal spray",
            compounded=True,
        ),
    )
    opened_on = now - dt.timedelta(days=730 - 12)
    inventories.take_initial_inventory(
        db,
        admin,
        InitialInventoryIn(
            registration_id=reg.id,
            taken_at=opened_on,
            note="First day of handling controlled substances at this location",
            lines=[
                OpeningLineIn(
                    product_id=vial_10.id,
                    lot_number=f"D10-{own.randrange(1000, 9999)}",
                    expires_on=today + dt.timedelta(days=300),
                    supplier=SUPPLIER,
                    counted=400,
                )
            ],
        ),
    )
    deliveries = [
        (vial_50, "D50", 420, 12, 600),  # product, lot prefix, expires in days, vials, delivered days ago
        (vial_10, "D10", 18, 10, 200),  # expiring soon
        (spray, "CNS", 150, 4, 90),
        (vial_50, "D50", 500, 6, 25),
    ]
    lot_ids = []
    for product, prefix, expires_in, containers, days_ago in deliveries:
        entry = movements.record_receipt(
            db,
            admin,
            ReceiptIn(
                registration_id=reg.id,
                product_id=product.id,
                lot_number=f"{prefix}-{own.randrange(1000, 9999)}",
                expires_on=today + dt.timedelta(days=expires_in),
                supplier=SUPPLIER,
                supplier_dea_number=_dea("PS", int(SUPPLIER_DIGITS)),
                invoice_number=f"INV-{own.randrange(100000, 999999)}",
                containers=containers,
                received_at=now - dt.timedelta(days=days_ago),
            ),
        )
        assert entry.lot_id is not None
        lot_ids.append(entry.lot_id)
    for days_ago, amount_mg in ((40, 120.0), (22, 85.5), (9, 140.0)):
        movements.record_waste(
            db,
            nurse,
            lot_id=lot_ids[0],
            amount_mg=amount_mg,
            reason="Remainder of the vial after the session dose",
            witness_user_id=prescriber.id,
            witness_password=DEMO_PASSWORD,
            occurred_at=now - dt.timedelta(days=days_ago),
        )
    # This week's biennial count: everything matches except 2 mL of the 10 mg/mL expiring lot.
    counted = []
    for row in lots.lots(db, admin, in_stock=True):
        amount = rules.ug_to_mg(row.lot.balance_ug)
        if row.lot.id == lot_ids[1]:
            amount -= 2 * row.product.strength_mg_per_ml
        counted.append(CountLineIn(lot_id=row.lot.id, counted=amount))
    inventories.take_biennial_inventory(
        db,
        admin,
        BiennialInventoryIn(
            registration_id=reg.id, taken_at=now - dt.timedelta(days=3), lines=counted, note="Biennial count"
        ),
    )
    for found in inventories.investigations(db, admin, open_only=True):
        inventories.add_investigation_note(
            db,
            admin,
            found.investigation.id,
            NoteIn(text="Checked the waste records of the last two weeks; no unrecorded waste found yet."),
        )
