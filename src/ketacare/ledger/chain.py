"""The ledger's hash chain and the lot balances it moves.

Each clinic has its own chain. Appending reserves sequence numbers by updating the clinic's row
in ``ledger_heads`` first, which takes that row's lock (and SQLite's write lock), so concurrent
writers append one after another and never fork the chain. ``move`` changes a lot's balance by a
conditional UPDATE: a decrease happens only if that much is left, and the CHECK constraint on
``ledger_lots.balance_ug`` refuses a negative balance whatever the code does. ``verify_clinic``
recomputes the chain and the balances and names the first thing that does not add up.

Keyed entries (``scheme`` 2, see ``ketacare.integrity``) are HMACs under the chain key and also
cover the lot they move (its number, product, registration, expiry and supplier) and the
inventory they belong to, so editing a lot's identity or an inventory row breaks the chain.
Verification also checks each chain against the signed checkpoints in the anchor file, so
deleting entries (or a clinic's whole ledger) and rewinding the head is found.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ketacare import integrity
from ketacare.db import utcnow
from ketacare.errors import InvalidInput
from ketacare.ledger import rules
from ketacare.ledger.models import GENESIS_HASH, Inventory, LedgerEntry, LedgerHead, Lot, Product

HASHED_FIELDS = (
    "clinic_id",
    "seq",
    "recorded_at",
    "occurred_at",
    "kind",
    "registration_id",
    "lot_id",
    "change_ug",
    "balance_after_ug",
    "counted_ug",
    "book_ug",
    "actor_id",
    "actor_name",
    "patient_id",
    "session_id",
    "witness_id",
    "witness2_id",
    "reason",
    "detail",
    "corrects_seq",
    "inventory_id",
)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def chain_name(clinic_id: int) -> str:
    return f"ledger:{clinic_id}"


def _lot_facts(lot: Lot | None) -> dict[str, Any] | None:
    if lot is None:
        return None
    return {
        "clinic_id": lot.clinic_id,
        "registration_id": lot.registration_id,
        "product_id": lot.product_id,
        "lot_number": lot.lot_number,
        "expires_on": lot.expires_on.isoformat(),
        "supplier": lot.supplier,
    }


def _inventory_facts(inventory: Inventory | None) -> dict[str, Any] | None:
    if inventory is None:
        return None
    return {
        "clinic_id": inventory.clinic_id,
        "registration_id": inventory.registration_id,
        "kind": inventory.kind,
        "taken_at": _iso(inventory.taken_at),
        "taken_by_id": inventory.taken_by_id,
        "note": inventory.note,
    }


def entry_hash(
    entry: LedgerEntry,
    prev_hash: str,
    *,
    lot: Lot | None = None,
    inventory: Inventory | None = None,
    key: bytes | None = None,
) -> str:
    """The entry's link over the previous hash and a canonical JSON of every recorded field:
    SHA-256 for unkeyed entries (scheme 1), else an HMAC under the chain key that also covers
    the entry's lot and inventory."""
    payload: dict[str, Any] = {name: getattr(entry, name) for name in HASHED_FIELDS}
    payload["recorded_at"] = _iso(entry.recorded_at)
    payload["occurred_at"] = _iso(entry.occurred_at)
    scheme = entry.scheme or integrity.SCHEME_KEYED
    if scheme != integrity.SCHEME_LEGACY:
        payload["scheme"] = scheme
        payload["lot"] = _lot_facts(lot)
        payload["inventory"] = _inventory_facts(inventory)
    return integrity.link_hash(prev_hash, integrity.canonical_json(payload), scheme, key)


def dump_detail(values: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in values.items() if v is not None}, sort_keys=True, separators=(",", ":")
    )


def detail_of(entry: LedgerEntry) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(entry.detail or "{}")
    return loaded


@dataclass
class Head:
    clinic_id: int
    seq: int  # the last sequence number reserved
    last_hash: str
    count: int  # how many were reserved


def reserve(db: Session, clinic_id: int, count: int) -> Head:
    """Reserve ``count`` sequence numbers: the UPDATE takes the clinic's head row lock first."""
    stmt = (
        update(LedgerHead)
        .where(LedgerHead.clinic_id == clinic_id)
        .values(seq=LedgerHead.seq + count)
        .returning(LedgerHead.seq, LedgerHead.last_hash)
        .execution_options(synchronize_session=False)
    )
    row = db.execute(stmt).first()
    if row is None:
        try:
            with db.begin_nested():
                db.add(LedgerHead(clinic_id=clinic_id, seq=0, last_hash=GENESIS_HASH))
        except IntegrityError:
            pass  # another writer created it first; its lock orders us after it
        row = db.execute(stmt).first()
        assert row is not None
    return Head(clinic_id, int(row[0]), str(row[1]), count)


def append(db: Session, head: Head, entries: Sequence[LedgerEntry]) -> None:
    """Number, link and store entries in the order given (all of the reserved numbers)."""
    if len(entries) != head.count:
        raise RuntimeError("reserve exactly one sequence number per entry")
    prev = head.last_hash
    first = head.seq - len(entries) + 1
    now = utcnow()
    for offset, entry in enumerate(entries):
        entry.clinic_id = head.clinic_id
        entry.seq = first + offset
        entry.recorded_at = now
        entry.scheme = integrity.SCHEME_KEYED
        entry.prev_hash = prev
        lot = db.get(Lot, entry.lot_id) if entry.lot_id is not None else None
        inventory = db.get(Inventory, entry.inventory_id) if entry.inventory_id is not None else None
        entry.entry_hash = prev = entry_hash(entry, prev, lot=lot, inventory=inventory)
    db.execute(
        update(LedgerHead)
        .where(LedgerHead.clinic_id == head.clinic_id)
        .values(last_hash=prev)
        .execution_options(synchronize_session=False)
    )
    db.add_all(entries)
    db.flush()
    integrity.note_head(db, chain_name(head.clinic_id), head.seq, prev)


def move(db: Session, lot: Lot, prod: Product, change_ug: int, field_name: str = "amount") -> int:
    """Change a lot's balance; a decrease only if that much is left. Returns the new balance."""
    stmt = update(Lot).where(Lot.id == lot.id)
    if change_ug < 0:
        stmt = stmt.where(Lot.balance_ug >= -change_ug)
    row = db.execute(
        stmt.values(balance_ug=Lot.balance_ug + change_ug)
        .returning(Lot.balance_ug)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        current = int(db.execute(select(Lot.balance_ug).where(Lot.id == lot.id)).scalar_one())
        problem = rules.take_problem(current, -change_ug, prod.strength_mg_per_ml)
        raise InvalidInput(errors={field_name: problem or "Not enough left in this lot."})
    balance = int(row[0])
    set_committed_value(lot, "balance_ug", balance)
    return balance


# --- verification -----------------------------------------------------------------------------


VerifyResult = integrity.ChainCheck


def verify_chain(
    entries: Iterable[LedgerEntry],
    head: LedgerHead | None,
    *,
    lots: dict[int, Lot] | None = None,
    inventories: dict[int, Inventory] | None = None,
    anchors: list[integrity.Anchor] | None = None,
    key: bytes | None = None,
) -> VerifyResult:
    """Walk one clinic's chain in order; name the first entry that was edited, inserted or removed.
    An entry's hash covers its lot's and inventory's facts, so editing those shows too."""
    lots, inventories = lots or {}, inventories or {}
    links = (
        integrity.Link(
            seq=entry.seq,
            prev_hash=entry.prev_hash,
            scheme=entry.scheme,
            stored_hash=entry.entry_hash,
            computed_hash=entry_hash(
                entry,
                entry.prev_hash,
                lot=lots.get(entry.lot_id) if entry.lot_id is not None else None,
                inventory=inventories.get(entry.inventory_id) if entry.inventory_id is not None else None,
                key=key,
            ),
            legacy_allowed=True,  # entries written before the ledger chains were keyed
        )
        for entry in entries
    )
    return integrity.walk_chain(
        links,
        (head.seq, head.last_hash) if head is not None else None,
        anchors,
        altered="entry {seq} (or its lot or inventory) was altered after it was written",
    )


def verify_balances(entries: Iterable[LedgerEntry], balances: dict[int, int]) -> str:
    """Each entry's balance follows from the one before; each lot's balance from its entries."""
    running: dict[int, int] = {}
    for entry in entries:
        if entry.lot_id is None:
            continue
        running[entry.lot_id] = running.get(entry.lot_id, 0) + entry.change_ug
        if entry.balance_after_ug != running[entry.lot_id]:
            return f"entry {entry.seq}: the balance after it does not follow from the entries before"
    for lot_id, balance in sorted(balances.items()):
        if running.get(lot_id, 0) != balance:
            return (
                f"lot {lot_id}: its balance ({rules.fmt_mg(balance)}) differs from its entries "
                f"({rules.fmt_mg(running.get(lot_id, 0))})"
            )
    return ""


def verify_clinic(
    db: Session, clinic_id: int, anchors: integrity.AnchorLog | None = None, *, key: bytes | None = None
) -> VerifyResult:
    """The clinic's chain, its lots' balances, lots and inventories, against the checkpoints."""
    fresh = {"populate_existing": True}  # what the database holds now, not what this session saw
    entries = list(
        db.execute(
            select(LedgerEntry)
            .where(LedgerEntry.clinic_id == clinic_id)
            .order_by(LedgerEntry.seq)
            .execution_options(**fresh)
        ).scalars()
    )
    lots = {
        lot.id: lot
        for lot in db.execute(
            select(Lot).where(Lot.clinic_id == clinic_id).execution_options(**fresh)
        ).scalars()
    }
    inventories = {
        inv.id: inv
        for inv in db.execute(
            select(Inventory).where(Inventory.clinic_id == clinic_id).execution_options(**fresh)
        ).scalars()
    }
    result = verify_chain(
        entries,
        db.get(LedgerHead, clinic_id),
        lots=lots,
        inventories=inventories,
        anchors=anchors.for_chain(chain_name(clinic_id)) if anchors else None,
        key=key,
    )
    if not result.ok:
        return result
    balances = {lot_id: lot.balance_ug for lot_id, lot in lots.items()}
    if problem := verify_balances(entries, balances):
        return VerifyResult(False, result.checked, None, problem)
    return result


def clinics_with_ledgers(db: Session, anchors: integrity.AnchorLog | None = None) -> list[int]:
    """Every clinic with a ledger now or ever: heads, entries, lots, inventories, anchored chains."""
    found = set(db.execute(select(LedgerHead.clinic_id)).scalars())
    found |= set(db.execute(select(LedgerEntry.clinic_id).distinct()).scalars())
    found |= set(db.execute(select(Lot.clinic_id).distinct()).scalars())
    found |= set(db.execute(select(Inventory.clinic_id).distinct()).scalars())
    if anchors is not None:
        found |= {int(name.split(":", 1)[1]) for name in anchors.chains("ledger:")}
    return sorted(found)


def heads(db: Session) -> list[integrity.Anchor]:
    """Checkpoints of every clinic's ledger head (to anchor at verify and backup)."""
    at = integrity.now_iso()
    return [
        integrity.Anchor(chain_name(h.clinic_id), h.seq, h.last_hash, at)
        for h in db.execute(select(LedgerHead).order_by(LedgerHead.clinic_id)).scalars()
    ]
