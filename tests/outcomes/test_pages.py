"""The prescriber's trajectory, the patient's diary, the settings, and who may reach what."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from ketacare.outcomes import service
from ketacare.outcomes.models import DiaryEntry, FollowUp, MmeReading, OutcomeSettings
from ketacare.patients.models import Medication
from tests.conftest import SECRET_KEY
from tests.helpers import clinic_today, count
from tests.outcomes.conftest import baseline_link, series
from tests.outcomes.test_links import FULL


def _answered_baseline_and_week1(db, world, nurse) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    _, token = baseline_link(db, nurse, world.patient_a.id, now - dt.timedelta(days=10))
    service.answer_link(db, SECRET_KEY, token, FULL, now - dt.timedelta(days=10), submit=True)
    ids = series(db, nurse, world.patient_a.id, (now - dt.timedelta(days=8)).date())
    token = service.issue_link(db, nurse, SECRET_KEY, ids[1], now)  # week 1: nrs + peg
    answers = {
        "nrs.now": "3",
        "nrs.average": "3",
        "nrs.worst": "5",
        "peg.pain_average": "3",
        "peg.enjoyment": "3",
        "peg.general_activity": "3",
    }
    service.answer_link(db, SECRET_KEY, token, answers, now, submit=True)
    db.commit()


def test_trajectory_against_baseline(as_role, world, db, nurse) -> None:
    _answered_baseline_and_week1(db, world, nurse)
    db.add(
        Medication(
            patient_id=world.patient_a.id,
            name="Oxycodone",
            drug_class="opioid",
            dose_amount=10,
            dose_unit="mg",
            doses_per_day=2,
        )
    )
    db.commit()
    client = as_role("prescriber")
    assert (
        client.post(f"/patients/{world.patient_a.id}/outcomes/mme", follow_redirects=False).status_code == 303
    )
    reading = db.query(MmeReading).filter_by(patient_id=world.patient_a.id).one()
    assert reading.mme_per_day == 30.0  # CDC worked example: oxycodone 10 mg BID = 30 MME/day
    page = client.get(f"/patients/{world.patient_a.id}/outcomes")
    assert page.status_code == 200
    assert "-4.0 points (57% reduction)" in page.text and "responder (≥ 50%)" in page.text
    figure = json.loads(re.search(r"data-figure='([^']+)'", page.text).group(1).replace("&#34;", '"'))
    names = [t["name"] for t in figure["data"]]
    assert "Pain NRS (24 h average)" in names and "Opioids (MME/day)" in names
    api = client.api("GET", f"/api/v1/patients/{world.patient_a.id}/outcomes").json()
    assert api["baseline"] == {"nrs": 7.0, "peg": 7.0} and api["latest_response"]["responder_50"] is True


def test_unconverted_opioid_is_flagged_never_zero(as_role, world, db) -> None:
    db.add(
        Medication(
            patient_id=world.patient_a.id,
            name="Buprenorphine",
            drug_class="opioid",
            dose_amount=8,
            dose_unit="mg",
            doses_per_day=1,
        )
    )
    db.commit()
    as_role("nurse").post(f"/patients/{world.patient_a.id}/outcomes/mme")
    reading = db.query(MmeReading).filter_by(patient_id=world.patient_a.id).one()
    assert reading.mme_per_day is None and reading.unconverted == ["Buprenorphine"]
    page = as_role("nurse").get(f"/patients/{world.patient_a.id}/outcomes/summary")
    assert "not computed: no CDC factor or no usable dose for Buprenorphine" in page.text


def test_staff_get_a_link_once(as_role, world, db, nurse) -> None:
    ids = series(db, nurse, world.patient_a.id, clinic_today())
    db.commit()
    page = as_role("nurse").post(f"/outcomes/follow-ups/{ids[0]}/link")
    url = re.search(r'<code id="link-url">[^<]*(/q/[^<]+)</code>', page.text).group(1)
    assert as_role("nurse").client.get(url).status_code == 200


def test_diary(as_role, world, db) -> None:
    client = as_role("patient_a")
    assert (
        client.post(
            "/me/diary", {"nrs": "8", "flare": "on", "note": "bad day"}, follow_redirects=False
        ).status_code
        == 303
    )
    assert client.post("/me/diary", {"nrs": "12"}).status_code == 422
    assert count(db, DiaryEntry, DiaryEntry.patient_id == world.patient_a.id) == 1
    assert "bad day" in client.get("/me/diary").text
    assert as_role("nurse").get("/me/diary").status_code == 403


def test_settings_change_the_schedule(as_role, world, db, nurse) -> None:
    # clinic-wide settings (and the BPI licence they assert) are the clinic admin's
    client = as_role("admin")
    form = {
        "schedule_days": "1, 14",
        "monthly_every_days": "60",
        "monthly_until_days": "180",
        "link_valid_days": "5",
        "reminder_after_days": "2",
        "bpi_licence": "MAPI 2026-17",
    }
    assert client.post("/outcomes/settings", form, follow_redirects=False).status_code == 303
    assert client.post("/outcomes/settings", {**form, "schedule_days": "one"}).status_code == 422
    assert db.query(OutcomeSettings).one().schedule_days == [1, 14]
    # the registry's baseline look-back: blank = the design default, shown; a bad value refused
    assert service.settings_for(db, world.clinic.id).baseline_lookback_days == 30
    assert client.post("/outcomes/settings", {**form, "baseline_lookback_days": "0"}).status_code == 422
    assert client.post("/outcomes/settings", {**form, "baseline_lookback_days": "14"}).status_code == 200
    assert service.settings_for(db, world.clinic.id).baseline_lookback_days == 14
    assert 'value="14"' in client.get("/outcomes/settings").text
    rows = service.schedule_series(
        db, nurse, world.patient_a.id, service.SeriesIn(series_end_on=dt.date(2026, 1, 1))
    )
    assert [r.days_after_series for r in rows] == [1, 14, 60, 120, 180]
    assert "bpi_sf" in rows[-1].instruments
    assert as_role("prescriber").post("/outcomes/settings", form).status_code == 403
    assert as_role("nurse").post("/outcomes/settings", form).status_code == 403


@pytest.mark.parametrize(
    ("role", "status"),
    [
        ("admin", 200),
        ("prescriber", 200),
        ("nurse", 200),
        ("researcher", 403),
        ("auditor", 403),
        ("patient_a", 403),
        ("outsider", 404),
    ],
)
def test_outcome_pages_by_role(as_role, world, role, status) -> None:
    client = as_role(role)
    for url in (
        f"/patients/{world.patient_a.id}/outcomes",
        f"/patients/{world.patient_a.id}/outcomes/summary",
    ):
        assert client.get(url).status_code == status, url


def test_mme_flags_at_50_and_90_and_with_a_benzodiazepine(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    # hydrocodone 5 mg QID = 20 MME/day (CDC worked example); x 3 = 60; then + 40 mg oxycodone/day = 120
    db.add(
        Medication(
            patient_id=world.patient_a.id,
            name="Hydrocodone",
            drug_class="opioid",
            dose_amount=15,
            dose_unit="mg",
            doses_per_day=4,
        )
    )
    db.commit()
    nurse = as_role("nurse")
    nurse.post(f"/patients/{world.patient_a.id}/outcomes/mme")
    page = nurse.get(f"/patients/{world.patient_a.id}/outcomes/summary").text
    assert "60.0 MME/day" in page and "offer naloxone" in page and "physician review" not in page
    db.add(
        Medication(
            patient_id=world.patient_a.id,
            name="Oxycodone",
            drug_class="opioid",
            dose_amount=20,
            dose_unit="mg",
            doses_per_day=2,
        )
    )
    db.add(Medication(patient_id=world.patient_a.id, name="Lorazepam", drug_class="benzodiazepine"))
    db.commit()
    nurse.post(f"/patients/{world.patient_a.id}/outcomes/mme")
    page = nurse.get(f"/patients/{world.patient_a.id}/outcomes/summary").text
    assert "120.0 MME/day" in page and "physician review" in page and "high sedation risk" in page


def test_scheduled_follow_ups_belong_to_the_series_chosen(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    """Follow-ups belong to the series they follow: a series that is not the patient's is refused
    (a re-shown form, nothing scheduled); with none chosen and none ended, none is attached."""
    client = as_role("nurse")
    url = f"/patients/{world.patient_a.id}/outcomes/series"
    before = db.query(FollowUp).count()
    bad = client.post(url, {"series_end_on": "2026-01-01", "plan_id": "987654"})
    assert bad.status_code == 422 and "this patient&#39;s treatment series" in bad.text
    assert db.query(FollowUp).count() == before
    ok = client.post(url, {"series_end_on": "2026-01-01", "plan_id": ""}, follow_redirects=False)
    assert ok.status_code == 303
    assert {f.plan_id for f in db.query(FollowUp).filter(FollowUp.id > 0).all() if f.series_end_on} == {None}
