"""The audit chains: one per clinic plus the system chain, keyed (HMAC-SHA256), appended at
commit. Each detects an edited, inserted or deleted entry and names the first bad one."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from ketacare import integrity
from ketacare.audit import service as audit
from ketacare.audit.models import SYSTEM_CHAIN, AuditEntry, AuditHead


def _entries(db, n: int = 5, clinic_id: int | None = None) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    for i in range(n):
        audit.record(db, None, "test.event", "thing", resource_id=i, detail=f"event {i}", clinic_id=clinic_id)
    return audit.append_pending(db)


def _drop_append_only(db) -> None:  # type: ignore[no-untyped-def]
    """What an attacker with database access would do first. Rolled back with the test."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(text("DROP TRIGGER audit_entries_no_update"))
        db.execute(text("DROP TRIGGER audit_entries_no_delete"))
    else:
        db.execute(text("DROP TRIGGER audit_entries_append_only ON audit_entries"))


def test_intact_chain_verifies(db) -> None:  # type: ignore[no-untyped-def]
    _entries(db)
    result = audit.verify_database(db)
    assert result.ok, result.problem
    assert result.checked >= 5


def test_database_refuses_update_and_delete(db) -> None:  # type: ignore[no-untyped-def]
    entry = _entries(db, 1)[0]
    db.commit()
    with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
        db.execute(text("UPDATE audit_entries SET detail = 'x' WHERE seq = :s"), {"s": entry.seq})
    with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
        db.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": entry.seq})


def test_edited_entry_is_named(db) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(db)
    _drop_append_only(db)
    db.execute(
        text("UPDATE audit_entries SET detail = 'nothing to see' WHERE seq = :s"), {"s": entries[2].seq}
    )
    db.expire_all()
    result = audit.verify_database(db)
    assert not result.ok
    assert result.first_bad_seq == entries[2].chain_seq
    assert "altered" in result.problem


def test_deleted_entry_is_found(db) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(db)
    deleted = entries[1].chain_seq
    _drop_append_only(db)
    db.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": entries[1].seq})
    db.expire_all()
    result = audit.verify_database(db)
    assert result.first_bad_seq == deleted
    assert "missing" in result.problem


def test_deleted_tail_is_found(db) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(db)
    _drop_append_only(db)
    db.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": entries[-1].seq})
    db.expire_all()
    result = audit.verify_database(db)
    assert not result.ok and "removed from the end" in result.problem


def test_inserted_entry_is_found(db) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(db)
    target = entries[2]
    _drop_append_only(db)
    # Make room, forge an entry with a self-consistent hash but the wrong link, close the gap.
    db.execute(
        text("UPDATE audit_entries SET chain_seq = chain_seq + 1000 WHERE chain_id = 0 AND chain_seq > :s"),
        {"s": target.chain_seq},
    )
    db.expunge_all()
    forged = AuditEntry(
        chain_id=SYSTEM_CHAIN,
        chain_seq=target.chain_seq + 1,
        scheme=integrity.SCHEME_KEYED,
        at=target.at,
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
    db.execute(
        text("UPDATE audit_entries SET chain_seq = chain_seq - 999 WHERE chain_id = 0 AND chain_seq > 1000")
    )
    db.expire_all()
    result = audit.verify_database(db)
    assert not result.ok
    assert result.first_bad_seq == target.chain_seq + 1
    assert "does not follow" in result.problem


def test_appends_never_fork(db) -> None:  # type: ignore[no-untyped-def]
    entries = _entries(db, 20)
    positions = [e.chain_seq for e in entries]
    assert positions == list(range(positions[0], positions[0] + 20))
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))


def test_batched_entries_chain_like_single_ones(db) -> None:  # type: ignore[no-untyped-def]
    audit.record(db, None, "test.before", "thing")
    audit.record_many(db, None, [audit.AuditEvent("test.batch", "thing", i) for i in range(25)])
    audit.record(db, None, "test.after", "thing")
    single, *batch, after = audit.append_pending(db)
    assert [e.chain_seq for e in batch] == list(range(single.chain_seq + 1, single.chain_seq + 26))
    assert batch[0].prev_hash == single.entry_hash and after.prev_hash == batch[-1].entry_hash
    assert audit.record_many(db, None, []) == []
    assert audit.verify_database(db).ok


def test_each_clinic_has_its_own_chain_and_the_system_one_the_rest(db, world) -> None:  # type: ignore[no-untyped-def]
    mine = _entries(db, 3, world.clinic.id)
    theirs = _entries(db, 2, world.other_clinic.id)
    system = _entries(db, 1)
    assert {e.chain_id for e in mine} == {world.clinic.id} and mine[0].chain_seq == 1
    assert {e.chain_id for e in theirs} == {world.other_clinic.id} and theirs[0].chain_seq == 1
    assert system[0].chain_id == SYSTEM_CHAIN
    heads = {h.chain_id: h.seq for h in db.execute(select(AuditHead)).scalars()}
    assert heads[world.clinic.id] == 3 and heads[world.other_clinic.id] == 2
    assert all(r.ok for r in audit.verify_chains(db))


def test_entries_are_appended_at_commit_and_vanish_with_a_rollback(db) -> None:  # type: ignore[no-untyped-def]
    before = db.execute(select(AuditHead.seq).where(AuditHead.chain_id == 0)).scalar_one_or_none() or 0
    entry = audit.record(db, None, "test.pending", "thing")
    assert entry.chain_seq is None  # not yet in the chain: no head lock taken
    with pytest.raises(RuntimeError), db.begin_nested():
        audit.record(db, None, "test.rolled.back", "thing")
        raise RuntimeError
    db.commit()
    assert entry.chain_seq == before + 1
    actions = db.execute(
        select(AuditEntry.action).where(AuditEntry.chain_seq > before, AuditEntry.chain_id == 0)
    )
    assert list(actions.scalars()) == ["test.pending"]


@pytest.mark.parametrize(
    "rehash",
    [
        pytest.param(lambda m: hashlib.sha256(m).hexdigest(), id="plain SHA-256"),
        pytest.param(
            lambda m: __import__("hmac").new(b"a guessed key" * 3, m, hashlib.sha256).hexdigest(),
            id="HMAC with another key",
        ),
    ],
)
def test_a_chain_recomputed_without_the_key_is_found(db, rehash) -> None:  # type: ignore[no-untyped-def]
    """An insider edits an entry and recomputes every hash after it, but has no chain key."""
    entries = _entries(db, 4, None)
    _drop_append_only(db)
    prev = entries[0].prev_hash
    for n, entry in enumerate(entries):
        detail = "nothing to see" if n == 1 else entry.detail
        payload = {name: getattr(entry, name) for name in audit.KEYED_FIELDS} | {"detail": detail}
        payload["at"] = entry.at.isoformat(timespec="microseconds")
        new_hash = rehash((prev + integrity.canonical_json(payload)).encode())
        db.execute(
            text("UPDATE audit_entries SET detail = :d, prev_hash = :p, entry_hash = :h WHERE seq = :s"),
            {"d": detail, "p": prev, "h": new_hash, "s": entry.seq},
        )
        prev = new_hash
    db.execute(text("UPDATE audit_heads SET last_hash = :h WHERE chain_id = 0"), {"h": prev})
    db.expire_all()
    result = audit.verify_database(db)
    assert not result.ok and "altered" in result.problem


def test_unkeyed_entries_count_only_as_the_start_of_the_system_chain(db, world) -> None:  # type: ignore[no-untyped-def]
    """Entries from before keyed chains (scheme 1) stay verifiable; one claimed later is refused."""
    entries = _entries(db, 2, world.clinic.id)
    _drop_append_only(db)
    last = entries[-1]
    last.scheme = integrity.SCHEME_LEGACY
    forged_hash = audit.entry_hash(last, last.prev_hash)
    db.execute(
        text("UPDATE audit_entries SET scheme = 1, entry_hash = :h WHERE seq = :s"),
        {"h": forged_hash, "s": last.seq},
    )
    db.execute(
        text("UPDATE audit_heads SET last_hash = :h WHERE chain_id = :c"),
        {"h": forged_hash, "c": world.clinic.id},
    )
    db.expire_all()
    result = audit.verify_chain(db, world.clinic.id)
    assert not result.ok and "unkeyed" in result.problem
