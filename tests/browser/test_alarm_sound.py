"""Alarms that are heard (issue 14 item 7), in Chromium: on the live board and the session page a
raised alarm starts a Web Audio tone; the per-screen mute is visible with its remaining time and
ends by itself; acknowledging the alarm stops the tone. An init script counts the oscillators
the page starts and stops, besides the page's own window.ketacareAlarm state. The safety hold is
seen on the patient's header (item 8)."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Server
from tests.browser.test_sessions_live import (
    CLINIC,
    PRESCRIBER_NAME,
    SQLITE_TIME,
    _settings,
    submit,
)

pytestmark = pytest.mark.browser

# The earliest booked session of the clinic not yet checked in, for a patient without an active
# safety hold (the live-session test takes the latest booster, so the two never meet).
BOOKED_SESSION = """
SELECT ps.id, ps.starts_at, p.record_number, p.sex, c.time_zone
FROM plan_sessions ps
JOIN treatment_plans tp ON tp.id = ps.plan_id
JOIN patients p ON p.id = tp.patient_id
JOIN clinics c ON c.id = ps.clinic_id
WHERE c.slug = ? AND ps.status = 'booked' AND tp.purpose <> 'booster'
  AND ps.id NOT IN (SELECT plan_session_id FROM treatment_sessions)
  AND tp.patient_id NOT IN (SELECT patient_id FROM safety_holds WHERE released_at IS NULL)
ORDER BY ps.starts_at, ps.id
LIMIT 1
"""

NURSE = "nurse.alarm.north"  # made by this module only

HOOK = """
window.__osc = {started: 0, stopped: 0};
const _start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...a) { window.__osc.started += 1; return _start.apply(this, a); };
const _stop = OscillatorNode.prototype.stop;
OscillatorNode.prototype.stop = function (...a) { window.__osc.stopped += 1; return _stop.apply(this, a); };
"""


@pytest.fixture(scope="module")
def alarm_nurse(server: Server) -> str:
    from ketacare.auth import service as auth
    from ketacare.auth.roles import Role
    from ketacare.db import make_engine, make_sessionmaker, transaction
    from ketacare.demo import DEMO_PASSWORD

    engine = make_engine(_settings(server).resolved_database_url)
    try:
        with transaction(make_sessionmaker(engine)) as db:
            clinic = auth.clinic_by_slug(db, CLINIC)
            auth.create_user(
                db, None, clinic.id, auth.NewUser(NURSE, "Ari Alarm RN", Role.nurse, DEMO_PASSWORD)
            )
    finally:
        engine.dispose()
    return NURSE


def _sounding(page: Any) -> bool:
    return bool(page.evaluate("window.ketacareAlarm && window.ketacareAlarm.playing"))


def _oscillators_running(page: Any) -> int:
    return int(page.evaluate("window.__osc.started - window.__osc.stopped"))


def _wait_playing(page, playing: bool, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Poll the page's alarm state (page.evaluate runs outside the page's CSP; Playwright's
    wait_for_function would need 'unsafe-eval', which the app rightly refuses)."""
    deadline = time.monotonic() + timeout_s
    while page.evaluate("window.ketacareAlarm.playing") is not playing:
        assert time.monotonic() < deadline, f"the alarm sound did not become playing={playing}"
        page.wait_for_timeout(100)


def test_alarm_sounds_mutes_visibly_and_stops_on_acknowledge(page, server, login, alarm_nurse) -> None:  # type: ignore[no-untyped-def]
    page.add_init_script(HOOK)
    plan_session_id, starts_at, _record_number, sex, zone = server.sql_row(BOOKED_SESSION, CLINIC)
    local_day = (
        dt.datetime.strptime(starts_at, SQLITE_TIME)
        .replace(tzinfo=dt.UTC)
        .astimezone(zoneinfo.ZoneInfo(zone))
    ).date()
    login(page, alarm_nurse)
    page.goto(f"/sessions?date={local_day.isoformat()}")
    row = page.locator(f'#day-list tr[data-plan-session="{plan_session_id}"]')
    submit(page, row.get_by_role("button", name="Check in"))
    session_id = int(page.url.rstrip("/").split("/")[-1].split("?")[0])
    expect(page.locator("#session-state")).to_have_text("Checked in")
    expect(page.locator("#administration-waits")).to_be_visible()
    expect(page.locator("#administration-form")).to_have_count(0)

    form = page.locator("#prechecks form").first
    for label, value in (
        ("Weight today (kg)", "74"),
        ("Systolic BP (mmHg)", "124"),
        ("Diastolic BP (mmHg)", "78"),
        ("Heart rate (/min)", "72"),
        ("SpO2 (%)", "98"),
        ("Escort's name", "Sam Escort"),
        ("Escort's phone", "555-0100"),
    ):
        form.get_by_label(label).fill(value)
    form.get_by_label("Responsible adult escort confirmed").check()
    form.get_by_label("Pulse oximeter connected").check()
    form.get_by_label("Pregnancy test").select_option("negative" if sex == "female" else "not_applicable")
    form.get_by_label("Prescriber on site").select_option(label=PRESCRIBER_NAME)
    submit(page, form.get_by_role("button", name="Pre-checks done"))

    # No alarm yet: silence.
    page.locator("h1").click()  # a person on this screen (browsers hold sound back until then)
    assert not _sounding(page) and _oscillators_running(page) == 0
    vitals = page.locator("#vitals-form")
    vitals.get_by_label("Systolic BP (mmHg)").fill("195")
    submit(page, vitals.get_by_role("button", name="Record vitals"))
    page.locator("h1").click()
    _wait_playing(page, True)
    assert _oscillators_running(page) == 1

    # The board sounds too; the mute is visible, counts down and ends by itself.
    page.goto("/sessions-board")
    page.locator("h1").click()
    _wait_playing(page, True)
    page.locator("#alarm-mute").click()
    state = page.locator("#alarm-sound-state")
    expect(state).to_contain_text("MUTED on this screen")
    expect(state).to_contain_text("left")
    expect(page.locator("#alarm-unmute")).to_be_visible()
    assert not _sounding(page) and _oscillators_running(page) == 0
    # The mute expires: move its end to a second from now.
    page.evaluate("sessionStorage.setItem('ketacare.alarmMutedUntil', String(Date.now() + 1000))")
    _wait_playing(page, True)
    expect(state).not_to_contain_text("MUTED")

    # Acknowledge every raised alarm of this session on the board: the tone stops.
    card = page.locator(f"#board-session-{session_id}")
    while card.locator('[data-alarm-status="raised"]').count():
        card.locator('[data-alarm-status="raised"]').first.get_by_role("button", name="Acknowledge").click()
        page.wait_for_timeout(1_500)
    raised_elsewhere = page.locator('[data-alarm-status="raised"]').count()
    if raised_elsewhere == 0:
        _wait_playing(page, False)
        assert _oscillators_running(page) == 0

    # The session page: the acknowledged alarm no longer sounds.
    page.goto(f"/sessions/{session_id}")
    page.locator("h1").click()
    expect(page.locator('#alarms [data-alarm-status="acknowledged"]').first).to_be_visible()
    if raised_elsewhere == 0:
        assert not _sounding(page)


def test_safety_hold_seen_in_the_patient_header(page, server, login, alarm_nurse) -> None:  # type: ignore[no-untyped-def]
    patient_id = server.scalar(
        "SELECT p.id FROM patients p JOIN clinics c ON c.id = p.clinic_id "
        "WHERE c.slug = ? ORDER BY p.id LIMIT 1",
        CLINIC,
    )
    clinic_id = server.scalar("SELECT id FROM clinics WHERE slug = ?", CLINIC)
    with server.sql() as conn:
        conn.execute(
            "INSERT INTO safety_holds (clinic_id, patient_id, kind, reason, source, tag, placed_at) "
            "VALUES (?, ?, 'bladder', 'Browser test: urinary symptoms', 'Morgan 2012', 'V', "
            "CURRENT_TIMESTAMP)",
            (clinic_id, patient_id),
        )
    try:
        login(page, alarm_nurse)
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"/patients/{patient_id}")
        banner = page.locator(f'[data-safety-hold="{patient_id}"]')
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Browser test: urinary symptoms")
    finally:
        with server.sql() as conn:  # other tests see this patient without the hold
            conn.execute(
                "UPDATE safety_holds SET released_at = CURRENT_TIMESTAMP, release_reason = 'test done' "
                "WHERE reason = 'Browser test: urinary symptoms'"
            )
