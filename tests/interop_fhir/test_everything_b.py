"""Patient/$everything holds a patient's medication requests and administrations, adverse
events, care plans, consents, signatures, questionnaire responses and the Questionnaire they
answer. No demo patient has both a take-home prescription and sessions, so two patients are
checked: one with prescriptions, one treated in sessions who answered follow-ups."""

from __future__ import annotations

from typing import Any

from tests.interop_fhir.conftest import validate_bundle
from tests.interop_fhir.test_map_medication_request import BASE, rows


def _record(demo_fhir: Any, patient_id: int) -> dict[str, set[str]]:
    """What $everything must hold of our part-B types, from the rows."""

    def of(name: str, *extra: Any) -> list[Any]:
        return rows(demo_fhir, name, lambda t: [t.c.patient_id == patient_id, *(e(t) for e in extra)])

    plans = of("treatment_plans")
    sessions = of("treatment_sessions")
    session_ids = {s.id for s in sessions}
    given = [g for g in rows(demo_fhir, "session_administrations") if g.session_id in session_ids]
    completed = of("outcome_follow_ups", lambda t: t.c.status == "completed")
    signed_rx = [p for p in of("prescriptions") if p.signed_at]
    return {
        "MedicationRequest": {str(p.id) for p in of("prescriptions")}
        | {f"plan-{p.id}" for p in plans if p.dose_unit != "percent"},
        "MedicationAdministration": {str(g.id) for g in given if g.kind != "stop"},
        "MedicationStatement": {str(m.id) for m in of("patient_medications")},
        "AdverseEvent": {str(e.id) for e in of("adverse_events")},
        "CarePlan": {str(p.id) for p in plans},
        "Consent": {str(c.id) for c in of("plan_consents")},
        "QuestionnaireResponse": {str(f.id) for f in completed},
        "Provenance": {f"session-{s.id}" for s in sessions if s.nurse_signed_at or s.prescriber_signed_at}
        | {f"prescription-{p.id}" for p in signed_rx},
    }


def _everything(demo_fhir: Any, patient_id: int) -> dict[str, set[str]]:
    resources = validate_bundle(demo_fhir.get(f"{BASE}/Patient/{patient_id}/$everything"))
    found: dict[str, set[str]] = {}
    for r in resources:
        found.setdefault(r["resourceType"], set()).add(r["id"])
    assert found["Patient"] == {str(patient_id)}
    assert "AuditEvent" not in found  # the audit trail is not the patient's record
    return found


def _patients(demo_fhir: Any, name: str, *extra: Any) -> list[int]:
    clinic = demo_fhir.clinic_id
    return sorted(
        {
            r.patient_id
            for r in rows(demo_fhir, name, lambda t: [t.c.clinic_id == clinic, *(e(t) for e in extra)])
        }
    )


def test_everything_of_a_patient_with_prescriptions(demo_fhir) -> None:
    patient_id = _patients(demo_fhir, "prescriptions", lambda t: t.c.signed_at.is_not(None))[0]
    expected, found = _record(demo_fhir, patient_id), _everything(demo_fhir, patient_id)
    for kind, ids in expected.items():
        assert found.get(kind, set()) == ids, kind
    assert expected["MedicationRequest"] and expected["CarePlan"] and expected["Consent"]
    assert any(i.startswith("prescription-") for i in expected["Provenance"])


def test_everything_of_a_treated_patient(demo_fhir) -> None:
    treated = set(_patients(demo_fhir, "adverse_events"))
    answered = set(_patients(demo_fhir, "outcome_follow_ups", lambda t: t.c.status == "completed"))
    patient_id = sorted(treated & answered)[0]
    expected, found = _record(demo_fhir, patient_id), _everything(demo_fhir, patient_id)
    for kind, ids in expected.items():
        assert found.get(kind, set()) == ids, kind
    for kind in (
        "MedicationAdministration",
        "AdverseEvent",
        "CarePlan",
        "QuestionnaireResponse",
        "Provenance",
    ):
        assert expected[kind], kind
    assert "follow-up" in found["Questionnaire"]  # the Questionnaire the responses answer
