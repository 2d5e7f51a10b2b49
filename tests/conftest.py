"""Shared fixtures: the real database migrated to head, each test in a rolled-back transaction,
and one account per role (plus a user of another clinic), logged in through the real flow.

Set KETACARE_TEST_DATABASE_URL to run on PostgreSQL (``.ci/run`` does); SQLite otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from ketacare import integrity, migrations
from ketacare.app import create_app
from ketacare.auth import passwords
from ketacare.auth.models import Clinic, Role, User
from ketacare.auth.passwords import hash_password
from ketacare.config import Environment, Settings, load_settings
from ketacare.db import make_engine
from ketacare.patients.models import Patient
from tests.helpers import PASSWORD, next_code

SECRET_KEY = "test-secret-key-" + "x" * 32
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def database_url(tmp_dir: Path) -> str:
    """The database under test. Under pytest-xdist each worker on PostgreSQL gets its own fresh
    database (``<name>_gw0``, ...), created here and dropped by the next run that needs the name;
    on SQLite each worker already has its own temporary directory."""
    url = os.environ.get("KETACARE_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_dir / 'test.sqlite3'}"
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    name = f"{make_url(url).database}_{worker}"
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashes() -> Iterator[PasswordHasher]:
    """Argon2id at the production cost takes about 0.3 s per hash on a CI core, and nearly every
    test logs someone in: the suite hashes with the cheapest Argon2id parameters instead (the
    production parameters are pinned by tests/auth/test_password_parameters.py). Hashes made
    before this swap, e.g. the timing-equaliser dummy, keep their own cost. Yields the real hasher."""
    real = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield real
    passwords._hasher = real


@pytest.fixture(autouse=True)
def _chain_defaults() -> Iterator[None]:
    """Each test starts with the development chain key and no anchor file (an app or a command
    a test runs configures its own, which must not leak into the next test)."""
    integrity.configure(integrity.DEVELOPMENT_KEY)
    yield
    integrity.configure(integrity.DEVELOPMENT_KEY)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = database_url(tmp_path_factory.mktemp("db"))
    engine = make_engine(url)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()
    base = os.environ.get("KETACARE_TEST_DATABASE_URL")
    if base and url != base:  # a worker's own PostgreSQL database
        admin = create_engine(make_url(base).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environment=Environment.test, data_dir=tmp_path, secret_key=SECRET_KEY)


@pytest.fixture
def app(settings: Settings, engine: Engine, session_factory: sessionmaker[Session]) -> FastAPI:
    application = create_app(settings, engine=engine, check_migrations=False)
    application.state.sessionmaker = session_factory
    return application


@dataclass
class World:
    clinic: Clinic
    other_clinic: Clinic
    users: dict[str, User]
    patient_a: Patient
    patient_b: Patient
    other_patient: Patient


ACCOUNTS = {
    # key: (role, clinic is "other"?, enrolled TOTP?, patient link)
    "admin": (Role.clinic_admin, False, True, None),
    "prescriber": (Role.prescriber, False, True, None),
    "nurse": (Role.nurse, False, False, None),
    "researcher": (Role.researcher, False, False, None),
    "auditor": (Role.auditor, False, False, None),
    "patient_a": (Role.patient, False, False, "a"),
    "patient_b": (Role.patient, False, False, "b"),
    "outsider": (Role.prescriber, True, True, None),
    "outsider_nurse": (Role.nurse, True, False, None),
}


def _patient(db: Session, clinic: Clinic, number: str, given: str, family: str) -> Patient:
    patient = Patient(
        clinic_id=clinic.id,
        record_number=number,
        given_name=given,
        family_name=family,
        date_of_birth=dt.date(1980, 5, 17),
        sex="female",
    )
    db.add(patient)
    db.flush()
    return patient


@pytest.fixture
def world(db: Session, password_hash: str) -> World:
    clinic = Clinic(name="Test Pain Clinic", slug="test", record_prefix="TST", time_zone="America/New_York")
    other = Clinic(name="Other Clinic", slug="other", record_prefix="OTH", time_zone="America/Chicago")
    db.add_all([clinic, other])
    db.flush()
    patient_a = _patient(db, clinic, "TST-900001", "Ada", "Lovelace")
    patient_b = _patient(db, clinic, "TST-900002", "Grace", "Hopper")
    other_patient = _patient(db, other, "OTH-900001", "Otto", "Other")
    links = {"a": patient_a.id, "b": patient_b.id}
    users = {}
    for key, (role, in_other, mfa, link) in ACCOUNTS.items():
        user = User(
            clinic_id=(other if in_other else clinic).id,
            username=f"{key}.t",
            full_name=key.replace("_", " ").title(),
            role=role.value,
            prescriber_kind="physician" if role == Role.prescriber else None,
            patient_id=links[link] if link else None,
            password_hash=password_hash,
            totp_secret=pyotp.random_base32() if mfa else None,
            totp_enrolled=mfa,
        )
        db.add(user)
        users[key] = user
    db.flush()
    db.commit()
    return World(clinic, other, users, patient_a, patient_b, other_patient)


class Browser:
    """A TestClient that logs in like a person and sends the CSRF token with every change."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def refresh_csrf(self, path: str = "/login") -> str:
        page = self.client.get(path)
        match = CSRF_INPUT.search(page.text)
        assert match, f"no CSRF token on {path}"
        self.csrf = match.group(1)
        return self.csrf

    def login(self, user: User, password: str = PASSWORD) -> None:
        self.refresh_csrf("/login")
        response = self.client.post(
            "/login",
            data={"username": user.username, "password": password, "csrf_token": self.csrf},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        self.refresh_csrf_from_cookie()
        if response.headers["location"].startswith("/login/mfa"):
            assert user.totp_secret
            code = next_code(user)
            done = self.post("/login/mfa", data={"code": code, "next": "/"}, follow_redirects=False)
            assert done.status_code == 303, done.text
            self.refresh_csrf_from_cookie()  # two-factor rotated the session, so the token too

    def refresh_csrf_from_cookie(self) -> None:
        """After log-in the CSRF cookie is new; read the matching token from any page."""
        page = self.client.get("/login")
        match = CSRF_INPUT.search(page.text)
        assert match
        self.csrf = match.group(1)

    def get(self, url: str, **kwargs: object) -> object:
        return self.client.get(url, **kwargs)  # type: ignore[arg-type]

    def post(self, url: str, data: dict[str, str] | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        form = {"csrf_token": self.csrf, **(data or {})}
        return self.client.post(url, data=form, **kwargs)  # type: ignore[arg-type]

    def api(self, method: str, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json"}
        return self.client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def browser(app: FastAPI) -> Iterator[object]:
    """A factory: ``browser("nurse")`` is a client logged in as the world's nurse."""
    clients: list[TestClient] = []

    def make(key: str | None = None, world: World | None = None) -> Browser:
        client = TestClient(app, base_url="http://testserver", raise_server_exceptions=True)
        clients.append(client)
        b = Browser(client)
        if key is not None:
            assert world is not None
            b.login(world.users[key])
        return b

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def as_role(browser, world: World):  # type: ignore[no-untyped-def]
    def make(key: str) -> Browser:
        return browser(key, world)  # type: ignore[no-any-return]

    return make


@pytest.fixture
def scratch_engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty database of the backend under test (a new PostgreSQL database, dropped after)."""
    url = os.environ.get("KETACARE_TEST_DATABASE_URL")
    if not url:
        engine = make_engine(f"sqlite:///{tmp_path / 'scratch.sqlite3'}")
        yield engine
        engine.dispose()
        return
    name = f"ketacare_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(url).set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
