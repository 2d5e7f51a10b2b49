"""A nurse runs a booked session end to end while a simulated bedside monitor streams HL7 v2 over
a real socket to a listener on the test server's database: the live board shows each reading
without a reload, a systolic spike raises an alarm there, the nurse acknowledges it, lowers the
rate, ends dosing and discharges; the report opens. Screenshots go to docs/img."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SECRET_KEY, Server

pytestmark = pytest.mark.browser

CLINIC = "north"
NURSE = "nurse.live.north"  # made by this module: no other test logs in as this nurse
PRESCRIBER_NAME = "Dana Okafor MD"  # dr.north, the prescriber on site
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
# The last booster the demo booked in this clinic, nobody has checked in yet, for a patient
# without an active safety hold (the hold would rightly stop the session).
BOOKED_BOOSTER = """
SELECT ps.id, ps.starts_at, p.record_number, p.sex, c.time_zone
FROM plan_sessions ps
JOIN treatment_plans tp ON tp.id = ps.plan_id
JOIN patients p ON p.id = tp.patient_id
JOIN clinics c ON c.id = ps.clinic_id
WHERE c.slug = ? AND tp.purpose = 'booster' AND ps.status = 'booked'
  AND ps.id NOT IN (SELECT plan_session_id FROM treatment_sessions)
  AND tp.patient_id NOT IN (SELECT patient_id FROM safety_holds WHERE released_at IS NULL)
ORDER BY ps.starts_at DESC, ps.id DESC
LIMIT 1
"""
DEMO_SESSION_WITH_ALARM = """
SELECT ts.id FROM treatment_sessions ts JOIN clinics c ON c.id = ts.clinic_id
WHERE c.slug = ? AND ts.status = 'discharged' AND ts.prescriber_signed_at IS NOT NULL
  AND EXISTS (SELECT 1 FROM session_alarms a WHERE a.session_id = ts.id)
ORDER BY ts.id DESC
LIMIT 1
"""
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _settings(server: Server) -> Any:
    from ketacare.config import Environment, load_settings

    return load_settings(
        environment=Environment.test, data_dir=server.data_dir, database_url="", secret_key=SECRET_KEY
    )


@pytest.fixture(scope="module")
def live_nurse(server: Server) -> str:
    """A nurse account of the clinic, made through the auth use-case on the server's database."""
    from ketacare.auth import service as auth
    from ketacare.auth.roles import Role
    from ketacare.db import make_engine, make_sessionmaker, transaction
    from ketacare.demo import DEMO_PASSWORD

    engine = make_engine(_settings(server).resolved_database_url)
    try:
        with transaction(make_sessionmaker(engine)) as db:
            clinic = auth.clinic_by_slug(db, CLINIC)
            auth.create_user(
                db, None, clinic.id, auth.NewUser(NURSE, "Lee Live RN", Role.nurse, DEMO_PASSWORD)
            )
    finally:
        engine.dispose()
    return NURSE


@pytest.fixture(scope="module")
def hl7_address(server: Server) -> Iterator[tuple[str, int]]:
    """The MLLP listener, storing into the same database as the web server, on a free port."""
    from ketacare.db import make_engine, make_sessionmaker
    from ketacare.interop.hl7v2 import mllp

    engine = make_engine(_settings(server).resolved_database_url)
    listener = mllp.MLLPListener(mllp.database_ingest(make_sessionmaker(engine)))
    try:
        with mllp.BackgroundListener(listener) as background:
            yield background.address
    finally:
        engine.dispose()


class Monitor:
    """A bedside monitor on one TCP connection, sending one ORU^R01 per reading.

    HL7 times have whole seconds: each reading is stamped at the end of its second, and later
    than the one before, so it is never older than what the nurse typed just before it."""

    def __init__(self, address: tuple[str, int], record_number: str) -> None:
        from ketacare.interop.hl7v2 import monitor

        self._monitor = monitor
        self._connection = monitor.MonitorConnection(*address)
        self._record_number = record_number
        self._prefix = uuid.uuid4().hex[:8]
        self._sent = 0
        self._stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def send(self, **vitals: float) -> None:
        self._sent += 1
        control_id = f"{self._prefix}-{self._sent:04d}"
        second_ends = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        self._stamp = max(second_ends, self._stamp + dt.timedelta(seconds=1))
        reply = self._connection.send(
            self._monitor.build_oru(
                clinic_slug=CLINIC,
                record_number=self._record_number,
                device_id="TEST-MONITOR-7",
                control_id=control_id,
                observed_at=self._stamp,
                vitals=vitals,
            )
        )
        assert (reply.ack_code, reply.control_id) == ("AA", control_id), reply.raw

    def close(self) -> None:
        self._connection.close()


def shot(page: Any, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"{name}.png"), full_page=True)


def submit(page: Any, button: Any) -> None:
    """Submit a form and land on a page that shows no form error."""
    with page.expect_navigation():
        button.click()
    problems = page.locator(".error-summary, p.error").all_inner_texts()
    assert problems == [], f"{page.url}: {problems}"


def _move_dosing_back(server: Server, session_id: int, by: dt.timedelta) -> None:
    """Time passes: every administration entry of the session moves ``by`` into the past."""
    with server.sql() as conn:
        rows = conn.execute(
            "SELECT id, given_at FROM session_administrations WHERE session_id = ?", (session_id,)
        ).fetchall()
        for row_id, given_at in rows:
            moved = dt.datetime.strptime(given_at, SQLITE_TIME) - by
            conn.execute(
                "UPDATE session_administrations SET given_at = ? WHERE id = ?",
                (moved.strftime(SQLITE_TIME), row_id),
            )


def test_session_with_live_monitor_alarm_and_discharge(page, server, login, live_nurse, hl7_address) -> None:
    plan_session_id, starts_at, record_number, sex, zone = server.sql_row(BOOKED_BOOSTER, CLINIC)
    local_day = (
        dt.datetime.strptime(starts_at, SQLITE_TIME)
        .replace(tzinfo=dt.UTC)
        .astimezone(zoneinfo.ZoneInfo(zone))
    ).date()
    login(page, live_nurse)

    # The day list: check the patient in.
    page.goto(f"/sessions?date={local_day.isoformat()}")
    row = page.locator(f'#day-list tr[data-plan-session="{plan_session_id}"]')
    expect(row).to_contain_text(record_number)
    submit(page, row.get_by_role("button", name="Check in"))
    session_id = int(page.url.rstrip("/").split("/")[-1])
    expect(page.locator("#session-state")).to_have_text("Checked in")

    # Pre-checks, then the infusion starts.
    form = page.locator("#prechecks form").first
    form.get_by_label("Weight today (kg)").fill("74")
    form.get_by_label("Systolic BP (mmHg)").fill("124")
    form.get_by_label("Diastolic BP (mmHg)").fill("78")
    form.get_by_label("Heart rate (/min)").fill("72")
    form.get_by_label("SpO2 (%)").fill("98")
    form.get_by_label("Respiratory rate (/min)").fill("14")
    form.get_by_label("Responsible adult escort confirmed").check()
    form.get_by_label("Pulse oximeter connected").check()
    form.get_by_label("Escort's name").fill("Sam Escort")
    form.get_by_label("Escort's phone").fill("555-0100")
    form.get_by_label("Pregnancy test").select_option("negative" if sex == "female" else "not_applicable")
    form.get_by_label("Prescriber on site").select_option(label=PRESCRIBER_NAME)
    submit(page, form.get_by_role("button", name="Pre-checks done"))
    expect(page.locator("#session-state")).to_have_text("Pre-checks done")

    given = page.locator("#administration-form")
    given.get_by_label("Entry").select_option("start")
    given.get_by_label("Rate (mg/h)").fill("22")
    # The demo clinic keeps its stock in the controlled-substance ledger: the lot comes from it.
    lot = given.get_by_label("Lot (controlled-substance ledger)")
    lot.select_option(index=1)
    submit(page, given.get_by_role("button", name="Record"))
    expect(page.locator("#session-state")).to_have_text("Running")
    expect(page.locator("#given")).to_contain_text("start")

    # The live board follows the monitor without a reload.
    page.goto("/sessions-board")
    card = page.locator(f"#board-session-{session_id}")
    expect(card).to_contain_text(record_number)
    page.evaluate("window.__sameDocument = true")
    monitor = Monitor(hl7_address, record_number)
    try:
        monitor.send(sbp=131, dbp=81, hr=77, spo2=97, rr=15)
        expect(card.locator('tr[data-vital="sbp"] .value')).to_contain_text("131", timeout=5_000)
        expect(card.locator('tr[data-vital="hr"] .value')).to_contain_text("77")
        expect(card.locator("[data-alarm]")).to_have_count(0)

        monitor.send(sbp=192, dbp=104, hr=88, spo2=97, rr=16)
        alarm = card.locator('[data-rule="sbp_high"]')
        expect(alarm).to_contain_text("ALARM", timeout=5_000)
        expect(alarm).to_contain_text("192")
        expect(card.locator('tr[data-vital="sbp"] .value')).to_contain_text("192")
        assert page.evaluate("window.__sameDocument") is True, "the board reloaded"
        shot(page, "sessions-board")

        # Acknowledged on the board: every alarm the spike raised.
        raised = card.locator("[data-alarm]")
        for n in range(raised.count()):
            rule = raised.nth(n).get_attribute("data-rule")
            one = card.locator(f'[data-rule="{rule}"]')
            one.get_by_role("button", name="Acknowledge").click()
            expect(one).to_contain_text("Acknowledged", timeout=5_000)
        assert (
            server.scalar(
                "SELECT count(*) FROM session_alarms WHERE session_id = ? AND status = 'acknowledged'",
                session_id,
            )
            == raised.count()
        )
        acknowledged_by = server.scalar(
            "SELECT u.username FROM session_alarms a JOIN users u ON u.id = a.acknowledged_by_id "
            "WHERE a.session_id = ? AND a.rule_key = 'sbp_high'",
            session_id,
        )
        assert acknowledged_by == live_nurse

        # The rate is halved on the session page; the next reading is lower; the alarms resolved.
        page.goto(f"/sessions/{session_id}")
        given = page.locator("#administration-form")
        given.get_by_label("Entry").select_option("rate_change")
        given.get_by_label("Rate (mg/h)").fill("11")
        given.get_by_label("Reason (required for a rate change)").fill("SBP 192 alarm: rate halved")
        submit(page, given.get_by_role("button", name="Record"))
        expect(page.locator("#given")).to_contain_text("SBP 192 alarm: rate halved")
        expect(page.locator("#summary")).to_contain_text("running at 11 mg/h")
        monitor.send(sbp=138, dbp=84, hr=78, spo2=98, rr=14)
    finally:
        monitor.close()
    page.reload()
    expect(page.locator("#vitals")).to_contain_text("138")
    alarms = page.locator("#alarms li.alarm")
    spike_alarms = alarms.count()
    assert spike_alarms >= 1
    expect(page.locator("#alarms li.alarm-acknowledged")).to_have_count(spike_alarms)
    for _ in range(spike_alarms):
        submit(page, page.locator("#alarms").get_by_role("button", name="Resolve").first)
    expect(page.locator("#alarms li.alarm-resolved")).to_have_count(spike_alarms)
    shot(page, "session-detail")

    submit(page, page.get_by_role("button", name="Dosing finished"))
    expect(page.locator("#session-state")).to_have_text("Recovery")

    # An hour and more later (the record's dosing times move back): the checklist turns green.
    _move_dosing_back(server, session_id, dt.timedelta(minutes=75))
    checks = page.locator("#discharge-checks-form")
    checks.get_by_label("Alert and oriented").check()
    checks.get_by_label("Escort present").check()
    checks.get_by_label("Written instructions given").check()
    submit(page, checks.get_by_role("button", name="Save checks"))
    expect(page.locator("#session-state")).to_have_text("Ready for discharge")
    expect(page.locator("#discharge-checklist li.no")).to_have_count(0)
    submit(page, page.locator("#discharge-form").get_by_role("button", name="Discharge"))
    expect(page.locator("#session-state")).to_have_text("Discharged")

    # The report.
    submit(page, page.get_by_role("link", name="Report and signatures"))
    assert page.url.endswith(f"/sessions/{session_id}/report")
    expect(page.locator("#report-state")).to_have_text("Discharged")
    page.locator("#timeline-chart .main-svg").first.wait_for()
    expect(page.locator("article.report")).to_contain_text("rate halved")
    expect(page.locator("#not-signed")).to_be_visible()

    # The guide shows the report of a whole demo session with an alarm, signed by both.
    demo_session = server.scalar(DEMO_SESSION_WITH_ALARM, CLINIC)
    page.goto(f"/sessions/{demo_session}/report")
    expect(page.locator("#report-state")).to_have_text("Discharged")
    expect(page.locator("#not-signed")).to_have_count(0)
    page.locator("#timeline-chart .main-svg").first.wait_for()
    shot(page, "session-report")
