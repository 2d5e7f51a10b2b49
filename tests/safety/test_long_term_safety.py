"""Long-term safety over the API and pages: liver tests and bladder screens with their holds and
tasks, cumulative ketamine across sessions and prescriptions, the patient page section, the
prescriber's safety view, permissions and the clinic's intervals."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from ketacare.knowledge.prescribing import prescribing_rules
from ketacare.patients.models import Medication
from ketacare.prescribing import encounters as rx_encounters
from ketacare.prescribing import prescriptions
from ketacare.prescribing.models import StateLicence
from ketacare.prescribing.schemas import EncounterIn, PdmpIn, PrescriptionIn, SignIn
from ketacare.safety.models import BladderScreen, LiverTest, SafetyHold, SafetySettingsRow, SafetyTask
from tests.helpers import audit_entries, count, is_problem
from tests.prescribing.conftest import TODAY, draft, give_credentials, lozenge, principal, with_address

ALL_NO = {k: "no" for k in ("frequency", "urgency", "dysuria", "hematuria", "suprapubic_pain")}


def lft(alt: float, ast: float = 30, **extra: object) -> dict[str, object]:
    return {
        "drawn_on": TODAY.isoformat(),
        "alt_u_per_l": alt,
        "alt_uln_u_per_l": 40,
        "ast_u_per_l": ast,
        "ast_uln_u_per_l": 40,
        **extra,
    }


@pytest.fixture
def pid(db, world) -> int:  # type: ignore[no-untyped-def]
    give_credentials(db, world)
    with_address(db, world.patient_a)
    return int(world.patient_a.id)


def test_liver_tests_at_three_times_the_upper_limit_place_a_hold(as_role, world, db, pid) -> None:
    nurse = as_role("nurse")
    raised = nurse.api("POST", f"/api/v1/patients/{pid}/liver-tests", json=lft(80))
    assert (
        raised.status_code == 201
        and raised.json()["outcome"] == "raised"
        and raised.json()["hold_id"] is None
    )
    held = nurse.api("POST", f"/api/v1/patients/{pid}/liver-tests", json=lft(30, ast=120))
    body = held.json()
    assert body["outcome"] == "hold" and body["hold_id"]
    assert "AST 120 U/L is 3.0 x the upper limit" in body["findings"][0]["message"]
    assert "Noppers 2011" in body["findings"][0]["source"]
    hold = db.get(SafetyHold, body["hold_id"])
    assert hold.kind == "liver" and hold.released_at is None and hold.liver_test_id == body["id"]
    assert audit_entries(db, "safety.hold.place", patient_id=pid)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (lft(30, alp_u_per_l=300), "form"),  # ALP without the lab's upper limit
        (lft(30, drawn_on=(TODAY + dt.timedelta(days=1)).isoformat()), "drawn_on"),
        (lft(-1), "alt_u_per_l"),
        ({**lft(30), "alt_uln_u_per_l": 0}, "alt_uln_u_per_l"),
    ],
)
def test_bad_liver_tests_are_refused_and_nothing_is_saved(as_role, world, db, pid, body, field) -> None:  # type: ignore[no-untyped-def]
    r = as_role("nurse").api("POST", f"/api/v1/patients/{pid}/liver-tests", json=body)
    assert is_problem(r, 422)
    assert any(field in e["field"] or field == "form" for e in r.json()["errors"])
    assert count(db, LiverTest) == 0 and count(db, SafetyHold) == 0


def test_a_positive_bladder_screen_holds_and_asks_for_a_urinalysis(as_role, world, db, pid) -> None:
    nurse, dr = as_role("nurse"), as_role("prescriber")
    negative = nurse.api(
        "POST",
        f"/api/v1/patients/{pid}/bladder-screens",
        json={"screened_on": TODAY.isoformat(), "answers": ALL_NO},
    )
    assert (
        negative.status_code == 201
        and negative.json()["positive"] is False
        and negative.json()["hold_id"] is None
    )
    r = nurse.api(
        "POST",
        f"/api/v1/patients/{pid}/bladder-screens",
        json={"screened_on": TODAY.isoformat(), "answers": {**ALL_NO, "urgency": "yes"}},
    )
    body = r.json()
    assert r.status_code == 201 and body["positive"] and body["hold_id"] and body["task_id"]
    task = db.get(SafetyTask, body["task_id"])
    assert task.kind == "urinalysis" and task.hold_id == body["hold_id"] and task.due_on == TODAY
    rx = draft(dr, pid)
    assert next(c for c in rx["checks"] if c["key"] == "safety_hold")["status"] == "block"
    # A nurse records the urinalysis; only a prescriber releases the hold, with a reason.
    done = nurse.api(
        "POST", f"/api/v1/safety/tasks/{task.id}/done", json={"result": "Urinalysis: no blood, no infection"}
    )
    assert done.status_code == 200 and done.json()["completed_at"]
    assert is_problem(
        nurse.api("POST", f"/api/v1/safety/tasks/{task.id}/done", json={"result": "again"}), 409
    )
    refused = nurse.api(
        "POST", f"/api/v1/safety/holds/{body['hold_id']}/release", json={"reason": "Symptoms settled"}
    )
    assert is_problem(refused, 403)
    assert is_problem(
        dr.api("POST", f"/api/v1/safety/holds/{body['hold_id']}/release", json={"reason": "ok"}), 422
    )
    released = dr.api(
        "POST",
        f"/api/v1/safety/holds/{body['hold_id']}/release",
        json={"reason": "Urinalysis clear; symptoms settled after a week off"},
    )
    assert released.status_code == 200 and released.json()["released_at"]
    again = dr.api(
        "POST", f"/api/v1/safety/holds/{body['hold_id']}/release", json={"reason": "Released twice now"}
    )
    assert is_problem(again, 409)
    rx = dr.api("GET", f"/api/v1/prescriptions/{rx['id']}").json()
    assert next(c for c in rx["checks"] if c["key"] == "safety_hold")["status"] == "pass"


def test_a_bladder_screen_must_answer_every_question(as_role, world, db, pid) -> None:
    r = as_role("nurse").api(
        "POST",
        f"/api/v1/patients/{pid}/bladder-screens",
        json={"screened_on": TODAY.isoformat(), "answers": {"frequency": "no", "thirst": "no"}},
    )
    assert is_problem(r, 422)
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"answer_urgency", "answer_hematuria", "answers.thirst"} <= fields
    assert count(db, BladderScreen) == 0


def test_cumulative_ketamine_across_sessions_and_prescriptions(as_role, world, db, pid) -> None:
    from ketacare.sessions.models import Administration
    from tests.sessions.conftest import discharged

    sid = discharged(as_role, world, db)
    # The infusion ran for an hour at 28 mg/h (the helper starts and stops it at once).
    start_row = db.query(Administration).filter_by(session_id=sid, kind="start").one()
    start_row.given_at = start_row.given_at - dt.timedelta(hours=1)
    db.commit()
    dr = principal(world, "prescriber")
    start = TODAY - dt.timedelta(days=10)
    rx_encounters.record_pdmp(db, dr, pid, PdmpIn(checked_on=start, state="NY"), today=start)
    encounter = rx_encounters.record_encounter(
        db, dr, pid, EncounterIn(kind="in_person", modality="in_person", occurred_on=start), today=start
    )
    rx = prescriptions.create_draft(
        db, dr, pid, PrescriptionIn(**lozenge(encounter_id=encounter.id)), today=start
    )
    prescriptions.sign(db, dr, rx.id, SignIn(acknowledge_warnings=True), today=start)
    db.commit()
    body = as_role("nurse").api("GET", f"/api/v1/patients/{pid}/safety").json()
    c = body["cumulative"]
    assert c["sessions"] == 1 and c["session_mg"] == pytest.approx(28, abs=0.5) and c["prescriptions"] == 1
    assert c["prescription_mg"] == 550  # 50 mg/day, day 1 to day 11 of the supply
    assert c["total_mg"] == pytest.approx(c["session_mg"] + 550)
    due = {d["kind"]: d for d in body["due"]}
    assert (
        set(due) == {"lft", "bladder"} and due["lft"]["overdue"]
    )  # repeated exposure since the prescription
    monthly = next(
        x
        for x in prescriptions.view(
            db, dr, prescriptions.create_draft(db, dr, pid, PrescriptionIn(**lozenge())).id
        ).evaluation.checks
        if x.key == "monthly"
    )
    assert f"sessions {c['session_mg']:g} mg" in monthly.message


def test_the_patient_page_loads_the_safety_section(as_role, world, db, pid) -> None:
    nurse = as_role("nurse")
    nurse.api("POST", f"/api/v1/patients/{pid}/liver-tests", json=lft(200))
    page = nurse.get(f"/patients/{pid}")
    assert f'hx-get="/patients/{pid}/safety/summary"' in page.text
    fragment = nurse.get(f"/patients/{pid}/safety/summary")
    assert (
        fragment.status_code == 200
        and "Hold: liver" in fragment.text
        and "Cumulative ketamine" in fragment.text
    )
    full = nurse.get(f"/patients/{pid}/safety")
    assert (
        full.status_code == 200 and "Record a bladder screen" in full.text and "Release hold" not in full.text
    )
    assert "Release hold" in as_role("prescriber").get(f"/patients/{pid}/safety").text
    admin = as_role("admin")
    assert "safety/summary" not in admin.get(f"/patients/{pid}").text
    assert admin.get(f"/patients/{pid}/safety/summary").status_code == 403


def test_safety_forms_keep_what_was_typed(as_role, world, db, pid) -> None:
    nurse = as_role("nurse")
    r = nurse.post(
        f"/patients/{pid}/safety/liver-tests",
        {
            "drawn_on": TODAY.isoformat(),
            "alt_u_per_l": "55",
            "alt_uln_u_per_l": "",
            "ast_u_per_l": "30",
            "ast_uln_u_per_l": "40",
            "lab": "Quest lab",
        },
    )
    assert r.status_code == 422 and "Quest lab" in r.text and count(db, LiverTest) == 0
    r = nurse.post(
        f"/patients/{pid}/safety/bladder-screens",
        {"screened_on": TODAY.isoformat(), "answer_frequency": "yes"},
    )
    assert r.status_code == 422 and "Answer yes or no." in r.text
    ok = nurse.post(
        f"/patients/{pid}/safety/bladder-screens",
        {"screened_on": TODAY.isoformat(), **{f"answer_{k}": "no" for k in ALL_NO}},
        follow_redirects=False,
    )
    assert ok.status_code == 303


def test_the_safety_view_lists_what_needs_attention(as_role, world, db, pid) -> None:
    db.add_all(
        [
            Medication(
                patient_id=pid,
                name="Oxycodone",
                drug_class="opioid",
                dose_amount=10,
                dose_unit="mg",
                doses_per_day=4,
            ),
            Medication(
                patient_id=pid,
                name="Lorazepam",
                drug_class="benzodiazepine",
                dose_amount=1,
                dose_unit="mg",
                doses_per_day=1,
            ),
        ]
    )
    db.execute(update(StateLicence).values(expires_on=TODAY + dt.timedelta(days=20)))
    db.commit()
    as_role("nurse").api(
        "POST",
        f"/api/v1/patients/{pid}/bladder-screens",
        json={"screened_on": TODAY.isoformat(), "answers": {**ALL_NO, "dysuria": "yes"}},
    )
    admin = as_role("admin")
    # The end may only move earlier than the legal date (knowledge), so a month ahead at most that;
    # once the legal date has passed, the alert says it ended.
    soon_on = min(TODAY + dt.timedelta(days=30), prescribing_rules().flexibility_end)
    soon = soon_on.isoformat()
    assert admin.api("PUT", "/api/v1/prescribing/settings", json={"flexibility_end": soon}).status_code == 200
    dr = as_role("prescriber")
    page = dr.get("/safety")
    assert page.status_code == 200
    for text in (
        "Lovelace, Ada",
        "60: flag",
        "Lorazepam",
        "high sedation risk",
        "Urinalysis",
        f"ends on {soon}" if soon_on >= TODAY else f"ended on {soon}",
        "NY-123456",
    ):
        assert text in page.text, text
    board = dr.api("GET", "/api/v1/safety/board").json()
    row = next(p for p in board["patients"] if p["patient_id"] == pid)
    assert (
        row["mme_level"] == "flag"
        and row["benzodiazepines"] == ["Lorazepam"]
        and row["holds"][0]["kind"] == "bladder"
    )
    assert any(e["kind"] == "licence" and not e["expired"] for e in board["expiring_credentials"])
    assert all(p["patient_id"] != world.other_patient.id for p in board["patients"])
    assert audit_entries(db, "safety.view", patient_id=pid)


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [
        ("prescriber", 200, 201),
        ("nurse", 200, 201),
        ("admin", 403, 403),
        ("researcher", 403, 403),
        ("auditor", 403, 403),
        ("patient_a", 403, 403),
        ("outsider", 404, 404),
        ("outsider_nurse", 404, 404),
    ],
)
def test_who_reads_and_records_long_term_safety(as_role, world, db, pid, role, read, write) -> None:  # type: ignore[no-untyped-def]
    client = as_role(role)
    assert client.api("GET", f"/api/v1/patients/{pid}/safety").status_code == read
    assert client.api("POST", f"/api/v1/patients/{pid}/liver-tests", json=lft(30)).status_code == write
    assert client.get("/safety").status_code == (403 if read == 403 else 200)
    if role.startswith("outsider"):
        assert "Lovelace" not in client.get("/safety").text


def test_the_monitoring_intervals_are_clinic_settings(as_role, world, db) -> None:
    admin = as_role("admin")
    assert is_problem(admin.api("PUT", "/api/v1/safety/settings", json={"lft_interval_days": 3}), 422)
    r = admin.api("PUT", "/api/v1/safety/settings", json={"lft_interval_days": 30})
    assert r.status_code == 200 and {s["key"]: s for s in r.json()}["lft_interval_days"]["origin"] == "clinic"
    assert is_problem(
        as_role("prescriber").api("PUT", "/api/v1/safety/settings", json={"lft_interval_days": 60}), 403
    )
    page = as_role("nurse").get("/safety/settings")
    assert page.status_code == 200 and "design default" in page.text and "Save intervals" not in page.text
    assert count(db, SafetySettingsRow) == 1 and audit_entries(db, "safety.settings.save")
