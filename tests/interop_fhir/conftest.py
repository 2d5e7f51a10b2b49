"""FHIR test helpers: every resource the API produces is validated with ``fhir.resources``
(its R4B models, which share R4's shape for every type served here), and system clients get
tokens with SMART-style scopes through the auth service, as the token page makes them."""

from __future__ import annotations

import importlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, make_url, select, text
from sqlalchemy.orm import Session

from ketacare import demo, migrations
from ketacare.app import create_app
from ketacare.auth import service as auth
from ketacare.auth.models import Clinic, User
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.config import Environment, load_settings
from ketacare.db import make_engine, make_sessionmaker, transaction

FHIR_JSON = "application/fhir+json"


def validate(resource: dict[str, Any]) -> Any:
    """Parse with the fhir.resources model of the resource's type; raises on anything invalid."""
    kind = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{kind.lower()}")
    return getattr(module, kind).model_validate(resource)


INSTANT_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?\+00:00$")


def utc_z(value: Any) -> Any:
    """What fhir.resources writes back: an instant in UTC ends in ``Z``; any other string (free
    text that happens to hold an instant among it) and every other value comes back unchanged."""
    if isinstance(value, dict):
        return {k: utc_z(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utc_z(v) for v in value]
    if isinstance(value, str) and INSTANT_UTC.match(value):
        return value[:-6] + "Z"
    return value


def validate_bundle(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Validates the bundle and each resource in it; returns the resources."""
    validate(bundle)
    resources = [e["resource"] for e in bundle.get("entry", [])]
    for resource in resources:
        validate(resource)
    return resources


@pytest.fixture
def token_for(db: Session, world) -> Callable[..., dict[str, str]]:  # type: ignore[no-untyped-def]
    """``token_for("system/*.read")``: headers carrying a fresh token of the test clinic."""
    admin = world.users["admin"]
    actor = Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)
    made = 0

    def make(*scopes: str, clinic_actor: Principal | None = None) -> dict[str, str]:
        nonlocal made
        made += 1
        _, secret = auth.create_api_token(db, clinic_actor or actor, f"fhir client {made}", list(scopes))
        db.commit()
        return {"Authorization": f"Bearer {secret}", "Accept": FHIR_JSON}

    return make


@dataclass
class DemoFhir:
    """A committed demo database (two clinics, every feature's demo data) and a client on it."""

    engine: Engine
    client: TestClient
    headers: dict[str, str]  # a system/*.read token of the "north" clinic
    clinic_id: int

    def get(self, path: str, **params: str) -> Any:
        response = self.client.get(path, params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def db(self) -> Session:
        return make_sessionmaker(self.engine)()

    def as_auditor(self) -> DemoFhir:
        """The same database through the clinic's auditor, logged in like a person: the audit
        trail is read in person, never through a token."""
        from ketacare.demo import DEMO_PASSWORD
        from tests.conftest import Browser

        with self.db() as db:
            auditor = db.execute(
                select(User).where(User.clinic_id == self.clinic_id, User.role == Role.auditor.value)
            ).scalar_one()
        person = Browser(TestClient(self.client.app, base_url="http://testserver"))
        person.login(auditor, DEMO_PASSWORD)
        return DemoFhir(self.engine, person.client, {"Accept": FHIR_JSON}, self.clinic_id)


def _scratch_url(tmp: Path) -> tuple[str, Callable[[], None]]:
    url = os.environ.get("KETACARE_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'fhir-demo.sqlite3'}", lambda: None
    name = f"ketacare_fhir_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def demo_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoFhir]:
    """Seeded once for the whole FHIR suite: read-only tests share it (tests that write use the
    per-test rolled-back ``world`` instead)."""
    tmp = tmp_path_factory.mktemp("fhir-demo")
    url, drop = _scratch_url(tmp)
    engine = make_engine(url)
    migrations.upgrade(engine)
    with transaction(make_sessionmaker(engine)) as db:
        demo.seed(db, patients_per_clinic=12)
    with transaction(make_sessionmaker(engine)) as db:
        clinic = db.execute(select(Clinic).where(Clinic.slug == "north")).scalar_one()
        admin = db.execute(
            select(User).where(User.clinic_id == clinic.id, User.role == Role.clinic_admin.value)
        ).scalar_one()
        actor = Principal(admin.id, admin.username, Role.clinic_admin, clinic.id)
        _, secret = auth.create_api_token(db, actor, "fhir demo client", ["system/*.read", "system/*.write"])
        clinic_id = clinic.id
    settings = load_settings(environment=Environment.test, data_dir=tmp, secret_key="fhir-" + "k" * 40)
    app = create_app(settings, engine=engine, check_migrations=False)
    with TestClient(app, base_url="http://testserver") as client:
        yield DemoFhir(engine, client, {"Authorization": f"Bearer {secret}", "Accept": FHIR_JSON}, clinic_id)
    engine.dispose()
    drop()
