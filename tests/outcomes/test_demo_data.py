"""The demo's follow-up: every finished series has a baseline and answered follow-ups along
responder, relapse, non-responder and dropout trajectories; seeding stays fast; the registry
has something to show."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import demo, migrations
from ketacare.analytics import extract, registry
from ketacare.auth.models import Clinic
from ketacare.db import make_engine, make_sessionmaker, transaction
from ketacare.outcomes.models import FollowUp, MmeReading, OutcomeScore
from tests.helpers import clinic_today

PATIENTS = 30


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Session, float]]:
    path: Path = tmp_path_factory.mktemp("outcomes-demo") / "demo.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        import ketacare.outcomes.demo_data as outcomes_demo

        original = outcomes_demo.seed
        spent = [0.0]

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            original(*args, **kwargs)
            spent[0] += time.perf_counter() - start

        outcomes_demo.seed = timed  # type: ignore[assignment]
        try:
            demo.seed(db, patients_per_clinic=PATIENTS)
        finally:
            outcomes_demo.seed = original  # type: ignore[assignment]
    session = factory()
    yield session, spent[0]
    session.close()
    engine.dispose()


def test_every_finished_series_has_baseline_and_follow_up(seeded) -> None:  # type: ignore[no-untyped-def]
    db, spent = seeded
    assert spent < 3.0
    baselines = db.execute(select(FollowUp).where(FollowUp.timepoint == "baseline")).scalars().all()
    assert len(baselines) >= 3 and all(b.status == "completed" for b in baselines)
    answered = db.execute(select(OutcomeScore).where(OutcomeScore.timepoint != "baseline")).scalars().all()
    assert answered and all(s.answered_at < dt.datetime.now(dt.UTC) for s in answered)
    assert db.execute(select(MmeReading)).first() is not None


def test_registry_shows_responders_and_relapse(seeded) -> None:  # type: ignore[no-untyped-def]
    db, _ = seeded
    clinic = db.execute(select(Clinic).order_by(Clinic.id)).scalars().first()
    report = registry.build(extract.extract(db, clinic.id), clinic_today(), research=False)
    overall = next(r for r in report.table("summary").rows if r["dimension"] == "all")
    assert overall["patients"] >= 3 and overall["evaluable"] >= 3
    assert overall["responder30_pct"] is not None and 0 < overall["responder30_pct"] < 100
