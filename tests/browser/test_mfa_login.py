"""A prescriber logs in with password and a TOTP code, and sees the clinic dashboard."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

USERNAME = "dr.bay"


def test_prescriber_logs_in_with_totp_code_and_sees_dashboard(page, server) -> None:
    from ketacare.demo import DEMO_PASSWORD

    page.goto("/login")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()

    # The password alone is not enough: the code page comes next, and nothing else opens yet.
    assert re.search(r"/login/mfa\b", page.url)
    assert page.get_by_role("heading", name="Enter your 6-digit code").is_visible()
    code_box = page.get_by_label("Code")
    assert code_box.evaluate("el => el === document.activeElement"), "the code box should have focus"
    page.goto("/patients")
    assert re.search(r"/login/mfa\b", page.url), f"a half-logged-in user reached {page.url}"

    # A wrong code is refused next to the field.
    page.get_by_label("Code").fill("000000" if server.totp_code(USERNAME) != "000000" else "111111")
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()
    assert page.locator("#e-code").inner_text().startswith("That code is not right")

    # The right code opens the page the prescriber asked for while the code was pending.
    page.get_by_label("Code").fill(server.totp_code(USERNAME))
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()
    assert page.url == f"{server.url}/patients"
    page.goto("/")
    assert page.get_by_role("heading", level=1).inner_text() == "Bayview Pain and Infusion Clinic"
    assert "dr.bay · Prescriber" in page.locator("header").inner_text()
    assert page.get_by_role("heading", name="Find a patient").is_visible()
    assert page.get_by_role("button", name="Log out").is_visible()
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Patients").is_visible()
