"""A take-home prescription never goes past the absolute per-day ceilings of dose_limits.toml
(issue 14 item 1, applied to prescribing): mg a day and mg/kg a day, this prescription plus the
other systemic supplies running. One table, each row naming its source; refused whatever the
directions say. The per-dose hard limits (bolus 0.35 mg/kg, infusion 0.5-2 mg/kg/h, esketamine
84 mg) govern IV, IM and esketamine routes, none of which is a take-home product (checked below)."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.knowledge.dose_limits import ceiling_for, dose_limits
from ketacare.knowledge.prescribing import prescribing_rules, product_by_key
from ketacare.planning.clinical_defaults import resolve
from ketacare.prescribing import rules
from tests.helpers import is_problem
from tests.prescribing.conftest import TODAY, check, draft, in_person, pdmp

ISSUED = dt.date(2026, 3, 2)
PRODUCTS = product_by_key()
ROW = ceiling_for("home")  # the day-visit row: settings outpatient and home
DESIGN = "Design default: 8 mg/kg"  # the words the ceiling's source starts with
SL, PO, NASAL = "ketamine_sl_lozenge_50", "ketamine_po_lozenge_50", "ketamine_nasal_spray_10"
OVER_800 = "above the ceiling of 800 mg a day"


def supply(mg_per_day: float, route: str = "sublingual") -> rules.Supply:
    return rules.Supply(9, SL, route, ISSUED - dt.timedelta(days=3), 30, 0, mg_per_day)


# (product, quantity, days, weight kg, other supplies, clinic overrides, status, words, source words)
TABLE = [
    (SL, 30, 30, 70.0, (), {}, rules.PASS, "50 mg a day", DESIGN),
    # 100 x 50 mg over 5 days = 1,000 mg a day: above 800 mg a day
    (
        "ketamine_sl_lozenge_50",
        100,
        5,
        150.0,
        (),
        {},
        rules.BLOCK,
        "above the ceiling of 800 mg a day",
        DESIGN,
    ),
    # 600 mg a day at 60 kg = 10 mg/kg a day: above 8 mg/kg a day, under 800 mg
    (PO, 120, 10, 60.0, (), {}, rules.BLOCK, "10 mg/kg a day is above", DESIGN),
    # 1,000 sprays of 10 mg over 10 days = 1,000 mg a day
    (NASAL, 1000, 10, 90.0, (), {}, rules.BLOCK, "800 mg a day", DESIGN),
    # 400 mg a day plus 500 mg a day still running = 900 mg a day
    (SL, 80, 10, 150.0, (supply(500.0),), {}, rules.BLOCK, "900 mg a day", DESIGN),
    # a topical supply running is not counted (Lynch 2005): 400 + 0
    (
        "ketamine_sl_lozenge_50",
        80,
        10,
        150.0,
        (supply(500.0, "topical"),),
        {},
        rules.PASS,
        "400 mg a day",
        DESIGN,
    ),
    # the clinic lowered its day ceiling to 200 mg: 300 mg a day is refused, named as the clinic's
    (
        "ketamine_sl_lozenge_50",
        60,
        10,
        80.0,
        (),
        {"day_max_mg": 200.0},
        rules.BLOCK,
        "200 mg a day",
        "clinic's own",
    ),
    # weight unknown: the mg/kg ceiling is not checked, and the check says so (not a pass)
    (SL, 30, 30, None, (), {}, rules.WARN, "unknown, no weight on record", DESIGN),
]


@pytest.mark.parametrize(
    ("key", "qty", "days", "weight", "prior", "clinic", "status", "words", "source"), TABLE
)
def test_take_home_day_ceiling(key, qty, days, weight, prior, clinic, status, words, source) -> None:  # type: ignore[no-untyped-def]
    d = rules.Draft(
        PRODUCTS[key], quantity=qty, days_supply=days, refills=0, issued_on=ISSUED, compounded_ack="x"
    )
    p = rules.PatientFacts(home_state="NY", has_address=True, prior=prior, weight_kg=weight)
    ceilings = rules.home_ceilings(resolve(clinic))
    ev = rules.evaluate(d, _prescriber(), None, p, _settings(), ISSUED, None, ceilings)
    got = next(c for c in ev.checks if c.key == "day_ceiling")
    assert got.status == status, got.message
    assert words in got.message and source in got.source
    if status == rules.BLOCK:
        assert not ev.signable and got.message.startswith("Refused")


def test_the_ceiling_is_the_knowledge_row_by_default() -> None:
    c = rules.home_ceilings()
    assert (c.day_max_mg, c.day_max_mg_per_kg) == (ROW.day_max_mg, ROW.day_max_mg_per_kg) == (800.0, 8.0)
    assert c.tag == "design"


def test_topical_supply_is_not_counted() -> None:
    cream = PRODUCTS["ketamine_cream_10pct"]
    d = rules.Draft(cream, quantity=100, days_supply=1, refills=0, issued_on=ISSUED, compounded_ack="x")
    p = rules.PatientFacts(home_state="NY", has_address=True, weight_kg=70.0)
    ev = rules.evaluate(d, _prescriber(), None, p, _settings(), ISSUED, None)
    got = next(c for c in ev.checks if c.key == "day_ceiling")
    assert got.status == rules.PASS and "Topical" in got.message
    assert got.source == prescribing_rules().topical.source


def test_no_take_home_product_is_on_a_route_of_the_per_dose_hard_limits() -> None:
    """The per-dose hard limits apply to IV, IM and esketamine: a take-home product never is one
    (input_errors refuses a product that is not for home use or not on a take-home route)."""
    hard_routes = {route for limit in dose_limits().values() if limit.hard for route in limit.applies_to}
    take_home = set(prescribing_rules().take_home_routes)
    for product in PRODUCTS.values():
        errors = rules.input_errors(product, 1, 1, 0, ISSUED)
        if "product_key" not in errors:
            assert product.home_use and product.route in take_home
            assert product.drug == "ketamine" and product.route not in hard_routes, product.key
    assert "product_key" in rules.input_errors(PRODUCTS["esketamine_spravato_28"], 1, 1, 0, ISSUED)


def test_api_refuses_to_sign_above_the_ceiling_and_says_why(as_role, world, db, ready) -> None:  # type: ignore[no-untyped-def]
    dr = as_role("prescriber")
    yesterday = TODAY - dt.timedelta(days=1)  # the clinic's today may still be UTC's yesterday
    encounter = in_person(dr, ready.patient_id, on=yesterday)
    pdmp(dr, ready.patient_id, on=yesterday)
    body = draft(dr, ready.patient_id, encounter_id=encounter, quantity=100, days_supply=5)
    got = check(body, "day_ceiling")
    assert got["status"] == "block" and "above the ceiling of 800 mg a day" in got["message"]
    assert "Design default" in got["source"] and not body["signable"]
    refused = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    assert is_problem(refused, 422)
    assert "day_ceiling" in {e["field"] for e in refused.json()["errors"]}
    page = dr.get(f"/prescriptions/{body['id']}").text
    assert "above the ceiling of 800 mg a day" in page


def _prescriber() -> rules.Prescriber:
    far = dt.date(2028, 1, 1)
    return rules.Prescriber(
        user_id=1,
        name="Ann Parker MD",
        role="prescriber",
        licences=(rules.Licence("NY", "NY-1", far),),
        deas=(rules.DeaRegistration("NY", "AP5836727", far),),
        npi="1234567893",
        boards=(),
    )


def _settings():  # type: ignore[no-untyped-def]
    from ketacare.prescribing.settings import knowledge_defaults

    return knowledge_defaults()
