"""Every limit and every single-use value holds under parallel requests (issue 15, item 2).

Each test releases its threads together with a barrier; each thread has its own connection and
transaction (its own HTTP client where the test goes through the app). Runs on the backend under
test: SQLite by default, PostgreSQL with KETACARE_TEST_DATABASE_URL. Before the fix, on
PostgreSQL every parallel attempt passed the same read-compare-write check (30 of 30 wrong
passwords checked, one TOTP code opening 8 sessions, 20 of 20 bookings stored).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from ketacare import migrations
from ketacare.app import create_app
from ketacare.auth import service as auth
from ketacare.auth.models import ApiToken, Clinic, LoginAttempt, LoginSession, Role, User
from ketacare.auth.passwords import hash_password
from ketacare.config import Environment, Settings, load_settings
from ketacare.db import make_engine, make_sessionmaker, utcnow
from ketacare.directory import service as directory
from ketacare.directory.models import ConsultationRequest, ConsultationSlot, FormHit
from ketacare.directory.schemas import BookingIn
from ketacare.errors import InvalidInput, KetaCareError
from ketacare.outcomes import service as outcomes
from ketacare.outcomes.models import OutcomeAnswer
from ketacare.outcomes.schemas import OneOffIn
from ketacare.patients.models import Patient
from tests.conftest import SECRET_KEY
from tests.helpers import PASSWORD

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
ANSWERS = {
    "nrs.now": "6",
    "nrs.average": "7",
    "nrs.worst": "9",
    "peg.pain_average": "7",
    "peg.enjoyment": "6",
    "peg.general_activity": "8",
    "bladder.frequency": "0",
    "bladder.urgency": "0",
    "bladder.dysuria": "0",
    "bladder.hematuria": "0",
    "bladder.suprapubic_pain": "1",
}


@dataclass
class Race:
    engine: Engine
    factory: sessionmaker[Session]
    settings: Settings
    clinic_id: int
    patient_id: int
    users: dict[str, int]


def _setup(engine: Engine, tmp_path: Any, extra_users: int = 0, **overrides: Any) -> Race:
    if engine.dialect.name == "sqlite":
        # One connection at a time on SQLite: the others wait for it while Argon2 runs (seconds
        # on a loaded machine), longer than the default five.
        engine = make_engine(str(engine.url), sqlite_busy_timeout_ms=300_000)
    migrations.upgrade(engine)
    factory = make_sessionmaker(engine)
    settings = load_settings(
        environment=Environment.test, data_dir=tmp_path, secret_key=SECRET_KEY, **overrides
    )
    password_hash = hash_password(PASSWORD)
    with factory() as db:
        clinic = Clinic(name="Race Clinic", slug="race", record_prefix="RAC", time_zone="UTC")
        db.add(clinic)
        db.flush()
        people = {
            "nurse": Role.nurse,
            "nurse2": Role.nurse,
            "prescriber": Role.prescriber,
            "admin": Role.clinic_admin,
        } | {f"user{n}": Role.nurse for n in range(extra_users)}
        rows = {
            key: User(
                clinic_id=clinic.id,
                username=f"{key}.race",
                full_name=key.title(),
                role=role.value,
                password_hash=password_hash,
                totp_secret=pyotp.random_base32() if role in (Role.prescriber, Role.clinic_admin) else None,
                totp_enrolled=role in (Role.prescriber, Role.clinic_admin),
            )
            for key, role in people.items()
        }
        db.add_all(rows.values())
        patient = Patient(
            clinic_id=clinic.id,
            record_number="RAC-000001",
            given_name="Ada",
            family_name="Race",
            date_of_birth=dt.date(1980, 1, 1),
            sex="female",
            email="ada@example.org",
        )
        db.add(patient)
        db.commit()
        return Race(engine, factory, settings, clinic.id, patient.id, {k: u.id for k, u in rows.items()})


def _race(threads: int, attempt: Callable[[int], str]) -> list[str]:
    """Run ``attempt(n)`` in ``threads`` threads released together; their results."""
    barrier = threading.Barrier(threads)
    results: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        barrier.wait()
        try:
            result = attempt(n)
        except Exception as exc:
            result = f"error: {type(exc).__name__}: {exc}"
        with lock:
            results.append(result)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert len(results) == threads, results
    return results


def _in_transaction(race: Race, work: Callable[[Session], str]) -> str:
    """One unit of work as a request runs it: commit on success or on a remembered refusal."""
    db = race.factory()
    try:
        result = work(db)
        db.commit()
        return result
    except KetaCareError as exc:
        if exc.keep_writes:
            db.commit()
        else:
            db.rollback()
        return type(exc).__name__
    finally:
        db.close()


def _count(race: Race, model: Any, *where: Any) -> int:
    with race.factory() as db:
        return int(db.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def _client(race: Race) -> TestClient:
    app = create_app(race.settings, engine=race.engine, check_migrations=False)
    return TestClient(app, base_url="http://testserver")


def _csrf(client: TestClient, path: str = "/login") -> str:
    match = CSRF_INPUT.search(client.get(path).text)
    assert match, path
    return match.group(1)


# --- log-in throttling --------------------------------------------------------------------------


def test_parallel_wrong_passwords_for_one_account_check_only_the_free_attempts(
    scratch_engine: Engine, tmp_path: Any
) -> None:
    """NIST SP 800-63B 5.2.2 rate limiting: 30 parallel wrong passwords, 5 checked (was 30)."""
    race = _setup(scratch_engine, tmp_path)
    clients = [_client(race) for _ in range(30)]
    tokens = [_csrf(c) for c in clients]

    def attempt(n: int) -> str:
        form = {"username": "nurse.race", "password": f"wrong guess {n}", "csrf_token": tokens[n]}
        return str(clients[n].post("/login", data=form, follow_redirects=False).status_code)

    results = _race(30, attempt)
    assert sorted(set(results)) == ["401", "429"], results
    assert results.count("401") == race.settings.login_max_failures_per_user, results
    assert _count(race, LoginAttempt, LoginAttempt.username == "nurse.race") == 5


def test_parallel_wrong_passwords_from_one_address_stop_at_the_address_limit(
    scratch_engine: Engine, tmp_path: Any
) -> None:
    """One address, 10 accounts at once, limit 4 failures per address: 4 checked (was 10)."""
    race = _setup(scratch_engine, tmp_path, extra_users=10, login_max_failures_per_address=4)

    def attempt(n: int) -> str:
        def work(db: Session) -> str:
            found = auth.login(db, race.settings, f"user{n}.race", "wrong guess", "203.0.113.9")
            return "checked" if found is None else "opened"

        return _in_transaction(race, work)

    results = _race(10, attempt)
    assert results.count("checked") == 4, results
    assert results.count("Throttled") == 6, results


def test_one_totp_code_completes_one_of_eight_pending_logins(scratch_engine: Engine, tmp_path: Any) -> None:
    """RFC 6238 section 5.2: a code is accepted once. Eight logins pending two-factor, one code
    sent to all eight at once: one session opens (was eight)."""
    race = _setup(scratch_engine, tmp_path)
    clients = [_client(race) for _ in range(8)]
    for client in clients:
        form = {"username": "prescriber.race", "password": PASSWORD, "csrf_token": _csrf(client)}
        assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    tokens = [_csrf(c, "/login/mfa") for c in clients]
    with race.factory() as db:
        secret = db.get(User, race.users["prescriber"]).totp_secret  # type: ignore[union-attr]
    code = pyotp.TOTP(secret).now()  # type: ignore[arg-type]

    def attempt(n: int) -> str:
        form = {"code": code, "next": "/", "csrf_token": tokens[n]}
        return str(clients[n].post("/login/mfa", data=form, follow_redirects=False).status_code)

    results = _race(8, attempt)
    assert results.count("303") == 1, results
    # the others are refused as a wrong code (422) until the account's free failures are used,
    # then throttled (429)
    assert sorted(set(results) - {"303"}) == ["422", "429"], results
    assert results.count("422") == race.settings.login_max_failures_per_user, results
    open_sessions = _count(
        race, LoginSession, LoginSession.mfa_pending.is_(False), LoginSession.ended_at.is_(None)
    )
    assert open_sessions == 1


def test_parallel_wrong_reauthentications_check_only_the_free_attempts(
    scratch_engine: Engine, tmp_path: Any
) -> None:
    race = _setup(scratch_engine, tmp_path)
    with race.factory() as db:
        user = db.get(User, race.users["nurse"])
        assert user is not None
        found = auth.login(db, race.settings, "nurse.race", PASSWORD, "198.51.100.7")
        assert found is not None
        db.commit()
        session_id = db.execute(select(LoginSession.id)).scalar_one()
        actor = auth.principal_for(user, db.get(LoginSession, session_id), "198.51.100.7")

    def attempt(n: int) -> str:
        def work(db: Session) -> str:
            login_session = db.get(LoginSession, session_id)
            assert login_session is not None
            ok = auth.reauthenticate(db, race.settings, actor, login_session, f"wrong {n}", None)
            return "ok" if ok else "checked"

        return _in_transaction(race, work)

    results = _race(20, attempt)
    assert results.count("checked") == 5, results
    assert results.count("Throttled") == 15, results


# --- ledger witnesses ---------------------------------------------------------------------------


def test_parallel_wrong_witness_passwords_count_towards_the_witness_limit(
    scratch_engine: Engine, tmp_path: Any
) -> None:
    """A witness's password is a password attempt: 20 wrong ones at once, 5 checked (was 20,
    and never counted)."""
    race = _setup(scratch_engine, tmp_path)
    with race.factory() as db:
        nurse = auth.principal_for(db.get(User, race.users["nurse"]), None, "192.0.2.4")  # type: ignore[arg-type]
        witness = db.get(User, race.users["nurse2"])
        assert witness is not None
    limits = auth.attempt_limits(race.settings)

    def attempt(n: int) -> str:
        def work(db: Session) -> str:
            checks = auth.check_passwords(
                db, limits, [(db.merge(witness), f"wrong {n}")], nurse.client_addr or ""
            )
            return "checked" if checks[0].refused is None else "refused"

        return _in_transaction(race, work)

    results = _race(20, attempt)
    assert results.count("checked") == 5, results
    assert results.count("refused") == 15, results
    assert _count(race, LoginAttempt, LoginAttempt.username == "nurse2.race") == 5


# --- public forms and single-use links ----------------------------------------------------------


def test_parallel_bookings_from_one_address_stop_at_the_hourly_limit(
    scratch_engine: Engine, tmp_path: Any
) -> None:
    """20 bookings at once from one address, limit 5 an hour: 5 stored (was 20)."""
    race = _setup(scratch_engine, tmp_path)
    with race.factory() as db:
        start = utcnow() + dt.timedelta(days=2)
        slots = [
            ConsultationSlot(clinic_id=race.clinic_id, starts_at=start + dt.timedelta(hours=n), minutes=30)
            for n in range(20)
        ]
        db.add_all(slots)
        db.commit()
        slot_ids = [s.id for s in slots]
    hashed = directory.addr_hash(SECRET_KEY, "192.0.2.55")

    def attempt(n: int) -> str:
        def work(db: Session) -> str:
            directory.throttle(db, "book", hashed)
            data = BookingIn(slot_id=slot_ids[n], name=f"Person {n}", email=f"p{n}@example.org")
            directory.book(db, race.clinic_id, data, None, None, utcnow())
            return "booked"

        return _in_transaction(race, work)

    results = _race(20, attempt)
    assert results.count("booked") == directory.RATE_LIMITS["book"], results
    assert results.count("Throttled") == 15, results
    assert _count(race, ConsultationRequest) == 5
    assert _count(race, FormHit, FormHit.form == "book") == 5


def test_a_cancel_link_used_at_once_cancels_once(scratch_engine: Engine, tmp_path: Any) -> None:
    race = _setup(scratch_engine, tmp_path)
    with race.factory() as db:
        slot = ConsultationSlot(
            clinic_id=race.clinic_id, starts_at=utcnow() + dt.timedelta(days=2), minutes=30
        )
        db.add(slot)
        db.flush()
        data = BookingIn(slot_id=slot.id, name="Once", email="once@example.org")
        row = directory.book(db, race.clinic_id, data, None, None, utcnow())
        db.commit()
        token = directory.cancel_token(SECRET_KEY, row)
        slot_id = slot.id

    def attempt(n: int) -> str:
        return _in_transaction(race, lambda db: directory.cancel(db, SECRET_KEY, token, utcnow()).status)

    results = _race(8, attempt)
    assert results == ["cancelled"] * 8, results
    with race.factory() as db:
        from ketacare.audit.models import AuditEntry

        cancels = db.execute(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "directory.request.cancel")
        ).scalar_one()
        assert cancels == 1
        assert db.get(ConsultationSlot, slot_id).status == "open"  # type: ignore[union-attr]


def test_a_questionnaire_link_sent_in_at_once_stores_one_set_of_answers(
    scratch_engine: Engine, tmp_path: Any
) -> None:
    race = _setup(scratch_engine, tmp_path)
    now = utcnow()
    with race.factory() as db:
        nurse = auth.principal_for(db.get(User, race.users["nurse"]), None, "test")  # type: ignore[arg-type]
        row = outcomes.add_one_off(
            db, nurse, race.patient_id, OneOffIn(timepoint="baseline", due_on=now.date())
        )
        token = outcomes.issue_link(db, nurse, SECRET_KEY, row.id, now)
        db.commit()

    def attempt(n: int) -> str:
        def work(db: Session) -> str:
            outcomes.answer_link(db, SECRET_KEY, token, ANSWERS, now, submit=True)
            return "stored"

        return _in_transaction(race, work)

    results = _race(8, attempt)
    assert results.count("stored") == 1, results
    assert results.count("InvalidInput") == 7, results
    assert _count(race, OutcomeAnswer) == len(ANSWERS)


def test_parallel_api_tokens_with_one_name_make_one_token(scratch_engine: Engine, tmp_path: Any) -> None:
    """Token names are unique per clinic (a UNIQUE constraint): 8 at once, one made, the others
    told the name is taken, no server error."""
    race = _setup(scratch_engine, tmp_path)
    with race.factory() as db:
        admin = auth.principal_for(db.get(User, race.users["admin"]), None, "test")  # type: ignore[arg-type]

    def attempt(n: int) -> str:
        def work(db: Session) -> str:
            try:
                auth.create_api_token(db, admin, "monitor", ["device:vitals"])
            except InvalidInput as exc:
                db.rollback()
                return exc.errors.get("name", "other")
            return "created"

        return _in_transaction(race, work)

    results = _race(8, attempt)
    assert results.count("created") == 1, results
    assert all(r == "A token with that name exists in your clinic." for r in results if r != "created"), (
        results
    )
    assert _count(race, ApiToken) == 1
