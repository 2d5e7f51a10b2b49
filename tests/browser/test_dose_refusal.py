"""Issue 14 item 1 where a person sees it (Chromium): a dose above the hard limit is refused on the
page, with its reason and source, and nothing is stored. A prescriber writing a plan enters an
infusion rate above 2 mg/kg/h outside an ICU (with an override reason, which cannot talk past a
hard limit); a nurse at a running IV session enters a rate change above it. The limits are those
of knowledge/data/dose_limits.toml (ASRA/AAPM/ASA consensus guideline 2018)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pyotp
import pytest
from playwright.sync_api import expect

from ketacare.knowledge.dose_limits import dose_limits
from tests.browser.conftest import SECRET_KEY, Server

pytestmark = pytest.mark.browser

INFUSION_MAX = dose_limits()["infusion_max"]  # 2 mg/kg/h outside an ICU setting, hard
ASRA = "ASRA/AAPM/ASA consensus guideline 2018"
PRESCRIBER, NURSE = "dr.dose.{slug}", "nurse.dose.{slug}"  # made here: no other browser test uses them


def _settings(server: Server) -> Any:
    from ketacare.config import Environment, load_settings

    return load_settings(
        environment=Environment.test, data_dir=server.data_dir, database_url="", secret_key=SECRET_KEY
    )


@pytest.fixture(scope="module")
def iv_session(server: Server) -> tuple[int, str, float]:
    """A running IV-infusion session of the demo: its id, its clinic's slug, the session weight."""
    row = server.sql_row(
        "SELECT ts.id, c.slug, ts.weight_kg FROM treatment_sessions ts JOIN clinics c ON c.id = ts.clinic_id "
        "WHERE ts.status = 'running' AND ts.route = 'iv_infusion' AND ts.drug = 'ketamine' "
        "AND ts.weight_kg IS NOT NULL ORDER BY ts.id DESC LIMIT 1"
    )
    return int(row[0]), str(row[1]), float(row[2])


@pytest.fixture(scope="module")
def users(server: Server, iv_session: tuple[int, str, float]) -> tuple[str, str]:
    from ketacare.auth import service as auth
    from ketacare.auth.roles import PrescriberKind, Role
    from ketacare.db import make_engine, make_sessionmaker, transaction
    from ketacare.demo import DEMO_PASSWORD

    physician = PrescriberKind.physician
    slug = iv_session[1]
    prescriber, nurse = PRESCRIBER.format(slug=slug), NURSE.format(slug=slug)
    engine = make_engine(_settings(server).resolved_database_url)
    try:
        with transaction(make_sessionmaker(engine)) as db:
            clinic = auth.clinic_by_slug(db, slug)
            md = auth.NewUser(
                prescriber, "Dose Refusal MD", Role.prescriber, DEMO_PASSWORD, prescriber_kind=physician
            )
            rn = auth.NewUser(nurse, "Dose Refusal RN", Role.nurse, DEMO_PASSWORD)
            doctor = auth.create_user(db, None, clinic.id, md)
            doctor.totp_secret, doctor.totp_enrolled = pyotp.random_base32(), True  # prescribers use MFA
            auth.create_user(db, None, clinic.id, rn)
    finally:
        engine.dispose()
    return prescriber, nurse


def test_a_prescriber_sees_a_plan_above_the_hard_limit_refused(
    page, server: Server, login, iv_session, users
) -> None:  # type: ignore[no-untyped-def]
    slug = iv_session[1]
    # A patient of this clinic who already has a plan (screened and eligible).
    pid = int(
        server.scalar(
            "SELECT p.id FROM patients p JOIN clinics c ON c.id = p.clinic_id JOIN treatment_plans tp "
            "ON tp.patient_id = p.id WHERE c.slug = ? ORDER BY p.id LIMIT 1",
            slug,
        )
    )
    plans_before = server.scalar("SELECT count(*) FROM treatment_plans WHERE patient_id = ?", pid)
    login(page, users[0])
    # Today's weight, so the dose rules can work per kg.
    page.goto(f"/patients/{pid}")
    page.locator("#measurements summary").click()
    page.get_by_label("Weight (kg)").fill("80")
    with page.expect_navigation():
        page.get_by_role("button", name="Save measurement").click()

    page.goto(f"/patients/{pid}/plans/new?protocol=outpatient_series")
    rate = INFUSION_MAX.value * 1.5  # 3 mg/kg/h in an outpatient series
    page.get_by_label("Target dose").fill(f"{rate:g}")
    later = (dt.date.today() + dt.timedelta(days=120)).isoformat()  # clear of the patient's own plans
    page.get_by_label("First session").fill(later)
    page.get_by_label("Dose override reason (only to go above a protocol or guideline limit)").fill(
        "Refractory pain, discussed with the team"
    )
    page.get_by_role("button", name="Save plan").click()
    page.wait_for_load_state()
    assert re.search(r"/patients/\d+/plans/new$", page.url), page.url  # not saved, still the form
    body = page.locator("main")
    expect(body).to_contain_text(f"{rate:g} mg/kg/h")
    expect(body).to_contain_text("above 2 mg/kg/h")
    expect(body).to_contain_text(ASRA)
    expect(body).to_contain_text("A hard limit: refused, with or without an override reason")
    expect(page.locator("#e-dose")).to_be_visible()
    expect(page.locator("#e-dose")).to_contain_text("above 2 mg/kg/h")
    assert server.scalar("SELECT count(*) FROM treatment_plans WHERE patient_id = ?", pid) == plans_before


def test_a_nurse_sees_a_rate_change_above_the_hard_limit_refused(
    page, server: Server, login, iv_session, users
) -> None:  # type: ignore[no-untyped-def]
    session_id, _, weight = iv_session
    entries_before = server.scalar(
        "SELECT count(*) FROM session_administrations WHERE session_id = ?", session_id
    )
    login(page, users[1])
    page.goto(f"/sessions/{session_id}")
    form = page.locator("#administration-form")
    form.get_by_label("Entry").select_option("rate_change")
    rate_mg_per_h = round(weight * INFUSION_MAX.value * 1.5)  # 3 mg/kg/h
    form.get_by_label("Rate (mg/h)").fill(str(rate_mg_per_h))
    form.get_by_label("Reason (required for a rate change)").fill("Pain not controlled")
    form.get_by_role("button", name=re.compile("^Record")).click()
    page.wait_for_load_state()
    refusal = page.get_by_role("alert").filter(has_text="2 mg/kg/h")
    expect(refusal.first).to_be_visible()
    expect(page.locator("main")).to_contain_text(ASRA)
    assert "409" not in page.title() and "422" not in page.title()
    assert (
        server.scalar("SELECT count(*) FROM session_administrations WHERE session_id = ?", session_id)
        == entries_before
    )
