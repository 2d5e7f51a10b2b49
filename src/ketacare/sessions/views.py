"""Reading sessions: the session view with its predicted concentration and due observations, the
alarm panel, the live board, a patient's sessions, and signing the session report.
Each function runs in the caller's transaction and never commits; people's actions are audited."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.errors import Conflict, Forbidden
from ketacare.knowledge.sessions import session_rules
from ketacare.patients import service as patients
from ketacare.pharmacology import Patient as PkPatient
from ketacare.pharmacology import PharmacologyInputError, simulate
from ketacare.planning import bookings as plan_bookings
from ketacare.planning import setup as plan_setup
from ketacare.safety import holds_service as safety_holds
from ketacare.sessions import rules
from ketacare.sessions.administration import _as_given, _given
from ketacare.sessions.common import _aware, _now, _session
from ketacare.sessions.discharge import checklist
from ketacare.sessions.models import (
    Administration,
    AdverseEvent,
    Alarm,
    PreCheck,
    RemsForm,
    ScoreRecord,
    SessionTransition,
    TreatmentSession,
    VitalSign,
)
from ketacare.sessions.monitoring import _latest_vitals, sweep_escalations

TREND_MIN = 30  # the board's trend window (issue 6)


PREDICTION_STEP_MIN = 1.0


@dataclass(frozen=True)
class Prediction:
    available: bool
    reason: str
    now_ng_per_ml: float | None
    t: list[dt.datetime]
    cp_ng_per_ml: list[float]


def predict(
    db: Session,
    row: TreatmentSession,
    at: dt.datetime,
    given: Sequence[rules.Given] | None = None,
    tail_min: float = 0.0,
) -> Prediction:
    """The plasma concentration predicted from what was actually given (population-typical
    parameters for this patient's weight, age and sex), from the first dose to ``at`` (+ tail)."""
    if row.drug != "ketamine":
        return Prediction(False, "Esketamine is not simulated: the engine has no model for it.", None, [], [])
    given = list(given) if given is not None else _as_given(_given(db, row.id))
    first = min((g.at for g in given if g.drug == "ketamine" and g.kind in rules.STUDY_KINDS), default=None)
    if first is None or row.weight_kg is None:
        return Prediction(False, "No ketamine given yet.", None, [], [])
    doses = rules.pk_doses(given, first, at, row.route)
    if not doses:
        return Prediction(False, "No ketamine given yet.", None, [], [])
    date_of_birth, sex_recorded = patients.demographics(db, row.patient_id)
    age = patients.age_years(date_of_birth, at.date())
    sex: Literal["male", "female"] = "female" if sex_recorded == "female" else "male"
    span = max(1.0, (at - first).total_seconds() / 60.0) + tail_min
    step = max(PREDICTION_STEP_MIN, span / 400.0)
    grid = np.arange(0.0, span + 1e-9, step)
    now_min = (at - first).total_seconds() / 60.0
    if now_min not in grid:
        grid = np.sort(np.append(grid, now_min))
    try:
        sim = simulate(
            PkPatient(weight_kg=row.weight_kg, age_y=float(age), sex=sex),
            doses,
            t_min=grid,
            norketamine=False,
        )
    except PharmacologyInputError as exc:
        return Prediction(False, f"Not simulated: {exc}", None, [], [])
    cp = [float(c) for c in sim.cp_ng_per_ml]
    idx = int(np.searchsorted(grid, now_min))
    return Prediction(
        True,
        "Typical parameters for this patient's weight, age and sex; not a measured level.",
        round(cp[min(idx, len(cp) - 1)], 1),
        [first + dt.timedelta(minutes=float(m)) for m in grid],
        cp,
    )


@dataclass(frozen=True)
class Due:
    what: str
    due_at: dt.datetime
    overdue: bool


def due_observations(
    row: TreatmentSession,
    last_vitals_at: dt.datetime | None,
    last_score_at: dt.datetime | None,
    at: dt.datetime,
) -> list[Due]:
    if row.status not in (rules.RUNNING, rules.RECOVERY, rules.READY) or row.started_at is None:
        return []
    knowledge = session_rules()
    start = _aware(row.started_at)
    out = []
    for what, schedule, last in (
        ("Vital signs (BP, HR, SpO2, RR)", knowledge.observation_vitals, last_vitals_at),
        ("Sedation and dissociation scores", knowledge.observation_scores, last_score_at),
    ):
        due = rules.next_due(schedule, start, last)
        out.append(Due(what, due, due <= at))
    return out


@dataclass(frozen=True)
class SessionView:
    session: TreatmentSession
    patient_name: str
    record_number: str
    patient_id: int
    booked: plan_bookings.BookedSession
    precheck: PreCheck | None
    given: list[Administration]
    totals: rules.Totals
    vitals: list[VitalSign]
    latest: dict[str, tuple[float, dt.datetime]]
    scores: list[ScoreRecord]
    alarms: list[Alarm]
    adverse_events: list[AdverseEvent]
    transitions: list[SessionTransition]
    prediction: Prediction
    due: list[Due]
    checklist: list[rules.Check]
    billing: list[tuple[str, int]]
    staff: dict[int, str]
    rems: RemsForm | None
    zone: str
    now: dt.datetime
    holds: tuple[safety_holds.HoldNotice, ...] = ()  # active long-term safety holds


@dataclass(frozen=True)
class AlarmPanel:
    """The session page's alarm list, polled by the page so that a new alarm sounds there too."""

    session: TreatmentSession
    alarms: list[Alarm]
    staff: dict[int, str]
    zone: str


def alarm_panel(db: Session, actor: Principal, session_id: int) -> AlarmPanel:
    """Polled every few seconds by an open session page: not audited (the page load was)."""
    row = _session(db, actor, session_id, "session.read")
    alarms = list(db.execute(select(Alarm).where(Alarm.session_id == row.id).order_by(Alarm.id)).scalars())
    staff = {u.id: u.full_name for u in auth.staff_directory(db, actor.clinic_id)}
    return AlarmPanel(row, alarms, staff, clinic_time.zone_name(db, row.clinic_id))


def view(
    db: Session, actor: Principal, session_id: int, now: dt.datetime | None = None, *, audit_read: bool = True
) -> SessionView:
    at = _now(now)
    row = _session(db, actor, session_id, "session.read")
    booked = plan_bookings.booked_session(db, actor, row.plan_session_id)
    p = patients.visible_patient(db, actor, row.patient_id, "session.read")
    given = _given(db, row.id)
    as_given = _as_given(given)
    end = (
        _aware(row.discharged_at or row.aborted_at or at)
        if row.status in (rules.DISCHARGED, rules.ABORTED)
        else at
    )
    tot = rules.totals(as_given, row.weight_kg, end)
    vitals = list(
        db.execute(
            select(VitalSign)
            .where(VitalSign.session_id == row.id)
            .order_by(VitalSign.observed_at, VitalSign.id)
        ).scalars()
    )
    scores = list(
        db.execute(
            select(ScoreRecord)
            .where(ScoreRecord.session_id == row.id)
            .order_by(ScoreRecord.observed_at, ScoreRecord.id)
        ).scalars()
    )
    alarms = list(db.execute(select(Alarm).where(Alarm.session_id == row.id).order_by(Alarm.id)).scalars())
    aes = list(
        db.execute(
            select(AdverseEvent).where(AdverseEvent.session_id == row.id).order_by(AdverseEvent.onset_at)
        ).scalars()
    )
    transitions = list(
        db.execute(
            select(SessionTransition)
            .where(SessionTransition.session_id == row.id)
            .order_by(SessionTransition.id)
        ).scalars()
    )
    latest = _latest_vitals(db, row.id)
    last_v = max((t for _, t in latest.values()), default=None)
    last_s = max(
        (_aware(s.observed_at) for s in scores if s.scale in ("moaas", "rass", "cadss6")), default=None
    )
    prediction = predict(db, row, end, as_given, tail_min=0.0)
    staff = {u.id: u.full_name for u in auth.staff_directory(db, actor.clinic_id)}
    precheck = db.execute(select(PreCheck).where(PreCheck.session_id == row.id)).scalar_one_or_none()
    rems = db.execute(select(RemsForm).where(RemsForm.session_id == row.id)).scalar_one_or_none()
    if audit_read:
        audit.record(db, actor, "session.read", "session", resource_id=row.id, patient_id=row.patient_id)
    return SessionView(
        session=row,
        patient_name=f"{p.family_name}, {p.given_name}",
        record_number=p.record_number,
        patient_id=p.id,
        booked=booked,
        precheck=precheck,
        given=given,
        totals=tot,
        vitals=vitals,
        latest=latest,
        scores=scores,
        alarms=alarms,
        adverse_events=aes,
        transitions=transitions,
        prediction=prediction,
        due=due_observations(row, last_v, last_s, at),
        checklist=checklist(db, row, end)
        if row.status in (rules.RECOVERY, rules.READY, rules.DISCHARGED)
        else [],
        billing=rules.billing_units(row.route, tot.infusion_min, tot.total_mg) if tot.first_dose_at else [],
        staff=staff,
        rems=rems,
        zone=clinic_time.zone_name(db, row.clinic_id),
        now=at,
        holds=safety_holds.notices(db, row.clinic_id, row.patient_id),
    )


@dataclass(frozen=True)
class BoardRow:
    session: TreatmentSession
    patient_name: str
    record_number: str
    chair_name: str
    latest: dict[str, tuple[float, dt.datetime]]
    trend: dict[str, list[tuple[dt.datetime, float]]]
    alarms: list[Alarm]
    predicted_ng_per_ml: float | None
    rate_mg_per_h: float | None
    total_mg: float
    moaas: int | None
    cadss6: int | None
    due: list[Due]


def board(
    db: Session, actor: Principal, now: dt.datetime | None = None, *, audit_view: bool = True
) -> list[BoardRow]:
    """Every session in progress in the clinic, with what the nurse needs at a glance."""
    at = _now(now)
    sweep_escalations(db, actor.clinic_id, at)
    rows = list(
        db.execute(
            select(TreatmentSession)
            .where(TreatmentSession.clinic_id == actor.clinic_id, TreatmentSession.status.in_(rules.ACTIVE))
            .order_by(TreatmentSession.checked_in_at, TreatmentSession.id)
        ).scalars()
    )
    if not rows:
        return []
    ids = [r.id for r in rows]
    since = at - dt.timedelta(minutes=TREND_MIN)
    trend: dict[int, dict[str, list[tuple[dt.datetime, float]]]] = {i: {} for i in ids}
    for sid, kind, value, t in db.execute(
        select(VitalSign.session_id, VitalSign.kind, VitalSign.value, VitalSign.observed_at)
        .where(VitalSign.session_id.in_(ids), VitalSign.observed_at >= since)
        .order_by(VitalSign.observed_at)
    ).all():
        trend[sid].setdefault(kind, []).append((_aware(t), value))
    alarms: dict[int, list[Alarm]] = {i: [] for i in ids}
    for a in db.execute(
        select(Alarm).where(Alarm.session_id.in_(ids), Alarm.status != "resolved").order_by(Alarm.id)
    ).scalars():
        alarms[a.session_id].append(a)
    scores: dict[int, dict[str, tuple[int, dt.datetime]]] = {i: {} for i in ids}
    for s in db.execute(
        select(ScoreRecord)
        .where(ScoreRecord.session_id.in_(ids))
        .order_by(ScoreRecord.observed_at, ScoreRecord.id)
    ).scalars():
        scores[s.session_id][s.scale] = (s.total, _aware(s.observed_at))
    chair_names = {c.id: f"{c.room} · {c.name}" for c in plan_setup.chairs(db, actor.clinic_id)}
    out = []
    for r in rows:
        p = patients.visible_patient(db, actor, r.patient_id, "session.board")
        given = _as_given(_given(db, r.id))
        tot = rules.totals(given, r.weight_kg, at)
        latest = _latest_vitals(db, r.id)
        last_v = max((t for _, t in latest.values()), default=None)
        last_s = max((t for k, (_, t) in scores[r.id].items() if k != "nrs"), default=None)
        pred = predict(db, r, at, given) if tot.first_dose_at is not None else None
        out.append(
            BoardRow(
                session=r,
                patient_name=f"{p.family_name}, {p.given_name}",
                record_number=p.record_number,
                chair_name=chair_names.get(r.chair_id or 0, "?"),
                latest=latest,
                trend=trend[r.id],
                alarms=alarms[r.id],
                predicted_ng_per_ml=pred.now_ng_per_ml if pred is not None else None,
                rate_mg_per_h=tot.current_rate_mg_per_h,
                total_mg=tot.total_mg,
                moaas=scores[r.id].get("moaas", (None, None))[0],
                cadss6=scores[r.id].get("cadss6", (None, None))[0],
                due=due_observations(r, last_v, last_s, at),
            )
        )
    if audit_view:
        audit.record_many(
            db,
            actor,
            [audit.AuditEvent("session.board", "session", r.id, r.patient_id, "success", "") for r in rows],
        )
    return out


def report_digest(v: SessionView) -> str:
    """A hash over what the report states: signing fixes it; a later change shows."""
    s = v.session
    content = {
        "session": s.id,
        "patient": v.record_number,
        "status": s.status,
        "given": [
            (g.kind, g.drug, g.rate_mg_per_h, g.dose_mg, _aware(g.given_at).isoformat(), g.lot)
            for g in v.given
        ],
        "vitals": len(v.vitals),
        "alarms": [(a.rule_key, a.status) for a in v.alarms],
        "aes": [(a.term, a.grade, a.serious) for a in v.adverse_events],
        "scores": [(x.scale, x.total) for x in v.scores],
        "total_mg": v.totals.total_mg,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def sign(db: Session, actor: Principal, session_id: int, now: dt.datetime | None = None) -> TreatmentSession:
    at = _now(now)
    v = view(db, actor, session_id, at, audit_read=False)
    row = v.session
    if row.status not in (rules.DISCHARGED, rules.ABORTED):
        raise Conflict("The session report is signed after discharge (or abort).")
    digest = report_digest(v)
    if row.report_sha256 is not None and row.report_sha256 != digest:
        raise Conflict("The record changed since the first signature; review the report again.")
    if actor.role == Role.prescriber:
        if row.prescriber_signed_at is not None:
            raise Conflict("A prescriber has already signed this report.")
        row.prescriber_signed_by_id, row.prescriber_signed_at = actor.user_id, at
    elif actor.role == Role.nurse:
        if row.nurse_signed_at is not None:
            raise Conflict("A nurse has already signed this report.")
        row.nurse_signed_by_id, row.nurse_signed_at = actor.user_id, at
    else:
        raise Forbidden("Session reports are signed by the nurse and the prescriber.")
    row.report_sha256 = digest
    audit.record(
        db, actor, "session.sign", "session", resource_id=row.id, patient_id=row.patient_id, detail=digest
    )
    return row


def patient_sessions(db: Session, actor: Principal, patient_id: int) -> list[TreatmentSession]:
    patients.visible_patient(db, actor, patient_id, "session.list")
    return list(
        db.execute(
            select(TreatmentSession)
            .where(TreatmentSession.patient_id == patient_id)
            .order_by(TreatmentSession.id.desc())
        ).scalars()
    )
