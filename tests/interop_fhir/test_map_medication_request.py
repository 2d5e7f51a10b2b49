"""MedicationRequest: take-home prescriptions (intent order) and treatment plans (intent plan),
checked against the rows of the demo clinic. The helpers here serve the other part-B mapping tests."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from ketacare.interop.fhir.resources.base import table
from ketacare.interop.fhir.resources.medication_request import prescription_status
from tests.interop_fhir.conftest import utc_z, validate, validate_bundle

BASE = "/fhir/R4"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def read_all(demo_fhir: Any, kind: str, **params: str) -> list[dict[str, Any]]:
    """Every resource of a type the demo clinic's client sees, each validated."""
    return validate_bundle(demo_fhir.get(f"{BASE}/{kind}", _count="1000", **params))


def assert_round_trips(resources: list[dict[str, Any]]) -> None:
    assert resources
    for resource in resources:
        dumped = validate(resource).model_dump(mode="json", exclude_none=True)
        assert dumped == utc_z(resource), resource["id"]


def rows(demo_fhir: Any, name: str, where: Callable[[Any], list[Any]] | None = None) -> list[Any]:
    """The rows of a table (``where``: the table -> its conditions), in primary-key order."""
    t = table(name)
    query = select(t).order_by(*t.primary_key)
    if where is not None:
        query = query.where(*where(t))
    with demo_fhir.db() as db:
        return list(db.execute(query))


def other_clinic_id(demo_fhir: Any) -> int:
    clinics = rows(demo_fhir, "clinics")
    return next(c.id for c in clinics if c.id != demo_fhir.clinic_id)


def status_of(demo_fhir: Any, path: str) -> int:
    return int(demo_fhir.client.get(path, headers=demo_fhir.headers).status_code)


def by_id(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in resources}


def test_every_medication_request_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "MedicationRequest")
    assert_round_trips(resources)
    prescriptions = rows(demo_fhir, "prescriptions", lambda t: [t.c.clinic_id == demo_fhir.clinic_id])
    plans = rows(demo_fhir, "treatment_plans", lambda t: [t.c.clinic_id == demo_fhir.clinic_id])
    expected = {str(p.id) for p in prescriptions} | {
        f"plan-{p.id}" for p in plans if p.dose_unit != "percent"
    }
    assert set(by_id(resources)) == expected and prescriptions and plans


def test_prescriptions_carry_their_rows(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "MedicationRequest", intent="order"))
    for row in rows(demo_fhir, "prescriptions", lambda t: [t.c.clinic_id == demo_fhir.clinic_id]):
        mr = found[str(row.id)]
        assert mr["status"] == ("active" if row.signed_at else "draft")
        assert mr["intent"] == "order"
        medication = mr["medicationCodeableConcept"]
        assert medication["text"] == row.product_name
        if row.drug == "ketamine":
            assert medication["coding"] == [{"system": RXNORM, "code": "6130", "display": "ketamine"}]
        else:
            assert "coding" not in medication  # esketamine: no verified RxCUI
        assert mr["requester"] == {"reference": f"Practitioner/{row.prescriber_id}"}
        assert mr["subject"] == {"reference": f"Patient/{row.patient_id}"}
        dosage = mr["dosageInstruction"][0]
        assert dosage["text"] == row.directions and dosage["route"]["text"] == row.route
        if row.unit != "g":
            dose = dosage["doseAndRate"][0]["doseQuantity"]
            assert dose == {
                "value": row.strength_mg,
                "unit": "mg",
                "system": "http://unitsofmeasure.org",
                "code": "mg",
            }
        dispense = mr["dispenseRequest"]
        assert dispense["quantity"] == {"value": row.quantity, "unit": row.unit}
        assert dispense["numberOfRepeatsAllowed"] == row.refills
        assert dispense["expectedSupplyDuration"]["value"] == row.days_supply
        assert dispense["validityPeriod"]["start"] == row.issued_on.isoformat()


def test_plans_are_requests_of_intent_plan(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "MedicationRequest", intent="plan"))
    plans = rows(demo_fhir, "treatment_plans", lambda t: [t.c.clinic_id == demo_fhir.clinic_id])
    assert set(found) == {f"plan-{p.id}" for p in plans if p.dose_unit != "percent"}
    for plan in plans:
        mr = found[f"plan-{plan.id}"]
        assert (
            mr["status"] == {"planned": "draft", "scheduled": "active", "cancelled": "cancelled"}[plan.status]
        )
        assert mr["medicationCodeableConcept"]["coding"][0]["code"] == "6130"
        dosage = mr["dosageInstruction"][0]
        repeat = dosage["timing"]["repeat"]
        assert repeat["count"] == plan.sessions and repeat["period"] == plan.interval_days
        assert repeat["duration"] == plan.session_duration_min and repeat["durationUnit"] == "min"
        amount = dosage["doseAndRate"][0]
        ucum = {"mg/kg/h": "mg/kg/h", "mg/h": "mg/h", "mg/kg": "mg/kg", "mg": "mg"}[plan.dose_unit]
        key = "rateQuantity" if plan.dose_unit.endswith("/h") else "doseQuantity"
        assert amount[key]["value"] == plan.dose and amount[key]["code"] == ucum


def test_search_by_code_and_status(demo_fhir) -> None:
    everything = read_all(demo_fhir, "MedicationRequest")
    ketamine = read_all(demo_fhir, "MedicationRequest", code=f"{RXNORM}|6130")
    assert {r["id"] for r in ketamine} == {
        r["id"] for r in everything if r["medicationCodeableConcept"].get("coding")
    }
    drafts = read_all(demo_fhir, "MedicationRequest", status="draft", intent="order")
    unsigned = rows(
        demo_fhir, "prescriptions", lambda t: [t.c.clinic_id == demo_fhir.clinic_id, t.c.signed_at.is_(None)]
    )
    assert {r["id"] for r in drafts} == {str(p.id) for p in unsigned} and unsigned


def test_another_clinics_requests_are_not_found(demo_fhir) -> None:
    other = other_clinic_id(demo_fhir)
    theirs = rows(demo_fhir, "prescriptions", lambda t: [t.c.clinic_id == other])
    plans = rows(demo_fhir, "treatment_plans", lambda t: [t.c.clinic_id == other])
    assert theirs and plans
    assert status_of(demo_fhir, f"{BASE}/MedicationRequest/{theirs[0].id}") == 404
    assert status_of(demo_fhir, f"{BASE}/MedicationRequest/plan-{plans[0].id}") == 404
    ours = {r["id"] for r in read_all(demo_fhir, "MedicationRequest")}
    assert not ours & ({str(p.id) for p in theirs} | {f"plan-{p.id}" for p in plans})


def test_status_follows_signing_and_cancellation() -> None:
    row = SimpleNamespace(signed_at=None, cancelled_on=None)
    assert prescription_status(row) == "draft"
    row.signed_at = "2026-12-01T10:00:00Z"
    assert prescription_status(row) == "active"
    row.cancelled_on = "2026-12-02"
    assert prescription_status(row) == "cancelled"
