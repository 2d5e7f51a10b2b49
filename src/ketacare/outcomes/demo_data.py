"""Demo follow-up: for each finished demo series, a baseline questionnaire before it and the
scheduled follow-ups since, answered along one of four trajectories (responder, relapse after a
few weeks, non-responder, dropout after week 2), opioid readings before and after, and diary
flares. Answers are entered through the outcomes use-cases as a nurse would. Everything here is
demo content (design): trajectories look realistic but describe no one, and no rate here is a
clinical fact."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict

from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.knowledge.outcomes import instruments
from ketacare.outcomes import rules, service
from ketacare.outcomes.models import DiaryEntry, MmeReading
from ketacare.outcomes.schemas import OneOffIn, SeriesIn
from ketacare.screening.demo_data import DemoClinic
from ketacare.sessions import views as session_views

TRAJECTORIES = ("responder", "relapse", "non_responder", "dropout")


def _nurse(db: Session, clinic: DemoClinic) -> Principal:
    user = auth.user_by_username(db, f"nurse.{clinic.slug}")
    assert user is not None
    return Principal(user.id, user.username, Role.nurse, user.clinic_id, "demo", None)


def _pain(kind: str, baseline: int, day: int, rng: random.Random) -> int:
    """NRS on a day after the series along the trajectory (demo design)."""
    if kind in ("responder", "dropout"):
        level = baseline * (0.4 if day <= 84 else 0.55)
    elif kind == "relapse":
        level = baseline * (0.45 if day < 35 else 0.95)
    else:
        level = baseline * 0.9
    return max(0, min(10, round(level + rng.uniform(-1, 1))))


def _answers(keys: list[str], nrs: int, pgic: int, rng: random.Random) -> dict[str, str]:
    form: dict[str, str] = {}
    catalogue = instruments()
    for key in keys:
        for item, _ in catalogue[key].items:
            name = rules.field_name(key, item)
            if key == "nrs":
                value = {"now": nrs, "average": nrs, "worst": min(10, nrs + 2)}[item]
            elif key == "peg":
                value = max(0, min(10, nrs + rng.choice((-1, 0, 1))))
            elif key == "pgic":
                value = pgic
            elif key == "bladder":
                value = 0
            else:
                value = nrs
            form[name] = str(value)
    return form


def _pgic(kind: str, day: int) -> int:
    if kind == "responder" or (kind == "relapse" and day < 35) or kind == "dropout":
        return 2
    return 4 if kind == "relapse" else 5


def seed(db: Session, rng: random.Random, clinic: DemoClinic, patient_ids: list[int]) -> None:
    own = random.Random(f"{rng.getstate()!r}/outcomes/{clinic.slug}")
    nurse = _nurse(db, clinic)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    n = 0
    for pid in patient_ids:
        by_plan: dict[int, list[dt.datetime]] = defaultdict(list)
        for row in session_views.patient_sessions(db, nurse, pid):
            if row.status == "discharged" and row.started_at is not None:
                by_plan[row.plan_id].append(row.started_at)
        for plan_id, starts in by_plan.items():
            first, last = min(starts), max(starts)
            if (now - last).days < 7:
                continue  # today's boosters: no follow-up yet
            # offset by clinic: each demo clinic shows a different mix of the four trajectories
            kind = TRAJECTORIES[(n + clinic.id) % len(TRAJECTORIES)]
            n += 1
            _series(db, own, nurse, pid, plan_id, kind, first, last, now)


def _series(
    db: Session,
    rng: random.Random,
    nurse: Principal,
    pid: int,
    plan_id: int,
    kind: str,
    first: dt.datetime,
    last: dt.datetime,
    now: dt.datetime,
) -> None:
    baseline = rng.randint(6, 9)
    base_at = first - dt.timedelta(days=3)
    row = service.add_one_off(db, nurse, pid, OneOffIn(timepoint="baseline", due_on=base_at.date()))
    service.enter_answers(db, nurse, row.id, _answers(row.instruments, baseline, 4, rng), base_at)
    mme_before = rng.choice((0.0, 30.0, 45.0, 60.0, 90.0))
    db.add(
        MmeReading(
            clinic_id=nurse.clinic_id,
            patient_id=pid,
            measured_on=base_at.date(),
            mme_per_day=mme_before,
            unconverted=[],
            benzodiazepine=False,
            recorded_by_id=nurse.user_id,
        )
    )
    data = SeriesIn(series_end_on=last.date(), plan_id=plan_id)
    for fu in service.schedule_series(db, nurse, pid, data, series_ends={plan_id: last.date()}):
        day = fu.days_after_series or 0
        at = dt.datetime.combine(fu.due_on, dt.time(18), tzinfo=dt.UTC) + dt.timedelta(
            hours=rng.randint(0, 30)
        )
        if at >= now or (kind == "dropout" and day > 14):
            continue
        form = _answers(fu.instruments, _pain(kind, baseline, day, rng), _pgic(kind, day), rng)
        service.enter_answers(db, nurse, fu.id, form, at)
        if day == 28:
            factor = {"responder": 0.5, "relapse": 0.8, "dropout": 0.7}.get(kind, 1.0)
            db.add(
                MmeReading(
                    clinic_id=nurse.clinic_id,
                    patient_id=pid,
                    measured_on=at.date(),
                    mme_per_day=round(mme_before * factor / 5) * 5,
                    unconverted=[],
                    benzodiazepine=False,
                    recorded_by_id=nurse.user_id,
                )
            )
        if kind == "relapse" and day >= 28:
            db.add(
                DiaryEntry(
                    clinic_id=nurse.clinic_id,
                    patient_id=pid,
                    nrs=min(10, baseline + 1),
                    flare=True,
                    note="Flare after a long day",
                    recorded_at=at - dt.timedelta(days=2),
                )
            )
    db.flush()
