"""The right product for the route, as the ledger holds it (issue 14 item 2).

The rule table (knowledge products.toml): each dosage form with the routes it may be given by and
its source; a product's coded ingredient must be the drug given. The ledger's administration
entry refuses a lot that does not fit; ``available_lots`` with a drug and a route offers only
the fitting ones."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.errors import InvalidInput
from ketacare.knowledge.prescribing import products as catalogue
from ketacare.knowledge.products import dosage_forms, fit_problem, ingredients
from ketacare.ledger import lots, movements, setup
from ketacare.ledger.models import LedgerEntry
from ketacare.ledger.schemas import DosageForm, Ingredient, ProductIn
from tests.helpers import clinic_today, count
from tests.ledger.conftest import receipt

# (ingredient, form, drug, route, fits?, source words) -- each row names its source.
CASES = [
    ("ketamine", "injection, solution", "ketamine", "iv_infusion", True, "Ketalar"),
    ("ketamine", "injection, solution", "ketamine", "iv_bolus", True, "Ketalar"),
    ("ketamine", "injection, solution", "ketamine", "im", True, "Ketalar"),
    ("ketamine", "nasal spray", "ketamine", "intranasal", True, "Carr 2004"),
    ("ketamine", "nasal spray", "ketamine", "iv_infusion", False, "Carr 2004"),
    ("ketamine", "nasal spray", "ketamine", "iv_bolus", False, "Carr 2004"),
    ("esketamine", "nasal spray device", "esketamine", "esketamine_nasal", True, "Spravato"),
    ("esketamine", "nasal spray device", "ketamine", "esketamine_nasal", False, "Spravato"),
    ("ketamine", "injection, solution", "esketamine", "esketamine_nasal", False, "Ketalar"),
    ("ketamine", "lozenge", "ketamine", "sublingual", True, "OSKET"),
    ("ketamine", "lozenge", "ketamine", "oral", True, "OSKET"),
    ("ketamine", "lozenge", "ketamine", "iv_infusion", False, "OSKET"),
    ("ketamine", "sublingual troche", "ketamine", "sublingual", True, "OSKET"),
    ("ketamine", "sublingual troche", "ketamine", "intranasal", False, "OSKET"),
    ("ketamine", "oral solution", "ketamine", "oral", True, "UIC"),
    ("ketamine", "topical cream", "ketamine", "topical", True, "Lynch 2005"),
    ("ketamine", "topical cream", "ketamine", "im", False, "Lynch 2005"),
]


@pytest.mark.parametrize(("ingredient", "form", "drug", "route", "fits", "source"), CASES)
def test_form_route_table(ingredient: str, form: str, drug: str, route: str, fits: bool, source: str) -> None:
    assert source in dosage_forms()[form].sourced.source
    problem = fit_problem(ingredient, form, drug, route)
    assert (problem is None) == fits, problem


def test_an_uncoded_product_fits_nothing() -> None:
    assert "not coded" in (fit_problem(None, "injection, solution", "ketamine", "iv_infusion") or "")
    assert "not one of the coded forms" in (fit_problem("ketamine", "vial", "ketamine", "iv_infusion") or "")


def test_every_form_and_ingredient_of_the_page_is_in_the_knowledge_table() -> None:
    assert {f.value for f in DosageForm} == set(dosage_forms())
    assert {i.value for i in Ingredient} == set(ingredients())
    for form in dosage_forms().values():
        assert form.sourced.source and form.sourced.tag in ("V", "V*", "M", "design")


def test_every_catalogue_prescription_product_fits_its_own_route() -> None:
    for product in catalogue():
        assert fit_problem(product.drug, product.dosage_form, product.drug, product.route) is None, (
            product.key
        )


def _spray_lot(db, stock) -> int:  # type: ignore[no-untyped-def]
    spray = setup.create_product(
        db,
        stock.admin,
        ProductIn(
            name="Ketamine nasal spray (compounded)",
            strength_mg_per_ml=100,
            container_ml=5,
            ingredient="ketamine",
            dosage_form="nasal spray",
            compounded=True,
        ),
    )
    expiry = clinic_today() + dt.timedelta(days=200)
    entry = movements.record_receipt(
        db, stock.admin, receipt(stock.registration.id, spray.id, "SPRAY-9", expiry)
    )
    db.commit()
    assert entry.lot_id is not None
    return entry.lot_id


def test_the_ledger_refuses_an_iv_administration_from_a_nasal_spray_lot(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    lot_id = _spray_lot(db, stock)
    before = count(db, LedgerEntry)
    with pytest.raises(InvalidInput) as refused:
        movements.record_administration(
            db,
            stock.nurse,
            lot_id=lot_id,
            amount_mg=20,
            patient_id=world.patient_a.id,
            session_id=stock.session_id,
            given_at=dt.datetime.now(dt.UTC),
            drug="ketamine",
            route="iv_infusion",
        )
    assert "nasal spray" in refused.value.errors["lot_id"] and "IV infusion" in refused.value.errors["lot_id"]
    db.rollback()
    assert count(db, LedgerEntry) == before
    entry = movements.record_administration(
        db,
        stock.nurse,
        lot_id=lot_id,
        amount_mg=20,
        patient_id=world.patient_a.id,
        session_id=stock.session_id,
        given_at=dt.datetime.now(dt.UTC),
        drug="ketamine",
        route="intranasal",
    )
    assert entry.change_ug == -20_000


def test_available_lots_for_a_drug_and_route_offers_only_fitting_lots(db, stock) -> None:  # type: ignore[no-untyped-def]
    _spray_lot(db, stock)
    every = {c.lot_number for c in lots.available_lots(db, stock.nurse)}
    iv = {c.lot_number for c in lots.available_lots(db, stock.nurse, drug="ketamine", route="iv_infusion")}
    nasal = {c.lot_number for c in lots.available_lots(db, stock.nurse, drug="ketamine", route="intranasal")}
    esk = lots.available_lots(db, stock.nurse, drug="esketamine", route="esketamine_nasal")
    assert "SPRAY-9" in every and iv == {"L50-A", "OPEN-10"} and nasal == {"SPRAY-9"} and esk == []


def test_the_api_shows_a_products_coding(as_role, stock) -> None:  # type: ignore[no-untyped-def]
    products = as_role("nurse").api("GET", "/api/v1/ledger/products").json()
    vial = next(p for p in products if p["id"] == stock.vial_50.id)
    assert vial["ingredient"] == "ketamine" and vial["dosage_form"] == "injection, solution"
    assert vial["coding_problem"] is None
    missing = as_role("admin").api(
        "POST",
        "/api/v1/ledger/products",
        json={
            "name": "X",
            "ndc": "0409-2051-05",
            "strength_mg_per_ml": 50,
            "container_ml": 10,
            "dosage_form": "nasal spray",
        },
    )
    assert missing.status_code == 422 and "ingredient" in missing.text


def test_the_api_lists_only_lots_that_fit_a_drug_and_route(as_role, db, stock) -> None:  # type: ignore[no-untyped-def]
    _spray_lot(db, stock)
    nurse = as_role("nurse")
    url = "/api/v1/ledger/lots?available=true"
    iv = nurse.api("GET", f"{url}&drug=ketamine&route=iv_infusion").json()
    nasal = nurse.api("GET", f"{url}&drug=ketamine&route=intranasal").json()
    assert {r["lot_number"] for r in iv} == {"L50-A", "OPEN-10"}
    assert {r["lot_number"] for r in nasal} == {"SPRAY-9"} and nasal[0]["product"]["routes"] == ["intranasal"]
    assert nurse.api("GET", f"{url}&drug=ketamine").status_code == 422
