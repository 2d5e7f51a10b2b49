"""Inventories (initial and biennial) and the investigations a discrepancy opens. Runs in the
caller's transaction; never commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import Conflict, InvalidInput, NotFound
from ketacare.ledger import chain
from ketacare.ledger.common import (
    _amount_ug,
    _ensure_initial_inventory,
    _entry,
    _has_initial_inventory,
    _person,
    _serialise,
    _when,
    check_permission,
)
from ketacare.ledger.lots import _find_or_create_lot, amounts
from ketacare.ledger.models import (
    Inventory,
    Investigation,
    InvestigationNote,
    LedgerEntry,
    Lot,
    Product,
)
from ketacare.ledger.rules import EntryKind
from ketacare.ledger.schemas import (
    BiennialInventoryIn,
    CloseIn,
    InitialInventoryIn,
    NoteIn,
)
from ketacare.ledger.setup import registration

# --- inventories ------------------------------------------------------------------------------


def take_initial_inventory(
    db: Session, actor: Principal, data: InitialInventoryIn, now: dt.datetime | None = None
) -> Inventory:
    """The count when the registration first handles controlled substances: it opens each lot
    on hand with what was counted; no lines record a zero inventory (knowledge: inventory)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    reg = registration(db, actor, data.registration_id)
    taken_at = _when(data.taken_at, "taken_at", at)
    if _has_initial_inventory(db, reg.id):
        raise InvalidInput(errors={"registration_id": "This registration's initial inventory is on record."})
    errors: dict[str, str] = {}
    prods: dict[int, Product] = {}
    seen: set[tuple[int, str]] = set()
    for n, line in enumerate(data.lines):
        prod = db.get(Product, line.product_id)
        if prod is None or prod.clinic_id != actor.clinic_id:
            errors[f"lines.{n}.product_id"] = "No such product in your clinic."
            continue
        if (line.product_id, line.lot_number) in seen:
            errors[f"lines.{n}.lot_number"] = "This lot is listed twice."
        seen.add((line.product_id, line.lot_number))
        prods[n] = prod
    if errors:
        raise InvalidInput(errors=errors)
    with db.begin_nested():
        # ``_serialise`` orders two people taking the initial inventory at once; the
        # second then finds the first one's and is refused.
        audit.record(
            db,
            actor,
            "ledger.inventory.initial",
            "ledger_registration",
            resource_id=reg.id,
            detail=f"{reg.dea_number}: {len(data.lines)} lot(s)"
            + ("" if data.lines else " (zero inventory)"),
        )
        if _has_initial_inventory(db, reg.id):
            raise InvalidInput(
                errors={"registration_id": "This registration's initial inventory is on record."}
            )
        inventory = Inventory(
            clinic_id=actor.clinic_id,
            registration_id=reg.id,
            kind="initial",
            taken_at=taken_at,
            taken_by_id=actor.user_id,
            note=data.note or "",
        )
        db.add(inventory)
        db.flush()
        opened = []
        for n, line in enumerate(data.lines):
            prod = prods[n]
            lot = _find_or_create_lot(db, actor, reg, prod, line.lot_number, line.expires_on, line.supplier)
            opened.append((lot, prod, _amount_ug(line.counted, line.unit.value, prod), line.method.value))
        head = chain.reserve(db, actor.clinic_id, max(len(opened), 1))
        entries = []
        for lot, prod, counted, method in opened:
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.inventory_initial,
                    lot,
                    reg.id,
                    taken_at,
                    change_ug=counted,
                    balance_after_ug=chain.move(db, lot, prod, counted),
                    counted_ug=counted,
                    book_ug=0,
                    inventory_id=inventory.id,
                    detail={"method": method},
                )
            )
        if not entries:
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.inventory_initial,
                    None,
                    reg.id,
                    taken_at,
                    inventory_id=inventory.id,
                    reason="Nothing on hand: zero inventory",
                )
            )
        chain.append(db, head, entries)
    return inventory


def take_biennial_inventory(
    db: Session, actor: Principal, data: BiennialInventoryIn, now: dt.datetime | None = None
) -> Inventory:
    """A count of every lot with stock under one registration. A count that differs from the
    book balance opens an investigation; the book balance is not changed by a count (a finding
    is corrected by an adjustment, or reported as a theft or loss)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    reg = registration(db, actor, data.registration_id)
    taken_at = _when(data.taken_at, "taken_at", at)
    _ensure_initial_inventory(db, reg)
    errors: dict[str, str] = {}
    counted: dict[int, tuple[Lot, Product, int, str]] = {}
    for n, line in enumerate(data.lines):
        found = db.execute(
            select(Lot, Product).join(Product, Product.id == Lot.product_id).where(Lot.id == line.lot_id)
        ).first()
        if found is None or found[0].registration_id != reg.id or found[0].clinic_id != actor.clinic_id:
            errors[f"lines.{n}.lot_id"] = "No such lot under this registration."
            continue
        if line.lot_id in counted:
            errors[f"lines.{n}.lot_id"] = "This lot is counted twice."
        counted[line.lot_id] = (
            found[0],
            found[1],
            _amount_ug(line.counted, line.unit.value, found[1]),
            line.method.value,
        )
    in_stock = db.execute(
        select(Lot.id, Lot.lot_number).where(Lot.registration_id == reg.id, Lot.balance_ug > 0)
    ).all()
    missing = [number for lot_id, number in in_stock if lot_id not in counted]
    if missing:
        errors["lines"] = f"Count every lot with stock; missing: {', '.join(missing)}."
    if not counted and not missing:
        errors["lines"] = "Nothing to count: no lot of this registration has stock."
    if errors:
        raise InvalidInput(errors=errors)
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.inventory.biennial",
            "ledger_registration",
            resource_id=reg.id,
            detail=f"{reg.dea_number}: {len(counted)} lot(s)",
        )
        inventory = Inventory(
            clinic_id=actor.clinic_id,
            registration_id=reg.id,
            kind="biennial",
            taken_at=taken_at,
            taken_by_id=actor.user_id,
            note=data.note or "",
        )
        db.add(inventory)
        db.flush()
        head = chain.reserve(db, actor.clinic_id, len(counted))
        # Book balances are read under the head lock: nothing moves while the count is stored.
        entries = []
        for lot, _prod, amount, method in counted.values():
            book = int(db.execute(select(Lot.balance_ug).where(Lot.id == lot.id)).scalar_one())
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.inventory_biennial,
                    lot,
                    reg.id,
                    taken_at,
                    balance_after_ug=book,
                    counted_ug=amount,
                    book_ug=book,
                    inventory_id=inventory.id,
                    detail={"method": method},
                )
            )
        chain.append(db, head, entries)
        for entry in entries:
            assert entry.counted_ug is not None and entry.book_ug is not None and entry.lot_id is not None
            if entry.counted_ug != entry.book_ug:
                db.add(
                    Investigation(
                        clinic_id=actor.clinic_id,
                        entry_id=entry.id,
                        lot_id=entry.lot_id,
                        discrepancy_ug=entry.counted_ug - entry.book_ug,
                        status="open",
                        opened_at=utcnow(),
                    )
                )
        db.flush()
    return inventory


@dataclass(frozen=True)
class InvestigationView:
    investigation: Investigation
    lot: Lot
    product: Product
    entry: LedgerEntry
    notes: list[InvestigationNote]

    @property
    def discrepancy(self) -> str:
        sign = "+" if self.investigation.discrepancy_ug > 0 else "−"
        return sign + amounts(abs(self.investigation.discrepancy_ug), self.product)


def investigations(db: Session, actor: Principal, *, open_only: bool = False) -> list[InvestigationView]:
    check_permission(actor, Permission.ledger_read)
    query = (
        select(Investigation, Lot, Product, LedgerEntry)
        .join(Lot, Lot.id == Investigation.lot_id)
        .join(Product, Product.id == Lot.product_id)
        .join(LedgerEntry, LedgerEntry.id == Investigation.entry_id)
        .where(Investigation.clinic_id == actor.clinic_id)
    )
    if open_only:
        query = query.where(Investigation.status == "open")
    rows = db.execute(query.order_by(Investigation.opened_at.desc(), Investigation.id.desc())).all()
    ids = [inv.id for inv, *_ in rows]
    notes: dict[int, list[InvestigationNote]] = {i: [] for i in ids}
    if ids:
        for note in db.execute(
            select(InvestigationNote)
            .where(InvestigationNote.investigation_id.in_(ids))
            .order_by(InvestigationNote.at, InvestigationNote.id)
        ).scalars():
            notes[note.investigation_id].append(note)
    return [InvestigationView(inv, lot, prod, entry, notes[inv.id]) for inv, lot, prod, entry in rows]


def _investigation(db: Session, actor: Principal, investigation_id: int) -> Investigation:
    row = db.get(Investigation, investigation_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("No such investigation in your clinic.")
    return row


def add_investigation_note(
    db: Session, actor: Principal, investigation_id: int, data: NoteIn
) -> InvestigationNote:
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    row = _investigation(db, actor, investigation_id)
    if row.status != "open":
        raise Conflict("This investigation is closed.")
    note = InvestigationNote(
        investigation_id=row.id, by_id=actor.user_id, by_name=_person(db, actor), text=data.text
    )
    db.add(note)
    db.flush()
    audit.record(
        db, actor, "ledger.investigation.note", "ledger_investigation", resource_id=row.id, detail=data.text
    )
    return note


def close_investigation(db: Session, actor: Principal, investigation_id: int, data: CloseIn) -> Investigation:
    """Closed with its outcome by an admin: explained, corrected by an adjustment, or reported."""
    check_permission(actor, Permission.ledger_admin)
    row = _investigation(db, actor, investigation_id)
    if row.status != "open":
        raise Conflict("This investigation is already closed.")
    row.status = "closed"
    row.closed_at = utcnow()
    row.closed_by_id = actor.user_id
    row.outcome = data.outcome
    db.add(
        InvestigationNote(
            investigation_id=row.id,
            by_id=actor.user_id,
            by_name=_person(db, actor),
            text=f"Closed: {data.outcome}",
        )
    )
    db.flush()
    audit.record(
        db,
        actor,
        "ledger.investigation.close",
        "ledger_investigation",
        resource_id=row.id,
        detail=data.outcome,
    )
    return row
