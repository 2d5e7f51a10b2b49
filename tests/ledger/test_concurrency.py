"""Two nurses drawing the last vial at the same moment: many threads, one lot, never below zero.
Runs on the backend under test (SQLite by default; PostgreSQL with KETACARE_TEST_DATABASE_URL),
each thread in its own connection and transaction, all released together by a barrier."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from sqlalchemy import Engine, func, select

from ketacare import migrations
from ketacare.auth import service as auth
from ketacare.auth.models import Clinic, Role, User
from ketacare.auth.passwords import hash_password
from ketacare.db import make_sessionmaker
from ketacare.errors import InvalidInput
from ketacare.ledger import chain, inventories, movements, setup
from ketacare.ledger.models import LedgerEntry, Lot
from ketacare.ledger.schemas import InitialInventoryIn, ProductIn, RegistrationIn
from ketacare.patients.models import Patient
from tests.helpers import PASSWORD, clinic_today
from tests.ledger.conftest import receipt, treatment_session

THREADS = 8


def _clinic_with_one_vial(engine: Engine) -> dict[str, int]:
    """One 500 mg vial in stock, a patient in a session, and THREADS nurses."""
    migrations.upgrade(engine)
    factory = make_sessionmaker(engine)
    with factory() as db:
        clinic = Clinic(name="Race Clinic", slug="race", record_prefix="RAC", time_zone="UTC")
        db.add(clinic)
        db.flush()
        password_hash = hash_password(PASSWORD)
        staff = [
            User(
                clinic_id=clinic.id,
                username=f"{role.value}{n}.race",
                full_name=f"{role.value.title()} {n}",
                role=role.value,
                password_hash=password_hash,
            )
            for n, role in [(0, Role.clinic_admin), (0, Role.prescriber)]
            + [(k, Role.nurse) for k in range(THREADS)]
        ]
        db.add_all(staff)
        patient = Patient(
            clinic_id=clinic.id,
            record_number="RAC-000001",
            given_name="Ada",
            family_name="Race",
            date_of_birth=dt.date(1980, 1, 1),
            sex="female",
        )
        db.add(patient)
        db.flush()
        admin = auth.principal_for(staff[0], None, "test")
        reg = setup.create_registration(
            db,
            admin,
            RegistrationIn(dea_number="AB1234563", location_name="Race", address="1 Lane", state="MA"),
        )
        vial = setup.create_product(
            db,
            admin,
            ProductIn(
                name="Ketamine",
                ndc="0409-2051-05",
                strength_mg_per_ml=50,
                container_ml=10,
                ingredient="ketamine",
                dosage_form="injection, solution",
            ),
        )
        inventories.take_initial_inventory(db, admin, InitialInventoryIn(registration_id=reg.id))
        entry = movements.record_receipt(
            db, admin, receipt(reg.id, vial.id, "LAST-1", clinic_today() + dt.timedelta(days=90))
        )
        session_id = treatment_session(db, clinic.id, patient.id, staff[2].id)
        db.commit()
        assert entry.lot_id is not None
        return {
            "clinic_id": clinic.id,
            "lot_id": entry.lot_id,
            "patient_id": patient.id,
            "session_id": session_id,
            "prescriber_id": staff[1].id,
            **{f"nurse{k}": staff[2 + k].id for k in range(THREADS)},
        }


def _race(engine: Engine, ids: dict[str, int], take: Callable[..., object]) -> list[str]:
    factory = make_sessionmaker(engine)
    with factory() as db:
        nurses = [
            auth.principal_for(db.get(User, ids[f"nurse{n}"]), None, "test")  # type: ignore[arg-type]
            for n in range(THREADS)
        ]
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        barrier.wait()
        db = factory()
        try:
            take(db, nurses[n])
            db.commit()
            result = "taken"
        except InvalidInput as exc:
            db.rollback()
            result = next(iter(exc.errors.values()), "refused")
        finally:
            db.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == THREADS, outcomes
    return outcomes


def _settled(engine: Engine, ids: dict[str, int]) -> tuple[int, int]:
    with make_sessionmaker(engine)() as db:
        balance = db.get(Lot, ids["lot_id"]).balance_ug  # type: ignore[union-attr]
        doses = db.execute(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.kind.in_(["administration", "waste"]))
        ).scalar_one()
        assert chain.verify_clinic(db, ids["clinic_id"]).ok
        return balance, doses


def test_nurses_drawing_the_last_vial_at_once_one_gets_it(scratch_engine: Engine) -> None:
    ids = _clinic_with_one_vial(scratch_engine)

    def draw_all(db, nurse) -> None:  # type: ignore[no-untyped-def]
        movements.record_administration(
            db,
            nurse,
            lot_id=ids["lot_id"],
            amount_mg=500,
            patient_id=ids["patient_id"],
            session_id=ids["session_id"],
            given_at=dt.datetime.now(dt.UTC),
            drug="ketamine",
            route="iv_infusion",
        )

    outcomes = _race(scratch_engine, ids, draw_all)
    assert outcomes.count("taken") == 1, outcomes
    assert all("Only 0 mg (0 mL) left" in o for o in outcomes if o != "taken"), outcomes
    assert _settled(scratch_engine, ids) == (0, 1)


def test_concurrent_partial_draws_stop_exactly_at_zero(scratch_engine: Engine) -> None:
    ids = _clinic_with_one_vial(scratch_engine)

    def draw(db, nurse) -> None:  # type: ignore[no-untyped-def]
        movements.record_administration(
            db,
            nurse,
            lot_id=ids["lot_id"],
            amount_mg=150,
            patient_id=ids["patient_id"],
            session_id=ids["session_id"],
            given_at=dt.datetime.now(dt.UTC),
            drug="ketamine",
            route="iv_infusion",
        )

    outcomes = _race(scratch_engine, ids, draw)
    assert outcomes.count("taken") == 3, outcomes  # 3 x 150 mg out of 500 mg
    assert _settled(scratch_engine, ids) == (50_000, 3)


def test_concurrent_wastes_with_witnesses_never_overdraw(scratch_engine: Engine) -> None:
    ids = _clinic_with_one_vial(scratch_engine)

    def waste(db, nurse) -> None:  # type: ignore[no-untyped-def]
        movements.record_waste(
            db,
            nurse,
            lot_id=ids["lot_id"],
            amount_mg=300,
            reason="Concurrent waste",
            witness_user_id=ids["prescriber_id"],
            witness_password=PASSWORD,
        )

    outcomes = _race(scratch_engine, ids, waste)
    assert outcomes.count("taken") == 1, outcomes
    assert _settled(scratch_engine, ids) == (200_000, 1)


def test_simultaneous_deliveries_of_a_new_lot_make_one_lot(scratch_engine: Engine) -> None:
    ids = _clinic_with_one_vial(scratch_engine)
    with make_sessionmaker(scratch_engine)() as db:
        lot = db.get(Lot, ids["lot_id"])
        assert lot is not None
        registration_id, product_id = lot.registration_id, lot.product_id

    def deliver(db, nurse) -> None:  # type: ignore[no-untyped-def]
        expiry = clinic_today() + dt.timedelta(days=200)
        movements.record_receipt(db, nurse, receipt(registration_id, product_id, "NEW-7", expiry))

    outcomes = _race(scratch_engine, ids, deliver)
    assert outcomes == ["taken"] * THREADS
    with make_sessionmaker(scratch_engine)() as db:
        [new] = db.execute(select(Lot).where(Lot.lot_number == "NEW-7")).scalars().all()
        assert new.balance_ug == THREADS * 500_000
        assert chain.verify_clinic(db, ids["clinic_id"]).ok


def test_two_initial_inventories_at_once_one_is_kept(scratch_engine: Engine) -> None:
    ids = _clinic_with_one_vial(scratch_engine)
    with make_sessionmaker(scratch_engine)() as db:
        admin = db.execute(select(User).where(User.role == "clinic_admin")).scalar_one()
        reg = setup.create_registration(
            db,
            auth.principal_for(admin, None, "test"),
            RegistrationIn(dea_number="BK2718281", location_name="Second", address="2 Lane", state="MA"),
        )
        db.commit()
        registration_id = reg.id

    def open_books(db, nurse) -> None:  # type: ignore[no-untyped-def]
        inventories.take_initial_inventory(db, nurse, InitialInventoryIn(registration_id=registration_id))

    outcomes = _race(scratch_engine, ids, open_books)
    assert outcomes.count("taken") == 1, outcomes
    assert all("on record" in o for o in outcomes if o != "taken"), outcomes
