"""A visitor with no account takes the self-assessment, finds a clinic near a ZIP code, sees a
cost estimate and books a consultation, sharing the answers; the clinic's admin and nurse see
the request with the answers in the queue. Screenshots go to docs/img/front-door-*.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketacare.directory.assessment import screening_rules

pytestmark = pytest.mark.browser

ADMIN, NURSE = "admin.north", "nurse.north"
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PHONE = {"width": 390, "height": 844}


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"front-door-{name}.png"), full_page=True)


def test_assessment_search_booking_queue(page, server, login, chromium) -> None:  # type: ignore[no-untyped-def]
    # The assessment works on a phone.
    phone = chromium.new_context(base_url=server.url, viewport=PHONE, locale="en-US")
    visitor = phone.new_page()
    try:
        visitor.goto("/learn/routes")
        assert "verdict" in visitor.locator("table.route-table").inner_text().lower()
        visitor.goto("/assess")
        visitor.get_by_label("Your pain condition").select_option("crps1")
        visitor.get_by_label("When did the pain start? (month and year)").fill("2022-03")
        visitor.get_by_label("Pain now (0 = none, 10 = worst imaginable)").fill("14")
        visitor.get_by_label("Pain on average over the last week (0-10)").fill("6")
        visitor.get_by_label("Anticonvulsants (for example gabapentin, pregabalin)").check()
        visitor.get_by_label("Physical therapy").check()
        for rule in screening_rules():
            answer = "yes" if rule.key == "opioids" else "no"
            visitor.locator(f"#q-{rule.key} input[value='{answer}']").check()
        visitor.get_by_label("If you take opioids: which, and how much a day (optional)").fill(
            "tramadol 50 mg"
        )
        with visitor.expect_navigation():
            visitor.get_by_role("button", name="See my result").click()
        # Impossible answer: a clear message, everything else as typed.
        assert "less than or equal to 10" in visitor.locator("#e-pain_now").inner_text()
        assert visitor.get_by_label(
            "If you take opioids: which, and how much a day (optional)"
        ).input_value() == ("tramadol 50 mg")
        assert visitor.locator("#q-opioids input[value='yes']").is_checked()
        visitor.get_by_label("Pain now (0 = none, 10 = worst imaginable)").fill("7")
        with visitor.expect_navigation():
            visitor.get_by_role("button", name="See my result").click()
        assert visitor.locator("#outcome").inner_text() == "Needs a clinician's review first"
        assert "tramadol 50 mg" in visitor.locator(".reasons").inner_text()
        shot(visitor, "assessment")
    finally:
        phone.close()

    # The same journey on a desktop browser, through to a booked consultation.
    page.goto("/assess")
    page.get_by_label("Your pain condition").select_option("crps1")
    page.get_by_label("When did the pain start? (month and year)").fill("2022-03")
    page.get_by_label("Pain now (0 = none, 10 = worst imaginable)").fill("7")
    page.get_by_label("Pain on average over the last week (0-10)").fill("6")
    page.get_by_label("Anticonvulsants (for example gabapentin, pregabalin)").check()
    page.get_by_label("Physical therapy").check()
    for rule in screening_rules():
        page.locator(f"#q-{rule.key} input[value='{'yes' if rule.key == 'opioids' else 'no'}']").check()
    with page.expect_navigation():
        page.get_by_role("button", name="See my result").click()
    assert "review first" in page.locator("#outcome").inner_text()

    page.get_by_label("Your ZIP code").fill("99999")
    with page.expect_navigation():
        page.get_by_role("button", name="Find clinics").click()
    assert "We do not know the ZIP code 99999" in page.locator("#e-zip").inner_text()
    page.get_by_label("Your ZIP code").fill("11743")
    page.get_by_label("Route").select_option("iv_infusion")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    results = page.locator("table.clinic-results")
    assert "North Shore Pain Center" in results.inner_text()
    shot(page, "search")

    row = results.locator("tr", has_text="North Shore Pain Center")
    with page.expect_navigation():
        row.get_by_role("button", name="Details and booking").click()
    assert page.locator("#score").inner_text().isdigit()
    assert "no data yet" in page.locator("table.score-breakdown").inner_text()
    shot(page, "clinic")

    page.locator("input[name='slot_id']").first.check()
    page.get_by_label("Your name").fill("Jamie Visitor")
    page.get_by_label("Email (for the confirmation)").fill("jamie@example.org")
    page.get_by_label("Send my self-assessment answers to this clinic with my request.", exact=False).check()
    with page.expect_navigation():
        page.get_by_role("button", name="Request this consultation").click()
    reference = page.locator("#reference").inner_text()
    assert reference.startswith("KC-")
    assert "jamie" not in page.url
    shot(page, "booked")

    page.goto("/clinics/north/estimate?protocol=outpatient_series")
    assert "Initial series" in page.locator("table.estimate").inner_text()
    shot(page, "estimate")
    page.goto("/clinics/bay/estimate")
    assert "has not published a price list" in page.locator("#no-price-list").inner_text()

    # The clinic sees the request with the answers.
    login(page, ADMIN)
    page.goto("/directory/queue")
    with page.expect_navigation():
        page.get_by_role("link", name=reference).click()
    assert page.locator("#queue-outcome").inner_text() == "Needs a clinician's review first"
    assert "do you take opioid pain medicines now?\tyes" in page.locator("table.answers").inner_text().lower()
    shot(page, "queue")

    staff = chromium.new_context(base_url=server.url, viewport={"width": 1280, "height": 800}, locale="en-US")
    try:
        nurse_page = staff.new_page()
        login(nurse_page, NURSE)
        nurse_page.goto("/directory/queue")
        assert reference in nurse_page.locator("table.queue").inner_text()
    finally:
        staff.close()
