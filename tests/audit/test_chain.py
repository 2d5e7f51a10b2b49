"""The hash chain detects an edited, inserted or deleted entry and names the first bad one."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ketacare.audit import service as audit
from ketacare.audit.models import AuditEntry


def _entries(db, n: int = 5) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    return [
        audit.record(db, None, "test.event", "thing", resource_id=i, detail=f"event {i}") for i in range(n)
    ]


def _drop_append_only(db) -> None:  # type: ignore[no-untyped-def]
    """What an attacker with database access would do first. Rolled back with the test."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(text("DROP TRIGGER audit_entries_no_update"))
        db.execute(text("DROP TRIGGER audit_entries_no_delete"))
    else:
        db.execute(text("DROP TRIGGER audit_entries_append_only ON audit_entries"))


def test_intact_chain_verifies(db) -> None:
    _entries(db)
    result = audit.verify_database(db)
    assert result.ok, result.problem
    assert result.checked >= 5


def test_database_refuses_update_and_delete(db) -> None:
    entry = _entries(db, 1)[0]
    db.commit()
    with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
        db.execute(text("UPDATE audit_entries SET detail = 'x' WHERE seq = :s"), {"s": entry.seq})
    with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
        db.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": entry.seq})


def test_edited_entry_is_named(db) -> None:
    entries = _entries(db)
    _drop_append_only(db)
    db.execute(
        text("UPDATE audit_entries SET detail = 'nothing to see' WHERE seq = :s"), {"s": entries[2].seq}
    )
    db.expire_all()
    result = audit.verify_database(db)
    assert not result.ok
    assert result.first_bad_seq == entries[2].seq
    assert "altered" in result.problem


def test_deleted_entry_is_found(db) -> None:
    seqs = [e.seq for e in _entries(db)]
    _drop_append_only(db)
    db.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": seqs[1]})
    db.expire_all()
    result = audit.verify_database(db)
    assert result.first_bad_seq == seqs[1]
    assert "missing" in result.problem


def test_deleted_tail_is_found(db) -> None:
    seqs = [e.seq for e in _entries(db)]
    _drop_append_only(db)
    db.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": seqs[-1]})
    db.expire_all()
    result = audit.verify_database(db)
    assert not result.ok and "removed from the end" in result.problem


def test_inserted_entry_is_found(db) -> None:
    entries = _entries(db)
    target_seq, target_at, last = entries[2].seq, entries[2].at, entries[-1].seq
    _drop_append_only(db)
    # Renumber to make room, then forge an entry with a self-consistent hash but the wrong link.
    db.execute(text("UPDATE audit_entries SET seq = seq + 1000 WHERE seq > :s"), {"s": target_seq})
    db.expunge_all()
    forged = AuditEntry(
        seq=target_seq + 1,
        at=target_at,
        action="patient.read",
        resource_type="patient",
        outcome="success",
        detail="forged",
        prev_hash="f" * 64,
        entry_hash="",
    )
    forged.entry_hash = audit.entry_hash(forged, forged.prev_hash)
    db.add(forged)
    db.flush()
    # Close the gap: the numbering is contiguous again; only the hash links betray the insertion.
    db.execute(text("UPDATE audit_entries SET seq = seq - 999 WHERE seq > :s"), {"s": last})
    db.expire_all()
    result = audit.verify_database(db)
    assert not result.ok
    assert result.first_bad_seq == target_seq + 1
    assert "does not follow" in result.problem


def test_concurrent_style_appends_never_fork(db) -> None:
    entries = _entries(db, 20)
    seqs = [e.seq for e in entries]
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))


def test_batched_entries_chain_like_single_ones(db) -> None:
    single = audit.record(db, None, "test.before", "thing")
    batch = audit.record_many(db, None, [audit.AuditEvent("test.batch", "thing", i) for i in range(25)])
    after = audit.record(db, None, "test.after", "thing")
    assert [e.seq for e in batch] == list(range(single.seq + 1, single.seq + 26))
    assert batch[0].prev_hash == single.entry_hash and after.prev_hash == batch[-1].entry_hash
    assert audit.record_many(db, None, []) == []
    assert audit.verify_database(db).ok
