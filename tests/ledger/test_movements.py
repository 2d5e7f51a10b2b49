"""Every movement of stock through the service: what it writes, and what it refuses with nothing
half-written (even when the caller catches the refusal and goes on)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from ketacare.audit.models import AuditEntry
from ketacare.auth.models import User
from ketacare.errors import Forbidden, InvalidInput
from ketacare.ledger import chain, inventories, lots, movements, rules, setup
from ketacare.ledger.models import Inventory, LedgerEntry, LedgerHead, LossReport, Lot
from ketacare.ledger.schemas import (
    AdjustmentIn,
    DestructionIn,
    InitialInventoryIn,
    RegistrationIn,
    ReturnIn,
    TheftLossIn,
    TransferIn,
)
from tests.helpers import PASSWORD, audit_entries, clinic_today, count
from tests.ledger.conftest import SECOND_DEA, Stock, principal, receipt

NOW = dt.datetime.now(dt.UTC)


def snapshot(db, clinic_id: int) -> tuple[Any, ...]:  # type: ignore[no-untyped-def]
    """Everything a movement could touch."""
    db.expire_all()
    head = db.get(LedgerHead, clinic_id)
    balances = dict(db.execute(select(Lot.id, Lot.balance_ug)).all())
    return (
        count(db, LedgerEntry),
        head.seq if head else None,
        head.last_hash if head else None,
        count(db, AuditEntry),
        balances,
        count(db, Inventory),
        count(db, LossReport),
    )


def refused(db, clinic_id: int, action, field: str, words: str) -> InvalidInput:  # type: ignore[no-untyped-def]
    before = snapshot(db, clinic_id)
    with pytest.raises(InvalidInput) as caught:
        action()
    assert words in caught.value.errors.get(field, ""), caught.value.errors
    assert snapshot(db, clinic_id) == before, "a refusal changed something"
    return caught.value


def administer(db, stock: Stock, world, **changes: Any) -> LedgerEntry:  # type: ignore[no-untyped-def]
    actor = changes.pop("actor", stock.nurse)
    args: dict[str, Any] = {
        "lot_id": stock.lot_50.id,
        "amount_mg": 28.3,
        "patient_id": world.patient_a.id,
        "session_id": stock.session_id,
        "given_at": NOW,
        "drug": "ketamine",
        "route": "iv_infusion",
    }
    args.update(changes)
    return movements.record_administration(db, actor, **args)


def waste(db, stock: Stock, world, **changes: Any) -> LedgerEntry:  # type: ignore[no-untyped-def]
    args: dict[str, Any] = {
        "lot_id": stock.lot_50.id,
        "amount_mg": 21.7,
        "reason": "Remainder of the vial",
        "witness_user_id": world.users["prescriber"].id,
        "witness_password": PASSWORD,
    }
    args.update(changes)
    return movements.record_waste(db, stock.nurse, **args)


# --- receipts ---------------------------------------------------------------------------------


def test_a_receipt_adds_whole_containers_to_the_lot_with_its_invoice(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    expiry = stock.lot_50.expires_on
    entry = movements.record_receipt(
        db, stock.nurse, receipt(stock.registration.id, stock.vial_50.id, "L50-A", expiry, 3)
    )
    assert entry.kind == "receipt" and entry.change_ug == 3 * 500_000
    assert entry.balance_after_ug == 1_000_000 + 1_500_000
    detail = chain.detail_of(entry)
    assert detail["invoice_number"] == "INV-1001" and detail["supplier_dea_number"] == "PS7654329"
    assert detail["containers"] == 3
    assert db.get(Lot, stock.lot_50.id).balance_ug == 2_500_000  # type: ignore[union-attr]
    assert audit_entries(db)[-1].action == "ledger.receipt"


def test_a_receipt_for_a_known_lot_with_another_expiry_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    wrong = stock.lot_50.expires_on + dt.timedelta(days=30)
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_receipt(
            db, stock.nurse, receipt(stock.registration.id, stock.vial_50.id, "L50-A", wrong)
        ),
        "expires_on",
        "check the label",
    )


def test_a_receipt_before_the_initial_inventory_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    second = setup.create_registration(
        db,
        stock.admin,
        RegistrationIn(dea_number=SECOND_DEA, location_name="Satellite", address="2 Side St", state="MA"),
    )
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_receipt(
            db,
            stock.admin,
            receipt(second.id, stock.vial_50.id, "NEW-1", clinic_today() + dt.timedelta(days=99)),
        ),
        "registration_id",
        "initial inventory",
    )


def test_a_receipt_of_another_clinics_product_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    outsider = principal(world.users["outsider_nurse"])
    with pytest.raises(InvalidInput) as caught:
        movements.record_receipt(
            db, outsider, receipt(stock.registration.id, stock.vial_50.id, "X", clinic_today())
        )
    assert "registration_id" in caught.value.errors


# --- administration ---------------------------------------------------------------------------


def test_an_administration_takes_the_dose_out_of_the_lot(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    entry = administer(db, stock, world)
    assert entry.kind == "administration" and entry.change_ug == -28_300
    assert entry.balance_after_ug == 1_000_000 - 28_300
    assert entry.patient_id == world.patient_a.id and entry.session_id == stock.session_id
    assert entry.actor_name == "Nurse (nurse.t)"
    assert chain.detail_of(entry) == {"record_number": "TST-900001", "route": "iv_infusion"}
    assert chain.verify_clinic(db, world.clinic.id).ok


def test_an_administration_from_an_expired_lot_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    db.execute(
        update(Lot).where(Lot.id == stock.lot_50.id).values(expires_on=clinic_today() - dt.timedelta(days=2))
    )
    db.commit()
    refused(db, world.clinic.id, lambda: administer(db, stock, world), "lot_id", "expired on")
    # given before the expiry (a late entry) is fine: the rule follows the time of the dose
    administer(db, stock, world, given_at=NOW - dt.timedelta(days=3))


def test_an_administration_above_the_balance_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    refused(
        db,
        world.clinic.id,
        lambda: administer(db, stock, world, amount_mg=1000.001),
        "amount_mg",
        "Only 1,000 mg",
    )
    administer(db, stock, world, amount_mg=1000)  # exactly what is left
    assert db.get(Lot, stock.lot_50.id).balance_ug == 0  # type: ignore[union-attr]
    refused(
        db, world.clinic.id, lambda: administer(db, stock, world, amount_mg=0.001), "amount_mg", "Only 0 mg"
    )


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"lot_id": 999_999}, "lot_id", "No such lot"),
        ({"amount_mg": 0}, "amount_mg", "above zero"),
        ({"given_at": NOW + dt.timedelta(hours=1)}, "given_at", "future"),
        ({"given_at": dt.datetime(2026, 1, 1, 9, 0)}, "given_at", "time zone"),
        ({"session_id": 999_999}, "session_id", "No such treatment session"),
    ],
)
def test_an_administration_with_bad_input_is_refused(db, world, stock, changes, field, words) -> None:  # type: ignore[no-untyped-def]
    refused(db, world.clinic.id, lambda: administer(db, stock, world, **changes), field, words)


def test_an_administration_for_a_patient_of_another_clinic_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    refused(
        db,
        world.clinic.id,
        lambda: administer(db, stock, world, patient_id=world.other_patient.id),
        "patient_id",
        "No such patient",
    )


def test_a_refusal_caught_by_the_caller_leaves_the_transaction_usable(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    """The session feature may catch the refusal and carry on in the same transaction."""
    with pytest.raises(InvalidInput):
        administer(db, stock, world, session_id=999_999)
    entry = administer(db, stock, world)
    db.commit()
    assert entry.seq == db.get(LedgerHead, world.clinic.id).seq  # type: ignore[union-attr]
    assert chain.verify_clinic(db, world.clinic.id).ok


def test_only_ledger_writers_record_administrations(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Forbidden):
        administer(db, stock, world, actor=principal(world.users["auditor"]))


def test_available_lots_are_in_stock_and_not_expired_and_flag_compounded(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    movements.record_receipt(
        db,
        stock.admin,
        receipt(stock.registration.id, stock.troche.id, "TRO-1", clinic_today() + dt.timedelta(days=60), 5),
    )
    movements.record_receipt(
        db,
        stock.admin,
        receipt(stock.registration.id, stock.vial_10.id, "OLD-1", clinic_today() + dt.timedelta(days=1)),
    )
    db.execute(
        update(Lot).where(Lot.lot_number == "OLD-1").values(expires_on=clinic_today() - dt.timedelta(days=1))
    )
    administer(db, stock, world, lot_id=stock.lot_10.id, amount_mg=150)  # empties OPEN-10
    choices = {c.lot_number: c for c in lots.available_lots(db, stock.nurse)}
    assert set(choices) == {"L50-A", "TRO-1"}
    troche = choices["TRO-1"]
    assert troche.compounded and troche.warning and "not FDA-approved" in troche.warning
    assert (troche.balance_mg, troche.balance_ml) == (500.0, 5.0)
    assert choices["L50-A"].warning is None and choices["L50-A"].balance_ml == 20.0
    assert "COMPOUNDED" in troche.label


# --- waste ------------------------------------------------------------------------------------


def test_a_witnessed_waste_records_the_witness(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    entry = waste(db, stock, world, session_id=stock.session_id)
    assert entry.kind == "waste" and entry.change_ug == -21_700
    assert entry.witness_id == world.users["prescriber"].id and entry.session_id == stock.session_id
    assert chain.detail_of(entry) == {"witness": "Prescriber (prescriber.t)"}
    assert entry.reason == "Remainder of the vial"


def test_a_waste_witness_must_be_another_active_clinical_user_of_the_clinic(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    users = world.users
    cases = [
        ({"witness_user_id": users["nurse"].id}, "second person"),
        ({"witness_user_id": users["outsider_nurse"].id}, "from your clinic"),
        ({"witness_user_id": users["auditor"].id}, "nurse or a prescriber"),
        ({"witness_user_id": users["admin"].id}, "nurse or a prescriber"),
        ({"witness_user_id": 999_999}, "from your clinic"),
    ]
    for changes, words in cases:
        refused(
            db,
            world.clinic.id,
            lambda changes=changes: waste(db, stock, world, **changes),
            "witness_user_id",
            words,
        )
    db.execute(update(User).where(User.id == users["prescriber"].id).values(is_active=False))
    refused(db, world.clinic.id, lambda: waste(db, stock, world), "witness_user_id", "not active")


def test_a_wrong_witness_password_is_refused_and_the_attempt_is_kept_for_the_audit(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    exc = refused(
        db,
        world.clinic.id,
        lambda: waste(db, stock, world, witness_password="not it at all"),
        "witness_user_id",
        "password",
    )
    assert [(a.action, a.outcome) for a in exc.audit] == [("ledger.waste.witness", "failure")]


def test_a_waste_larger_than_what_remains_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    refused(db, world.clinic.id, lambda: waste(db, stock, world, amount_mg=1500), "amount", "Only 1,000 mg")
    refused(db, world.clinic.id, lambda: waste(db, stock, world, reason="  "), "reason", "Say why")


# --- transfer, return, destruction, theft and loss, adjustment --------------------------------


def test_a_transfer_between_own_registrations_moves_the_lot_in_one_step(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    second = setup.create_registration(
        db,
        stock.admin,
        RegistrationIn(dea_number=SECOND_DEA, location_name="Satellite", address="2 Side St", state="MA"),
    )
    inventories.take_initial_inventory(db, stock.admin, InitialInventoryIn(registration_id=second.id))
    body = TransferIn(amount=4, unit="ml", to_registration_id=second.id, reason="Satellite opening week")
    out = movements.record_transfer(db, stock.admin, stock.lot_50.id, body)
    assert out.change_ug == -200_000 and out.balance_after_ug == 800_000
    into = db.execute(select(LedgerEntry).where(LedgerEntry.seq == out.seq + 1)).scalar_one()
    assert into.kind == "transfer_in" and into.change_ug == 200_000 and into.registration_id == second.id
    moved = db.get(Lot, into.lot_id)
    assert moved.lot_number == "L50-A" and moved.expires_on == stock.lot_50.expires_on  # type: ignore[union-attr]
    assert chain.detail_of(out)["recipient_dea_number"] == SECOND_DEA
    assert chain.verify_clinic(db, world.clinic.id).ok


def test_transfers_and_returns_to_other_registrants(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    external = TransferIn(
        amount=100,
        recipient_name="Other Clinic",
        recipient_dea_number="BK2718281",
        recipient_address="3 Road",
        reason="Loan",
    )
    assert movements.record_transfer(db, stock.admin, stock.lot_50.id, external).balance_after_ug == 900_000
    back = ReturnIn(
        amount=1,
        unit="ml",
        recipient_name="Acme Reverse",
        recipient_dea_number="RD1122338",
        reason="Expired soon",
    )
    entry = movements.record_return(db, stock.admin, stock.lot_50.id, back)
    assert entry.kind == "return" and entry.balance_after_ug == 850_000
    with pytest.raises(Forbidden):
        movements.record_return(db, stock.nurse, stock.lot_50.id, back)  # an admin's task
    with pytest.raises(ValueError, match="recipient"):
        TransferIn(amount=1, reason="nowhere to go")


def destruction(world, **changes: Any) -> DestructionIn:  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {
        "packages": 1,
        "package_state": "full",
        "method": "Chemical digestion kit, rendered non-retrievable",
        "location": "Drug room",
        "witness_user_id": world.users["nurse"].id,
        "witness_password": PASSWORD,
        "witness2_user_id": world.users["admin"].id,
        "witness2_password": PASSWORD,
    }
    body.update(changes)
    return DestructionIn(**body)


def test_a_destruction_keeps_the_form_41_data_and_two_witnesses(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    entry = movements.record_destruction(db, stock.prescriber, stock.lot_50.id, destruction(world))
    assert entry.change_ug == -500_000 and entry.balance_after_ug == 500_000
    form = chain.detail_of(entry)
    assert form["ndc"] == "0409-2051-05" and form["strength"] == "50 mg/mL"
    assert form["form"] == "injection, solution" and form["packages"] == 1 and form["package_state"] == "full"
    assert form["total_destroyed_mg"] == 500.0 and form["location"] == "Drug room"
    assert form["witness"] == "Nurse (nurse.t)" and form["witness2"] == "Admin (admin.t)"
    assert (entry.witness_id, entry.witness2_id) == (world.users["nurse"].id, world.users["admin"].id)
    partial = destruction(world, package_state="partial", amount=3, unit="ml")
    assert movements.record_destruction(db, stock.prescriber, stock.lot_50.id, partial).change_ug == -150_000


def test_a_destruction_is_refused_without_two_different_valid_witnesses(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    users = world.users
    same = destruction(world, witness2_user_id=users["nurse"].id)
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_destruction(db, stock.prescriber, stock.lot_50.id, same),
        "witness2_user_id",
        "two different people",
    )
    auditor = destruction(world, witness2_user_id=users["auditor"].id)
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_destruction(db, stock.prescriber, stock.lot_50.id, auditor),
        "witness2_user_id",
        "employees",
    )
    wrong = destruction(world, witness_password="guess guess guess")
    exc = refused(
        db,
        world.clinic.id,
        lambda: movements.record_destruction(db, stock.prescriber, stock.lot_50.id, wrong),
        "witness_user_id",
        "password",
    )
    assert exc.audit and exc.audit[0].action == "ledger.destruction.witness"
    too_much = destruction(world, packages=3)
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_destruction(db, stock.prescriber, stock.lot_50.id, too_much),
        "amount",
        "Only 1,000 mg",
    )
    overfull = destruction(world, package_state="partial", amount=600)
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_destruction(db, stock.prescriber, stock.lot_50.id, overfull),
        "amount",
        "hold at most 500 mg",
    )


def test_a_theft_is_reportable_with_its_deadlines_a_minor_loss_is_not(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    # Friday 20 November 2026, 16:00 in the clinic (New York): notice due Monday 23 November.
    friday = dt.datetime(2026, 11, 20, 21, 0, tzinfo=dt.UTC)
    theft = TheftLossIn(
        kind="theft", amount=2, unit="ml", discovered_at=friday, description="Vial missing from cabinet"
    )
    report = movements.record_theft_loss(
        db, stock.admin, stock.lot_50.id, theft, now=friday + dt.timedelta(hours=1)
    )
    assert report.reportable
    assert report.notice_due_on == dt.date(2026, 11, 23) and report.form106_due_on == dt.date(2027, 1, 4)
    entry = db.get(LedgerEntry, report.entry_id)
    assert entry.kind == "theft_loss" and entry.change_ug == -100_000  # type: ignore[union-attr]
    minor = TheftLossIn(kind="loss", amount=0.5, discovered_at=NOW, description="Spilled while drawing up")
    small = movements.record_theft_loss(db, stock.admin, stock.lot_50.id, minor)
    assert not small.reportable and small.notice_due_on is None and small.form106_due_on is None


def test_a_theft_discovered_in_the_future_is_refused(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    body = TheftLossIn(
        kind="theft", amount=1, discovered_at=NOW + dt.timedelta(days=1), description="Not yet"
    )
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_theft_loss(db, stock.admin, stock.lot_50.id, body),
        "discovered_at",
        "future",
    )


def test_an_adjustment_is_a_new_entry_with_its_reason(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    wrong = administer(db, stock, world, amount_mg=30)
    fix = AdjustmentIn(change=1.7, reason="Dose was 28.3 mg, typed as 30 mg", corrects_seq=wrong.seq)
    entry = movements.record_adjustment(db, stock.admin, stock.lot_50.id, fix)
    assert entry.kind == "adjustment" and entry.change_ug == 1_700 and entry.corrects_seq == wrong.seq
    assert entry.balance_after_ug == 1_000_000 - 28_300
    assert db.get(LedgerEntry, wrong.id).change_ug == -30_000  # the original stays as it was  # type: ignore[union-attr]
    out = AdjustmentIn(change=-2, unit="ml", reason="Count correction after investigation")
    assert movements.record_adjustment(db, stock.admin, stock.lot_50.id, out).change_ug == -100_000


def test_an_adjustment_is_refused_below_zero_without_reason_or_for_another_lot(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    below = AdjustmentIn(change=-1001, reason="Would go below zero, refused")
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_adjustment(db, stock.admin, stock.lot_50.id, below),
        "change",
        "Only 1,000 mg",
    )
    other_lot = administer(db, stock, world, lot_id=stock.lot_10.id, amount_mg=10)
    elsewhere = AdjustmentIn(change=1, reason="Points at another lot's entry", corrects_seq=other_lot.seq)
    refused(
        db,
        world.clinic.id,
        lambda: movements.record_adjustment(db, stock.admin, stock.lot_50.id, elsewhere),
        "corrects_seq",
        "for this lot",
    )
    with pytest.raises(ValueError, match="at least 10"):
        AdjustmentIn(change=1, reason="short")
    with pytest.raises(ValueError, match="other than zero"):
        AdjustmentIn(change=0, reason="nothing to change here")
    with pytest.raises(Forbidden):
        movements.record_adjustment(
            db, stock.nurse, stock.lot_50.id, AdjustmentIn(change=1, reason="Nurses cannot adjust")
        )


def test_the_database_refuses_a_negative_balance_whatever_the_code_does(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.begin_nested():
        db.execute(update(Lot).where(Lot.id == stock.lot_50.id).values(balance_ug=Lot.balance_ug - 1_000_001))
    with pytest.raises(InvalidInput) as caught:
        chain.move(db, db.get(Lot, stock.lot_50.id), stock.vial_50, -1_000_001)  # type: ignore[arg-type]
    assert "Only 1,000 mg" in caught.value.errors["amount"]
    assert rules.fmt_mg(db.get(Lot, stock.lot_50.id).balance_ug) == "1,000 mg"  # type: ignore[union-attr]
