"""AuditEvent: the clinic's audit trail; auditors read it (and nothing else of FHIR), nurses
and other clinical roles do not."""

from __future__ import annotations

from ketacare.interop.fhir.resources.audit_event import action_code, outcome_code
from ketacare.interop.fhir.resources.base import instant
from tests.interop_fhir.conftest import FHIR_JSON, validate, validate_bundle
from tests.interop_fhir.test_map_medication_request import (
    BASE,
    assert_round_trips,
    by_id,
    other_clinic_id,
    read_all,
    rows,
    status_of,
)


def _entries(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    return rows(demo_fhir, "audit_entries", lambda t: [t.c.clinic_id == clinic_id])


def test_every_audit_event_validates_and_round_trips(demo_fhir) -> None:
    auditor = demo_fhir.as_auditor()
    resources = read_all(auditor, "AuditEvent")
    assert_round_trips(resources)
    entries = {str(e.seq) for e in _entries(demo_fhir, demo_fhir.clinic_id)}
    assert {r["id"] for r in resources} <= entries and len(resources) >= 500


def test_audit_events_equal_the_entries(demo_fhir) -> None:
    auditor = demo_fhir.as_auditor()
    found = by_id(read_all(auditor, "AuditEvent", _id=",".join(str(i) for i in range(1, 200))))
    entries = [e for e in _entries(demo_fhir, demo_fhir.clinic_id) if str(e.seq) in found]
    assert entries
    for e in entries:
        event = found[str(e.seq)]
        assert event["recorded"] == instant(e.at)
        assert event["subtype"][0]["code"] == e.action
        assert event["type"]["code"] == e.action.split(".")[0]
        assert event["action"] == action_code(e.action)
        assert event["outcome"] == ("0" if e.outcome == "success" else "4")
        agent = event["agent"][0]
        assert agent.get("altId") == e.username and agent["requestor"] is True
        if e.role in ("prescriber", "nurse"):
            assert agent["who"]["reference"] == f"Practitioner/{e.user_id}"
        patients = [x["what"]["reference"] for x in event["entity"] if "reference" in x.get("what", {})]
        assert patients == ([f"Patient/{e.patient_id}"] if e.patient_id is not None else [])
        assert event["entity"][-1]["detail"][1] == {"type": "entry_hash", "valueString": e.entry_hash}
        assert event["source"]["observer"] == {"display": "KetaCare"}
    assert action_code("patient.read") == "R" and action_code("plan.create") == "C"
    assert action_code("session.sign") == "U" and action_code("fhir.search") == "E"
    assert outcome_code("denied") == "4" and outcome_code("success") == "0"


def test_search_by_action_patient_and_agent(demo_fhir) -> None:
    auditor = demo_fhir.as_auditor()
    entries = [e for e in _entries(demo_fhir, demo_fhir.clinic_id) if e.patient_id is not None]
    patient_id = entries[0].patient_id
    mine = read_all(auditor, "AuditEvent", patient=f"Patient/{patient_id}", action="C")
    expected = {str(e.seq) for e in entries if e.patient_id == patient_id and action_code(e.action) == "C"}
    assert {r["id"] for r in mine} == expected and expected
    user = entries[0].username
    by_user = read_all(auditor, "AuditEvent", altid=user, subtype="urn:ketacare:audit-action|patient.read")
    assert by_user and all(r["agent"][0]["altId"] == user for r in by_user)
    assert all(r["subtype"][0]["code"] == "patient.read" for r in by_user)


def test_another_clinics_trail_is_not_found(demo_fhir) -> None:
    auditor = demo_fhir.as_auditor()
    theirs = _entries(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(auditor, f"{BASE}/AuditEvent/{theirs[0].seq}") == 404


def test_an_auditor_reads_audit_events_and_nothing_clinical(as_role, world) -> None:
    auditor = as_role("auditor")
    response = auditor.client.get(f"{BASE}/AuditEvent", params={"_count": "1000"})
    assert response.status_code == 200, response.text
    events = validate_bundle(response.json())
    assert events and all(e["resourceType"] == "AuditEvent" for e in events)
    for path in (
        f"{BASE}/Patient/{world.patient_a.id}",
        f"{BASE}/Patient",
        f"{BASE}/Questionnaire",
        f"{BASE}/Patient/{world.patient_a.id}/$everything",
    ):
        refused = auditor.client.get(path)
        assert refused.status_code == 403, path
        assert refused.headers["content-type"].startswith(FHIR_JSON)
        outcome = refused.json()
        validate(outcome)
        assert outcome["resourceType"] == "OperationOutcome"


def test_a_nurse_may_not_read_the_audit_trail(as_role, world) -> None:
    nurse = as_role("nurse")
    refused = nurse.client.get(f"{BASE}/AuditEvent")
    assert refused.status_code == 403
    validate(refused.json())
    assert nurse.client.get(f"{BASE}/Patient/{world.patient_a.id}").status_code == 200
    # and the nurse's $everything holds no AuditEvent
    bundle = nurse.client.get(f"{BASE}/Patient/{world.patient_a.id}/$everything").json()
    assert "AuditEvent" not in {e["resource"]["resourceType"] for e in bundle["entry"]}
