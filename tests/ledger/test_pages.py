"""The ledger's pages and JSON API through the real log-in: who may read and write, witnessed
forms, re-authentication, the FDA warning wherever a compounded product is chosen."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select, update

from ketacare.auth.models import LoginSession
from ketacare.ledger.models import Investigation, LedgerEntry, LedgerSettings, LossReport, Lot, Registration
from tests.helpers import PASSWORD, audit_entries, clinic_today, count, is_problem
from tests.ledger.conftest import SUPPLIER_DEA
from tests.test_permissions import _markers, all_routes

TOMORROW_YEAR = (clinic_today() + dt.timedelta(days=365)).isoformat()


def _ledger_routes(app) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    found = []
    for route in all_routes(app.routes):
        if isinstance(route, APIRoute) and ("/ledger" in route.path):
            [marker] = [m for m in _markers(route.dependant) if m.startswith("ledger:")]
            for method in sorted(route.methods - {"HEAD"}):
                found.append((method, route.path, marker))
    return found


def _url(path: str, stock) -> str:  # type: ignore[no-untyped-def]
    return (
        path.replace("{lot_id}", str(stock.lot_50.id))
        .replace("{product_id}", str(stock.vial_50.id))
        .replace("{name}", "balances")
        .replace("{investigation_id}", "1")
        .replace("{report_id}", "1")
    )


def test_every_ledger_route_declares_a_ledger_permission(app) -> None:  # type: ignore[no-untyped-def]
    routes = _ledger_routes(app)
    assert len(routes) >= 50
    sensitive = {(m, p) for m, p, marker in routes if marker.endswith("(sensitive)")}
    assert ("POST", "/ledger/lots/{lot_id}/waste") in sensitive
    assert ("POST", "/api/v1/ledger/lots/{lot_id}/waste") in sensitive
    assert ("POST", "/ledger/lots/{lot_id}/destruction") in sensitive
    assert ("POST", "/api/v1/ledger/lots/{lot_id}/destructions") in sensitive
    assert ("POST", "/ledger/lots/{lot_id}/adjustment") in sensitive
    assert ("POST", "/api/v1/ledger/lots/{lot_id}/adjustments") in sensitive


@pytest.mark.parametrize("who", ["researcher", "patient_a"])
def test_people_without_ledger_access_are_refused_everywhere(app, as_role, stock, who: str) -> None:  # type: ignore[no-untyped-def]
    client = as_role(who)
    for method, path, _ in _ledger_routes(app):
        response = client.api(method, _url(path, stock), json={})
        assert response.status_code == 403, (method, path, response.status_code)


def test_the_auditor_reads_everything_and_writes_nothing(app, as_role, db, stock) -> None:  # type: ignore[no-untyped-def]
    auditor = as_role("auditor")
    entries = count(db, LedgerEntry)
    for method, path, marker in _ledger_routes(app):
        url = _url(path, stock)
        if marker.startswith("ledger:read"):
            if method == "GET" and "{" not in path:
                assert auditor.get(url).status_code == 200, url
            continue
        response = auditor.api(method, url, json={})
        assert response.status_code == 403, (method, path, response.status_code)
    assert auditor.get(f"/ledger/lots/{stock.lot_50.id}").status_code == 200
    assert "Record the waste" not in auditor.get(f"/ledger/lots/{stock.lot_50.id}").text
    assert count(db, LedgerEntry) == entries


def test_nurses_cannot_do_the_admins_tasks(as_role, stock) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    lot = stock.lot_50.id
    for url in (
        f"/ledger/lots/{lot}/adjustment",
        f"/ledger/lots/{lot}/transfer",
        f"/ledger/lots/{lot}/return",
        "/ledger/registrations",
        "/ledger/products",
        "/ledger/settings",
    ):
        assert nurse.post(url, data={}).status_code == 403, url


def test_another_clinic_sees_no_lot_of_ours(as_role, stock) -> None:  # type: ignore[no-untyped-def]
    outsider = as_role("outsider_nurse")
    assert outsider.get(f"/ledger/lots/{stock.lot_50.id}").status_code == 404
    assert is_problem(outsider.api("GET", f"/api/v1/ledger/lots/{stock.lot_50.id}"), 404)
    assert outsider.api("GET", "/api/v1/ledger/lots").json() == []
    refused = outsider.api(
        "POST",
        f"/api/v1/ledger/lots/{stock.lot_50.id}/theft-loss",
        json={
            "kind": "theft",
            "amount": 1,
            "discovered_at": dt.datetime.now(dt.UTC).isoformat(),
            "description": "x y z",
        },
    )
    assert is_problem(refused, 403)  # thefts and losses are the admin's to record


def test_a_witnessed_waste_from_the_lot_page(as_role, world, db, stock) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    form = {
        "amount": "0.5",
        "unit": "ml",
        "reason": "Remainder after the dose",
        "witness_user_id": str(world.users["prescriber"].id),
        "witness_password": PASSWORD,
    }
    done = nurse.post(f"/ledger/lots/{stock.lot_50.id}/waste", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?saved=waste#entries")
    page = nurse.get(done.headers["location"])
    assert "975 mg (19.5 mL)" in page.text and "witness Prescriber (prescriber.t)" in page.text


def test_a_wrong_witness_password_shows_the_form_again_and_is_audited(as_role, world, db, stock) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    form = {
        "amount": "25",
        "unit": "mg",
        "reason": "Remainder after the dose",
        "witness_user_id": str(world.users["prescriber"].id),
        "witness_password": "a wrong password",
    }
    entries = count(db, LedgerEntry)
    page = nurse.post(f"/ledger/lots/{stock.lot_50.id}/waste", data=form)
    assert page.status_code == 422
    assert "The witness&#39;s password is not correct." in page.text
    assert 'value="Remainder after the dose"' in page.text  # what was typed is kept...
    assert "a wrong password" not in page.text  # ...but never a password
    assert count(db, LedgerEntry) == entries
    [failure] = audit_entries(db, "ledger.waste.witness")
    assert failure.outcome == "failure" and failure.username == "nurse.t"


def test_waste_destruction_and_adjustment_need_a_fresh_password(app, as_role, db, world, stock) -> None:  # type: ignore[no-untyped-def]
    nurse, admin = as_role("nurse"), as_role("admin")
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    db.execute(update(LoginSession).values(reauthenticated_at=stale))
    db.commit()
    lot = stock.lot_50.id
    for client, url in (
        (nurse, f"/ledger/lots/{lot}/waste"),
        (nurse, f"/ledger/lots/{lot}/destruction"),
        (admin, f"/ledger/lots/{lot}/adjustment"),
        (admin, "/ledger/settings"),
    ):
        response = client.post(url, data={"amount": "1"}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/reauth"), url
    assert is_problem(nurse.api("POST", f"/api/v1/ledger/lots/{lot}/waste", json={}), 401)


def test_the_json_api_for_a_delivery_and_a_waste(as_role, world, db, stock) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    body = {
        "registration_id": stock.registration.id,
        "product_id": stock.vial_10.id,
        "lot_number": "API-1",
        "expires_on": TOMORROW_YEAR,
        "supplier": "Acme",
        "supplier_dea_number": SUPPLIER_DEA,
        "invoice_number": "INV-77",
        "containers": 2,
    }
    created = admin.api("POST", "/api/v1/ledger/receipts", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["change_mg"] == 400 and created.json()["detail"]["invoice_number"] == "INV-77"
    lot_id = created.json()["lot_id"]
    wasted = as_role("nurse").api(
        "POST",
        f"/api/v1/ledger/lots/{lot_id}/waste",
        json={
            "amount": 5,
            "reason": "Remainder",
            "witness_user_id": world.users["prescriber"].id,
            "witness_password": PASSWORD,
        },
    )
    assert wasted.status_code == 201, wasted.text
    assert wasted.json()["balance_after_mg"] == 395
    lot = admin.api("GET", f"/api/v1/ledger/lots/{lot_id}").json()
    assert [e["kind"] for e in lot["entries"]] == ["receipt", "waste"] and lot["balance_ml"] == 39.5
    bad_dea = admin.api("POST", "/api/v1/ledger/receipts", json={**body, "supplier_dea_number": "PS7654320"})
    assert is_problem(bad_dea, 422) and "check digit" in bad_dea.text
    verified = as_role("auditor").api("POST", "/api/v1/ledger/verify")
    assert verified.json()["ok"] is True and verified.json()["checked"] == 4


def test_the_fda_warning_wherever_a_compounded_product_is_chosen(as_role, db, stock) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    assert "FDA warning: compounded ketamine" in nurse.get(f"/ledger/products/{stock.troche.id}").text
    assert "FDA warning" not in nurse.get(f"/ledger/products/{stock.vial_50.id}").text
    assert "FDA warning: compounded ketamine" in nurse.get("/ledger/receive").text
    created = as_role("admin").api(
        "POST",
        "/api/v1/ledger/receipts",
        json={
            "registration_id": stock.registration.id,
            "product_id": stock.troche.id,
            "lot_number": "TRO-9",
            "expires_on": TOMORROW_YEAR,
            "supplier": "Compounding pharmacy",
            "supplier_dea_number": SUPPLIER_DEA,
            "invoice_number": "C-1",
            "containers": 10,
        },
    )
    lot_id = created.json()["lot_id"]
    assert "FDA warning: compounded ketamine" in nurse.get(f"/ledger/lots/{lot_id}").text
    assert "FDA warning" not in nurse.get(f"/ledger/lots/{stock.lot_50.id}").text
    available = {
        lot["lot_number"]: lot for lot in nurse.api("GET", "/api/v1/ledger/lots?available=true").json()
    }
    troche = available["TRO-9"]["product"]
    assert troche["warning"] and troche["home_use_needs_acknowledgement"] is True
    assert available["L50-A"]["product"]["warning"] is None


def test_a_delivery_from_the_page_and_a_refused_one(as_role, db, stock) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    form = {
        "registration_id": str(stock.registration.id),
        "product_id": str(stock.vial_50.id),
        "lot_number": "PAGE-1",
        "expires_on": TOMORROW_YEAR,
        "containers": "4",
        "received_at": "2026-01-05T09:30",
        "invoice_number": "INV-9",
        "supplier": "Acme",
        "supplier_dea_number": "PS7654321",
    }
    lots = count(db, Lot)
    refused = admin.post("/ledger/receive", data=form)
    assert refused.status_code == 422 and "check digit" in refused.text and count(db, Lot) == lots
    done = admin.post(
        "/ledger/receive", data={**form, "supplier_dea_number": SUPPLIER_DEA}, follow_redirects=False
    )
    assert done.status_code == 303
    entry = db.execute(select(LedgerEntry).order_by(LedgerEntry.id.desc())).scalars().first()
    db.refresh(entry)
    # 09:30 in New York on 5 January is 14:30 UTC: the actual date of receipt, in clinic time
    assert entry.occurred_at == dt.datetime(2026, 1, 5, 14, 30, tzinfo=dt.UTC)
    assert entry.change_ug == 2_000_000


def test_inventories_investigations_and_losses_from_the_pages(as_role, world, db, stock) -> None:  # type: ignore[no-untyped-def]
    nurse, admin = as_role("nurse"), as_role("admin")
    page = nurse.get("/ledger/inventory")
    assert "Biennial inventory" in page.text and "lot OPEN-10" in page.text
    counted = nurse.post(
        "/ledger/inventory/biennial",
        data={
            "registration_id": str(stock.registration.id),
            f"counted_{stock.lot_50.id}": "1000",
            f"counted_{stock.lot_10.id}": "13",
            f"unit_{stock.lot_10.id}": "ml",
        },
        follow_redirects=False,
    )
    assert counted.status_code == 303, counted.text
    investigation = db.execute(select(Investigation)).scalar_one()
    assert investigation.discrepancy_ug == -20_000
    assert "−20 mg (2 mL)" in nurse.get("/ledger/investigations").text
    noted = nurse.post(f"/ledger/investigations/{investigation.id}/notes", data={"text": "Checked the bin"})
    assert noted.status_code == 200 and "Checked the bin" in noted.text  # back on the list
    short = admin.post(f"/ledger/investigations/{investigation.id}/close", data={"outcome": "done"})
    assert short.status_code == 422
    closed = admin.post(
        f"/ledger/investigations/{investigation.id}/close", data={"outcome": "Spill recorded late; adjusted"}
    )
    assert closed.status_code == 200  # followed to the list
    db.refresh(investigation)
    assert investigation.status == "closed"

    theft = admin.post(
        f"/ledger/lots/{stock.lot_50.id}/theft-loss",
        data={"kind": "theft", "amount": "1", "unit": "ml", "discovered_at": "", "description": "Vial gone"},
    )
    assert theft.status_code == 422 and "discovered_at" in theft.text
    theft = admin.post(
        f"/ledger/lots/{stock.lot_50.id}/theft-loss",
        data={
            "kind": "theft",
            "amount": "1",
            "unit": "ml",
            "discovered_at": dt.datetime.now(ZoneInfo(world.clinic.time_zone)).strftime("%Y-%m-%dT%H:%M"),
            "description": "Vial gone",
        },
        follow_redirects=False,
    )
    assert theft.status_code == 303
    report = db.execute(select(LossReport)).scalar_one()
    dashboard = admin.get("/ledger").text
    assert f'id="due-loss-{report.id}"' in dashboard and "Form 106 due" in dashboard
    assert (
        admin.post(f"/ledger/losses/{report.id}/notice", data={"reference": "DEA Boston, e-mail"}).status_code
        == 200
    )
    assert (
        admin.post(f"/ledger/losses/{report.id}/form106", data={"reference": "DEA-106-123"}).status_code
        == 200
    )
    db.refresh(report)
    assert report.notice_reference == "DEA Boston, e-mail" and report.form106_reference == "DEA-106-123"
    assert f'id="due-loss-{report.id}"' not in admin.get("/ledger").text


def test_initial_inventory_page_for_a_new_registration(as_role, db, stock) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    added = admin.post(
        "/ledger/registrations",
        data={"dea_number": "bk2718281", "location_name": "Satellite", "address": "2 Side St", "state": "ma"},
        follow_redirects=False,
    )
    assert added.status_code == 303
    reg = db.execute(select(Registration).where(Registration.dea_number == "BK2718281")).scalar_one()
    assert reg.state == "MA"
    page = admin.get(f"/ledger/inventory?registration_id={reg.id}")
    assert "Initial inventory: Satellite" in page.text
    nothing = admin.post("/ledger/inventory/initial", data={"registration_id": str(reg.id)})
    assert nothing.status_code == 422 and "nothing on hand" in nothing.text
    row = {
        "product_id": "",
        "lot_number": "",
        "expires_on": "",
        "supplier": "",
        "counted": "",
        "unit": "mg",
        "method": "exact",
    }
    filled = {
        "product_id": str(stock.vial_50.id),
        "lot_number": "SAT-1",
        "expires_on": TOMORROW_YEAR,
        "supplier": "Acme",
        "counted": "-5",
        "unit": "mg",
        "method": "exact",
    }
    form = {"registration_id": [str(reg.id)], **{k: [row[k], filled[k]] for k in row}}
    bad = admin.client.post("/ledger/inventory/initial", data={**form, "csrf_token": admin.csrf})
    assert bad.status_code == 422 and "Row 2" in bad.text  # the form's second row, not the first filled one
    form["counted"] = ["", "250"]
    done = admin.client.post(
        "/ledger/inventory/initial", data={**form, "csrf_token": admin.csrf}, follow_redirects=False
    )
    assert done.status_code == 303
    lot = db.execute(select(Lot).where(Lot.lot_number == "SAT-1")).scalar_one()
    assert lot.balance_ug == 250_000 and lot.registration_id == reg.id


def test_retention_is_at_least_two_years_and_saved_with_its_reason(as_role, db, world, stock) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    page = admin.get("/ledger/setup")
    assert 'id="retention-years">2 years' in page.text and "never offers to purge" in page.text
    refused = admin.post("/ledger/settings", data={"retention_years": "1", "expiry_warning_days": "90"})
    assert refused.status_code == 422 and "at least 2 years" in refused.text
    saved = admin.post(
        "/ledger/settings",
        data={"retention_years": "5", "retention_basis": "State board rule", "expiry_warning_days": "60"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert 'id="retention-years">5 years (State board rule)' in admin.get("/ledger/setup").text
    assert db.get(LedgerSettings, world.clinic.id).retention_years == 5  # type: ignore[union-attr]
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.begin_nested():
        db.execute(update(LedgerSettings).values(retention_years=1))


def test_the_verify_button(as_role, stock) -> None:  # type: ignore[no-untyped-def]
    page = as_role("auditor").post("/ledger/verify")
    assert (
        page.status_code == 200 and "The ledger is intact" in page.text and "2 entries verified" in page.text
    )
