"""CarePlan: treatment plans with their care-plan items, the Conditions they address and the
series as a reference to the plan's MedicationRequest."""

from __future__ import annotations

from ketacare.knowledge import pain_conditions
from tests.interop_fhir.test_map_medication_request import (
    BASE,
    assert_round_trips,
    by_id,
    other_clinic_id,
    read_all,
    rows,
    status_of,
)


def _plans(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    return rows(demo_fhir, "treatment_plans", lambda t: [t.c.clinic_id == clinic_id])


def test_every_care_plan_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "CarePlan")
    assert_round_trips(resources)
    assert {r["id"] for r in resources} == {str(p.id) for p in _plans(demo_fhir, demo_fhir.clinic_id)}


def test_care_plans_equal_plans_and_items(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "CarePlan"))
    items = rows(demo_fhir, "care_plan_items")
    conditions = rows(demo_fhir, "patient_conditions")
    booked = rows(demo_fhir, "plan_sessions", lambda t: [t.c.status == "booked"])
    addressed = 0
    for plan in _plans(demo_fhir, demo_fhir.clinic_id):
        cp = found[str(plan.id)]
        assert (
            cp["status"] == {"planned": "draft", "scheduled": "active", "cancelled": "revoked"}[plan.status]
        )
        assert cp["intent"] == "plan" and cp["subject"] == {"reference": f"Patient/{plan.patient_id}"}
        assert cp["period"] == {"start": plan.start_date.isoformat(), "end": plan.end_date.isoformat()}
        series, *rest = cp["activity"]
        assert series["reference"] == {"reference": f"MedicationRequest/plan-{plan.id}"}
        n_booked = sum(1 for s in booked if s.plan_id == plan.id)
        assert series["progress"][0]["text"].startswith(f"{plan.sessions} ketamine sessions planned")
        assert series["progress"][0]["text"].endswith(f"{n_booked} booked")
        mine = [i for i in items if i.plan_id == plan.id]
        assert [a["detail"]["description"] for a in rest] == [i.description for i in mine]
        assert [a["detail"]["code"]["coding"][0]["code"] for a in rest] == [i.category for i in mine]
        assert [a["detail"]["performer"][0]["display"] for a in rest] == [i.owner for i in mine]
        codes = {c.code for cond in pain_conditions() if cond.name == plan.indication for c in cond.codes}
        expected = {
            f"Condition/{c.id}"
            for c in conditions
            if c.patient_id == plan.patient_id and c.icd10_code in codes
        }
        assert {a["reference"] for a in cp.get("addresses", [])} == expected
        addressed += bool(expected)
    assert addressed and any(i.plan_id for i in items)


def test_search_by_activity_code_and_condition(demo_fhir) -> None:
    ours = {p.id for p in _plans(demo_fhir, demo_fhir.clinic_id)}
    items = [i for i in rows(demo_fhir, "care_plan_items") if i.plan_id in ours]
    cbt = read_all(demo_fhir, "CarePlan", **{"activity-code": "urn:ketacare:care-category|cbt"})
    assert {r["id"] for r in cbt} == {str(i.plan_id) for i in items if i.category == "cbt"}
    one = next(r for r in read_all(demo_fhir, "CarePlan") if r.get("addresses"))
    condition = one["addresses"][0]["reference"]
    found = read_all(demo_fhir, "CarePlan", condition=condition)
    assert one["id"] in {r["id"] for r in found}
    assert all(condition in {a["reference"] for a in r["addresses"]} for r in found)


def test_another_clinics_plans_are_not_found(demo_fhir) -> None:
    theirs = _plans(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(demo_fhir, f"{BASE}/CarePlan/{theirs[0].id}") == 404
