"""The demo's prescribing and long-term safety: credentials with valid check digits (one licence
expiring soon), one signed prescription, one draft blocked for a missing PDMP check, liver tests,
bladder screens and one hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import demo, migrations
from ketacare.auth import service as auth
from ketacare.config import Environment, load_settings
from ketacare.db import make_engine, make_sessionmaker, transaction
from ketacare.prescribing import credentials, prescriptions
from ketacare.prescribing.identifiers import check_dea, npi_error
from ketacare.prescribing.models import Prescription
from ketacare.safety.models import BladderScreen, LiverTest, SafetyHold
from tests.helpers import clinic_today


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    data_dir: Path = tmp_path_factory.mktemp("rxdemo")
    settings = load_settings(
        environment=Environment.test, data_dir=data_dir, database_url="", secret_key="d" * 40
    )
    engine = make_engine(settings.resolved_database_url)
    migrations.upgrade(engine)
    with transaction(make_sessionmaker(engine)) as session:
        demo.seed(session, patients_per_clinic=30)
    with transaction(make_sessionmaker(engine)) as session:
        yield session
    engine.dispose()


def _admin(db: Session, slug: str):  # type: ignore[no-untyped-def]
    return auth.principal_for(auth.user_by_username(db, f"admin.{slug}"), None, "test")


@pytest.mark.parametrize("slug", ["north", "bay"])
def test_demo_credentials_are_valid_and_one_licence_expires_soon(db: Session, slug: str) -> None:
    admin = _admin(db, slug)
    staff = {c.user.full_name: c for c in credentials.staff_credentials(db, admin)}
    for name in ("Dana Okafor MD", "Pat Rivera NP"):
        c = staff[name]
        assert c.ok, c.problems
        assert all(check_dea(d.number, name).name_letter_matches for d in c.deas)
        assert c.npi and npi_error(c.npi) is None
    expiring = credentials.expiring_credentials(db, admin)
    assert [(e.name, e.kind) for e in expiring] == [("Pat Rivera NP", "licence")]


@pytest.mark.parametrize("slug", ["north", "bay"])
def test_demo_prescriptions_one_signed_one_blocked_for_the_pdmp(db: Session, slug: str) -> None:
    admin = _admin(db, slug)
    rows = list(db.execute(select(Prescription).where(Prescription.clinic_id == admin.clinic_id)).scalars())
    signed = [r for r in rows if r.signed_at is not None]
    drafts = [r for r in rows if r.signed_at is None]
    assert len(signed) == 1 and len(drafts) == 1 and signed[0].content_sha256
    blocks = {c.key for c in prescriptions.view(db, admin, drafts[0].id).evaluation.blocks}
    assert blocks == {"pdmp"}


@pytest.mark.parametrize("slug", ["north", "bay"])
def test_demo_liver_tests_bladder_screens_and_one_hold(db: Session, slug: str) -> None:
    clinic_id = _admin(db, slug).clinic_id
    tests = list(db.execute(select(LiverTest).where(LiverTest.clinic_id == clinic_id)).scalars())
    assert sorted(t.outcome for t in tests) == ["hold", "normal"]
    assert (
        len(list(db.execute(select(BladderScreen).where(BladderScreen.clinic_id == clinic_id)).scalars()))
        == 2
    )
    holds = list(db.execute(select(SafetyHold).where(SafetyHold.clinic_id == clinic_id)).scalars())
    assert len(holds) == 1 and holds[0].kind == "liver" and holds[0].released_at is None
    assert all(t.drawn_on <= clinic_today() + dt.timedelta(days=1) for t in tests)
