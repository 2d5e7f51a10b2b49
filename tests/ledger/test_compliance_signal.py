"""The yes/no the public directory shows about a clinic's controlled-substance records (issue 4)."""

from __future__ import annotations

from sqlalchemy import text

from ketacare.ledger import service
from tests.ledger.conftest import setup_stock


def test_compliance_signal(db, world) -> None:  # type: ignore[no-untyped-def]
    assert service.compliance_signal(db, world.clinic.id).compliant is None
    stock = setup_stock(db, world)
    signal = service.compliance_signal(db, world.clinic.id)
    assert signal.compliant is True, signal.detail
    # a balance changed behind the ledger's back: the chain no longer accounts for it
    db.execute(
        text("UPDATE ledger_lots SET balance_ug = balance_ug - 1000 WHERE id = :id"), {"id": stock.lot_50.id}
    )
    db.commit()
    broken = service.compliance_signal(db, world.clinic.id)
    assert broken.compliant is False and "does not verify" in broken.detail
