"""Questionnaire links: single use, expiring, stored hashed; drafts kept; bad input changes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from ketacare.errors import InvalidInput
from ketacare.outcomes import service
from ketacare.outcomes.models import FollowUp, OutcomeAnswer, OutcomeScore
from tests.conftest import SECRET_KEY
from tests.helpers import audit_entries, count
from tests.outcomes.conftest import baseline_link, series

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
FULL = {
    "nrs.now": "6",
    "nrs.average": "7",
    "nrs.worst": "9",
    "peg.pain_average": "7",
    "peg.enjoyment": "6",
    "peg.general_activity": "8",
    "bladder.frequency": "0",
    "bladder.urgency": "0",
    "bladder.dysuria": "0",
    "bladder.hematuria": "0",
    "bladder.suprapubic_pain": "1",
}


def test_link_is_stored_hashed_and_submission_is_item_by_item(db, world, nurse) -> None:
    fid, token = baseline_link(db, nurse, world.patient_a.id, NOW)
    row = db.get(FollowUp, fid)
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(row.draft) and row.status == "sent"
    service.answer_link(db, SECRET_KEY, token, FULL, NOW, submit=True)
    assert count(db, OutcomeAnswer, OutcomeAnswer.follow_up_id == fid) == 11
    scores = {
        s.instrument: s.score
        for s in db.execute(select(OutcomeScore).where(OutcomeScore.follow_up_id == fid)).scalars()
    }
    assert scores == {"nrs": 7.0, "peg": 7.0, "bladder": 1.0}
    assert audit_entries(db, "follow_up.submit", patient_id=world.patient_a.id)


def test_reused_link_is_refused_and_nothing_changes(db, world, nurse) -> None:
    _, token = baseline_link(db, nurse, world.patient_a.id, NOW)
    service.answer_link(db, SECRET_KEY, token, FULL, NOW, submit=True)
    before = count(db, OutcomeAnswer)
    with pytest.raises(InvalidInput) as exc:
        service.answer_link(db, SECRET_KEY, token, FULL, NOW, submit=True)
    assert "already been sent in" in exc.value.errors["link"]
    assert count(db, OutcomeAnswer) == before


def test_expired_link_keeps_the_draft_and_a_new_link_carries_it(db, world, nurse) -> None:
    fid, token = baseline_link(db, nurse, world.patient_a.id, NOW)
    service.answer_link(db, SECRET_KEY, token, {"nrs.now": "5"}, NOW, submit=False)
    later = NOW + dt.timedelta(days=8)
    with pytest.raises(InvalidInput) as exc:
        service.open_link(db, SECRET_KEY, token, later)
    assert "expired" in exc.value.errors["link"]
    assert db.get(FollowUp, fid).draft == {"nrs.now": 5}
    fresh = service.issue_link(db, nurse, SECRET_KEY, fid, later)
    assert service.open_link(db, SECRET_KEY, fresh, later).draft == {"nrs.now": 5}
    with pytest.raises(InvalidInput):  # the old link is replaced
        service.open_link(db, SECRET_KEY, token, NOW)


def test_half_filled_submission_is_refused_with_field_errors(db, world, nurse) -> None:
    fid, token = baseline_link(db, nurse, world.patient_a.id, NOW)
    with pytest.raises(InvalidInput) as exc:
        service.answer_link(db, SECRET_KEY, token, {"nrs.now": "5"}, NOW, submit=True)
    assert "nrs.average" in exc.value.errors
    assert (
        db.get(FollowUp, fid).status == "sent"
        and count(db, OutcomeAnswer, OutcomeAnswer.follow_up_id == fid) == 0
    )


def test_tampered_token_is_invalid(db, world, nurse) -> None:
    _, token = baseline_link(db, nurse, world.patient_a.id, NOW)
    with pytest.raises(InvalidInput) as exc:
        service.open_link(db, SECRET_KEY, token[:-2] + "xx", NOW)
    assert "not valid" in exc.value.errors["link"]


def test_series_schedule_and_send_due_with_reminder(db, world, nurse) -> None:
    world.patient_a.email = "ada@example.org"
    ids = series(db, nurse, world.patient_a.id, NOW.date())
    assert len(ids) == 6 + len(range(90, 366, 30))
    day1 = NOW + dt.timedelta(days=1)
    out = service.send_due(db, SECRET_KEY, "http://clinic", day1)
    assert [o.follow_up_id for o in out] == [ids[0]] and out[0].url.startswith("http://clinic/q/")
    assert service.send_due(db, SECRET_KEY, "http://clinic", day1) == []  # already sent
    late = day1 + dt.timedelta(days=2)
    reminders = [o for o in service.send_due(db, SECRET_KEY, "http://clinic", late) if o.reminder]
    assert [o.follow_up_id for o in reminders] == [ids[0]]
    # a new series supersedes the open follow-ups of the last one
    series(db, nurse, world.patient_a.id, NOW.date() + dt.timedelta(days=30))
    assert db.get(FollowUp, ids[-1]).status == "cancelled"


def test_link_pages(browser, world, db, nurse) -> None:
    _, token = baseline_link(db, nurse, world.patient_a.id, dt.datetime.now(dt.UTC))
    db.commit()
    client = browser()
    client.refresh_csrf(f"/q/{token}")
    page = client.get(f"/q/{token}")
    assert page.status_code == 200 and "How is your pain?" in page.text
    draft = client.post(f"/q/{token}", {"nrs.now": "4", "action": "save"})
    assert draft.status_code == 200 and "Draft saved" in draft.text and 'value="4" checked' in draft.text
    bad = client.post(f"/q/{token}", {"nrs.now": "4", "action": "submit"})
    assert bad.status_code == 422 and "Please answer this question." in bad.text
    done = client.post(f"/q/{token}", {**FULL, "action": "submit"})
    assert done.status_code == 200 and "Thank you" in done.text
    again = client.get(f"/q/{token}")
    assert again.status_code == 410 and "already been sent in" in again.text
    assert client.get("/q/not-a-token").status_code == 410
