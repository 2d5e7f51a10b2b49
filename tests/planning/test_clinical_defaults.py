"""Clinic-editable clinical defaults: the clinic admin sets them (API and page, sensitive, audited),
the rules use the clinic's value, bad values change nothing, other clinics keep the knowledge value."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from ketacare.auth.models import LoginSession
from ketacare.db import utcnow
from ketacare.knowledge.protocols import builtin_protocols
from ketacare.planning import clinical_defaults_service, dosing
from ketacare.planning.clinical_defaults import KNOWLEDGE, OWN, knowledge_defaults, resolve
from ketacare.planning.models import ClinicClinicalDefaults, TreatmentPlan
from ketacare.screening.eligibility import ELIGIBLE, NEEDS_OVERRIDE, PRIOR_THERAPIES, ScreeningFacts, decide
from tests.helpers import audit_entries, clinic_today, count, is_problem
from tests.planning.conftest import crps_plan, screening_body

ACTION = "planning.clinical_default.save"


def _ready_with_old_weight(client, patient_id: int, days_old: int) -> None:  # type: ignore[no-untyped-def]
    base = f"/api/v1/patients/{patient_id}"
    assert client.api("POST", f"{base}/conditions", json={"icd10_code": "G90.512"}).status_code == 201
    measured_on = (clinic_today() - dt.timedelta(days=days_old)).isoformat()
    weighed = client.api("POST", f"{base}/measurements", json={"weight_kg": 80, "measured_on": measured_on})
    assert weighed.status_code == 201, weighed.text
    assert client.api("POST", f"{base}/screening", json=screening_body()).status_code == 201


def _rows(response) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    return {r["key"]: r for r in response.json()}


def test_weight_age_set_by_the_clinic_changes_the_dose_rule(as_role, world, db) -> None:
    dr, admin = as_role("prescriber"), as_role("admin")
    pid = world.patient_a.id
    _ready_with_old_weight(dr, pid, 40)
    blocked = dr.api("POST", f"/api/v1/patients/{pid}/plans", json=crps_plan())
    assert is_problem(blocked, 422)
    message = " ".join(e["message"] for e in blocked.json()["errors"])
    assert "40 days ago" in message and "last 30 days" in message and "knowledge default" in message

    saved = admin.api("PUT", "/api/v1/clinical-defaults", json={"weight_max_age_days": 60})
    assert saved.status_code == 200, saved.text
    row = _rows(saved)["weight_max_age_days"]
    assert row["value"] == 60 and row["origin"] == OWN and row["knowledge_value"] == 30
    assert row["tag"] == "design" and row["source"] and row["clinic_value"] == 60
    assert _rows(saved)["pump_increment_ml_per_h"]["origin"] == KNOWLEDGE

    allowed = dr.api("POST", f"/api/v1/patients/{pid}/plans", json=crps_plan())
    assert allowed.status_code == 201, allowed.text
    page = dr.get("/planning/protocols")
    assert "Weight no older than 60 days" in page.text and "clinic&#39;s own setting" in page.text

    (entry,) = audit_entries(db, ACTION)
    assert entry.detail == "weight_max_age_days: default (30) -> 60"

    # Back to the knowledge default (null), audited old -> new; the 40-day weight blocks again.
    reset = admin.api("PUT", "/api/v1/clinical-defaults", json={"weight_max_age_days": None})
    assert _rows(reset)["weight_max_age_days"]["origin"] == KNOWLEDGE
    assert audit_entries(db, ACTION)[-1].detail == "weight_max_age_days: 60 -> default (30)"
    world_b = world.patient_b.id
    _ready_with_old_weight(dr, world_b, 40)
    assert is_problem(dr.api("POST", f"/api/v1/patients/{world_b}/plans", json=crps_plan()), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"weight_max_age_days": 0},
        {"weight_max_age_days": -5},
        {"weight_max_age_days": 100000},
        {"pump_increment_ml_per_h": 0},
        {"syringe_increment_ml": -0.1},
        {"syringe_increment_ml": 50},
        {"prior_therapies_minimum": 0},
        {"prior_therapies_minimum": 99},
        {"psychotomimetic_long_min": 0},
        {"psychotomimetic_long_min": 100000},
        {"high_frequency_sessions": 1},
        {"weight_max_age_days": 60, "pump_increment_ml_per_h": 0},
        {"weight_max_age_days": "soon"},
        {"bolus_max": 1.0},
    ],
)
def test_bad_values_are_422_and_change_nothing(as_role, world, db, body) -> None:
    admin = as_role("admin")
    refused = admin.api("PUT", "/api/v1/clinical-defaults", json=body)
    assert is_problem(refused, 422), refused.text
    assert count(db, ClinicClinicalDefaults) == 0 and not audit_entries(db, ACTION)
    rows = _rows(admin.api("GET", "/api/v1/clinical-defaults"))
    assert all(r["origin"] == KNOWLEDGE for r in rows.values())


@pytest.mark.parametrize("role", ["prescriber", "nurse", "researcher", "auditor", "patient_a"])
def test_only_the_clinic_admin_sets_clinical_defaults(as_role, world, db, role) -> None:
    client = as_role(role)
    assert client.api("GET", "/api/v1/clinical-defaults").status_code == 403
    assert client.api("PUT", "/api/v1/clinical-defaults", json={"weight_max_age_days": 60}).status_code == 403
    assert client.post("/planning/clinical-defaults", {"weight_max_age_days": "60"}).status_code == 403
    assert count(db, ClinicClinicalDefaults) == 0


def test_saving_needs_a_recent_password(as_role, world, db) -> None:
    admin = as_role("admin")
    db.execute(update(LoginSession).values(reauthenticated_at=utcnow() - dt.timedelta(minutes=30)))
    db.commit()
    refused = admin.api("PUT", "/api/v1/clinical-defaults", json={"weight_max_age_days": 60})
    assert refused.status_code in (401, 403), refused.status_code
    page = admin.post("/planning/clinical-defaults", {"weight_max_age_days": "60"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/reauth")
    assert count(db, ClinicClinicalDefaults) == 0
    assert admin.api("GET", "/api/v1/clinical-defaults").status_code == 200  # reading is not sensitive


def test_another_clinic_keeps_the_knowledge_defaults(as_role, world, db) -> None:
    admin = as_role("admin")
    body = {"weight_max_age_days": 60, "prior_therapies_minimum": 3, "pump_increment_ml_per_h": 0.5}
    assert admin.api("PUT", "/api/v1/clinical-defaults", json=body).status_code == 200
    other = clinical_defaults_service.in_force(db, world.other_clinic.id)
    assert other == knowledge_defaults() and not other.own
    mine = clinical_defaults_service.in_force(db, world.clinic.id)
    assert mine.weight_max_age_days == 60 and mine.own == frozenset(body)
    outsider = as_role("outsider")
    page = outsider.get("/planning/protocols")
    assert "Weight no older than 30 days" in page.text and "clinic&#39;s own setting" not in page.text
    assert len(audit_entries(db, ACTION)) == 3


def test_page_lists_defaults_saves_and_keeps_values_on_error(as_role, world, db) -> None:
    admin = as_role("admin")
    page = admin.get("/planning/prices")
    assert page.status_code == 200 and 'id="clinical-defaults"' in page.text
    for text in ("Planning weight valid for", "Pump rate increment", "Prior therapies tried", "[design]"):
        assert text in page.text
    assert "bolus" in page.text and 'name="bolus_max"' not in page.text  # [V] limits are not editable

    bad = admin.post(
        "/planning/clinical-defaults", {"weight_max_age_days": "0", "prior_therapies_minimum": "3"}
    )
    assert bad.status_code == 422 and 'value="0"' in bad.text and 'aria-invalid="true"' in bad.text
    assert count(db, ClinicClinicalDefaults) == 0

    saved = admin.post(
        "/planning/clinical-defaults",
        {"weight_max_age_days": "", "prior_therapies_minimum": "3", "psychotomimetic_long_min": "45"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    shown = admin.get(saved.headers["location"])
    assert "Clinical defaults saved." in shown.text and 'data-origin="clinic"' in shown.text
    assert {e.detail for e in audit_entries(db, ACTION)} == {
        "prior_therapies_minimum: default (2) -> 3",
        "psychotomimetic_long_min: default (30) -> 45",
    }


def test_prior_therapy_minimum_of_the_clinic_drives_eligibility(as_role, world, db) -> None:
    dr, admin = as_role("prescriber"), as_role("admin")
    pid = world.patient_a.id
    base = f"/api/v1/patients/{pid}"
    assert dr.api("POST", f"{base}/conditions", json={"icd10_code": "G90.512"}).status_code == 201
    assert dr.api("POST", f"{base}/screening", json=screening_body()).status_code == 201  # two tried
    assert dr.api("GET", f"{base}/eligibility").json()["status"] == ELIGIBLE
    assert (
        admin.api("PUT", "/api/v1/clinical-defaults", json={"prior_therapies_minimum": 3}).status_code == 200
    )
    decision = dr.api("GET", f"{base}/eligibility").json()
    assert decision["status"] == NEEDS_OVERRIDE
    page = dr.get(f"/patients/{pid}/screening")
    assert "at least 3" in page.text and "clinic&#39;s own setting" in page.text


# --- the pure rules take the values as parameters ------------------------------------------


def _request(**changes: object) -> dosing.DoseRequest:
    p = next(p for p in builtin_protocols() if p.key == "outpatient_series")
    fields: dict[str, object] = {
        "protocol": p,
        "dose": 0.35,
        "dose_unit": "mg/kg/h",
        "sessions": 5,
        "duration_min": 240,
        "concentration_mg_per_ml": 10.0,
        "weight_kg": 77.0,
        "weight_measured_on": dt.date(2026, 1, 1),
        "today": dt.date(2026, 2, 10),  # 40 days later
    }
    fields.update(changes)
    return dosing.DoseRequest(**fields)  # type: ignore[arg-type]


def test_dose_rules_use_the_values_given() -> None:
    stale = dosing.calculate(_request())
    assert [f.code for f in stale.blocks] == ["weight_stale"]
    fine = dosing.calculate(_request(clinic=resolve({"weight_max_age_days": 60})))
    assert not fine.blocks
    coarse = dosing.calculate(
        _request(
            clinic=resolve(
                {"weight_max_age_days": 60, "pump_increment_ml_per_h": 0.5, "syringe_increment_ml": 1}
            )
        )
    )
    # 0.35 mg/kg/h x 77 kg = 26.95 mg/h = 2.695 mL/h at 10 mg/mL; 107.8 mg = 10.78 mL
    assert fine.sessions[0].pump_ml_per_h == 2.7 and fine.sessions[0].volume_ml == 10.8
    assert coarse.sessions[0].pump_ml_per_h == 2.5 and coarse.sessions[0].volume_ml == 11.0
    calc = dosing.calculate(_request(clinic=resolve({"weight_max_age_days": 60}), sessions=4))
    p = _request().protocol
    assert not dosing.high_dose_high_frequency(calc, p)
    assert dosing.high_dose_high_frequency(calc, p, 4)


def test_eligibility_rule_uses_the_minimum_given() -> None:
    facts = ScreeningFacts(
        condition_codes=("G90.512",),
        screened=True,
        answers={"x": "no"},
        prior_therapies=("nsaid", "physical_therapy"),
    )
    assert PRIOR_THERAPIES not in {r.code for r in decide(facts).open_cautions}
    strict = decide(facts, prior_therapies_minimum=3, prior_therapies_note="clinic's own setting")
    (reason,) = [r for r in strict.open_cautions if r.code == PRIOR_THERAPIES]
    assert "at least 3" in reason.message and "clinic's own setting" in reason.message


def test_without_a_row_the_knowledge_defaults_are_in_force(world, db) -> None:
    assert count(db, TreatmentPlan) == 0 and count(db, ClinicClinicalDefaults) == 0
    in_force = clinical_defaults_service.in_force(db, world.clinic.id)
    assert in_force == knowledge_defaults() and in_force.weight_max_age_days == 30
    assert in_force.note("weight_max_age_days") == "knowledge default [design], clinic-editable"
