"""A nurse adds a patient, finds them again by live search and by the search button, and logs out."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

USERNAME = "nurse.bay"
GIVEN, FAMILY = "Zelda", "Brightwater"


def test_nurse_adds_finds_opens_patient_then_logs_out(page, server, login) -> None:
    login(page, USERNAME)

    # Add a patient from the patient list.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients").click()
    page.get_by_role("link", name="Add a patient").click()
    page.wait_for_url(re.compile(r"/patients/new$"))
    page.get_by_label("Given name").fill(GIVEN)
    page.get_by_label("Family name").fill(FAMILY)
    page.get_by_label("Date of birth").fill("1979-03-14")
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Phone").fill("555-201-7788")
    page.get_by_label("State (2 letters)").fill("ca")
    page.get_by_label("ZIP code").fill("94110")
    with page.expect_navigation():
        page.get_by_role("button", name="Add patient").click()

    # Lands on the new patient's page, with the clinic's next record number.
    match = re.search(r"/patients/(\d+)\?saved=created$", page.url)
    assert match, page.url
    new_id = int(match.group(1))
    assert page.get_by_role("heading", level=1).inner_text() == f"{FAMILY}, {GIVEN}"
    assert page.get_by_role("status").inner_text() == "Saved."
    facts = page.locator("dl.facts").first.inner_text()
    assert "BPI-000031" in facts
    assert "1979-03-14" in facts
    assert "CA 94110" in facts
    assert server.scalar("SELECT record_number FROM patients WHERE id = ?", new_id) == "BPI-000031"

    # Live search: typing updates the results in place (htmx), without loading a new page.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients").click()
    page.wait_for_url(re.compile(r"/patients$"))
    page.evaluate("window.__sameDocument = true")
    search_box = page.get_by_label("Name, date of birth or record number")
    with page.expect_response(
        lambda r: "/patients?q=brightw" in r.url.lower() and r.request.headers.get("hx-request") == "true"
    ):
        search_box.press_sequentially("brightw", delay=20)
    results = page.locator("#results")
    results.get_by_role("link", name=f"{FAMILY}, {GIVEN}").wait_for()
    assert page.evaluate("window.__sameDocument === true"), "live search reloaded the page"
    assert results.locator("tbody tr").count() == 1
    assert "1 patient matching" in results.get_by_role("status").inner_text()
    assert "q=brightw" in page.url, "live search should keep the query in the address bar"

    # The Search button does a plain GET and finds them by given and family name in any order.
    search_box.fill(f"{GIVEN} {FAMILY}")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    assert re.search(r"/patients\?q=Zelda\+Brightwater$", page.url), page.url
    assert page.evaluate("window.__sameDocument === undefined")
    assert page.get_by_label("Name, date of birth or record number").input_value() == (f"{GIVEN} {FAMILY}")
    page.locator("#results").get_by_role("link", name=f"{FAMILY}, {GIVEN}").click()
    page.wait_for_url(re.compile(rf"/patients/{new_id}$"))
    assert page.get_by_role("heading", level=1).inner_text() == f"{FAMILY}, {GIVEN}"

    # Log out from the header: back at the log-in page, and patient pages are closed again.
    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="Log out").click()
    assert page.url == f"{server.url}/login"
    assert page.get_by_role("heading", name="Log in to KetaCare").is_visible()
    page.goto("/patients")
    assert re.search(r"/login\?next=(/|%2F)patients$", page.url), page.url
    assert page.get_by_role("heading", name="Log in to KetaCare").is_visible()
    ended = server.scalar(
        "SELECT end_reason FROM login_sessions JOIN users ON users.id = login_sessions.user_id "
        "WHERE users.username = ? ORDER BY login_sessions.id DESC LIMIT 1",
        USERNAME,
    )
    assert ended == "logout"
