"""Encounter: a treatment session, its status, period and history from the transitions, its
nurse and prescriber, chair and clinic, and the plan's Conditions where the link is clean."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from ketacare.interop.fhir.resources.base import table
from ketacare.interop.fhir.resources.encounter import fhir_status, status_history
from ketacare.knowledge import pain_conditions
from tests.interop_fhir.conftest import utc_z, validate, validate_bundle

BASE = "/fhir/R4"


def _sessions(demo_fhir, clinic_id: int) -> list[Any]:  # type: ignore[no-untyped-def]
    s, plan = table("treatment_sessions"), table("treatment_plans")
    with demo_fhir.db() as db:
        query = (
            select(s, plan.c.indication)
            .join(plan, plan.c.id == s.c.plan_id)
            .where(s.c.clinic_id == clinic_id)
        )
        return list(db.execute(query.order_by(s.c.id)))


def _utc(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat(timespec="seconds")


def test_status_follows_fhir_definitions() -> None:
    assert fhir_status("checked_in", False) == "arrived"
    assert fhir_status("running", True) == "in-progress"
    assert fhir_status("ready_for_discharge", True) == "in-progress"
    assert fhir_status("discharged", True) == "finished"
    assert fhir_status("aborted", False) == "cancelled"
    assert fhir_status("aborted", True) == "finished"
    at = dt.datetime(2026, 9, 4, 15, 0)
    steps = [
        SimpleNamespace(to_status=s, at=at + dt.timedelta(minutes=i))
        for i, s in enumerate(["checked_in", "prechecks_done", "running", "aborted"])
    ]
    assert [
        (h["status"], h["period"]["start"][11:16], h["period"]["end"][11:16]) for h in status_history(steps)
    ] == [
        ("arrived", "15:00", "15:01"),
        ("in-progress", "15:01", "15:03"),
    ]
    before_dosing = [SimpleNamespace(to_status=s, at=at) for s in ["checked_in", "aborted"]]
    assert [h["status"] for h in status_history(before_dosing)] == ["arrived"]


def test_every_session_validates_and_matches_its_rows(demo_fhir) -> None:
    encounters = validate_bundle(demo_fhir.get(f"{BASE}/Encounter", _count="1000"))
    rows = _sessions(demo_fhir, demo_fhir.clinic_id)
    assert [e["id"] for e in encounters] == [str(r.id) for r in rows] and rows
    t = table("session_transitions")
    with demo_fhir.db() as db:
        transitions = list(db.execute(select(t).order_by(t.c.session_id, t.c.at, t.c.id)))
    with demo_fhir.db() as db:
        roles = {u.id: u.role for u in db.execute(select(table("users").c.id, table("users").c.role))}
    for enc, row in zip(encounters, rows, strict=True):
        mine = [x for x in transitions if x.session_id == row.id]
        expected = {"discharged": "finished", "running": "in-progress", "checked_in": "arrived"}[row.status]
        assert enc["status"] == expected
        assert enc["class"] == {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        }
        assert enc["type"][0]["text"].startswith(f"{row.drug.capitalize()} treatment session")
        assert enc["subject"] == {"reference": f"Patient/{row.patient_id}"}
        assert enc["serviceProvider"] == {"reference": f"Organization/{demo_fhir.clinic_id}"}
        assert enc["period"]["start"] == _utc(mine[0].at)
        if row.status == "discharged":
            assert enc["period"]["end"] == _utc(row.discharged_at)
        else:
            assert "end" not in enc["period"]
        assert enc["location"] == [{"location": {"reference": f"Location/{row.chair_id}"}}]
        people = {(p["type"][0]["text"], p["individual"]["reference"]) for p in enc.get("participant", [])}
        assert people == {
            (label, f"Practitioner/{uid}")
            for label, uid in (("nurse", row.nurse_id), ("prescriber", row.prescriber_id))
            if uid is not None and roles[uid] in ("nurse", "prescriber")
        }
        assert enc["meta"]["profile"] == ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter"]


def test_reason_points_at_the_conditions_the_indication_covers(demo_fhir) -> None:
    pc = table("patient_conditions")
    with demo_fhir.db() as db:
        conditions = list(db.execute(select(pc)))
    encounters = {e["id"]: e for e in validate_bundle(demo_fhir.get(f"{BASE}/Encounter", _count="1000"))}
    linked = 0
    for row in _sessions(demo_fhir, demo_fhir.clinic_id):
        group = next(c for c in pain_conditions() if c.name == row.indication)
        expected = [
            {"reference": f"Condition/{c.id}"}
            for c in conditions
            if c.patient_id == row.patient_id and c.icd10_code in {code.code for code in group.codes}
        ]
        enc = encounters[str(row.id)]
        assert enc.get("reasonReference", []) == expected
        assert enc["reasonCode"] == [{"text": row.indication}]
        linked += bool(expected)
    assert linked


def test_round_trip_loses_nothing(demo_fhir) -> None:
    for enc in validate_bundle(demo_fhir.get(f"{BASE}/Encounter", _count="1000")):
        assert validate(enc).model_dump(mode="json", exclude_none=True) == utc_z(enc)


def test_search_by_status_class_and_date(demo_fhir) -> None:
    rows = _sessions(demo_fhir, demo_fhir.clinic_id)
    finished = demo_fhir.get(f"{BASE}/Encounter", status="finished", _count="1000")
    assert finished["total"] == sum(r.status == "discharged" for r in rows)
    assert demo_fhir.get(f"{BASE}/Encounter", **{"class": "AMB", "_count": "1000"})["total"] == len(rows)
    day = sorted(r.checked_in_at.date() for r in rows)[0]
    on_day = validate_bundle(demo_fhir.get(f"{BASE}/Encounter", date=day.isoformat(), _count="1000"))
    assert {e["id"] for e in on_day} == {str(r.id) for r in rows if r.checked_in_at.date() == day}
    patient = rows[0].patient_id
    theirs = demo_fhir.get(f"{BASE}/Encounter", patient=str(patient), _count="1000")
    assert theirs["total"] == sum(r.patient_id == patient for r in rows)


def test_another_clinics_sessions_never_appear(demo_fhir) -> None:
    with demo_fhir.db() as db:
        other = db.execute(select(table("clinics").c.id).where(table("clinics").c.slug == "bay")).scalar_one()
    theirs = {str(r.id) for r in _sessions(demo_fhir, other)}
    assert theirs
    ours = {e["id"] for e in validate_bundle(demo_fhir.get(f"{BASE}/Encounter", _count="1000"))}
    assert ours.isdisjoint(theirs)
    response = demo_fhir.client.get(f"{BASE}/Encounter/{min(theirs, key=int)}", headers=demo_fhir.headers)
    assert response.status_code == 404
