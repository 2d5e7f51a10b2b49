"""Clinic protocols from the protocol library page; the PK band for every session dose."""

from __future__ import annotations

from ketacare.planning.models import ClinicProtocol
from tests.helpers import audit_entries, count
from tests.planning.conftest import crps_plan, make_ready

FORM = {
    "key": "clinic_2h",
    "name": "Clinic 2-hour",
    "route": "iv_infusion",
    "dose_unit": "mg/kg/h",
    "dose_min": "0.2",
    "dose_max": "0.5",
    "dose_default": "0.3",
    "duration_min": "120",
    "sessions_min": "1",
    "sessions_max": "3",
    "interval_days": "1",
    "setting": "outpatient",
    "monitoring": "standard",
    "premedication": "ondansetron; midazolam",
    "tag": "design",
}


def test_prescriber_adds_a_protocol_and_a_version_on_the_page(as_role, world, db) -> None:
    dr = as_role("prescriber")
    page = dr.get("/planning/protocols")
    assert page.status_code == 200 and "New clinic protocol" in page.text
    no_source = dr.post("/planning/protocols", {**FORM, "source": ""})
    assert no_source.status_code == 422 and "needs its source" in no_source.text
    assert 'value="Clinic 2-hour"' in no_source.text and 'value="ondansetron; midazolam"' in no_source.text
    bad_key = dr.post("/planning/protocols", {**FORM, "key": "Clinic 2h", "source": "Clinic decision"})
    assert bad_key.status_code == 422 and "lower-case letters" in bad_key.text
    upside_down = dr.post("/planning/protocols", {**FORM, "dose_min": "0.6", "source": "Clinic decision"})
    assert upside_down.status_code == 422 and "minimum &lt;= default" in upside_down.text
    assert count(db, ClinicProtocol) == 0
    ok = dr.post("/planning/protocols", {**FORM, "source": "Clinic decision 2026-03"})
    assert ok.status_code == 200 and "Saved Clinic 2-hour v1" in ok.text
    row = db.query(ClinicProtocol).one()
    assert row.fields["premedication"] == ["ondansetron", "midazolam"] and row.fields["source"]
    # A new version starts from the current one's values; the source is written again.
    prefilled = dr.get("/planning/protocols?start_from=clinic_2h")
    assert "New version of Clinic 2-hour (now v1)" in prefilled.text and 'value="0.5"' in prefilled.text
    v2 = dr.post("/planning/protocols", {**FORM, "dose_max": "0.6", "source": "Clinic decision 2026-04"})
    assert "Saved Clinic 2-hour v2" in v2.text
    assert [e.detail for e in audit_entries(db, "planning.protocol.add")] == ["clinic_2h v1", "clinic_2h v2"]
    # Nurses read the library but neither see nor use the form.
    nurse = as_role("nurse")
    assert "New clinic protocol" not in nurse.get("/planning/protocols").text
    assert nurse.post("/planning/protocols", {**FORM, "source": "x"}).status_code == 403


def test_every_distinct_session_dose_gets_its_population_band(as_role, world, db, chairs) -> None:
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    plan = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).json()
    sessions = plan["pk"]["sessions"]
    assert len(sessions) == 2  # 0.2 mg/kg/h (session 1) and 0.35 (sessions 2-5)
    assert all(s["p_reach_analgesia"] is not None for s in sessions)
    assert sessions[0]["p_reach_analgesia"] <= sessions[1]["p_reach_analgesia"]
    page = dr.get(f"/plans/{plan['id']}")
    assert page.text.count("plasma 5-95%") == 2
    assert "session 1: 0.2 mg/kg/h" in page.text and "sessions 2-5: 0.35 mg/kg/h" in page.text
