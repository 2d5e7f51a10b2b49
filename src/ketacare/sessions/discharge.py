"""The discharge checklist, discharge (with a prescriber's override), and the follow-ups it schedules.
Each function runs in the caller's transaction and never commits; people's actions are audited."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.errors import Conflict, Forbidden, InvalidInput
from ketacare.outcomes import service as outcomes
from ketacare.planning import plans
from ketacare.sessions import rules
from ketacare.sessions.administration import _as_given, _given
from ketacare.sessions.alarm_settings import rules_for_clinic
from ketacare.sessions.common import _now, _session, _transition
from ketacare.sessions.models import ScoreRecord, TreatmentSession
from ketacare.sessions.monitoring import _close_alarm, _latest_vitals, _open_alarms
from ketacare.sessions.schemas import DischargeChecksIn, DischargeIn


def record_discharge_checks(
    db: Session, actor: Principal, session_id: int, data: DischargeChecksIn, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    row = _session(db, actor, session_id, "session.discharge_checks")
    if row.status not in (rules.RECOVERY, rules.READY):
        raise Conflict("Discharge checks are done in recovery.")
    row.discharge_checks = {**data.model_dump(), "by_id": actor.user_id, "at": at.isoformat()}
    audit.record(
        db,
        actor,
        "session.discharge_checks",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=json.dumps(data.model_dump()),
    )
    _update_readiness(db, actor, row, at)
    return row


def _update_readiness(db: Session, actor: Principal | None, row: TreatmentSession, at: dt.datetime) -> None:
    green = all(c.ok for c in checklist(db, row, at))
    if row.status == rules.RECOVERY and green:
        _transition(db, actor, row, rules.READY, at, "discharge checklist green")
    elif row.status == rules.READY and not green:
        _transition(db, actor, row, rules.RECOVERY, at, "discharge checklist no longer green")


def checklist(db: Session, row: TreatmentSession, at: dt.datetime) -> list[rules.Check]:
    given = _as_given(_given(db, row.id))
    tot = rules.totals(given, row.weight_kg, at)
    latest = _latest_vitals(db, row.id)
    moaas = db.execute(
        select(ScoreRecord.total)
        .where(ScoreRecord.session_id == row.id, ScoreRecord.scale == "moaas")
        .order_by(ScoreRecord.observed_at.desc(), ScoreRecord.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    checks = row.discharge_checks or {}
    first = min((g.at for g in given if g.drug in rules.KETAMINE_DRUGS), default=None)
    in_force = rules_for_clinic(db, row.clinic_id)
    vitals_pct = float(in_force.discharge["vitals_within_pct"])
    return rules.discharge_checklist(
        rules.DischargeInput(
            drug=row.drug,
            last_dose_at=tot.last_dose_at,
            monitoring_started_at=first,
            baseline={k: float(v) for k, v in (row.baseline or {}).items()},
            latest={k: v for k, (v, _) in latest.items()},
            latest_moaas=moaas,
            alert_and_oriented=bool(checks.get("alert_and_oriented")),
            escort_present=bool(checks.get("escort_present")),
            instructions_given=bool(checks.get("instructions_given")),
            open_alarms=len(_open_alarms(db, row.id)),
            vitals_within_pct=vitals_pct,
        ),
        in_force,
        at,
    )


def discharge(
    db: Session, actor: Principal, session_id: int, data: DischargeIn, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    row = _session(db, actor, session_id, "session.discharge")
    if row.status not in (rules.RECOVERY, rules.READY):
        raise Conflict("A patient is discharged from recovery.")
    failing = [c for c in checklist(db, row, at) if not c.ok]
    if failing:
        if not data.override_reason:
            raise InvalidInput(
                errors={
                    "override_reason": "Not yet: "
                    + "; ".join(f"{c.label} ({c.detail})" for c in failing)
                    + ". A prescriber may discharge anyway with a documented reason."
                }
            )
        if actor.role != Role.prescriber:
            raise Forbidden("Only a prescriber may discharge before the checklist is green.")
        row.discharge_override_reason = data.override_reason
        row.discharge_override_by_id = actor.user_id
        for alarm in _open_alarms(db, row.id):
            _close_alarm(alarm, actor, at, f"Discharged by prescriber override: {data.override_reason}")
    if row.status == rules.RECOVERY:
        _transition(db, actor, row, rules.READY, at, data.override_reason or "discharge checklist green")
    _transition(db, actor, row, rules.DISCHARGED, at, data.override_reason)
    row.discharged_by_id = actor.user_id
    audit.record(
        db,
        actor,
        "session.discharge",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=f"override: {data.override_reason}" if data.override_reason else "checklist green",
    )
    _follow_up(db, actor, row, at)
    return row


def _follow_up(db: Session, actor: Principal, row: TreatmentSession, at: dt.datetime) -> None:
    """At discharge (in the same transaction): the end-of-session questionnaire, and when the
    session is the last of its plan's series, the follow-ups after the series (the outcomes
    feature's schedule: day 1, weeks 1, 2, 4, 8, 12, then monthly). Days are the clinic's."""
    day = at.astimezone(clinic_time.zone(db, row.clinic_id)).date()
    outcomes.end_of_session(db, actor, row.patient_id, day)
    plan = next((p for p in plans.patient_plans(db, actor, row.patient_id) if p.id == row.plan_id), None)
    if plan is not None and row.number >= plan.sessions:
        outcomes.schedule_after_series(db, actor, row.patient_id, day, row.plan_id)


def refuse_override(data: DischargeIn) -> DischargeIn:
    """The plain discharge (page and API) takes no override: a prescriber overrides through
    discharge-override, with the password confirmed."""
    if data.override_reason:
        raise InvalidInput(
            errors={
                "override_reason": "A prescriber overrides through discharge-override (password confirmed)."
            }
        )
    return data
