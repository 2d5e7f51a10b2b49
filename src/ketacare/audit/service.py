"""Append to the audit chains, read them back, and verify that nobody altered them."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, event, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from ketacare import integrity
from ketacare.audit.models import GENESIS_HASH, SYSTEM_CHAIN, AuditEntry, AuditHead
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.exports import SafeCsvWriter

# Scheme 1 (the unkeyed entries written before chains were per clinic): these fields, with
# ``seq`` the entry's place in the one chain there was. Scheme 2 adds the chain and the scheme.
HASHED_FIELDS = (
    "seq",
    "at",
    "user_id",
    "username",
    "role",
    "clinic_id",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "client_addr",
    "detail",
)
KEYED_FIELDS = (*HASHED_FIELDS[1:], "chain_id", "chain_seq", "scheme")


def chain_name(chain_id: int) -> str:
    return f"audit:{chain_id}"


def entry_hash(entry: AuditEntry, prev_hash: str, key: bytes | None = None) -> str:
    """The entry's link: SHA-256 (scheme 1) or HMAC-SHA256 under the chain key (scheme 2) over
    the previous hash and a canonical JSON of every recorded field."""
    scheme = entry.scheme or integrity.SCHEME_KEYED
    names = HASHED_FIELDS if scheme == integrity.SCHEME_LEGACY else KEYED_FIELDS
    payload = {name: getattr(entry, name) for name in names}
    payload["at"] = entry.at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return integrity.link_hash(prev_hash, integrity.canonical_json(payload), scheme, key)


def _fit(value: str | None, length: int) -> str | None:
    """Column-sized and NUL-free: an audit entry must never fail to be written."""
    return None if value is None else value.replace("\x00", "\ufffd")[:length]


@dataclass(frozen=True)
class AuditEvent:
    """One thing to record; ``record_many`` appends several in one round trip."""

    action: str
    resource_type: str
    resource_id: str | int | None = None
    patient_id: int | None = None
    outcome: str = "success"
    detail: str = ""


def record(
    db: Session,
    actor: Principal | None,
    action: str,
    resource_type: str,
    *,
    resource_id: str | int | None = None,
    patient_id: int | None = None,
    outcome: str = "success",
    detail: str = "",
    client_addr: str | None = None,
    username: str | None = None,
    clinic_id: int | None = None,
) -> AuditEntry:
    """Record one entry in the caller's transaction: it is appended when that transaction commits,
    with the change it records, and disappears with it if it rolls back."""
    event = AuditEvent(action, resource_type, resource_id, patient_id, outcome, detail)
    return record_many(db, actor, [event], client_addr=client_addr, username=username, clinic_id=clinic_id)[0]


@dataclass
class _Pending:
    transaction: SessionTransaction | None
    entries: list[AuditEntry] = field(default_factory=list)


_PENDING = "ketacare.audit.pending"


def record_many(
    db: Session,
    actor: Principal | None,
    events: Sequence[AuditEvent],
    *,
    client_addr: str | None = None,
    username: str | None = None,
    clinic_id: int | None = None,
) -> list[AuditEntry]:
    """Record several entries in order; they join their clinic's chain at commit."""
    if not events:
        return []
    at = utcnow()
    username = _fit(actor.username if actor else username, 80)
    client_addr = _fit(actor.client_addr if actor else client_addr, 64)
    entry_clinic = actor.clinic_id if actor else clinic_id
    entries = [
        AuditEntry(
            chain_id=entry_clinic if entry_clinic is not None else SYSTEM_CHAIN,
            scheme=integrity.SCHEME_KEYED,
            at=at,
            user_id=actor.user_id if actor else None,
            username=username,
            role=(actor.role.value if actor.role else "api_token") if actor else None,
            clinic_id=entry_clinic,
            action=_fit(event.action, 60) or "",
            resource_type=_fit(event.resource_type, 40) or "",
            resource_id=_fit(None if event.resource_id is None else str(event.resource_id), 64),
            patient_id=event.patient_id,
            outcome=event.outcome,
            client_addr=client_addr,
            detail=event.detail.replace("\x00", "\ufffd"),
        )
        for event in events
    ]
    transaction = db.get_nested_transaction() or db.get_transaction()
    db.info.setdefault(_PENDING, []).append(_Pending(transaction, entries))
    return entries


def _reserve(db: Session, chain_id: int, count: int) -> tuple[int, str]:
    """Take the chain's head row lock and move it on by ``count``: (new length, previous hash)."""
    stmt = (
        update(AuditHead)
        .where(AuditHead.chain_id == chain_id)
        .values(seq=AuditHead.seq + count)
        .returning(AuditHead.seq, AuditHead.last_hash)
        .execution_options(synchronize_session=False)
    )
    row = db.execute(stmt).first()
    if row is None:
        if db.execute(select(func.count()).where(AuditEntry.chain_id == chain_id)).scalar_one():
            raise RuntimeError(f"the head of audit chain {chain_id} is missing: run `ketacare audit verify`")
        try:
            with db.begin_nested():
                db.add(AuditHead(chain_id=chain_id, seq=0, last_hash=GENESIS_HASH))
        except IntegrityError:
            pass  # another writer created it first; its lock orders us after it
        row = db.execute(stmt).first()
        assert row is not None
    return int(row[0]), str(row[1])


def append_pending(db: Session) -> list[AuditEntry]:
    """Append the entries recorded in this transaction to their chains (called at commit).

    Chains are taken in order of id, so two transactions never wait on each other's heads in
    opposite orders, and after every other change of the transaction is written."""
    batches: list[_Pending] = db.info.pop(_PENDING, [])
    if batches:
        # Everything else first: the head is the last lock a transaction takes, so holding it
        # never waits on another row (no deadlock), and it is held only until the commit.
        db.flush()
    by_chain: dict[int, list[AuditEntry]] = {}
    for batch in batches:
        for entry in batch.entries:
            by_chain.setdefault(entry.chain_id, []).append(entry)
    appended: list[AuditEntry] = []
    for chain_id in sorted(by_chain):
        entries = by_chain[chain_id]
        last, prev_hash = _reserve(db, chain_id, len(entries))
        first = last - len(entries) + 1
        for offset, entry in enumerate(entries):
            entry.chain_seq = first + offset
            entry.prev_hash = prev_hash
            entry.entry_hash = prev_hash = entry_hash(entry, prev_hash)
        db.execute(
            update(AuditHead)
            .where(AuditHead.chain_id == chain_id)
            .values(last_hash=prev_hash)
            .execution_options(synchronize_session=False)
        )
        db.add_all(entries)
        integrity.note_head(db, chain_name(chain_id), last, prev_hash)
        appended.extend(entries)
    if appended:
        db.flush()
    return appended


@event.listens_for(Session, "before_commit")
def _append_at_commit(session: Session) -> None:
    if session.get_nested_transaction() is None and session.info.get(_PENDING):
        append_pending(session)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    batches: list[_Pending] = session.info.get(_PENDING, [])
    if not batches:
        return

    def rolled_back(batch: _Pending) -> bool:
        if batch.transaction is None:
            return previous_transaction.parent is None
        tx: SessionTransaction | None = batch.transaction
        while tx is not None:
            if tx is previous_transaction:
                return True
            tx = tx.parent
        return False

    session.info[_PENDING] = [b for b in batches if not rolled_back(b)]


@event.listens_for(Session, "after_transaction_end")
def _forget_at_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class AuditFilter:
    clinic_id: int
    patient_id: int | None = None
    username: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    action: str | None = None


def _filtered(flt: AuditFilter) -> Select[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.clinic_id == flt.clinic_id)
    if flt.patient_id is not None:
        query = query.where(AuditEntry.patient_id == flt.patient_id)
    if flt.username:
        query = query.where(AuditEntry.username == flt.username)
    if flt.action:
        query = query.where(AuditEntry.action.startswith(flt.action))
    if flt.date_from:
        start = dt.datetime.combine(flt.date_from, dt.time(), tzinfo=dt.UTC)
        query = query.where(AuditEntry.at >= start)
    if flt.date_to:
        end = dt.datetime.combine(flt.date_to + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        query = query.where(AuditEntry.at < end)
    return query


def search(db: Session, flt: AuditFilter, *, limit: int, offset: int) -> tuple[list[AuditEntry], int]:
    query = _filtered(flt)
    total = db.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = db.execute(query.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset))
    return list(rows.scalars()), total


CSV_COLUMNS = (
    "seq",
    "at",
    "username",
    "role",
    "clinic_id",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "client_addr",
    "detail",
    "entry_hash",
)


def export_csv(db: Session, flt: AuditFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow(CSV_COLUMNS)
    rows = db.execute(_filtered(flt).order_by(AuditEntry.seq).execution_options(yield_per=1000))
    for entry in rows.scalars():
        writer.writerow(
            [entry.at.isoformat() if name == "at" else getattr(entry, name) for name in CSV_COLUMNS]
        )
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    chain: str = ""


def verify(
    entries: Iterable[AuditEntry],
    head: AuditHead | None,
    anchors: list[integrity.Anchor] | None = None,
    *,
    key: bytes | None = None,
    head_required: bool = True,
) -> VerifyResult:
    """Walk one chain in order; name the first entry that was edited, inserted or removed."""
    links = (
        integrity.Link(
            seq=entry.chain_seq,
            prev_hash=entry.prev_hash,
            scheme=entry.scheme,
            stored_hash=entry.entry_hash,
            computed_hash=entry_hash(entry, entry.prev_hash, key),
            # Unkeyed hashes exist only at the start of the system chain, from before the
            # chains were keyed and split per clinic (the position in both sequences agrees).
            legacy_allowed=entry.chain_id == SYSTEM_CHAIN and entry.seq == entry.chain_seq,
        )
        for entry in entries
    )
    found = integrity.walk_chain(
        links, (head.seq, head.last_hash) if head is not None else None, anchors, head_required=head_required
    )
    return VerifyResult(found.ok, found.checked, found.first_bad_seq, found.problem)


def chain_ids(db: Session, anchors: integrity.AnchorLog | None = None) -> list[int]:
    """Every audit chain there is or was: heads, entries, clinics, and anchored chains."""
    found = set(db.execute(select(AuditHead.chain_id)).scalars())
    found |= set(db.execute(select(AuditEntry.chain_id).distinct()).scalars())
    found |= set(db.execute(text("SELECT id FROM clinics")).scalars())
    found.add(SYSTEM_CHAIN)
    if anchors is not None:
        found |= {int(name.split(":", 1)[1]) for name in anchors.chains("audit:")}
    return sorted(found)


def verify_chain(
    db: Session, chain_id: int, anchors: integrity.AnchorLog | None = None, *, key: bytes | None = None
) -> VerifyResult:
    entries = db.execute(
        select(AuditEntry)
        .where(AuditEntry.chain_id == chain_id)
        .order_by(AuditEntry.chain_seq)
        .execution_options(yield_per=2000)
    ).scalars()
    checkpoints = anchors.for_chain(chain_name(chain_id)) if anchors else []
    result = verify(entries, db.get(AuditHead, chain_id), checkpoints, key=key)
    return VerifyResult(result.ok, result.checked, result.first_bad_seq, result.problem, chain_name(chain_id))


def verify_chains(
    db: Session, anchors: integrity.AnchorLog | None = None, *, key: bytes | None = None
) -> list[VerifyResult]:
    """One result per chain (the system chain and every clinic's)."""
    if db.info.get(_PENDING):
        append_pending(db)
    return [verify_chain(db, chain_id, anchors, key=key) for chain_id in chain_ids(db, anchors)]


def verify_database(
    db: Session, anchors: integrity.AnchorLog | None = None, *, key: bytes | None = None
) -> VerifyResult:
    """Every chain; the first one that fails, or the total checked."""
    results = verify_chains(db, anchors, key=key)
    if anchors is not None and anchors.problems:
        return VerifyResult(False, sum(r.checked for r in results), None, anchors.problems[0], "anchors")
    for result in results:
        if not result.ok:
            return result
    return VerifyResult(True, sum(r.checked for r in results))


def heads(db: Session) -> list[integrity.Anchor]:
    """Checkpoints of every chain's current head (to anchor at verify and backup)."""
    at = integrity.now_iso()
    stored = {h.chain_id: h for h in db.execute(select(AuditHead)).scalars()}
    return [integrity.Anchor(chain_name(cid), h.seq, h.last_hash, at) for cid, h in sorted(stored.items())]
