"""The ledger's hash chain and the lot balances it moves.

Each clinic has its own chain. Appending reserves sequence numbers by updating the clinic's row
in ``ledger_heads`` first, which takes that row's lock (and SQLite's write lock), so concurrent
writers append one after another and never fork the chain. ``move`` changes a lot's balance by a
conditional UPDATE: a decrease happens only if that much is left, and the CHECK constraint on
``ledger_lots.balance_ug`` refuses a negative balance whatever the code does. ``verify_clinic``
recomputes the chain and the balances and names the first thing that does not add up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ketacare.db import utcnow
from ketacare.errors import InvalidInput
from ketacare.ledger import rules
from ketacare.ledger.models import GENESIS_HASH, LedgerEntry, LedgerHead, Lot, Product

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


def entry_hash(entry: LedgerEntry, prev_hash: str) -> str:
    """SHA-256 over the previous hash and a canonical JSON of every recorded field."""
    payload: dict[str, Any] = {name: getattr(entry, name) for name in HASHED_FIELDS}
    payload["recorded_at"] = _iso(entry.recorded_at)
    payload["occurred_at"] = _iso(entry.occurred_at)
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


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
        entry.prev_hash = prev
        entry.entry_hash = prev = entry_hash(entry, prev)
    db.execute(
        update(LedgerHead)
        .where(LedgerHead.clinic_id == head.clinic_id)
        .values(last_hash=prev)
        .execution_options(synchronize_session=False)
    )
    db.add_all(entries)
    db.flush()


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


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def verify_chain(entries: Iterable[LedgerEntry], head: LedgerHead | None) -> VerifyResult:
    """Walk one clinic's chain in order; name the first entry that was edited, inserted or removed."""
    prev_hash = GENESIS_HASH
    expected = 1
    checked = 0
    for entry in entries:
        if entry.seq != expected:
            return VerifyResult(
                False, checked, expected, f"entry {expected} is missing (next stored is {entry.seq})"
            )
        if entry.prev_hash != prev_hash:
            return VerifyResult(
                False,
                checked,
                entry.seq,
                f"entry {entry.seq} does not follow entry {entry.seq - 1} (inserted or reordered)",
            )
        if entry_hash(entry, prev_hash) != entry.entry_hash:
            return VerifyResult(
                False, checked, entry.seq, f"entry {entry.seq} was altered after it was written"
            )
        prev_hash = entry.entry_hash
        expected += 1
        checked += 1
    head_seq, head_hash = (head.seq, head.last_hash) if head else (0, GENESIS_HASH)
    if head_seq != checked or head_hash != prev_hash:
        return VerifyResult(
            False,
            checked,
            checked + 1,
            f"the chain ends at entry {checked} but {head_seq} were written (entries removed from the end)",
        )
    return VerifyResult(True, checked)


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


def verify_clinic(db: Session, clinic_id: int) -> VerifyResult:
    entries = list(
        db.execute(
            select(LedgerEntry).where(LedgerEntry.clinic_id == clinic_id).order_by(LedgerEntry.seq)
        ).scalars()
    )
    result = verify_chain(entries, db.get(LedgerHead, clinic_id))
    if not result.ok:
        return result
    balances = dict(db.execute(select(Lot.id, Lot.balance_ug).where(Lot.clinic_id == clinic_id)).all())
    if problem := verify_balances(entries, balances):
        return VerifyResult(False, result.checked, None, problem)
    return result


def clinics_with_ledgers(db: Session) -> list[int]:
    found = db.execute(
        select(LedgerHead.clinic_id).union(select(LedgerEntry.clinic_id)).order_by(LedgerHead.clinic_id)
    ).scalars()
    return sorted(set(found))
