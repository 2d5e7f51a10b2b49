"""Double booking is impossible under concurrent requests: many threads, one slot, one winner.
Runs on the backend under test (SQLite by default; PostgreSQL with KETACARE_TEST_DATABASE_URL)."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import Engine, func, select

from ketacare import migrations
from ketacare.auth.models import Clinic
from ketacare.db import make_sessionmaker
from ketacare.directory import service
from ketacare.directory.models import ConsultationRequest, ConsultationSlot
from ketacare.directory.schemas import BookingIn
from ketacare.errors import InvalidInput

THREADS = 8


def test_one_slot_many_concurrent_requests_one_booking(scratch_engine: Engine) -> None:
    migrations.upgrade(scratch_engine)
    factory = make_sessionmaker(scratch_engine)
    with factory() as db:
        clinic = Clinic(name="Race Clinic", slug="race", record_prefix="RAC", time_zone="UTC")
        db.add(clinic)
        db.flush()
        slot = ConsultationSlot(
            clinic_id=clinic.id, starts_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), minutes=30
        )
        db.add(slot)
        db.commit()
        clinic_id, slot_id = clinic.id, slot.id

    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        data = BookingIn(slot_id=slot_id, name=f"Person {n}", email=f"p{n}@example.org")
        db = factory()
        try:
            barrier.wait()
            service.book(db, clinic_id, data, None, None, dt.datetime.now(dt.UTC))
            db.commit()
            result = "booked"
        except InvalidInput as exc:
            db.rollback()
            result = exc.errors.get("slot_id", "other")
        finally:
            db.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count("booked") == 1, outcomes
    assert all(o == service.SLOT_TAKEN for o in outcomes if o != "booked"), outcomes
    with factory() as db:
        assert db.execute(select(func.count()).select_from(ConsultationRequest)).scalar_one() == 1
        assert db.get(ConsultationSlot, slot_id).status == "booked"  # type: ignore[union-attr]
