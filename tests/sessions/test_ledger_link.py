"""Every ketamine dose in a session takes stock out of the ledger's lot; the remainder of a
container is wasted in front of a witness; a lot that cannot cover a dose refuses it."""

from __future__ import annotations

import datetime as dt

from ketacare.ledger import inventories as ledger_inventories
from ketacare.ledger import movements as ledger_movements
from ketacare.ledger import setup as ledger_setup
from ketacare.ledger.models import LedgerEntry, Lot
from ketacare.ledger.schemas import InitialInventoryIn, ProductIn, RegistrationIn
from ketacare.sessions.models import Administration
from tests.helpers import PASSWORD, clinic_today, count
from tests.ledger.conftest import CLINIC_DEA, principal, receipt
from tests.sessions.conftest import prechecked


def _lot(db, world) -> int:  # type: ignore[no-untyped-def]
    admin = principal(world.users["admin"])
    reg = ledger_setup.create_registration(
        db, admin, RegistrationIn(dea_number=CLINIC_DEA, location_name="Main", address="1 St", state="MA")
    )
    vial = ledger_setup.create_product(
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
    ledger_inventories.take_initial_inventory(
        db, admin, InitialInventoryIn(registration_id=reg.id, lines=[])
    )  # zero on hand
    ledger_movements.record_receipt(
        db, admin, receipt(reg.id, vial.id, "L50-A", clinic_today() + dt.timedelta(days=300))
    )
    db.commit()
    return int(db.query(Lot).filter_by(lot_number="L50-A").one().id)


def _balance_mg(db, lot_id: int) -> float:  # type: ignore[no-untyped-def]
    lot = db.get(Lot, lot_id)
    db.refresh(lot)
    return lot.balance_ug / 1000


def test_session_doses_leave_the_ledger_lot(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    lot_id = _lot(db, world)
    assert _balance_mg(db, lot_id) == 500
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    url = f"/api/v1/sessions/{sid}/administrations"
    missing = nurse.api("POST", url, json={"kind": "start", "rate_mg_per_h": 60, "lot": "typed"})
    assert missing.status_code == 422 and "ledger" in missing.text
    start_at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).isoformat()
    started = nurse.api(
        "POST", url, json={"kind": "start", "rate_mg_per_h": 28, "lot_id": lot_id, "given_at": start_at}
    )
    assert started.status_code == 201, started.text
    assert started.json()["administrations"][0]["lot"] == "L50-A"
    too_much = nurse.api("POST", url, json={"kind": "bolus", "dose_mg": 600, "lot_id": lot_id})
    assert too_much.status_code == 422 and count(db, Administration) == 1  # nothing half-written
    assert nurse.api("POST", url, json={"kind": "bolus", "dose_mg": 20, "lot_id": lot_id}).status_code == 201
    assert _balance_mg(db, lot_id) == 480
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/end-dosing", json={}).status_code == 200
    assert round(_balance_mg(db, lot_id)) == 466  # 30 minutes at 28 mg/h (the plan's 0.35 mg/kg/h)
    drawn = db.query(LedgerEntry).filter_by(session_id=sid).all()
    assert len(drawn) == 2 and all(e.patient_id == booked.patient_id for e in drawn)

    waste = {
        "lot_id": lot_id,
        "amount_mg": 30,
        "reason": "Unused remainder",
        "witness_user_id": world.users["prescriber"].id,
    }
    wrong = nurse.api("POST", f"/api/v1/sessions/{sid}/waste", json={**waste, "witness_password": "not it"})
    assert wrong.status_code == 422 and round(_balance_mg(db, lot_id)) == 466
    ok = nurse.api("POST", f"/api/v1/sessions/{sid}/waste", json={**waste, "witness_password": PASSWORD})
    assert ok.status_code == 200, ok.text
    assert round(_balance_mg(db, lot_id)) == 436
    page = nurse.get(f"/sessions/{sid}")
    assert "Record witnessed waste" in page.text and "L50-A" in page.text
