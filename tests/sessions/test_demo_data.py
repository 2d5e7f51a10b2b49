"""The demo's treatment sessions: finished series run through the use-cases (signed, alarms
resolved, grade-3 events reviewed), today's running, checked-in and booked sessions, and
``ketacare demo --live`` feeding the running sessions over HL7."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketacare import demo, migrations
from ketacare.audit import service as audit
from ketacare.auth.models import Clinic
from ketacare.config import Environment, Settings, load_settings
from ketacare.db import make_engine, make_sessionmaker, transaction
from ketacare.planning.models import PlanSession
from ketacare.sessions import rules
from ketacare.sessions.demo_data import running_sessions
from ketacare.sessions.models import AdverseEvent, Alarm, ScoreRecord, TreatmentSession, VitalSign

PATIENTS = 30


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data_dir: Path = tmp_path_factory.mktemp("demo")
    settings = load_settings(
        environment=Environment.test, data_dir=data_dir, database_url="", secret_key="d" * 40
    )
    engine = make_engine(settings.resolved_database_url)
    migrations.upgrade(engine)
    with transaction(make_sessionmaker(engine)) as db:
        demo.seed(db, patients_per_clinic=PATIENTS)
    engine.dispose()
    yield settings


@pytest.fixture
def db(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.resolved_database_url)
    with transaction(make_sessionmaker(engine)) as session:
        yield session
    engine.dispose()


def _sessions(db: Session, status: str) -> list[TreatmentSession]:
    return list(db.execute(select(TreatmentSession).where(TreatmentSession.status == status)).scalars())


def test_finished_series_are_complete_signed_and_resolved(db: Session) -> None:
    done = _sessions(db, rules.DISCHARGED)
    by_clinic: dict[int, int] = {}
    for s in done:
        by_clinic[s.clinic_id] = by_clinic.get(s.clinic_id, 0) + 1
        assert s.nurse_signed_at is not None and s.prescriber_signed_at is not None
        assert s.discharge_override_reason is None  # the checklist was green, not overridden
        assert s.discharged_at is not None and s.discharged_at < dt.datetime.now(dt.UTC)
        sbp = db.execute(
            select(func.count()).where(VitalSign.session_id == s.id, VitalSign.kind == "sbp")
        ).scalar_one()
        assert sbp >= 1 + s.planned_duration_min // 5 + 4  # baseline, every 5 min, recovery
        scales = set(db.execute(select(ScoreRecord.scale).where(ScoreRecord.session_id == s.id)).scalars())
        assert scales == {"nrs", "moaas", "cadss6"}
    assert sorted(by_clinic.values()) == [15, 15]
    alarms = list(db.execute(select(Alarm)).scalars())
    assert {a.clinic_id for a in alarms if a.rule_key == "sbp_high"} == set(
        by_clinic
    )  # one per clinic at least
    assert all(a.status == "resolved" and a.acknowledged_by_id is not None for a in alarms)
    events = list(db.execute(select(AdverseEvent)).scalars())
    assert events, "a few adverse events at the demo rates"
    for event in events:
        assert event.needs_review == (event.grade >= 3)
        assert (event.reviewed_at is not None) == event.needs_review
    assert audit.verify_database(db).ok


def test_today_one_running_one_checked_in_and_booked_sessions(db: Session) -> None:
    now = dt.datetime.now(dt.UTC)
    running = _sessions(db, rules.RUNNING)
    assert len(running) == 2 and len({s.clinic_id for s in running}) == 2
    for s in running:
        latest = db.execute(
            select(func.max(VitalSign.observed_at)).where(VitalSign.session_id == s.id)
        ).scalar_one()
        assert now - dt.timedelta(minutes=6) < latest <= now
    assert {s.session_id for s in running_sessions(db)} == {s.id for s in running}
    assert len(_sessions(db, rules.CHECKED_IN)) == 2
    for clinic in db.execute(select(Clinic)).scalars():
        tz = zoneinfo.ZoneInfo(clinic.time_zone)
        today = now.astimezone(tz).date()
        waiting = [
            p
            for p in db.execute(
                select(PlanSession).where(
                    PlanSession.clinic_id == clinic.id,
                    PlanSession.id.not_in(select(TreatmentSession.plan_session_id)),
                    PlanSession.starts_at > now - dt.timedelta(hours=12),
                    PlanSession.starts_at < now + dt.timedelta(hours=12),
                )
            ).scalars()
            if p.starts_at.astimezone(tz).date() == today
        ]
        assert len(waiting) >= 2, clinic.slug


def test_live_feed_sends_vitals_and_a_spike_to_each_running_session(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ketacare import cli

    monkeypatch.setattr(cli, "LIVE_INTERVAL_S", 0.2)
    monkeypatch.setattr(cli, "LIVE_SPIKE_AFTER_S", 0.6)
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        running = [s.id for s in _sessions(db, rules.RUNNING)]

    def spiked() -> set[int]:
        with transaction(factory) as db:
            return set(
                db.execute(
                    select(Alarm.session_id).where(
                        Alarm.session_id.in_(running), Alarm.rule_key == "sbp_high", Alarm.status == "raised"
                    )
                ).scalars()
            )

    with cli._live_feed(settings, 0):
        deadline = time.monotonic() + 60
        while spiked() != set(running) and time.monotonic() < deadline:
            time.sleep(0.2)
    with transaction(factory) as db:
        devices = set(
            db.execute(
                select(VitalSign.session_id, VitalSign.device_id).where(VitalSign.source == "hl7")
            ).all()
        )
    assert spiked() == set(running)
    engine.dispose()
    assert devices == {(sid, f"DEMO-MONITOR-{sid}") for sid in running}
