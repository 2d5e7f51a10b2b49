"""Every movement of stock: receipt, administration, waste (with its witnesses), transfer,
return, destruction, theft or loss, and adjustment. Each runs in the caller's transaction inside a
savepoint, under the clinic's ledger lock (see ``common.py`` for the lock order), and never
commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth import throttle
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import InvalidInput, NotFound, PendingAudit
from ketacare.knowledge import products as products_knowledge
from ketacare.ledger import chain, rules
from ketacare.ledger.common import (
    _amount_ug,
    _ensure_initial_inventory,
    _entry,
    _person,
    _serialise,
    _when,
    check_permission,
)
from ketacare.ledger.lots import _find_or_create_lot, _lot
from ketacare.ledger.models import (
    LedgerEntry,
    LossReport,
    Lot,
    Product,
    Registration,
)
from ketacare.ledger.rules import EntryKind
from ketacare.ledger.schemas import (
    AdjustmentIn,
    DestructionIn,
    PackageState,
    ReceiptIn,
    ReturnIn,
    TheftLossIn,
    TransferIn,
    WasteIn,
)
from ketacare.ledger.setup import registration
from ketacare.patients import service as patients

# --- movements --------------------------------------------------------------------------------


def record_receipt(
    db: Session, actor: Principal, data: ReceiptIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """A delivery on an invoice (Schedule III needs no Form 222): whole containers into a lot."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    reg = registration(db, actor, data.registration_id)
    if not reg.active:
        raise InvalidInput(errors={"registration_id": "This registration is not active."})
    prod = db.get(Product, data.product_id)
    if prod is None or prod.clinic_id != actor.clinic_id or not prod.active:
        raise InvalidInput(errors={"product_id": "No such product in your clinic."})
    received_at = _when(data.received_at, "received_at", at)
    _ensure_initial_inventory(db, reg)
    change = data.containers * rules.container_ug(prod.container_ml, prod.strength_mg_per_ml)
    with db.begin_nested():
        # ``_serialise`` ordered two deliveries of the same new lot one after the other, so the
        # second finds the lot the first created.
        audit.record(
            db,
            actor,
            "ledger.receipt",
            "ledger_registration",
            resource_id=reg.id,
            detail=f"invoice {data.invoice_number}: {data.containers} x {prod.container_ml:g} mL "
            f"{prod.name} lot {data.lot_number}",
        )
        lot = _find_or_create_lot(db, actor, reg, prod, data.lot_number, data.expires_on, data.supplier)
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, change)
        entry = _entry(
            actor,
            name,
            EntryKind.receipt,
            lot,
            reg.id,
            received_at,
            change_ug=change,
            balance_after_ug=balance,
            detail={
                "invoice_number": data.invoice_number,
                "supplier": data.supplier,
                "supplier_dea_number": data.supplier_dea_number,
                "containers": data.containers,
            },
        )
        chain.append(db, head, [entry])
    return entry


def record_administration(
    db: Session,
    actor: Principal,
    *,
    lot_id: int,
    amount_mg: float,
    patient_id: int,
    session_id: int,
    given_at: dt.datetime,
    drug: str,
    route: str,
) -> LedgerEntry:
    """Take what a session gave out of a lot. Refuses (InvalidInput, nothing written) an unknown
    or expired lot, a product whose drug or dosage form does not fit ``drug`` by ``route`` (or is
    not coded), an amount above the balance, a patient of another clinic, a time in the future or
    an unknown session. Never commits."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    now = utcnow()
    name = _person(db, actor)
    if given_at.tzinfo is None:
        raise InvalidInput(errors={"given_at": "Give the time with its time zone."})
    given = _when(given_at, "given_at", now)
    lot, prod, reg = _lot(db, actor, lot_id)
    if problem := products_knowledge.fit_problem(prod.ingredient, prod.dosage_form, drug, route):
        raise InvalidInput(errors={"lot_id": f"Lot {lot.lot_number} ({prod.name}): {problem}"})
    given_on = given.astimezone(clinic_time.zone(db, actor.clinic_id)).date()
    if rules.is_expired(lot.expires_on, given_on):
        raise InvalidInput(
            errors={
                "lot_id": f"Lot {lot.lot_number} expired on {lot.expires_on.isoformat()}: it cannot be given."
            }
        )
    amount = rules.mg_to_ug(amount_mg)
    if problem := rules.take_problem(lot.balance_ug, amount, prod.strength_mg_per_ml):
        raise InvalidInput(errors={"amount_mg": problem})
    record_number = patients.record_numbers(db, actor, {patient_id}).get(patient_id)
    if record_number is None:
        raise InvalidInput(errors={"patient_id": "No such patient in your clinic."})
    try:
        with db.begin_nested():
            audit.record(
                db,
                actor,
                "ledger.administration",
                "ledger_lot",
                resource_id=lot.id,
                patient_id=patient_id,
                detail=f"session {session_id}: {rules.fmt_mg(amount)} from lot {lot.lot_number} "
                f"({prod.ingredient}, {prod.dosage_form}) by {route}",
            )
            head = chain.reserve(db, actor.clinic_id, 1)
            balance = chain.move(db, lot, prod, -amount, "amount_mg")
            entry = _entry(
                actor,
                name,
                EntryKind.administration,
                lot,
                reg.id,
                given,
                change_ug=-amount,
                balance_after_ug=balance,
                patient_id=patient_id,
                session_id=session_id,
                detail={"record_number": record_number, "route": route},
            )
            chain.append(db, head, [entry])
    except IntegrityError as exc:
        raise InvalidInput(errors={"session_id": "No such treatment session."}) from exc
    return entry


@dataclass(frozen=True)
class WitnessOption:
    user_id: int
    name: str
    role: str


def witness_options(
    db: Session, actor: Principal, *, roles: frozenset[str], include_self: bool = False
) -> list[WitnessOption]:
    """Active staff of the clinic in ``roles`` for the witness choice on a form (other than the
    actor, unless ``include_self``: the person destroying may be one of the two witnesses)."""
    check_permission(actor, Permission.ledger_read)
    return [
        WitnessOption(u.id, f"{u.full_name} ({u.role.replace('_', ' ')})", u.role)
        for u in auth.staff_directory(db, actor.clinic_id)
        if u.is_active and (include_self or u.id != actor.user_id) and u.role in roles
    ]


def _witnesses(
    db: Session, actor: Principal, limits: throttle.Limits, named: list[tuple[str, int, str]]
) -> tuple[list[tuple[rules.Witness | None, str]], dict[str, str]]:
    """The named witnesses (field, user id, password), each password checked against and
    counted towards its owner's log-in limits (a wrong one is a failed attempt; a witness whose
    limit is reached is not checked). Returns each witness and the limit refusals by field."""
    found: list[tuple[str, Any, str]] = []  # (field, the user or None, password)
    for field_name, user_id, password in named:
        try:
            found.append((field_name, auth.staff_user(db, actor, user_id), password))
        except NotFound:
            found.append((field_name, None, password))
    people = [(user, password) for _, user, password in found if user is not None]
    checks = iter(auth.check_passwords(db, limits, people, actor.client_addr or ""))
    out: list[tuple[rules.Witness | None, str]] = []
    refused: dict[str, str] = {}
    for field_name, user, _ in found:
        if user is None:
            out.append((None, ""))
            continue
        check = next(checks)
        if check.refused:
            refused[field_name] = check.refused
        witness = rules.Witness(user.id, user.clinic_id, user.role, user.is_active, check.ok)
        out.append((witness, f"{user.full_name} ({user.username})"))
    return out, refused


def _witness_failure(errors: dict[str, str], action: str) -> InvalidInput:
    """Refused witness confirmations are audited, and the failed attempt is kept: it counts
    towards the witness's log-in limit (nothing else was written before the check)."""
    return InvalidInput(
        errors=errors,
        audit=[PendingAudit(action, "ledger_witness", outcome="failure", detail="; ".join(errors.values()))],
        keep_writes=True,
    )


def record_waste(
    db: Session,
    actor: Principal,
    *,
    lot_id: int,
    amount_mg: float,
    reason: str,
    witness_user_id: int,
    witness_password: str,
    session_id: int | None = None,
    occurred_at: dt.datetime | None = None,
    limits: throttle.Limits | None = None,
) -> LedgerEntry:
    """The unused remainder of a container, wasted in front of a second nurse or prescriber who
    confirms with their own password on the same screen. The actor re-authenticated (the route is
    sensitive). Not a DEA Form 41 destruction (knowledge: waste)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    now = utcnow()
    name = _person(db, actor)
    when = _when(occurred_at, "occurred_at", now)
    lot, prod, reg = _lot(db, actor, lot_id)
    amount = rules.mg_to_ug(amount_mg)
    errors: dict[str, str] = {}
    if problem := rules.take_problem(lot.balance_ug, amount, prod.strength_mg_per_ml):
        errors["amount"] = problem
    if len(reason.strip()) < 3:
        errors["reason"] = "Say why the amount was wasted."
    checked, refused = _witnesses(
        db, actor, limits or auth.attempt_limits(), [("witness_user_id", witness_user_id, witness_password)]
    )
    witness, witness_name = checked[0]
    if refused:
        raise InvalidInput(errors={**errors, **refused})
    if problem := rules.waste_witness_problem(actor.user_id, actor.clinic_id, witness):
        errors["witness_user_id"] = problem
        if witness is not None and not witness.password_ok:
            raise _witness_failure(errors, "ledger.waste.witness")
    if errors:
        raise InvalidInput(errors=errors)
    try:
        with db.begin_nested():
            audit.record(
                db,
                actor,
                "ledger.waste",
                "ledger_lot",
                resource_id=lot.id,
                detail=f"{rules.fmt_mg(amount)} from lot {lot.lot_number}, witness {witness_name}: {reason}",
            )
            head = chain.reserve(db, actor.clinic_id, 1)
            balance = chain.move(db, lot, prod, -amount)
            entry = _entry(
                actor,
                name,
                EntryKind.waste,
                lot,
                reg.id,
                when,
                change_ug=-amount,
                balance_after_ug=balance,
                session_id=session_id,
                witness_id=witness_user_id,
                reason=reason.strip(),
                detail={"witness": witness_name},
            )
            chain.append(db, head, [entry])
    except IntegrityError as exc:
        raise InvalidInput(errors={"session_id": "No such treatment session."}) from exc
    return entry


def record_waste_in(
    db: Session, actor: Principal, lot_id: int, data: WasteIn, limits: throttle.Limits | None = None
) -> LedgerEntry:
    """The page and API form of ``record_waste``: the amount may be typed in mg or mL."""
    _lot_row, prod, _reg = _lot(db, actor, lot_id)
    return record_waste(
        db,
        actor,
        lot_id=lot_id,
        amount_mg=rules.ug_to_mg(_amount_ug(data.amount, data.unit.value, prod)),
        reason=data.reason,
        witness_user_id=data.witness_user_id,
        witness_password=data.witness_password,
        session_id=data.session_id,
        occurred_at=data.occurred_at,
        limits=limits,
    )


def _outgoing(
    db: Session,
    actor: Principal,
    lot_id: int,
    amount: float,
    unit: str,
) -> tuple[Lot, Product, Registration, int]:
    lot, prod, reg = _lot(db, actor, lot_id)
    amount_ug = _amount_ug(amount, unit, prod)
    if problem := rules.take_problem(lot.balance_ug, amount_ug, prod.strength_mg_per_ml):
        raise InvalidInput(errors={"amount": problem})
    return lot, prod, reg, amount_ug


def record_transfer(
    db: Session, actor: Principal, lot_id: int, data: TransferIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """Stock leaving this registration: to another registration of the clinic (which receives the
    same lot in the same transaction) or to another registrant."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg, amount = _outgoing(db, actor, lot_id, data.amount, data.unit.value)
    target: Registration | None = None
    if data.to_registration_id is not None:
        target = registration(db, actor, data.to_registration_id)
        if target.id == reg.id:
            raise InvalidInput(errors={"to_registration_id": "Choose a different registration."})
        if not target.active:
            raise InvalidInput(errors={"to_registration_id": "That registration is not active."})
        _ensure_initial_inventory(db, target)
    recipient = (
        {
            "recipient_name": target.location_name,
            "recipient_dea_number": target.dea_number,
            "recipient_address": target.address,
        }
        if target
        else {
            "recipient_name": data.recipient_name,
            "recipient_dea_number": data.recipient_dea_number,
            "recipient_address": data.recipient_address,
        }
    )
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.transfer",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{rules.fmt_mg(amount)} of lot {lot.lot_number} to {recipient['recipient_name']} "
            f"({recipient['recipient_dea_number']})",
        )
        into = (
            _find_or_create_lot(db, actor, target, prod, lot.lot_number, lot.expires_on, lot.supplier)
            if target
            else None
        )
        head = chain.reserve(db, actor.clinic_id, 2 if into else 1)
        balance = chain.move(db, lot, prod, -amount)
        out = _entry(
            actor,
            name,
            EntryKind.transfer_out,
            lot,
            reg.id,
            when,
            change_ug=-amount,
            balance_after_ug=balance,
            reason=data.reason,
            detail=recipient,
        )
        entries = [out]
        if into is not None and target is not None:
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.transfer_in,
                    into,
                    target.id,
                    when,
                    change_ug=amount,
                    balance_after_ug=chain.move(db, into, prod, amount),
                    reason=data.reason,
                    detail={"from_registration": reg.dea_number, "from_location": reg.location_name},
                )
            )
        chain.append(db, head, entries)
    return out


def record_return(
    db: Session, actor: Principal, lot_id: int, data: ReturnIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """Stock returned to the supplier or a reverse distributor."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg, amount = _outgoing(db, actor, lot_id, data.amount, data.unit.value)
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.return",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{rules.fmt_mg(amount)} of lot {lot.lot_number} to {data.recipient_name}",
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, -amount)
        entry = _entry(
            actor,
            name,
            EntryKind.return_,
            lot,
            reg.id,
            when,
            change_ug=-amount,
            balance_after_ug=balance,
            reason=data.reason,
            detail={"recipient_name": data.recipient_name, "recipient_dea_number": data.recipient_dea_number},
        )
        chain.append(db, head, [entry])
    return entry


def record_destruction(
    db: Session,
    actor: Principal,
    lot_id: int,
    data: DestructionIn,
    now: dt.datetime | None = None,
    limits: throttle.Limits | None = None,
) -> LedgerEntry:
    """An on-site destruction with the data of DEA Form 41 and two witnessing employees, each
    confirming with their own password (knowledge: destruction)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg = _lot(db, actor, lot_id)
    per_package = rules.container_ug(prod.container_ml, prod.strength_mg_per_ml)
    errors: dict[str, str] = {}
    if data.package_state == PackageState.full:
        amount = data.packages * per_package
    else:
        assert data.amount is not None
        amount = _amount_ug(data.amount, data.unit.value, prod)
        if amount > data.packages * per_package:
            errors["amount"] = (
                f"{data.packages} partial package(s) hold at most "
                f"{rules.fmt_mg(data.packages * per_package)}."
            )
    if problem := rules.take_problem(lot.balance_ug, amount, prod.strength_mg_per_ml):
        errors["amount"] = problem
    checked, refused = _witnesses(
        db,
        actor,
        limits or auth.attempt_limits(),
        [
            ("witness_user_id", data.witness_user_id, data.witness_password),
            ("witness2_user_id", data.witness2_user_id, data.witness2_password),
        ],
    )
    if refused:
        raise InvalidInput(errors={**errors, **refused})
    (first, first_name), (second, second_name) = checked
    witness_problems = rules.destruction_witness_problems(actor.clinic_id, first, second)
    if witness_problems:
        errors.update(witness_problems)
        if any(w is not None and not w.password_ok for w in (first, second)):
            raise _witness_failure(errors, "ledger.destruction.witness")
    if errors:
        raise InvalidInput(errors=errors)
    form41 = {
        "ndc": prod.ndc or "none (compounded product)",
        "name": prod.name,
        "strength": f"{prod.strength_mg_per_ml:g} mg/mL",
        "form": prod.dosage_form,
        "package_ml": prod.container_ml,
        "packages": data.packages,
        "package_state": data.package_state.value,
        "total_destroyed_mg": rules.ug_to_mg(amount),
        "method": data.method,
        "location": data.location,
        "registration": reg.dea_number,
        "witness": first_name,
        "witness2": second_name,
    }
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.destruction",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"Form 41: {rules.fmt_mg(amount)} of lot {lot.lot_number}, {data.method}, "
            f"witnesses {first_name} and {second_name}",
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, -amount)
        entry = _entry(
            actor,
            name,
            EntryKind.destruction,
            lot,
            reg.id,
            when,
            change_ug=-amount,
            balance_after_ug=balance,
            witness_id=data.witness_user_id,
            witness2_id=data.witness2_user_id,
            reason=data.method,
            detail=form41,
        )
        chain.append(db, head, [entry])
    return entry


def record_theft_loss(
    db: Session, actor: Principal, lot_id: int, data: TheftLossIn, now: dt.datetime | None = None
) -> LossReport:
    """Stock stolen or lost: out of the lot, with the notice and Form 106 deadlines when it is
    reportable (a theft always; a loss when significant; knowledge: theft_loss)."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    discovered = _when(data.discovered_at, "discovered_at", at)
    lot, prod, reg, amount = _outgoing(db, actor, lot_id, data.amount, data.unit.value)
    discovered_on = discovered.astimezone(clinic_time.zone(db, actor.clinic_id)).date()
    deadlines = rules.loss_deadlines(data.kind.value, data.significant, discovered_on)
    with db.begin_nested():
        audit.record(
            db,
            actor,
            f"ledger.{data.kind.value}",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{rules.fmt_mg(amount)} of lot {lot.lot_number}"
            + (f"; notice due {deadlines.notice_due_on}" if deadlines.reportable else "; not reportable"),
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, -amount)
        entry = _entry(
            actor,
            name,
            EntryKind.theft_loss,
            lot,
            reg.id,
            discovered,
            change_ug=-amount,
            balance_after_ug=balance,
            reason=data.description,
            detail={
                "kind": data.kind.value,
                "significant": data.significant,
                "reportable": deadlines.reportable,
            },
        )
        chain.append(db, head, [entry])
        report = LossReport(
            clinic_id=actor.clinic_id,
            entry_id=entry.id,
            kind=data.kind.value,
            discovered_at=discovered,
            reportable=deadlines.reportable,
            notice_due_on=deadlines.notice_due_on,
            form106_due_on=deadlines.form106_due_on,
        )
        db.add(report)
        db.flush()
    return report


def record_adjustment(
    db: Session, actor: Principal, lot_id: int, data: AdjustmentIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """A correction as a new entry, with its reason (the route re-authenticates the actor)."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg = _lot(db, actor, lot_id)
    change = (1 if data.change > 0 else -1) * _amount_ug(abs(data.change), data.unit.value, prod)
    if change == 0:
        raise InvalidInput(errors={"change": "The change rounds to zero micrograms."})
    if change < 0 and (problem := rules.take_problem(lot.balance_ug, -change, prod.strength_mg_per_ml)):
        raise InvalidInput(errors={"change": problem})
    if data.corrects_seq is not None:
        corrected = db.execute(
            select(LedgerEntry.lot_id).where(
                LedgerEntry.clinic_id == actor.clinic_id, LedgerEntry.seq == data.corrects_seq
            )
        ).first()
        if corrected is None or corrected[0] != lot.id:
            raise InvalidInput(errors={"corrects_seq": "No entry with that number for this lot."})
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.adjustment",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{'+' if change > 0 else '-'}{rules.fmt_mg(abs(change))} on lot {lot.lot_number}: "
            f"{data.reason}",
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, change, "change")
        entry = _entry(
            actor,
            name,
            EntryKind.adjustment,
            lot,
            reg.id,
            when,
            change_ug=change,
            balance_after_ug=balance,
            reason=data.reason,
            corrects_seq=data.corrects_seq,
        )
        chain.append(db, head, [entry])
    return entry
