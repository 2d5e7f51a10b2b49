"""Reports for inspection, as printable pages and CSV, produced by the auditor: running balance per
lot, dispensing log per patient, inventories with discrepancies, Form 41 records, thefts and
losses with their due dates. Reading them is audited."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from ketacare.ledger import inventories, movements
from ketacare.ledger.schemas import BiennialInventoryIn, CountLineIn, DestructionIn, TheftLossIn
from tests.helpers import PASSWORD, audit_entries, clinic_today
from tests.ledger.conftest import Stock


def _activity(db, world, stock: Stock) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    for patient, mg in ((world.patient_a, 28.3), (world.patient_b, 35.0), (world.patient_a, 30.0)):
        movements.record_administration(
            db,
            stock.nurse,
            lot_id=stock.lot_50.id,
            amount_mg=mg,
            patient_id=patient.id,
            session_id=stock.session_id,
            given_at=now,
            drug="ketamine",
            route="iv_infusion",
        )
    movements.record_waste(
        db,
        stock.nurse,
        lot_id=stock.lot_50.id,
        amount_mg=6.7,
        reason="Remainder of vial",
        witness_user_id=world.users["prescriber"].id,
        witness_password=PASSWORD,
    )
    movements.record_destruction(
        db,
        stock.prescriber,
        stock.lot_50.id,
        DestructionIn(
            packages=1,
            package_state="partial",
            amount=100,
            method="Drug disposal kit",
            location="Drug room",
            witness_user_id=world.users["nurse"].id,
            witness_password=PASSWORD,
            witness2_user_id=world.users["admin"].id,
            witness2_password=PASSWORD,
        ),
    )
    movements.record_theft_loss(
        db,
        stock.admin,
        stock.lot_10.id,
        TheftLossIn(kind="theft", amount=10, discovered_at=now, description="Broken cabinet lock"),
    )
    counts = [
        CountLineIn(lot_id=stock.lot_50.id, counted=799.0),
        CountLineIn(lot_id=stock.lot_10.id, counted=140),
    ]
    inventories.take_biennial_inventory(
        db, stock.nurse, BiennialInventoryIn(registration_id=stock.registration.id, lines=counts)
    )
    db.commit()


@pytest.fixture
def active(db, world, stock) -> Stock:  # type: ignore[no-untyped-def]
    _activity(db, world, stock)
    return stock


def _csv(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_the_auditor_prints_the_whole_inspection_report(as_role, world, active) -> None:  # type: ignore[no-untyped-def]
    page = as_role("auditor").get("/ledger/reports/inspection")
    assert page.status_code == 200
    html = page.text
    for part in (
        "report-balances",
        "report-dispensing",
        "report-inventory",
        "report-destructions",
        "report-losses",
    ):
        assert f'id="{part}"' in html
    assert "AB1234563" in html and "Test Pain Clinic" in html
    assert "TST-900001" in html and "TST-900002" in html  # patients by record number
    assert "Lovelace" not in html  # never a name for the auditor
    assert "Drug disposal kit" in html and "Nurse (nurse.t); Admin (admin.t)" in html
    assert "Broken cabinet lock" in html


def test_running_balance_per_lot(as_role, world, active) -> None:  # type: ignore[no-untyped-def]
    rows = _csv(as_role("auditor").get(f"/ledger/reports/balances.csv?lot={active.lot_50.id}"))
    assert [r["kind"] for r in rows] == [
        "receipt",
        "administration",
        "administration",
        "administration",
        "waste",
        "destruction",
        "inventory_biennial",
    ]
    assert [r["balance_mg"] for r in rows] == [
        "1000.000",
        "971.700",
        "936.700",
        "906.700",
        "900.000",
        "800.000",
        "800.000",
    ]
    assert rows[0]["reference"].startswith("invoice INV-1001") and rows[4]["reference"].startswith(
        "witness Prescriber"
    )
    assert rows[1]["balance_ml"] == "19.434" and all(len(r["entry_hash"]) == 64 for r in rows)
    page = as_role("auditor").get(f"/ledger/reports/balances?lot={active.lot_50.id}")
    assert "971.7 mg (19.434 mL)" in page.text


def test_dispensing_log_per_patient(as_role, world, db, active) -> None:  # type: ignore[no-untyped-def]
    auditor = as_role("auditor")
    rows = _csv(auditor.get("/ledger/reports/dispensing.csv?patient=tst-900001"))
    assert [(r["patient_record_number"], r["amount_mg"], r["administered_by"]) for r in rows] == [
        ("TST-900001", "28.300", "Nurse (nurse.t)"),
        ("TST-900001", "30.000", "Nurse (nurse.t)"),
    ]
    assert rows[0]["substance"] == "Ketamine HCl" and rows[0]["strength_mg_per_ml"] == "50.0"
    assert rows[0]["dosage_form"] == "injection, solution" and rows[0]["lot"] == "L50-A"
    # every patient whose doses were shown is in the audit trail
    assert [e.patient_id for e in audit_entries(db, "ledger.report.dispensing")] == [world.patient_a.id]
    everyone = _csv(auditor.get("/ledger/reports/dispensing.csv"))
    assert len(everyone) == 3
    unknown = auditor.get("/ledger/reports/dispensing?patient=NOPE-1")
    assert unknown.status_code == 422 and "No patient with record number NOPE-1" in unknown.text


def test_inventory_report_shows_discrepancies_and_their_investigations(as_role, world, active) -> None:  # type: ignore[no-untyped-def]
    rows = _csv(as_role("auditor").get("/ledger/reports/inventory.csv"))
    biennial = [r for r in rows if r["kind"] == "biennial"]
    assert [
        (r["lot"], r["book_mg"], r["counted_mg"], r["discrepancy_mg"], r["investigation"]) for r in biennial
    ] == [
        ("L50-A", "800.000", "799.000", "-1.000", "open"),
        ("OPEN-10", "140.000", "140.000", "0.000", ""),
    ]
    assert [r["kind"] for r in rows if r["kind"] == "initial"] == ["initial"]


def test_form_41_records(as_role, world, active) -> None:  # type: ignore[no-untyped-def]
    [row] = _csv(as_role("auditor").get("/ledger/reports/destructions.csv"))
    assert row["ndc"] == "0409-2051-05" and row["name"] == "Ketamine HCl" and row["strength"] == "50 mg/mL"
    assert (
        row["form"] == "injection, solution" and row["packages"] == "1" and row["package_state"] == "partial"
    )
    assert row["total_destroyed_mg"] == "100.0" and row["method"] == "Drug disposal kit"
    assert (
        row["location"] == "Drug room"
        and row["witness"] == "Nurse (nurse.t)"
        and row["witness2"] == "Admin (admin.t)"
    )


def test_theft_and_loss_report_with_due_dates(as_role, world, active) -> None:  # type: ignore[no-untyped-def]
    [row] = _csv(as_role("auditor").get("/ledger/reports/losses.csv"))
    assert row["kind"] == "theft" and row["reportable"] == "yes" and row["amount_mg"] == "10.000"
    assert row["notice_due_on"] and row["form106_due_on"] and row["notice_sent_at"] == ""
    discovered = dt.date.fromisoformat(row["discovered_at"][:10])
    assert dt.date.fromisoformat(row["form106_due_on"]) == discovered + dt.timedelta(days=45)


def test_a_date_range_limits_every_report(as_role, world, active) -> None:  # type: ignore[no-untyped-def]
    future = (clinic_today() + dt.timedelta(days=10)).isoformat()
    auditor = as_role("auditor")
    assert _csv(auditor.get(f"/ledger/reports/dispensing.csv?date_from={future}")) == []
    assert _csv(auditor.get(f"/ledger/reports/losses.csv?date_from={future}")) == []
    bad = auditor.get("/ledger/reports/balances?date_from=22/11/2026")
    assert bad.status_code == 422 and "Use a date like" in bad.text
    assert auditor.get("/ledger/reports/nonsense").status_code == 404


def test_report_reads_are_audited(as_role, world, db, active) -> None:  # type: ignore[no-untyped-def]
    auditor = as_role("auditor")
    for name in ("balances", "inventory", "destructions", "losses"):
        assert auditor.get(f"/ledger/reports/{name}").status_code == 200
        assert audit_entries(db, f"ledger.report.{name}"), name


def test_csv_reports_cannot_carry_a_formula(db, as_role, world, stock) -> None:  # type: ignore[no-untyped-def]
    planted = '=HYPERLINK("http://x","y")'
    movements.record_theft_loss(
        db,
        stock.admin,
        stock.lot_10.id,
        TheftLossIn(kind="loss", amount=1, discovered_at=dt.datetime.now(dt.UTC), description=planted),
    )
    db.commit()
    [row] = _csv(as_role("auditor").get("/ledger/reports/losses.csv"))
    assert row["description"] == "'" + planted and row["amount_mg"] == "1.000"
