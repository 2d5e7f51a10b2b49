"""Issue 8 in the browser: the admin records a delivery, a nurse gives a dose from that lot in a
running session and wastes the remainder in front of a witness, and the auditor prints the
inspection report (Chromium's print to PDF) showing all three."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server
from tests.helpers import clinic_today

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
CLINIC = "north"
SUPPLIER_DEA = "PS7654329"  # a registration number with a valid check digit (tests/ledger)
LOT = "BROWSER-LOT-7"


def submit(page: Any, button: Any) -> None:
    with page.expect_navigation():
        button.click()
    problems = page.locator(".error-summary, p.error").all_inner_texts()
    assert problems == [], f"{page.url}: {problems}"


def test_delivery_administration_waste_and_inspection_report(page, server: Server, login) -> None:  # type: ignore[no-untyped-def]
    session_id = server.scalar(
        "SELECT ts.id FROM treatment_sessions ts JOIN clinics c ON c.id = ts.clinic_id "
        "WHERE c.slug = ? AND ts.status = 'running' ORDER BY ts.id LIMIT 1",
        CLINIC,
    )
    assert session_id is not None, "the demo has a running session"

    # The admin records a delivery from the invoice.
    login(page, f"admin.{CLINIC}")
    page.goto("/ledger/receive")
    page.get_by_label("Product").select_option(index=1)
    page.get_by_label("Lot number").fill(LOT)
    page.get_by_label("Expiry date").fill((clinic_today() + dt.timedelta(days=365)).isoformat())
    page.get_by_label("Containers received").fill("2")
    page.get_by_label("Invoice number").fill("INV-BROWSER-1")
    page.locator("#f-supplier").fill("Acme Pharma")
    page.get_by_label("Supplier's DEA registration").fill(SUPPLIER_DEA)
    submit(page, page.get_by_role("button", name="Record the delivery"))
    expect(page.locator("main")).to_contain_text(LOT)
    page.context.clear_cookies()

    # A nurse gives a bolus from that lot in the running session, then wastes the remainder.
    login(page, f"nurse.{CLINIC}")
    page.goto(f"/sessions/{session_id}")
    given = page.locator("#administration-form")
    given.get_by_label("Entry").select_option("bolus")
    given.get_by_label("Dose (mg)").fill("10")
    lot_choice = given.get_by_label("Lot (controlled-substance ledger)")
    lot_choice.select_option(
        label=next(o for o in lot_choice.locator("option").all_inner_texts() if LOT in o)
    )
    submit(page, given.get_by_role("button", name="Record"))
    expect(page.locator("#given")).to_contain_text(LOT)

    page.locator("#waste summary").click()
    waste = page.locator("#waste-form")
    waste.get_by_label("Lot").select_option(
        label=next(o for o in waste.get_by_label("Lot").locator("option").all_inner_texts() if LOT in o)
    )
    waste.get_by_label("Amount wasted (mg)").fill("40")
    waste.get_by_label("Reason for the waste").fill("Unused remainder of the opened vial")
    waste.get_by_label("Witness (a second nurse or prescriber)").select_option(index=1)
    from ketacare.demo import DEMO_PASSWORD

    waste.get_by_label("Witness's password").fill(DEMO_PASSWORD)
    submit(page, waste.get_by_role("button", name="Record witnessed waste"))
    page.context.clear_cookies()

    # The auditor prints the inspection report.
    login(page, f"auditor.{CLINIC}")
    page.goto("/ledger/reports")
    with page.expect_navigation():
        page.locator("#report-filter").get_by_role("button").first.click()
    report = page.locator("main")
    expect(report).to_contain_text(LOT)
    expect(report).to_contain_text("Dispensing log per patient")
    text = report.inner_text()
    assert "INV-BROWSER-1" in text or "receipt" in text.lower()
    assert "waste" in text.lower()
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "ledger-inspection-report.png"), full_page=True)
    pdf = page.pdf(format="Letter")
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
