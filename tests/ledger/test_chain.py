"""The ledger is append-only in the database, and its hash chain finds an edited, inserted or
deleted entry, or a balance changed outside KetaCare. Runs on the backend under test."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ketacare.ledger import chain, inventories, movements, setup, verification
from ketacare.ledger.models import LedgerEntry
from tests.ledger.conftest import Stock


def _entries(db, stock: Stock, world, n: int = 4) -> list[LedgerEntry]:  # type: ignore[no-untyped-def]
    return [
        movements.record_administration(
            db,
            stock.nurse,
            lot_id=stock.lot_50.id,
            amount_mg=10 + k,
            patient_id=world.patient_a.id,
            session_id=stock.session_id,
            given_at=dt.datetime.now(dt.UTC),
            drug="ketamine",
            route="iv_infusion",
        )
        for k in range(n)
    ]


def _drop_append_only(db) -> None:  # type: ignore[no-untyped-def]
    """What an attacker with database access would do first. Rolled back with the test."""
    if db.get_bind().dialect.name == "sqlite":
        for table in ("ledger_entries", "ledger_inventories"):
            db.execute(text(f"DROP TRIGGER {table}_no_update"))
            db.execute(text(f"DROP TRIGGER {table}_no_delete"))
    else:
        for table in ("ledger_entries", "ledger_inventories"):
            db.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))


def test_an_intact_ledger_verifies(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    _entries(db, stock, world)
    result = chain.verify_clinic(db, world.clinic.id)
    assert result.ok and result.checked == 2 + 4  # initial inventory, receipt, four doses


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_inventories"])
def test_the_database_refuses_update_and_delete(db, world, stock, table: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
        db.execute(text(f"UPDATE {table} SET clinic_id = clinic_id"))
    with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
        db.execute(text(f"DELETE FROM {table}"))


def test_an_edited_entry_is_named(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    doses = _entries(db, stock, world)
    edited = doses[1].seq
    _drop_append_only(db)
    db.execute(text("UPDATE ledger_entries SET change_ug = -1000 WHERE id = :i"), {"i": doses[1].id})
    db.expire_all()
    result = chain.verify_clinic(db, world.clinic.id)
    assert not result.ok and result.first_bad_seq == edited
    assert "altered" in result.problem


def test_a_deleted_entry_is_found(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    doses = _entries(db, stock, world)
    gone = doses[1].seq
    _drop_append_only(db)
    db.execute(text("DELETE FROM ledger_entries WHERE id = :i"), {"i": doses[1].id})
    db.expire_all()
    result = chain.verify_clinic(db, world.clinic.id)
    assert result.first_bad_seq == gone and "missing" in result.problem


def test_a_deleted_last_entry_is_found(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    doses = _entries(db, stock, world)
    _drop_append_only(db)
    db.execute(text("DELETE FROM ledger_entries WHERE id = :i"), {"i": doses[-1].id})
    db.expire_all()
    result = chain.verify_clinic(db, world.clinic.id)
    assert not result.ok and "removed from the end" in result.problem


def test_an_inserted_entry_is_found(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    doses = _entries(db, stock, world)
    target = doses[1]
    target_seq = target.seq
    _drop_append_only(db)
    # Make room, forge a self-consistent entry with a wrong link, close the gap again.
    db.execute(
        text("UPDATE ledger_entries SET seq = seq + 1000 WHERE clinic_id = :c AND seq > :s"),
        {"c": world.clinic.id, "s": target.seq},
    )
    db.expunge_all()
    forged = LedgerEntry(
        clinic_id=world.clinic.id,
        seq=target.seq + 1,
        recorded_at=target.recorded_at,
        occurred_at=target.occurred_at,
        kind="receipt",
        registration_id=target.registration_id,
        lot_id=target.lot_id,
        change_ug=5_000_000,
        balance_after_ug=0,
        actor_name="nobody",
        reason="",
        detail="{}",
        prev_hash="f" * 64,
        entry_hash="",
    )
    forged.entry_hash = chain.entry_hash(forged, forged.prev_hash)
    db.add(forged)
    db.flush()
    db.execute(
        text("UPDATE ledger_entries SET seq = seq - 999 WHERE clinic_id = :c AND seq > 1000"),
        {"c": world.clinic.id},
    )
    db.expire_all()
    result = chain.verify_clinic(db, world.clinic.id)
    assert not result.ok and result.first_bad_seq == target_seq + 1
    assert "does not follow" in result.problem


def test_a_balance_changed_outside_the_ledger_is_found(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    _entries(db, stock, world)
    db.execute(
        text("UPDATE ledger_lots SET balance_ug = balance_ug + 500000 WHERE id = :i"), {"i": stock.lot_50.id}
    )
    db.expire_all()
    result = chain.verify_clinic(db, world.clinic.id)
    assert not result.ok and f"lot {stock.lot_50.id}" in result.problem and "differs" in result.problem


def test_each_clinic_has_its_own_chain(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    _entries(db, stock, world, 2)
    other = setup_stock_for_other(db, world)
    assert other == 1  # the other clinic's first entry starts its own chain at 1
    assert chain.verify_clinic(db, world.clinic.id).ok and chain.verify_clinic(db, world.other_clinic.id).ok
    assert set(chain.clinics_with_ledgers(db)) >= {world.clinic.id, world.other_clinic.id}


def setup_stock_for_other(db, world) -> int:  # type: ignore[no-untyped-def]
    from ketacare.auth.models import Role, User
    from ketacare.ledger.schemas import InitialInventoryIn, RegistrationIn
    from tests.ledger.conftest import principal

    admin = User(
        clinic_id=world.other_clinic.id,
        username="admin.other",
        full_name="Other Admin",
        role=Role.clinic_admin.value,
        password_hash=world.users["outsider"].password_hash,
    )
    db.add(admin)
    db.flush()
    actor = principal(admin)
    reg = setup.create_registration(
        db,
        actor,
        RegistrationIn(dea_number="AB1234563", location_name="Other", address="Elsewhere", state="IL"),
    )
    inventories.take_initial_inventory(db, actor, InitialInventoryIn(registration_id=reg.id))
    first = db.query(LedgerEntry).filter_by(clinic_id=world.other_clinic.id).one()
    return first.seq


def test_verifying_is_audited(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import audit_entries

    assert verification.verify(db, stock.admin).ok
    [entry] = audit_entries(db, "ledger.verify")
    assert entry.outcome == "success" and "entries intact" in entry.detail
