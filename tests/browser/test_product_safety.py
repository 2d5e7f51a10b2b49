"""Issue 14 items 2 and 5 where a person sees them (Chromium): in a running IV-infusion session the
lot picker offers only the lots whose drug and dosage form fit (the compounded nasal-spray lot is
left out, and the page says so); on the patient record an allergy is picked from the coded list,
and a Ketalar allergy makes screening a hypersensitivity hard stop."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SECRET_KEY, Server

NURSE = "nurse.product.{slug}"  # made by this module: no other browser test logs in as this nurse


def _settings(server: Server) -> Any:
    from ketacare.config import Environment, load_settings

    return load_settings(
        environment=Environment.test, data_dir=server.data_dir, database_url="", secret_key=SECRET_KEY
    )


@pytest.fixture(scope="module")
def iv_session(server: Server) -> tuple[int, str]:
    """A running IV-infusion session of the demo and its clinic's slug."""
    row = server.sql_row(
        "SELECT ts.id, c.slug FROM treatment_sessions ts JOIN clinics c ON c.id = ts.clinic_id "
        "WHERE ts.status = 'running' AND ts.route = 'iv_infusion' AND ts.drug = 'ketamine' "
        "ORDER BY ts.id LIMIT 1"
    )
    return int(row[0]), str(row[1])


@pytest.fixture(scope="module")
def nurse(server: Server, iv_session: tuple[int, str]) -> str:
    from ketacare.auth import service as auth
    from ketacare.auth.roles import Role
    from ketacare.db import make_engine, make_sessionmaker, transaction
    from ketacare.demo import DEMO_PASSWORD

    username = NURSE.format(slug=iv_session[1])
    engine = make_engine(_settings(server).resolved_database_url)
    try:
        with transaction(make_sessionmaker(engine)) as db:
            clinic = auth.clinic_by_slug(db, iv_session[1])
            auth.create_user(
                db, None, clinic.id, auth.NewUser(username, "Prod Uct RN", Role.nurse, DEMO_PASSWORD)
            )
    finally:
        engine.dispose()
    return username


def test_the_lot_picker_offers_only_lots_that_fit_the_route(
    page, server: Server, login, iv_session, nurse
) -> None:  # type: ignore[no-untyped-def]
    session_id, slug = iv_session
    in_stock = server.scalar(
        "SELECT count(*) FROM ledger_lots l JOIN ledger_products p ON p.id = l.product_id "
        "JOIN clinics c ON c.id = l.clinic_id WHERE c.slug = ? AND l.balance_ug > 0 "
        "AND p.dosage_form = 'nasal spray'",
        slug,
    )
    assert in_stock, "the demo stocks a compounded nasal-spray lot"
    login(page, nurse)
    page.goto(f"/sessions/{session_id}")
    picker = page.locator("#administration-form").get_by_label("Lot (controlled-substance ledger)")
    expect(picker).to_be_visible()
    options = picker.locator("option").all_inner_texts()[1:]
    assert options, "fitting lots are offered"
    assert all("injection, solution" in o for o in options), options
    assert not any("nasal spray" in o for o in options), options
    note = page.locator("#lot-fit-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("do not fit and are not offered")


def test_an_allergy_picked_as_ketalar_stops_ketamine_at_screening(
    page, server: Server, login, iv_session, nurse
) -> None:  # type: ignore[no-untyped-def]
    slug = iv_session[1]
    patient_id = server.scalar(
        "SELECT p.id FROM patients p JOIN clinics c ON c.id = p.clinic_id WHERE c.slug = ? "
        "ORDER BY p.id DESC LIMIT 1",
        slug,
    )
    login(page, nurse)
    page.goto(f"/patients/{patient_id}")
    page.locator("#allergies summary").click()
    picker = page.get_by_label("Substance (coded list)")
    expect(picker).to_be_visible()
    picker.select_option(label="Ketalar (brand of ketamine)")
    page.get_by_label("Reaction").fill("rash and wheeze")
    with page.expect_navigation():
        page.get_by_role("button", name="Add allergy").click()
    expect(page.locator("#allergies")).to_contain_text("(coded: Ketalar (brand of ketamine))")
    page.goto(f"/patients/{patient_id}/eligibility")
    expect(page.locator("body")).to_contain_text("Not eligible: hard stop")
    expect(page.locator("body")).to_contain_text("ketamine or esketamine allergy on the record")
