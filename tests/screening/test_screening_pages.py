"""Screening through the pages and the API: save, decision with reasons, override, bad input."""

from __future__ import annotations

from ketacare.screening.models import EligibilityOverride, ScreeningAssessment
from tests.helpers import audit_entries, count, is_problem
from tests.planning.conftest import make_ready, screening_body


def test_eligibility_recomputed_and_override_recorded(as_role, world, db) -> None:
    dr = as_role("prescriber")
    pid = world.patient_a.id
    make_ready(dr, pid, raised_iop="yes")
    decision = dr.api("GET", f"/api/v1/patients/{pid}/eligibility").json()
    assert decision["status"] == "needs_override" and decision["evidence_grade"] == "B"
    assert any("ASRA-2018" in s for s in decision["sources"])
    # The record changes, the decision follows: a benzodiazepine adds an interaction.
    dr.api(
        "POST",
        f"/api/v1/patients/{pid}/medications",
        json={"name": "Lorazepam", "drug_class": "benzodiazepine"},
    )
    again = dr.api("GET", f"/api/v1/patients/{pid}/eligibility").json()
    assert any(r["code"] == "interaction_benzodiazepine" for r in again["reasons"])
    short = dr.post(f"/patients/{pid}/screening/override", {"caution_key": "raised_iop", "reason": "ok"})
    assert short.status_code == 422 and "at least 10" in short.text
    assert count(db, EligibilityOverride) == 0
    page = dr.post(
        f"/patients/{pid}/screening/override",
        {"caution_key": "raised_iop", "reason": "Ophthalmology confirms controlled glaucoma"},
    )
    assert page.status_code == 200 and "Eligible" in page.text and "Ophthalmology" in page.text
    assert audit_entries(db, "screening.override")[0].detail.startswith("raised_iop")
    fragment = dr.get(f"/patients/{pid}/eligibility")
    assert "Overridden cautions" in fragment.text and "Write a treatment plan" in fragment.text


def test_hard_stop_cannot_be_overridden_and_nurse_cannot_override(as_role, world, db) -> None:
    dr = as_role("prescriber")
    pid = world.patient_a.id
    make_ready(dr, pid, pregnancy="yes")
    refused = dr.api(
        "POST",
        f"/api/v1/patients/{pid}/eligibility/overrides",
        json={"caution_key": "pregnancy", "reason": "patient insists very much"},
    )
    assert is_problem(refused, 422) and "hard stop" in refused.json()["errors"][0]["message"]
    nurse = as_role("nurse")
    assert (
        nurse.api(
            "POST",
            f"/api/v1/patients/{pid}/eligibility/overrides",
            json={"caution_key": "x", "reason": "y" * 12},
        ).status_code
        == 403
    )
    assert count(db, EligibilityOverride) == 0


def test_screening_form_keeps_values_on_error_and_writes_nothing(as_role, world, db) -> None:
    nurse = as_role("nurse")
    pid = world.patient_a.id
    bad = nurse.post(
        f"/patients/{pid}/screening/save",
        {
            "referral_source": "Dr Who",
            "sbp_mmhg": "120",
            "dbp_mmhg": "130",
            "answer_pregnancy": "no",
            "prior_therapies": "nsaid",
        },
    )
    assert bad.status_code == 422 and 'value="Dr Who"' in bad.text and "Diastolic" in bad.text
    api = nurse.api(
        "POST", f"/api/v1/patients/{pid}/screening", json={**screening_body(), "answers": {"nope": "yes"}}
    )
    assert is_problem(api, 422)
    assert count(db, ScreeningAssessment) == 0
    ok = nurse.post(
        f"/patients/{pid}/screening/save", {"sbp_mmhg": "120", "dbp_mmhg": "80", "answer_pregnancy": "no"}
    )
    assert ok.status_code == 200 and count(db, ScreeningAssessment) == 1
    page = nurse.get(f"/patients/{pid}")
    assert f"/patients/{pid}/eligibility" in page.text


def test_other_clinic_gets_404_and_it_is_audited(as_role, world, db) -> None:
    outsider = as_role("outsider_nurse")
    pid = world.patient_a.id
    assert outsider.get(f"/patients/{pid}/screening").status_code == 404
    assert outsider.api("POST", f"/api/v1/patients/{pid}/screening", json=screening_body()).status_code == 404
    assert audit_entries(db, "screening.save", outcome="denied")
    assert audit_entries(db, "patient.read", outcome="denied", patient_id=pid)
