"""A prescriber takes a referred patient from eligibility through an override to a PK-checked
CRPS plan on the calendar; the patient signs the consent online. Screenshots go to docs/img."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from tests.helpers import clinic_today

pytestmark = pytest.mark.browser

PRESCRIBER, PATIENT = "np.bay", "patientb.bay"
RECORD = "BPI-000002"  # demo patient B: screened, raised intraocular pressure (a relative caution)
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"planning-{name}.png"), full_page=True)


def test_referral_eligibility_override_plan_schedule_consent(page, server, login, browser_context) -> None:
    pid = server.patient_id(RECORD)
    given = server.scalar("SELECT given_name FROM patients WHERE id = ?", pid)
    family = server.scalar("SELECT family_name FROM patients WHERE id = ?", pid)
    login(page, PRESCRIBER)

    # Referral: the record gets the CRPS diagnosis and today's weight.
    page.goto(f"/patients/{pid}")
    has_crps = server.scalar(
        "SELECT count(*) FROM patient_conditions WHERE patient_id = ? AND icd10_code = 'G90.512'", pid
    )
    if not has_crps:
        page.locator("#conditions summary").click()
        page.get_by_label("ICD-10-CM code").fill("G90.512")
        with page.expect_navigation():
            page.get_by_role("button", name="Add condition").click()
    page.locator("#measurements summary").click()
    page.get_by_label("Weight (kg)").fill("78")
    with page.expect_navigation():
        page.get_by_role("button", name="Save measurement").click()
    page.locator("#eligibility .decision").wait_for()  # loaded into the patient page by htmx

    # Eligibility: a relative caution needs a documented override.
    page.goto(f"/patients/{pid}/screening")
    decision = page.locator("#eligibility .decision")
    assert "Needs a prescriber's documented override" in decision.inner_text()
    assert "Raised intraocular pressure" in page.locator(".reason-caution").inner_text()
    assert "ASRA-2018" in page.locator(".reason-caution").inner_text()
    shot(page, "eligibility")

    page.get_by_label("Caution", exact=True).select_option("raised_iop")
    page.get_by_label("Written reason").fill("Glaucoma controlled on drops; ophthalmology agrees")
    with page.expect_navigation():
        page.get_by_role("button", name="Record override").click()
    assert page.locator("#eligibility .decision").inner_text().startswith("Eligible")
    assert "ophthalmology agrees" in page.locator(".reason-overridden").inner_text()
    shot(page, "override")

    # Plan: CRPS series, 0.35 mg/kg/h for 4 h daily for 5 days, titrated from 0.2.
    page.get_by_role("link", name="Write a treatment plan").click()
    page.get_by_label("Start from protocol").select_option("outpatient_series")
    with page.expect_navigation():
        page.get_by_role("button", name="Use its defaults").click()
    page.get_by_label("Target dose").fill("0.35")
    page.get_by_label("Titrate from (mg/kg/h, optional)").fill("0.2")
    page.locator("#f-sessions").fill("5")
    page.get_by_label("ondansetron").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Save plan").click()
    assert re.search(r"/plans/\d+\?saved=created$", page.url), page.url
    plan_id = int(re.search(r"/plans/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    page.locator("#pk-chart .main-svg").first.wait_for()  # Plotly drew the curve
    assert page.locator("#series-mg").inner_text() == f"{0.2 * 78 * 4 + 4 * 0.35 * 78 * 4:.1f} mg"
    assert "analgesic band" in page.locator("#pk").inner_text()
    assert "96365" in page.locator("#cost").inner_text()
    shot(page, "plan")

    # Schedule: the sessions go on the calendar with a chair and staff.
    with page.expect_navigation():
        page.get_by_role("button", name="Book sessions on the calendar").click()
    rows = page.locator("#schedule tbody tr")
    assert rows.count() == 5 and "not booked" not in page.locator("#schedule").inner_text()
    assert server.scalar("SELECT count(*) FROM plan_sessions WHERE plan_id = ?", plan_id) == 5
    # Reschedule: session 5 moves a day later at 10:00, with the same checks as booking.
    later = (clinic_today() + dt.timedelta(days=6)).isoformat()
    page.locator("#session-5 summary").click()
    page.get_by_label("New date (session 5)").fill(later)
    page.get_by_label("New start time (session 5)").fill("10:00")
    page.get_by_label("Why (optional, session 5)").fill("Patient's request")
    with page.expect_navigation():
        page.get_by_role("button", name="Reschedule session 5").click()
    assert f"{later} 10:00" in page.locator("#session-5").inner_text()
    assert (
        server.scalar("SELECT status FROM plan_sessions WHERE plan_id = ? AND number = 5", plan_id)
        == "booked"
    )
    page.locator("#schedule").scroll_into_view_if_needed()
    shot(page, "schedule")
    page.get_by_role("link", name="Show on the calendar").click()
    page.get_by_role("link", name=f"{family}, {given}").first.wait_for()
    shot(page, "calendar")

    # The duty roster the booking used: who is on duty, a prescriber onsite every day.
    page.get_by_role("link", name="Duty roster").click()
    assert "(prescriber)" in page.locator("#roster").inner_text()
    shot(page, "duty")

    # Consent: the patient reads and signs it online.
    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="Log out").click()
    login(page, PATIENT)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My plan").click()
    page.get_by_role("link", name="Read and sign").click()
    assert "off-label" in page.locator(".consent-text").inner_text()
    page.get_by_label("Type your full name").fill(f"{given} {family}")
    page.get_by_label("I have read this consent and agree to the treatment").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Sign consent").click()
    assert "Signed" in page.locator("#signature").inner_text()
    assert server.scalar("SELECT signature_sha256 FROM plan_consents WHERE plan_id = ?", plan_id)
    shot(page, "consent")
