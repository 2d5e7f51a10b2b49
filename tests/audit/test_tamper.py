"""An insider with database access (append-only triggers dropped) cannot rewrite the chains
unnoticed: the six tamper cases of issue 15 (item 3), each found by `audit verify` /
`ledger verify` against the keyed chains and the signed checkpoints in the anchor file.
Runs on the backend under test (SQLite, or PostgreSQL with KETACARE_TEST_DATABASE_URL)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ketacare import integrity
from ketacare.audit import service as audit
from ketacare.audit.models import AuditEntry
from ketacare.ledger import chain, movements
from ketacare.ledger.models import LedgerEntry
from tests.ledger.conftest import setup_stock


def _drop_triggers(db: Session) -> None:
    tables = ("audit_entries", "ledger_entries", "ledger_inventories")
    for table in tables:
        if db.get_bind().dialect.name == "sqlite":
            db.execute(text(f"DROP TRIGGER {table}_no_update"))
            db.execute(text(f"DROP TRIGGER {table}_no_delete"))
        else:
            db.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))


def _problems(db: Session, anchors: integrity.AnchorLog) -> list[str]:
    """What `ketacare audit verify` and `ketacare ledger verify` check, on this session."""
    db.expire_all()
    found = [f"{r.chain}: {r.problem}" for r in audit.verify_chains(db, anchors) if not r.ok]
    for clinic_id in chain.clinics_with_ledgers(db, anchors):
        result = chain.verify_clinic(db, clinic_id, anchors)
        if not result.ok:
            found.append(f"ledger:{clinic_id}: {result.problem}")
    return found + anchors.problems


@pytest.fixture
def anchored(db, world, tmp_path: Path) -> tuple[integrity.AnchorLog, int]:  # type: ignore[no-untyped-def]
    """A clinic with stock moved and audited, every chain anchored (as verify or a backup does)."""
    stock = setup_stock(db, world)
    for k in range(3):
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
    audit.append_pending(db)
    anchor_file = tmp_path / "chain-anchors.jsonl"
    integrity.write_anchors(anchor_file, audit.heads(db) + chain.heads(db))
    log = integrity.read_anchors(anchor_file)
    assert _problems(db, log) == []
    _drop_triggers(db)
    return log, world.clinic.id


def _last_two_audit_entries_deleted_and_head_rewound(db: Session, clinic_id: int) -> None:
    rows = db.execute(
        text("SELECT chain_seq, entry_hash FROM audit_entries WHERE chain_id = :c ORDER BY chain_seq DESC"),
        {"c": clinic_id},
    ).all()
    db.execute(
        text("DELETE FROM audit_entries WHERE chain_id = :c AND chain_seq > :s"),
        {"c": clinic_id, "s": rows[2][0]},
    )
    db.execute(
        text("UPDATE audit_heads SET seq = :s, last_hash = :h WHERE chain_id = :c"),
        {"s": rows[2][0], "h": rows[2][1], "c": clinic_id},
    )


def _audit_entry_edited_and_chain_recomputed(db: Session, clinic_id: int) -> None:
    """Without the chain key the insider can only recompute with plain SHA-256 (the old scheme)."""
    rows = db.execute(
        text("SELECT seq FROM audit_entries WHERE chain_id = :c ORDER BY chain_seq"), {"c": clinic_id}
    ).scalars()
    prev = "0" * 64
    for n, seq in enumerate(list(rows)):
        entry = db.get(AuditEntry, seq)
        assert entry is not None
        if n == 1:
            entry.detail = "nothing happened"
        entry.scheme = integrity.SCHEME_LEGACY
        entry.prev_hash = prev
        entry.entry_hash = prev = hashlib.sha256(
            (prev + json.dumps({"x": entry.detail, "n": n})).encode()
        ).hexdigest()
    db.flush()
    db.execute(text("UPDATE audit_heads SET last_hash = :h WHERE chain_id = :c"), {"h": prev, "c": clinic_id})


def _audit_head_deleted(db: Session, clinic_id: int) -> None:
    db.execute(text("DELETE FROM audit_heads WHERE chain_id = :c"), {"c": clinic_id})


def _last_ledger_entry_deleted_and_head_rewound(db: Session, clinic_id: int) -> None:
    """The last administration goes, the head and the lot's balance are put back to match."""
    last = db.execute(
        text("SELECT seq, lot_id, change_ug FROM ledger_entries WHERE clinic_id = :c ORDER BY seq DESC"),
        {"c": clinic_id},
    ).first()
    assert last is not None
    before = db.execute(
        text("SELECT entry_hash FROM ledger_entries WHERE clinic_id = :c AND seq = :s"),
        {"c": clinic_id, "s": last.seq - 1},
    ).scalar_one()
    db.execute(
        text("DELETE FROM ledger_entries WHERE clinic_id = :c AND seq = :s"), {"c": clinic_id, "s": last.seq}
    )
    db.execute(
        text("UPDATE ledger_heads SET seq = :s, last_hash = :h WHERE clinic_id = :c"),
        {"s": last.seq - 1, "h": before, "c": clinic_id},
    )
    db.execute(
        text("UPDATE ledger_lots SET balance_ug = balance_ug - :d WHERE id = :l"),
        {"d": last.change_ug, "l": last.lot_id},
    )


def _whole_clinic_ledger_deleted(db: Session, clinic_id: int) -> None:
    for table in ("ledger_investigation_notes", "ledger_investigations", "ledger_loss_reports"):
        if table == "ledger_investigation_notes":
            db.execute(
                text(
                    "DELETE FROM ledger_investigation_notes WHERE investigation_id IN "
                    "(SELECT id FROM ledger_investigations WHERE clinic_id = :c)"
                ),
                {"c": clinic_id},
            )
        else:
            db.execute(text(f"DELETE FROM {table} WHERE clinic_id = :c"), {"c": clinic_id})
    db.execute(
        text(
            "UPDATE session_administrations SET lot_id = NULL "
            "WHERE lot_id IN (SELECT id FROM ledger_lots WHERE clinic_id = :c)"
        ),
        {"c": clinic_id},
    )
    db.execute(text("DELETE FROM ledger_entries WHERE clinic_id = :c"), {"c": clinic_id})
    db.execute(text("DELETE FROM ledger_heads WHERE clinic_id = :c"), {"c": clinic_id})
    db.execute(text("DELETE FROM ledger_inventories WHERE clinic_id = :c"), {"c": clinic_id})
    db.execute(text("DELETE FROM ledger_lots WHERE clinic_id = :c"), {"c": clinic_id})


def _inventory_rows_edited(db: Session, clinic_id: int) -> None:
    db.execute(
        text("UPDATE ledger_inventories SET note = 'recounted', taken_by_id = NULL WHERE clinic_id = :c"),
        {"c": clinic_id},
    )


# case -> (the tampering, what verify says)
CASES: dict[str, tuple[Callable[[Session, int], None], str]] = {
    "audit: last entries deleted, head rewound": (
        _last_two_audit_entries_deleted_and_head_rewound,
        "removed",
    ),
    "audit: entry edited, chain recomputed": (_audit_entry_edited_and_chain_recomputed, "unkeyed"),
    "audit: head deleted": (_audit_head_deleted, "head record is missing"),
    "ledger: last entry deleted, head and balance rewound": (
        _last_ledger_entry_deleted_and_head_rewound,
        "removed",
    ),
    "ledger: a clinic's whole ledger deleted": (_whole_clinic_ledger_deleted, "removed"),
    "ledger: inventory rows edited": (_inventory_rows_edited, "inventory) was altered"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_tamper_case_is_detected(db, anchored, case: str) -> None:  # type: ignore[no-untyped-def]
    anchors, clinic_id = anchored
    tamper, said = CASES[case]
    tamper(db, clinic_id)
    problems = _problems(db, anchors)
    assert any(said in p for p in problems), f"{case}: {problems}"


def test_a_ledger_recomputed_in_the_old_unkeyed_scheme_is_caught_by_its_checkpoint(db, anchored) -> None:  # type: ignore[no-untyped-def]
    """Unkeyed entries are accepted as the start of a chain (entries from before the key): an
    insider who rewrites a whole chain that way is caught by the anchored hash."""
    anchors, clinic_id = anchored
    entries = list(
        db.execute(
            select(LedgerEntry).where(LedgerEntry.clinic_id == clinic_id).order_by(LedgerEntry.seq)
        ).scalars()
    )
    prev = chain.GENESIS_HASH
    for n, entry in enumerate(entries):
        if n == 2:
            entry.reason = "rewritten"
        entry.scheme = integrity.SCHEME_LEGACY
        entry.prev_hash = prev
        entry.entry_hash = prev = chain.entry_hash(entry, prev)
    db.flush()
    db.execute(
        text("UPDATE ledger_heads SET last_hash = :h WHERE clinic_id = :c"), {"h": prev, "c": clinic_id}
    )
    problems = _problems(db, anchors)
    assert any("chain rewritten" in p for p in problems), problems


def test_an_altered_anchor_line_is_reported(db, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    audit.record(db, None, "test.event", "thing", clinic_id=world.clinic.id)
    audit.append_pending(db)
    anchor_file = tmp_path / "a.jsonl"
    integrity.write_anchors(anchor_file, audit.heads(db))
    lines = anchor_file.read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["chain"] == f"audit:{world.clinic.id}" and record["seq"] >= 1
    anchor_file.write_text(json.dumps(record | {"seq": record["seq"] - 1}) + "\n")
    log = integrity.read_anchors(anchor_file)
    assert log.problems and "bad signature" in log.problems[0]
    assert not audit.verify_database(db, log).ok


def test_a_restore_line_retires_the_checkpoints_beyond_it(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    integrity.write_anchors(
        path,
        [
            integrity.Anchor("audit:1", 5, "a" * 64, "t1"),
            integrity.Anchor("audit:1", 9, "b" * 64, "t2"),
            integrity.Anchor("audit:1", 4, "c" * 64, "t3", "restore"),
        ],
    )
    kept = integrity.read_anchors(path).for_chain("audit:1")
    assert [(a.seq, a.kind) for a in kept] == [(4, "restore")]
