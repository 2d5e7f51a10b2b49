"""Issue 14 items 6 and 8 on the pages: scores start empty and a missing item is refused; an
active safety hold shows where work starts; administration waits for the pre-checks; a refused
action shows its reason on the page."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from ketacare.safety.models import SafetyHold
from ketacare.sessions.models import Administration, Alarm, ScoreRecord
from tests.helpers import clinic_today, count
from tests.sessions.conftest import checked_in, prechecked, running

SCORE_FORMS = ("cadss6", "moaas", "rass", "nrs")


def _form(html: str, form_id: str) -> str:
    start = html.index(f'id="{form_id}"')
    return html[start : html.index("</form>", start)]


def _hold(db, world, patient_id: int) -> None:  # type: ignore[no-untyped-def]
    db.add(
        SafetyHold(
            clinic_id=world.clinic.id,
            patient_id=patient_id,
            kind="liver",
            reason="ALT more than 3x the upper limit",
            source="Noppers 2011",
            tag="V",
        )
    )
    db.commit()


# --- item 6: a score exists only when a person chose it ---------------------------------------


def test_no_score_field_starts_with_a_value_selected(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    page = nurse.get(f"/sessions/{sid}").text
    for key in SCORE_FORMS:
        form = _form(page, f"score-{key}")
        selected = re.findall(r'<option value="([^"]*)"[^>]*\bselected\b', form)
        assert all(v == "" for v in selected), (key, selected)  # only "Choose…" may be selected
        assert '<option value="">Choose…</option>' in form or 'value="" selected' in form
    # The adverse-event grade (CTCAE) has no default either.
    ae = _form(page, "ae-form")
    grade = ae[ae.index('id="f-grade"') :]
    grade = grade[: grade.index("</select>")]
    assert re.findall(r'<option value="[1-5]"[^>]*\bselected', grade) == []


@pytest.mark.parametrize(
    ("scale", "items", "phase", "message"),
    [
        # RASS left on "Choose…" (it used to default to +4 Combative): RASS, Scottish Intensive Care Society
        ("rass", [""], "", "Choose a value for every item of RASS"),
        # MOAA/S left empty (BMC Anesthesiology 2022 table 2)
        ("moaas", [""], "", "Choose a value for every item of MOAA/S"),
        # CADSS-6 with one of six items missing (regionh.dk validation)
        ("cadss6", ["1", "0", "", "0", "0", "1"], "", "5 of 6 chosen"),
        # Pain NRS without saying when it was taken (LOINC 72514-3)
        ("nrs", ["4"], "", "Say when the pain score was taken"),
        ("nrs", [""], "before", "Choose a value for every item of Pain NRS"),
    ],
)
def test_a_missing_score_item_is_refused_and_nothing_is_stored(  # type: ignore[no-untyped-def]
    as_role, world, db, booked, scale, items, phase, message
) -> None:
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    before = count(db, ScoreRecord)
    r = nurse.post(
        f"/sessions/{sid}/scores", {"scale": scale, "items": items, "phase": phase}, follow_redirects=False
    )
    assert r.status_code == 422 and message in r.text
    assert count(db, ScoreRecord) == before
    assert count(db, Alarm, Alarm.rule_key == "rass_deep") == 0


def test_a_fully_chosen_score_is_stored(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    r = nurse.post(f"/sessions/{sid}/scores", {"scale": "nrs", "items": ["3"], "phase": "after"})
    assert r.status_code == 200 and count(db, ScoreRecord, ScoreRecord.phase == "after") == 1


def test_an_adverse_event_without_a_grade_is_refused(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    r = nurse.post(
        f"/sessions/{sid}/adverse-events", {"term_key": "nausea", "grade": ""}, follow_redirects=False
    )
    assert r.status_code == 422 and "Choose the CTCAE grade" in r.text


def test_screening_answers_start_unchecked(as_role, world) -> None:  # type: ignore[no-untyped-def]
    page = as_role("prescriber").get(f"/patients/{world.patient_b.id}/screening").text
    assert re.findall(r'name="answer_[^"]+" value="[^"]*"[^>]*\bchecked', page) == []


# --- item 8: holds where work starts; administration after pre-checks; reasons shown ------------


def test_a_hold_shows_on_the_day_list_session_page_patient_header_and_calendar(  # type: ignore[no-untyped-def]
    as_role, world, db, booked
) -> None:
    _hold(db, world, booked.patient_id)
    nurse = as_role("nurse")
    day = nurse.get("/sessions").text
    assert f'data-safety-hold="{booked.patient_id}"' in day and "Safety hold: liver" in day
    api_day = nurse.api("GET", "/api/v1/sessions/day").json()
    assert any(
        e["safety_holds"] == [{"kind": "liver", "reason": "ALT more than 3x the upper limit"}]
        for e in api_day
    )
    sid = checked_in(nurse, booked)  # before the pre-checks are submitted
    session_page = nurse.get(f"/sessions/{sid}").text
    assert "Long-term safety hold" in session_page and "ALT more than 3x the upper limit" in session_page
    assert nurse.api("GET", f"/api/v1/sessions/{sid}").json()["safety_holds"][0]["kind"] == "liver"
    header = nurse.get(f"/patients/{booked.patient_id}").text
    assert f'data-safety-hold="{booked.patient_id}"' in header
    monday = clinic_today() - dt.timedelta(days=clinic_today().weekday())
    calendar = nurse.get(f"/planning/calendar?start={monday.isoformat()}").text
    assert f'data-safety-hold="{booked.patient_id}"' in calendar


def test_no_hold_no_banner(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    assert "data-safety-hold" not in nurse.get("/sessions").text
    assert "data-safety-hold" not in nurse.get(f"/patients/{booked.patient_id}").text


def test_administration_is_not_offered_before_the_prechecks(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = checked_in(nurse, booked)
    page = nurse.get(f"/sessions/{sid}").text
    assert 'id="administration-form"' not in page and 'id="administration-waits"' in page
    for kind, drug in (("premedication", "ondansetron"), ("start", "ketamine"), ("rescue", "midazolam")):
        r = nurse.post(
            f"/sessions/{sid}/administrations",
            {"kind": kind, "drug": drug, "dose_mg": "4", "rate_mg_per_h": "20", "lot": "L1", "product": "P"},
            follow_redirects=False,
        )
        # Refused on the session page with its reason, never a bare 409 page.
        assert r.status_code == 409, (kind, r.status_code)
        assert 'id="refused"' in r.text and "the pre-checks come first" in r.text
        assert 'id="session-state"' in r.text
    assert count(db, Administration) == 0


def test_administration_is_offered_after_the_prechecks(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    assert 'id="administration-form"' in nurse.get(f"/sessions/{sid}").text


def test_refused_session_actions_show_their_reason_on_the_page(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = checked_in(nurse, booked)
    # end dosing while not running; discharge checks before recovery
    for path, text in (
        ("end-dosing", "Dosing can end only while the session is running."),
        ("discharge-checks", "Discharge checks are done in recovery."),
    ):
        r = nurse.post(f"/sessions/{sid}/{path}", {}, follow_redirects=False)
        assert r.status_code == 409 and 'id="refused"' in r.text and text in r.text
    # checking in twice: the day list says why
    again = nurse.post(f"/sessions/check-in/{booked.plan_session_ids[0]}", {}, follow_redirects=False)
    assert again.status_code == 409 and "already checked in" in again.text and 'id="day-list"' in again.text


def test_an_alarm_acknowledged_twice_says_why(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    assert nurse.api(
        "POST", f"/api/v1/sessions/{sid}/vitals", json={"readings": [{"kind": "sbp", "value": 190}]}
    )
    alarm_id = db.query(Alarm).filter_by(session_id=sid, rule_key="sbp_high").one().id
    assert nurse.post(f"/alarms/{alarm_id}/acknowledge", {}, follow_redirects=False).status_code == 303
    again = nurse.post(f"/alarms/{alarm_id}/acknowledge", {}, follow_redirects=False)
    assert again.status_code == 409 and "already acknowledged" in again.text and 'id="refused"' in again.text
    # the session page polls its alarm list: 204 while unchanged, the list when it changed
    frag = nurse.get(f"/sessions/{sid}/alarms?sig=stale")
    assert frag.status_code == 200 and 'data-alarm-status="acknowledged"' in frag.text
    sig = re.search(r"sig=([0-9a-f]+)", frag.text)
    assert sig is not None and nurse.get(f"/sessions/{sid}/alarms?sig={sig.group(1)}").status_code == 204
