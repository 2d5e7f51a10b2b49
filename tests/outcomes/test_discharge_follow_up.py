"""A session's discharge creates its end-of-session questionnaire through the outcomes service,
once; the last session of a series also schedules the follow-ups after the series."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.knowledge.outcomes import default_schedule
from ketacare.outcomes import rules, service
from ketacare.outcomes.models import FollowUp
from ketacare.planning.models import Chair
from ketacare.sessions.models import TreatmentSession
from tests.conftest import SECRET_KEY
from tests.planning.conftest import roster
from tests.sessions.conftest import book, running


def _follow_ups(db: Session, patient_id: int) -> list[FollowUp]:
    db.expire_all()
    return list(
        db.execute(select(FollowUp).where(FollowUp.patient_id == patient_id).order_by(FollowUp.id)).scalars()
    )


def _end_of_session(db: Session, patient_id: int) -> list[FollowUp]:
    return [f for f in _follow_ups(db, patient_id) if f.timepoint == "end_of_session"]


def _dosed(as_role, world, db, **plan: object) -> int:  # type: ignore[no-untyped-def]
    """The first session of a plan (five sessions unless ``plan`` says), dosed and in recovery."""
    if not db.query(Chair).filter_by(clinic_id=world.clinic.id).count():
        db.add(Chair(clinic_id=world.clinic.id, room="Room 1", name="Chair A", active=True))
        db.commit()
        roster(db, world.clinic.id, [world.users["nurse"], world.users["prescriber"]])
    nurse = as_role("nurse")
    sid = running(nurse, world, book(as_role, world, db, **plan))
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/end-dosing", json={}).status_code == 200
    return sid


def _discharge(as_role, sid: int):  # type: ignore[no-untyped-def]
    return as_role("prescriber").api(
        "POST", f"/api/v1/sessions/{sid}/discharge-override", json={"reason": "Test: discharged early"}
    )


def test_discharge_creates_one_end_of_session_questionnaire(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    sid = _dosed(as_role, world, db)
    assert _end_of_session(db, world.patient_a.id) == []
    done = _discharge(as_role, sid)
    assert done.status_code == 200, done.text
    (row,) = _end_of_session(db, world.patient_a.id)
    assert row.status == "scheduled" and row.instruments == list(
        default_schedule().end_of_session_instruments
    )
    # the session's day in the clinic's time zone
    assert row.due_on == dt.datetime.now(ZoneInfo(world.clinic.time_zone)).date()
    # the first of five sessions does not end the series: no follow-ups after it yet
    assert [f for f in _follow_ups(db, world.patient_a.id) if f.series_end_on is not None] == []


def test_discharging_twice_adds_none(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    sid = _dosed(as_role, world, db)
    assert _discharge(as_role, sid).status_code == 200
    again = _discharge(as_role, sid)
    assert again.status_code == 409, again.text
    assert len(_end_of_session(db, world.patient_a.id)) == 1


def test_the_outcomes_use_case_is_idempotent_per_day(db, world, nurse) -> None:  # type: ignore[no-untyped-def]
    day = dt.date(2026, 3, 2)
    first = service.end_of_session(db, nurse, world.patient_a.id, day)
    assert service.end_of_session(db, nurse, world.patient_a.id, day).id == first.id
    other = service.end_of_session(db, nurse, world.patient_a.id, day + dt.timedelta(days=1))
    assert other.id != first.id and len(_end_of_session(db, world.patient_a.id)) == 2


def test_an_aborted_session_gets_no_questionnaire(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    sid = _dosed(as_role, world, db)
    aborted = as_role("prescriber").api(
        "POST", f"/api/v1/sessions/{sid}/abort", json={"reason": "Test: patient asked to stop"}
    )
    assert aborted.status_code == 200, aborted.text
    assert _end_of_session(db, world.patient_a.id) == []


def test_the_link_of_the_end_of_session_questionnaire_works(as_role, world, db, nurse) -> None:  # type: ignore[no-untyped-def]
    sid = _dosed(as_role, world, db)
    assert _discharge(as_role, sid).status_code == 200
    (row,) = _end_of_session(db, world.patient_a.id)
    now = dt.datetime.now(dt.UTC)
    token = service.issue_link(db, nurse, SECRET_KEY, row.id, now)
    view = service.open_link(db, SECRET_KEY, token, now)
    assert view.follow_up.id == row.id and [i.key for i in view.instruments] == row.instruments
    form = {rules.field_name(i.key, item): "4" for i in view.instruments for item, _ in i.items}
    service.answer_link(db, SECRET_KEY, token, form, now, submit=True)
    assert _end_of_session(db, world.patient_a.id)[0].status == "completed"


def test_the_last_session_of_a_series_schedules_the_follow_ups_once(as_role, world, db, nurse) -> None:  # type: ignore[no-untyped-def]
    sid = _dosed(as_role, world, db, sessions=1, dose_override_reason="Test: a one-session series")
    assert _discharge(as_role, sid).status_code == 200
    after = [f for f in _follow_ups(db, world.patient_a.id) if f.series_end_on is not None]
    expected = rules.follow_up_points(service.settings_for(db, world.clinic.id).schedule)
    assert [(f.timepoint, f.days_after_series) for f in after] == [(p.timepoint, p.days) for p in expected]
    end = after[0].series_end_on
    assert end is not None and all(
        f.due_on == end + dt.timedelta(days=f.days_after_series or 0) for f in after
    )
    # they belong to the series they follow, not to a baseline or end-of-session questionnaire
    plan_id = db.get(TreatmentSession, sid).plan_id
    assert {f.plan_id for f in after} == {plan_id}
    assert all(f.plan_id is None for f in _end_of_session(db, world.patient_a.id))
    # asked again for the same series: nothing added
    assert service.schedule_after_series(db, nurse, world.patient_a.id, end, plan_id) == 0
    assert len([f for f in _follow_ups(db, world.patient_a.id) if f.series_end_on is not None]) == len(after)
