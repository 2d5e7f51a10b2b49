"""The right product for the route (issue 14 item 2; knowledge products.toml): an IV infusion is
never started from a nasal-spray lot. The session's lot picker offers only lots whose drug and
dosage form fit the session; the API and the page refuse anything else with a clear message and
write nothing (no administration, no ledger entry)."""

from __future__ import annotations

import datetime as dt

from ketacare.ledger import inventories as ledger_inventories
from ketacare.ledger import movements as ledger_movements
from ketacare.ledger import setup as ledger_setup
from ketacare.ledger.models import LedgerEntry, Lot, Product
from ketacare.ledger.schemas import InitialInventoryIn, ProductIn, RegistrationIn
from ketacare.sessions.models import Administration
from tests.helpers import PASSWORD, clinic_today, count
from tests.ledger.conftest import CLINIC_DEA, principal, receipt
from tests.sessions.conftest import prechecked


def stock_with_spray(db, world) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """A vial lot (injection, fits IV) and a compounded nasal-spray lot (intranasal only)."""
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
    spray = ledger_setup.create_product(
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
    ledger_inventories.take_initial_inventory(db, admin, InitialInventoryIn(registration_id=reg.id, lines=[]))
    expiry = clinic_today() + dt.timedelta(days=300)
    ledger_movements.record_receipt(db, admin, receipt(reg.id, vial.id, "VIAL-1", expiry))
    ledger_movements.record_receipt(db, admin, receipt(reg.id, spray.id, "SPRAY-1", expiry))
    db.commit()
    lots = {lot.lot_number: lot.id for lot in db.query(Lot)}
    return {"vial": lots["VIAL-1"], "spray": lots["SPRAY-1"], "spray_product": spray.id}


def _ledger_rows(db) -> int:  # type: ignore[no-untyped-def]
    return count(db, LedgerEntry)


def test_a_nasal_spray_lot_cannot_start_an_iv_infusion_by_api(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    lots = stock_with_spray(db, world)
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    url = f"/api/v1/sessions/{sid}/administrations"
    before = _ledger_rows(db)
    refused = nurse.api("POST", url, json={"kind": "start", "rate_mg_per_h": 28, "lot_id": lots["spray"]})
    assert refused.status_code == 422 and refused.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert "nasal spray" in refused.text and "IV infusion" in refused.text and "SPRAY-1" in refused.text
    bolus = nurse.api("POST", url, json={"kind": "bolus", "dose_mg": 10, "lot_id": lots["spray"]})
    assert bolus.status_code == 422 and "nasal spray" in bolus.text
    assert count(db, Administration) == 0 and _ledger_rows(db) == before  # nothing written
    ok = nurse.api("POST", url, json={"kind": "start", "rate_mg_per_h": 28, "lot_id": lots["vial"]})
    assert ok.status_code == 201, ok.text


def test_the_lot_picker_offers_only_fitting_lots(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    lots = stock_with_spray(db, world)
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    page = nurse.get(f"/sessions/{sid}")
    assert "VIAL-1" in page.text and "SPRAY-1" not in page.text
    assert "1 other lot(s) in stock do not fit" in page.text
    # A forged form post of the spray lot is refused on the page with the reason.
    form = {"kind": "start", "drug": "ketamine", "rate_mg_per_h": "28", "lot_id": str(lots["spray"])}
    refused = nurse.post(f"/sessions/{sid}/administrations", form, follow_redirects=False)
    assert refused.status_code == 422 and "nasal spray" in refused.text and "IV infusion" in refused.text
    assert count(db, Administration) == 0


def test_waste_in_a_session_only_from_a_fitting_lot(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    lots = stock_with_spray(db, world)
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    body = {
        "lot_id": lots["spray"],
        "amount_mg": 5,
        "reason": "Unused remainder",
        "witness_user_id": world.users["prescriber"].id,
        "witness_password": PASSWORD,
    }
    before = _ledger_rows(db)
    refused = nurse.api("POST", f"/api/v1/sessions/{sid}/waste", json=body)
    assert refused.status_code == 422 and "nasal spray" in refused.text
    assert _ledger_rows(db) == before


def test_an_uncoded_product_is_never_drawn_until_an_admin_codes_it(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    """A product from before coding (no ingredient, a free-text form) is flagged, not guessed."""
    lots = stock_with_spray(db, world)
    vial = db.get(Lot, lots["vial"])
    product = db.get(Product, vial.product_id)
    product.ingredient = None  # as migration 0012 leaves a product created before it
    db.commit()
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    url = f"/api/v1/sessions/{sid}/administrations"
    refused = nurse.api("POST", url, json={"kind": "start", "rate_mg_per_h": 28, "lot_id": lots["vial"]})
    assert refused.status_code == 422 and "not coded" in refused.text
    none_fit = nurse.api("POST", url, json={"kind": "start", "rate_mg_per_h": 60})
    assert none_fit.status_code == 422 and "No lot in stock fits" in none_fit.text
    admin = as_role("admin")
    page = admin.get(f"/ledger/products/{product.id}")
    assert "Code this product" in page.text and "not coded" in page.text
    assert nurse.api("POST", f"/api/v1/ledger/products/{product.id}/coding", json={}).status_code == 403
    bad = admin.api(
        "POST",
        f"/api/v1/ledger/products/{product.id}/coding",
        json={"ingredient": "propofol", "dosage_form": "x"},
    )
    assert bad.status_code == 422
    coded = admin.post(
        f"/ledger/products/{product.id}/coding",
        {"ingredient": "ketamine", "dosage_form": "injection, solution"},
        follow_redirects=False,
    )
    assert coded.status_code == 303, coded.text
    again = admin.api(
        "POST",
        f"/api/v1/ledger/products/{product.id}/coding",
        json={"ingredient": "ketamine", "dosage_form": "nasal spray"},
    )
    assert again.status_code == 422 and "already coded" in again.text  # never re-coded
    ok = nurse.api("POST", url, json={"kind": "start", "rate_mg_per_h": 28, "lot_id": lots["vial"]})
    assert ok.status_code == 201, ok.text
