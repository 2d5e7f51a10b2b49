"""QuestionnaireResponse: completed follow-ups answer by answer, and saved drafts in progress."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.interop.fhir.resources.base import instant
from ketacare.outcomes import service as outcomes
from ketacare.outcomes.schemas import OneOffIn
from tests.interop_fhir.conftest import validate
from tests.interop_fhir.test_map_medication_request import (
    BASE,
    assert_round_trips,
    by_id,
    other_clinic_id,
    read_all,
    rows,
    status_of,
)


def _completed(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    return rows(
        demo_fhir, "outcome_follow_ups", lambda t: [t.c.clinic_id == clinic_id, t.c.status == "completed"]
    )


def _answers(item: dict) -> dict[str, object]:
    out = {}
    for group in item:
        for answered in group["item"]:
            (value,) = answered["answer"]
            out[answered["linkId"]] = value.get("valueInteger", value.get("valueCoding"))
    return out


def test_every_response_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "QuestionnaireResponse")
    assert_round_trips(resources)
    assert {r["id"] for r in resources} == {str(f.id) for f in _completed(demo_fhir, demo_fhir.clinic_id)}


def test_answers_equal_the_rows(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "QuestionnaireResponse"))
    answers: dict[int, list] = defaultdict(list)
    for a in rows(demo_fhir, "outcome_answers"):
        answers[a.follow_up_id].append(a)
    pgic_seen = False
    for f in _completed(demo_fhir, demo_fhir.clinic_id):
        qr = found[str(f.id)]
        assert qr["status"] == "completed" and qr["authored"] == instant(f.completed_at)
        assert qr["questionnaire"] == "urn:ketacare:questionnaire:follow-up"
        assert qr["subject"] == {"reference": f"Patient/{f.patient_id}"}
        assert [g["linkId"] for g in qr["item"]] == [
            k for k in f.instruments if any(a.instrument == k for a in answers[f.id])
        ]
        got = _answers(qr["item"])
        assert set(got) == {f"{a.instrument}.{a.item}" for a in answers[f.id]}
        for a in answers[f.id]:
            value = got[f"{a.instrument}.{a.item}"]
            if a.instrument in ("pgic", "bladder"):
                assert isinstance(value, dict) and value["code"] == str(a.value)
                assert value["system"] == f"urn:ketacare:questionnaire:{a.instrument}:answer"
                pgic_seen |= a.instrument == "pgic"
            else:
                assert value == a.value
    assert pgic_seen


def test_search_by_authored_and_patient(demo_fhir) -> None:
    done = _completed(demo_fhir, demo_fhir.clinic_id)
    first = min(done, key=lambda f: f.completed_at)
    day = first.completed_at.date().isoformat()
    on_day = read_all(demo_fhir, "QuestionnaireResponse", authored=day)
    assert {r["id"] for r in on_day} == {str(f.id) for f in done if f.completed_at.date().isoformat() == day}
    mine = read_all(demo_fhir, "QuestionnaireResponse", patient=str(first.patient_id))
    assert {r["id"] for r in mine} == {str(f.id) for f in done if f.patient_id == first.patient_id}


def test_another_clinics_responses_are_not_found(demo_fhir) -> None:
    theirs = _completed(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(demo_fhir, f"{BASE}/QuestionnaireResponse/{theirs[0].id}") == 404


def test_a_saved_draft_is_in_progress(browser, world, token_for, db) -> None:
    nurse = world.users["nurse"]
    actor = Principal(nurse.id, nurse.username, Role.nurse, world.clinic.id)
    now = dt.datetime(2026, 11, 2, 14, 30, tzinfo=dt.UTC)
    row = outcomes.add_one_off(
        db, actor, world.patient_a.id, OneOffIn(timepoint="baseline", due_on=now.date())
    )
    secret = "draft-test-" + "k" * 40
    token = outcomes.issue_link(db, actor, secret, row.id, now)
    outcomes.answer_link(db, secret, token, {"nrs.now": "7", "bladder.urgency": "1"}, now, submit=False)
    db.commit()
    headers = token_for("system/QuestionnaireResponse.read")
    client = browser().client
    response = client.get(f"{BASE}/QuestionnaireResponse/{row.id}", headers=headers)
    assert response.status_code == 200, response.text
    qr = response.json()
    validate(qr)
    assert qr["status"] == "in-progress" and qr["authored"] == "2026-11-02T14:30:00+00:00"
    got = _answers(qr["item"])
    assert got["nrs.now"] == 7 and set(got) == {"nrs.now", "bladder.urgency"}
    assert got["bladder.urgency"] == {
        "system": "urn:ketacare:questionnaire:bladder:answer",
        "code": "1",
        "display": "Yes",
    }
    untouched = outcomes.add_one_off(
        db, actor, world.patient_b.id, OneOffIn(timepoint="baseline", due_on=now.date())
    )
    db.commit()
    assert client.get(f"{BASE}/QuestionnaireResponse/{untouched.id}", headers=headers).status_code == 404
