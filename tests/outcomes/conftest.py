"""Outcome fixtures: a principal for a world user and a follow-up with a fresh link."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.outcomes import service
from ketacare.outcomes.schemas import OneOffIn, SeriesIn
from tests.conftest import SECRET_KEY


def principal(user) -> Principal:  # type: ignore[no-untyped-def]
    return auth.principal_for(user, None, "127.0.0.1")


@pytest.fixture
def nurse(world) -> Principal:  # type: ignore[no-untyped-def]
    return principal(world.users["nurse"])


def baseline_link(db: Session, actor: Principal, patient_id: int, now: dt.datetime) -> tuple[int, str]:
    row = service.add_one_off(db, actor, patient_id, OneOffIn(timepoint="baseline", due_on=now.date()))
    return row.id, service.issue_link(db, actor, SECRET_KEY, row.id, now)


def series(db: Session, actor: Principal, patient_id: int, end: dt.date) -> list[int]:
    return [r.id for r in service.schedule_series(db, actor, patient_id, SeriesIn(series_end_on=end))]
