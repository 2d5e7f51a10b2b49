"""Observation: session vital signs (LOINC, UCUM; blood pressure as one panel), body weight and
height, session scores and follow-up questionnaire scores, chained from their tables."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from ketacare.interop.fhir.resources import observation
from ketacare.interop.fhir.resources.base import Scope, table
from ketacare.interop.hl7v2 import codes as hl7_codes
from ketacare.knowledge.fhir_observation_codes import observation_kinds
from tests.interop_fhir.conftest import utc_z, validate, validate_bundle

BASE = "/fhir/R4"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
EXPECTED_VITALS = {
    "hr": ("8867-4", "/min", "us-core-heart-rate"),
    "spo2": ("59408-5", "%", "us-core-pulse-oximetry"),
    "rr": ("9279-1", "/min", "us-core-respiratory-rate"),
    "temp_c": ("8310-5", "Cel", "us-core-body-temperature"),
}


def _all(demo_fhir, **params: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Every page of a search, each bundle validated."""
    response = demo_fhir.client.get(
        f"{BASE}/Observation", params={"_count": "1000", **params}, headers=demo_fhir.headers
    )
    out: list[dict[str, Any]] = []
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        out.extend(validate_bundle(bundle))
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            return out
        response = demo_fhir.client.get(following[0], headers=demo_fhir.headers)


@pytest.fixture(scope="module")
def everything(demo_fhir) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    return {o["id"]: o for o in _all(demo_fhir)}


def _clinic_rows(demo_fhir, name: str, clinic_id: int, via_session: bool = True) -> list[Any]:  # type: ignore[no-untyped-def]
    t, s, p = table(name), table("treatment_sessions"), table("patients")
    query = select(t, s.c.patient_id) if via_session else select(t)
    if via_session:
        query = query.join(s, s.c.id == t.c.session_id).join(p, p.c.id == s.c.patient_id)
    else:
        query = query.join(p, p.c.id == t.c.patient_id)
    with demo_fhir.db() as db:
        return list(db.execute(query.where(p.c.clinic_id == clinic_id).order_by(t.c.id)))


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _instant(value: dt.datetime) -> str:
    return _utc(value).isoformat(timespec="seconds")


def _codes(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept["coding"]]


def test_every_observation_validates_with_a_well_formed_id(everything) -> None:
    assert everything
    assert all(ID.match(i) for i in everything)
    prefixes = {i.split("-")[0] for i in everything}
    assert prefixes == {"vital", "bp", "measure", "score", "outcome"}


def test_vital_signs_carry_loinc_ucum_and_the_rows_values(demo_fhir, everything) -> None:
    rows = _clinic_rows(demo_fhir, "session_vitals", demo_fhir.clinic_id)
    others = [r for r in rows if r.kind not in ("sbp", "dbp")]
    assert others
    for row in others:
        obs = everything[f"vital-{row.id}-{row.kind.replace('_', '-')}"]
        code, unit, profile = EXPECTED_VITALS[row.kind]
        assert _codes(obs["code"])[0] == (LOINC, code)
        assert obs["valueQuantity"]["code"] == unit and obs["valueQuantity"]["system"] == UCUM
        assert obs["valueQuantity"]["value"] == pytest.approx(row.value)
        assert obs["effectiveDateTime"] == _instant(row.observed_at)
        assert obs["encounter"] == {"reference": f"Encounter/{row.session_id}"}
        assert obs["subject"] == {"reference": f"Patient/{row.patient_id}"}
        assert obs["category"][0]["coding"][0]["code"] == "vital-signs" and obs["status"] == "final"
        assert obs["meta"]["profile"] == [observation.US_CORE + profile]
        if row.kind == "spo2":
            assert _codes(obs["code"]) == [(LOINC, "59408-5"), (LOINC, "2708-6")]


def test_blood_pressure_is_one_panel_with_two_components(demo_fhir, everything) -> None:
    rows = _clinic_rows(demo_fhir, "session_vitals", demo_fhir.clinic_id)
    diastolic = {(r.session_id, r.observed_at): r for r in rows if r.kind == "dbp"}
    systolic = [r for r in rows if r.kind == "sbp"]
    assert systolic
    for row in systolic:
        partner = diastolic[(row.session_id, row.observed_at)]
        panel = everything[f"bp-{row.id}"]
        assert _codes(panel["code"]) == [(LOINC, "85354-9")] and "valueQuantity" not in panel
        assert panel["meta"]["profile"] == [observation.US_CORE + "us-core-blood-pressure"]
        sys_, dia = panel["component"]
        assert _codes(sys_["code"]) == [(LOINC, "8480-6")] and _codes(dia["code"]) == [(LOINC, "8462-4")]
        assert sys_["valueQuantity"]["value"] == pytest.approx(row.value)
        assert dia["valueQuantity"]["value"] == pytest.approx(partner.value)
        assert sys_["valueQuantity"]["code"] == dia["valueQuantity"]["code"] == "mm[Hg]"
        assert panel["effectiveDateTime"] == _instant(row.observed_at)
    # No systolic or diastolic reading is served twice (once in a panel, once alone).
    assert not any(i.endswith(("-sbp", "-dbp")) for i in everything)


def test_weight_and_height_from_the_measurements(demo_fhir, everything) -> None:
    rows = _clinic_rows(demo_fhir, "patient_measurements", demo_fhir.clinic_id, via_session=False)
    assert rows
    for row in rows:
        for column, suffix, code, unit in (
            ("weight_kg", "weight", "29463-7", "kg"),
            ("height_cm", "height", "8302-2", "cm"),
        ):
            obs = everything.get(f"measure-{row.id}-{suffix}")
            if getattr(row, column) is None:
                assert obs is None
                continue
            assert obs is not None
            assert _codes(obs["code"]) == [(LOINC, code)] and obs["valueQuantity"]["code"] == unit
            assert obs["valueQuantity"]["value"] == pytest.approx(getattr(row, column))
            assert obs["effectiveDateTime"] == row.measured_on.isoformat()


def test_session_scores_nrs_in_loinc_the_rest_local(demo_fhir, everything) -> None:
    rows = _clinic_rows(demo_fhir, "session_scores", demo_fhir.clinic_id)
    assert {r.scale for r in rows} >= {"nrs", "cadss6", "moaas"}
    for row in rows:
        obs = everything[f"score-{row.id}"]
        expected = (LOINC, "72514-3") if row.scale == "nrs" else ("urn:ketacare:score", row.scale)
        assert _codes(obs["code"]) == [expected]
        assert obs["valueInteger"] == row.total
        assert obs["category"][0]["coding"][0]["code"] == "survey"
        assert obs["encounter"] == {"reference": f"Encounter/{row.session_id}"}
        if row.scale == "cadss6":
            assert [c["valueInteger"] for c in obs["component"]] == row.items


def test_outcome_scores_derive_from_the_follow_up_response(demo_fhir, everything) -> None:
    rows = _clinic_rows(demo_fhir, "outcome_scores", demo_fhir.clinic_id, via_session=False)
    assert {r.instrument for r in rows} >= {"nrs", "peg"}
    for row in rows:
        obs = everything[f"outcome-{row.id}"]
        assert obs["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{row.follow_up_id}"}]
        if row.instrument == "nrs":
            assert _codes(obs["code"]) == [(LOINC, "72514-3")] and obs["valueInteger"] == row.score
        else:
            assert _codes(obs["code"]) == [
                ("urn:ketacare:score", observation_kinds()["outcome"][row.instrument].codings[0].code)
            ]
            value = obs.get("valueInteger", obs.get("valueQuantity", {}).get("value"))
            assert value == pytest.approx(row.score)
        assert obs["effectiveDateTime"] == _instant(row.answered_at)


def test_round_trip_loses_nothing(everything) -> None:
    for obs in everything.values():
        assert validate(obs).model_dump(mode="json", exclude_none=True) == utc_z(obs)


def test_search_a_patients_vital_signs_since_a_date(demo_fhir) -> None:
    vitals = _clinic_rows(demo_fhir, "session_vitals", demo_fhir.clinic_id)
    patient = vitals[0].patient_id
    days = sorted({r.observed_at.date() for r in vitals if r.patient_id == patient})
    cutoff = days[len(days) // 2]
    found = _all(
        demo_fhir, patient=f"Patient/{patient}", category="vital-signs", date=f"ge{cutoff.isoformat()}"
    )
    measured = _clinic_rows(demo_fhir, "patient_measurements", demo_fhir.clinic_id, via_session=False)
    expected = sum(
        1 for r in vitals if r.patient_id == patient and r.kind != "dbp" and r.observed_at.date() >= cutoff
    )
    expected += sum(
        (r.weight_kg is not None) + (r.height_cm is not None)
        for r in measured
        if r.patient_id == patient and r.measured_on >= cutoff
    )
    assert len(found) == expected and expected > 0
    assert all(o["subject"]["reference"] == f"Patient/{patient}" for o in found)
    assert all(o["category"][0]["coding"][0]["code"] == "vital-signs" for o in found)


def test_search_by_code_encounter_and_status(demo_fhir) -> None:
    vitals = _clinic_rows(demo_fhir, "session_vitals", demo_fhir.clinic_id)
    panels = _all(demo_fhir, code=f"{LOINC}|85354-9")
    assert len(panels) == sum(1 for r in vitals if r.kind == "sbp")
    assert all(o["id"].startswith("bp-") for o in panels)
    session = vitals[0].session_id
    in_session = _all(demo_fhir, encounter=f"Encounter/{session}", code=f"{LOINC}|8867-4")
    assert len(in_session) == sum(1 for r in vitals if r.session_id == session and r.kind == "hr")
    assert len(_all(demo_fhir, status="preliminary")) == 0
    pain = _all(demo_fhir, code=f"{LOINC}|72514-3")
    scores = _clinic_rows(demo_fhir, "session_scores", demo_fhir.clinic_id)
    outcomes = _clinic_rows(demo_fhir, "outcome_scores", demo_fhir.clinic_id, via_session=False)
    assert len(pain) == sum(r.scale == "nrs" for r in scores) + sum(r.instrument == "nrs" for r in outcomes)


def test_read_by_id_for_each_source(demo_fhir, everything) -> None:
    for prefix in ("vital", "bp", "measure", "score", "outcome"):
        logical = next(i for i in everything if i.startswith(prefix + "-"))
        assert demo_fhir.get(f"{BASE}/Observation/{logical}") == everything[logical]
    vital = next(i for i in everything if i.startswith("vital-"))
    wrong_kind = vital.rsplit("-", 1)[0] + ("-rr" if not vital.endswith("-rr") else "-hr")
    for missing in (wrong_kind, "bp-999999", "vital-x", "12"):
        assert (
            demo_fhir.client.get(f"{BASE}/Observation/{missing}", headers=demo_fhir.headers).status_code
            == 404
        )


def test_since_narrows_each_source_by_its_recording_time(demo_fhir) -> None:
    outcomes = _clinic_rows(demo_fhir, "outcome_scores", demo_fhir.clinic_id, via_session=False)
    cutoff = _utc(sorted(r.answered_at for r in outcomes)[len(outcomes) // 2])
    with demo_fhir.db() as db:
        recent = [
            o
            for o in observation.read(db, Scope(demo_fhir.clinic_id, since=cutoff))
            if o["id"].startswith("outcome-")
        ]
        future = list(
            observation.read(db, Scope(demo_fhir.clinic_id, since=dt.datetime(2999, 1, 1, tzinfo=dt.UTC)))
        )
    assert {o["id"] for o in recent} == {f"outcome-{r.id}" for r in outcomes if _utc(r.answered_at) >= cutoff}
    assert future == []


def test_another_source_is_chained_after_ours(demo_fhir, monkeypatch) -> None:
    def imported(db, scope):  # type: ignore[no-untyped-def]
        yield {"resourceType": "Observation", "id": "import-1"}

    monkeypatch.setattr(observation, "SOURCES", (*observation.SOURCES, imported))
    with demo_fhir.db() as db:
        ids = [o["id"] for o in observation.read(db, Scope(demo_fhir.clinic_id))]
    assert ids[-1] == "import-1" and ids[0].startswith("vital-")


def test_another_clinics_observations_never_appear(demo_fhir, everything) -> None:
    with demo_fhir.db() as db:
        other = db.execute(select(table("clinics").c.id).where(table("clinics").c.slug == "bay")).scalar_one()
    theirs = _clinic_rows(demo_fhir, "session_vitals", other)
    assert theirs
    their_ids = {f"vital-{r.id}-{r.kind}" for r in theirs} | {f"bp-{r.id}" for r in theirs}
    assert their_ids.isdisjoint(everything)
    their_patients = {f"Patient/{r.patient_id}" for r in theirs}
    assert not {o["subject"]["reference"] for o in everything.values()} & their_patients
    panel = next(r for r in theirs if r.kind == "sbp")
    assert (
        demo_fhir.client.get(f"{BASE}/Observation/bp-{panel.id}", headers=demo_fhir.headers).status_code
        == 404
    )


def test_every_code_is_sourced_and_vitals_agree_with_the_hl7_table() -> None:
    for group in observation_kinds().values():
        for kind in group.values():
            for code in kind.codings:
                assert code.sourced.source and code.sourced.tag in ("V", "V*", "design")
                assert code.system in (LOINC, "urn:ketacare:score")
                assert (code.system == LOINC) == (code.sourced.tag != "design")
    for key, kind in observation_kinds()["vital"].items():
        for code in kind.codings:
            known = hl7_codes.lookup(code.code, system="LN")
            assert known is not None and known.kind == key, code.code
