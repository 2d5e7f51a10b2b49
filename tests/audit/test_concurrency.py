"""Audited work of two clinics never waits on one row (issue 15, item 3): each clinic has its own
chain head, and a head's lock is taken only at the instant of the append, at commit. On main, one
``audit_head`` row serialised every audited request of every clinic. PostgreSQL only: SQLite lets
one writer in at a time whatever the schema."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import Engine, text

from ketacare import migrations
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.db import make_sessionmaker

pytestmark = pytest.mark.skipif(
    not os.environ.get("KETACARE_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="row locks: runs in the PostgreSQL pass of .ci/run",
)
WAIT_S = 10.0


def _two_clinics(engine: Engine) -> tuple[int, int]:
    migrations.upgrade(engine)
    with make_sessionmaker(engine)() as db:
        north = auth.create_clinic(db, None, "North", "north", "NTH", "UTC")
        south = auth.create_clinic(db, None, "South", "south", "STH", "UTC")
        db.commit()
        return north.id, south.id


def _append_in_thread(engine: Engine, clinic_id: int) -> threading.Thread:
    """Record and commit one entry in another connection; the thread ends when the commit does."""

    def work() -> None:
        with make_sessionmaker(engine)() as db:
            db.execute(text("SET lock_timeout = '20s'"))
            audit.record(db, None, "test.other", "thing", clinic_id=clinic_id)
            db.commit()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_clinic_appends_while_another_holds_its_head(scratch_engine: Engine) -> None:
    north, south = _two_clinics(scratch_engine)
    with make_sessionmaker(scratch_engine)() as holder:
        audit.record(holder, None, "test.holder", "thing", clinic_id=north)
        audit.append_pending(holder)  # north's head row is now locked until `holder` ends
        other = _append_in_thread(scratch_engine, south)
        other.join(WAIT_S)
        assert not other.is_alive(), "south's append waited on north's head"
        same = _append_in_thread(scratch_engine, north)
        same.join(1.0)
        assert same.is_alive(), "north's own head is locked meanwhile (the chain never forks)"
        holder.commit()
    same.join(WAIT_S)
    assert not same.is_alive()
    with make_sessionmaker(scratch_engine)() as db:
        assert all(r.ok for r in audit.verify_chains(db))


def test_recording_takes_no_lock_until_commit(scratch_engine: Engine) -> None:
    """A transaction that recorded an entry and is still working holds no head lock."""
    north, _ = _two_clinics(scratch_engine)
    with make_sessionmaker(scratch_engine)() as slow:
        audit.record(slow, None, "test.slow", "thing", clinic_id=north)  # long request, not committed
        quick = _append_in_thread(scratch_engine, north)
        quick.join(WAIT_S)
        assert not quick.is_alive(), "the same clinic's append waited for a transaction still working"
        slow.commit()
    with make_sessionmaker(scratch_engine)() as db:
        result = audit.verify_chain(db, north)
        assert result.ok and result.checked >= 3  # clinic created, quick, slow
