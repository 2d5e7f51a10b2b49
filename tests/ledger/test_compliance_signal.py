"""The yes/no the public directory shows about a clinic's controlled-substance records (issue 4)."""

from __future__ import annotations

from sqlalchemy import text

from ketacare.ledger import verification
from tests.ledger.conftest import setup_stock


def test_compliance_signal(db, world) -> None:  # type: ignore[no-untyped-def]
    assert verification.compliance_signal(db, world.clinic.id).compliant is None
    stock = setup_stock(db, world)
    signal = verification.compliance_signal(db, world.clinic.id)
    assert signal.compliant is True, signal.detail
    # a balance changed behind the ledger's back: the chain no longer accounts for it
    db.execute(
        text("UPDATE ledger_lots SET balance_ug = balance_ug - 1000 WHERE id = :id"), {"id": stock.lot_50.id}
    )
    db.commit()
    verification._VERIFIED.clear()  # the public signal re-walks a chain when its head moves or every 10 min
    broken = verification.compliance_signal(db, world.clinic.id)
    assert broken.compliant is False and "does not verify" in broken.detail


def test_an_entry_dated_before_2000_is_refused(as_role, db, world) -> None:  # type: ignore[no-untyped-def]
    stock = setup_stock(db, world)
    admin = as_role("admin")
    body = {"kind": "theft", "amount": 1, "discovered_at": "0001-01-01T00:00:00Z", "description": "Vial gone"}
    r = admin.api("POST", f"/api/v1/ledger/lots/{stock.lot_50.id}/theft-loss", json=body)
    assert r.status_code == 422 and "2000" in r.text
    assert admin.get("/ledger/reports/balances?date_to=9999-12-31").status_code == 422
