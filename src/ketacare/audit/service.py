"""Append to the audit chain, read it back, and verify that nobody altered it."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from ketacare.audit.models import GENESIS_HASH, AuditEntry, AuditHead
from ketacare.auth.principal import Principal
from ketacare.db import utcnow

HEAD_ID = 1
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


def entry_hash(entry: AuditEntry, prev_hash: str) -> str:
    """SHA-256 over the previous hash and a canonical JSON of every recorded field."""
    payload = {name: getattr(entry, name) for name in HASHED_FIELDS}
    payload["at"] = entry.at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def ensure_head(db: Session) -> None:
    if db.get(AuditHead, HEAD_ID) is None:
        db.add(AuditHead(id=HEAD_ID, seq=0, last_hash=GENESIS_HASH))
        db.flush()


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
    """Append one entry. Runs inside the caller's transaction: it commits with the change it records."""
    event = AuditEvent(action, resource_type, resource_id, patient_id, outcome, detail)
    return record_many(db, actor, [event], client_addr=client_addr, username=username, clinic_id=clinic_id)[0]


def record_many(
    db: Session,
    actor: Principal | None,
    events: Sequence[AuditEvent],
    *,
    client_addr: str | None = None,
    username: str | None = None,
    clinic_id: int | None = None,
) -> list[AuditEntry]:
    """Append several entries in order with four statements, however many there are."""
    if not events:
        return []
    # The UPDATE takes the lock before we read the head, so appends never interleave.
    db.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq + len(events)))
    head = db.execute(
        select(AuditHead).where(AuditHead.id == HEAD_ID).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if head is None:
        raise RuntimeError("audit chain head missing: run `ketacare db upgrade`")
    at = utcnow()
    prev_hash = head.last_hash
    username = _fit(actor.username if actor else username, 80)
    client_addr = _fit(actor.client_addr if actor else client_addr, 64)
    entries = []
    for offset, event in enumerate(events):
        entry = AuditEntry(
            seq=head.seq - len(events) + 1 + offset,
            at=at,
            user_id=actor.user_id if actor else None,
            username=username,
            role=(actor.role.value if actor.role else "api_token") if actor else None,
            clinic_id=actor.clinic_id if actor else clinic_id,
            action=_fit(event.action, 60) or "",
            resource_type=_fit(event.resource_type, 40) or "",
            resource_id=_fit(None if event.resource_id is None else str(event.resource_id), 64),
            patient_id=event.patient_id,
            outcome=event.outcome,
            client_addr=client_addr,
            detail=event.detail.replace("\x00", "\ufffd"),
            prev_hash=prev_hash,
        )
        entry.entry_hash = prev_hash = entry_hash(entry, prev_hash)
        entries.append(entry)
    head.last_hash = prev_hash
    db.add_all(entries)
    db.flush()
    return entries


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
    writer = csv.writer(buffer)
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


def verify(entries: Iterable[AuditEntry], head: AuditHead | None) -> VerifyResult:
    """Walk the chain in order; name the first entry that was edited, inserted or removed."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for entry in entries:
        if entry.seq != expected_seq:
            return VerifyResult(
                False,
                checked,
                expected_seq,
                f"entry {expected_seq} is missing (next stored entry is {entry.seq})",
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
                False,
                checked,
                entry.seq,
                f"entry {entry.seq} was altered after it was written",
            )
        prev_hash = entry.entry_hash
        expected_seq += 1
        checked += 1
    if head is not None and (head.seq != checked or head.last_hash != prev_hash):
        return VerifyResult(
            False,
            checked,
            checked + 1,
            f"the chain ends at entry {checked} but {head.seq} were written (entries removed from the end)",
        )
    return VerifyResult(True, checked)


def verify_database(db: Session) -> VerifyResult:
    entries = db.execute(
        select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=2000)
    ).scalars()
    return verify(entries, db.get(AuditHead, HEAD_ID))
