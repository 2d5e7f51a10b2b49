"""``ketacare ledger verify`` on a real SQLite file: intact, unknown clinic, and altered."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ketacare.auth import service as auth
from ketacare.auth.models import Role, User
from ketacare.cli import app
from ketacare.db import make_engine, make_sessionmaker, transaction
from ketacare.ledger import inventories, setup
from ketacare.ledger.schemas import InitialInventoryIn, RegistrationIn

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KETACARE_DATABASE_URL", raising=False)
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    return tmp_path


def test_ledger_verify(env: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    created = runner.invoke(
        app, ["clinic", "create", "--name", "North", "--slug", "north", "--record-prefix", "NSP"]
    )
    assert created.exit_code == 0, created.output
    # Every clinic in the clinics table is checked, with or without entries.
    assert "north: ledger intact, 0 entries verified." in runner.invoke(app, ["ledger", "verify"]).output

    engine = make_engine(f"sqlite:///{env / 'ketacare.sqlite3'}")
    with transaction(make_sessionmaker(engine)) as db:
        clinic = auth.clinic_by_slug(db, "north")
        admin = User(
            clinic_id=clinic.id,
            username="admin.north",
            full_name="Admin",
            role=Role.clinic_admin,
            password_hash="x",
        )
        db.add(admin)
        db.flush()
        actor = auth.principal_for(admin, None, "cli-test")
        reg = setup.create_registration(
            db,
            actor,
            RegistrationIn(dea_number="AB1234563", location_name="North", address="1 Rd", state="MA"),
        )
        inventories.take_initial_inventory(db, actor, InitialInventoryIn(registration_id=reg.id))
    engine.dispose()

    intact = runner.invoke(app, ["ledger", "verify"])
    assert intact.exit_code == 0 and "north: ledger intact, 1 entries verified" in " ".join(
        intact.output.split()
    )
    unknown = runner.invoke(app, ["ledger", "verify", "--clinic", "south"])
    assert unknown.exit_code == 2 and "No clinic with slug 'south'" in " ".join(unknown.output.split())

    with sqlite3.connect(env / "ketacare.sqlite3") as conn:
        conn.execute("DROP TRIGGER ledger_entries_no_update")
        conn.execute("UPDATE ledger_entries SET reason = 'edited'")
    altered = runner.invoke(app, ["ledger", "verify", "--clinic", "north"])
    assert altered.exit_code == 1
    said = " ".join(altered.output.split())  # Rich wraps long lines
    assert "north: ledger altered: entry 1 (or its lot or inventory) was altered after it was written" in said
