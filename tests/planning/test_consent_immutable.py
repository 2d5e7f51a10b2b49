"""A signed consent cannot be changed or deleted even with direct database access (triggers of
migration 0002, on SQLite and PostgreSQL); an unsigned one can still be signed."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ketacare.planning.models import Consent
from tests.helpers import clinic_today
from tests.planning.conftest import crps_plan, make_ready


def _plan_with_consent(as_role, world) -> int:  # type: ignore[no-untyped-def]
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    created = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan())
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def test_signed_consent_refuses_update_and_delete_in_the_database(as_role, world, db) -> None:
    plan_id = _plan_with_consent(as_role, world)
    # Unsigned: the row may still change (signing is an UPDATE).
    db.execute(text("UPDATE plan_consents SET signed_name = NULL WHERE plan_id = :p"), {"p": plan_id})
    db.commit()
    signed = as_role("patient_a").api(
        "POST",
        f"/api/v1/me/plans/{plan_id}/consent/sign",
        json={"typed_name": "Ada Lovelace", "signed_on": clinic_today().isoformat(), "agree": True},
    )
    assert signed.status_code == 200, signed.text
    for statement in (
        "UPDATE plan_consents SET signed_name = 'Someone Else' WHERE plan_id = :p",
        "UPDATE plan_consents SET text = 'changed' WHERE plan_id = :p",
        "UPDATE plan_consents SET signed_at = NULL WHERE plan_id = :p",
        "DELETE FROM plan_consents WHERE plan_id = :p",
    ):
        with pytest.raises(DBAPIError, match="a signed consent is never changed"), db.begin_nested():
            db.execute(text(statement), {"p": plan_id})
    row = db.query(Consent).filter_by(plan_id=plan_id).one()
    db.refresh(row)
    assert row.signed_name == "Ada Lovelace" and row.text.startswith("CONSENT")


def test_orm_change_of_a_signed_consent_fails_too(as_role, world, db) -> None:
    plan_id = _plan_with_consent(as_role, world)
    as_role("patient_a").api(
        "POST",
        f"/api/v1/me/plans/{plan_id}/consent/sign",
        json={"typed_name": "Ada Lovelace", "signed_on": clinic_today().isoformat(), "agree": True},
    )
    row = db.query(Consent).filter_by(plan_id=plan_id).one()
    with pytest.raises(DBAPIError, match="a signed consent is never changed"), db.begin_nested():
        row.signed_on = dt.date(2000, 1, 1)
        db.flush()
