"""A patient fills a follow-up questionnaire from a link on their phone (a draft first, then the
whole thing); the clinic director sees the registry report change. Screenshots go to docs/img."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

DIRECTOR = "admin.bay"  # no other browser test logs in as this user
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"registry-{name}.png"), full_page=True)


def _issue_link(server) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """As the clinic's nurse would: an end-of-session questionnaire due today, and its link."""
    from ketacare.auth.principal import Principal
    from ketacare.auth.roles import Role
    from ketacare.db import make_engine, make_sessionmaker, transaction
    from ketacare.outcomes import service
    from ketacare.outcomes.schemas import OneOffIn
    from tests.browser.conftest import SECRET_KEY

    nurse_id, clinic_id = server.sql_row("SELECT id, clinic_id FROM users WHERE username = 'nurse.bay'")
    patient_id = server.scalar(
        "SELECT patient_id FROM treatment_sessions WHERE clinic_id = ? AND status = 'discharged' LIMIT 1",
        clinic_id,
    )
    nurse = Principal(nurse_id, "nurse.bay", Role.nurse, clinic_id, "test")
    engine = make_engine(f"sqlite:///{server.db_path}")
    try:
        with transaction(make_sessionmaker(engine)) as db:
            now = dt.datetime.now(dt.UTC)
            row = service.add_one_off(
                db, nurse, patient_id, OneOffIn(timepoint="end_of_session", due_on=now.date())
            )
            token = service.issue_link(db, nurse, SECRET_KEY, row.id, now)
    finally:
        engine.dispose()
    return int(patient_id), token


def _answered(page) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    headers = [h.strip() for h in page.locator("#table-summary thead th").all_text_contents()]
    cells = page.locator("#table-summary tbody tr").first.locator("td").all_text_contents()
    return int(cells[headers.index("follow ups due")]), int(cells[headers.index("follow ups answered")])


def test_questionnaire_from_a_link_is_kept_apart_from_the_registry_follow_ups(
    page, server, login, browser_context, chromium
) -> None:  # type: ignore[no-untyped-def]
    patient_id, token = _issue_link(server)
    login(page, DIRECTOR)
    page.goto("/registry")
    page.locator("#registry-responders .main-svg").first.wait_for()  # the Plotly chart drew
    due, answered = _answered(page)
    shot(page, "report")

    phone = chromium.new_context(base_url=server.url, viewport={"width": 390, "height": 844}, locale="en-US")
    try:
        patient = phone.new_page()
        patient.goto(f"/q/{token}")
        assert "How is your pain?" in patient.locator("h1").inner_text()
        patient.locator('input[name="nrs.now"][value="3"]').check()
        patient.get_by_role("button", name="Save a draft").click()
        assert "Draft saved" in patient.locator("#draft-saved").inner_text()
        assert patient.locator('input[name="nrs.now"][value="3"]').is_checked()  # the draft came back
        patient.get_by_role("button", name="Send my answers").click()
        assert "Please answer this question." in patient.locator("body").inner_text()  # half-filled: refused
        patient.locator('input[name="nrs.average"][value="4"]').check()
        patient.locator('input[name="nrs.worst"][value="6"]').check()
        shot(patient, "questionnaire")
        patient.get_by_role("button", name="Send my answers").click()
        assert "Your answers are with your clinic" in patient.locator("#thanks").inner_text()
        patient.goto(f"/q/{token}")  # used links do not open again
        assert "already been sent in" in patient.locator("#link-problem").inner_text()
    finally:
        phone.close()

    page.reload()
    # An end-of-session questionnaire is not a follow-up of the series (the registry's definition):
    # the follow-up counts do not move, while the patient's own outcomes page shows the answers.
    assert _answered(page) == (due, answered)
    page.goto(f"/patients/{patient_id}/outcomes")
    page.locator("#outcome-chart .main-svg").first.wait_for()
    assert re.search(r"\d+ answered of \d+", page.locator("body").inner_text())
    shot(page, "trajectory")
