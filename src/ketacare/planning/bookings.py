"""A plan's sessions on the calendar: booking them, cancelling or moving one, cancelling the
plan, the clinic's calendar, and the booked sessions the treatment-session feature reads.
Services never commit."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput, NotFound, PendingAudit
from ketacare.patients import service as patients
from ketacare.planning import scheduling
from ketacare.planning.common import ACTIVE, BOOKED, CANCELLED, _overlapping, _plan
from ketacare.planning.consent import consent_signed
from ketacare.planning.models import (
    PlanSession,
    TreatmentPlan,
)
from ketacare.planning.schemas import (
    CancelIn,
    RescheduleIn,
)
from ketacare.planning.setup import _duty, _staff, chairs, hours
from ketacare.safety import holds_service

# --- schedule ----------------------------------------------------------------------------


def _busy(
    db: Session, clinic_id: int, first: dt.date, last: dt.date, long_min: int, exclude: int | None = None
) -> list[scheduling.Busy]:
    """Chairs and staff taken by booked sessions around the dates (cancelled ones free them)."""
    window_start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=1)
    window_end = dt.datetime.combine(last, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=2 + long_min // 1440)
    existing = db.execute(
        select(PlanSession).where(
            PlanSession.clinic_id == clinic_id,
            PlanSession.status == BOOKED,
            PlanSession.starts_at < window_end,
            PlanSession.ends_at > window_start,
        )
    ).scalars()
    busy = []
    for s in existing:
        if s.id == exclude:
            continue
        busy += [
            scheduling.Busy(f"chair:{s.chair_id}", s.starts_at, s.ends_at),
            scheduling.Busy(f"staff:{s.staff_id}", s.starts_at, s.ends_at),
        ]
    return busy


def _booking_error(exc: scheduling.NoSlot) -> InvalidInput:
    return InvalidInput(errors={"schedule": f"Could not book {exc}."})


def schedule(db: Session, actor: Principal, plan_id: int) -> list[PlanSession]:
    plan = _plan(db, actor, plan_id, "plan.schedule")
    if plan.status != "planned":
        raise InvalidInput(
            errors={"schedule": f"The plan is {plan.status}; only a planned plan is scheduled."}
        )
    if plan.route not in ("iv_infusion", "iv_bolus", "im", "esketamine_nasal"):
        raise InvalidInput(errors={"schedule": "Home treatment has no clinic sessions to schedule."})
    clinic = auth.clinic(db, plan.clinic_id)
    days = scheduling.session_days(plan.start_date, plan.sessions, plan.interval_days)
    duration = max(plan.session_duration_min, 30)
    hour, minute = (int(x) for x in plan.preferred_time.split(":"))
    try:
        slots = scheduling.place(
            days,
            preferred=dt.time(hour, minute),
            duration_min=duration,
            zone=clinic.time_zone,
            chair_ids=[c.id for c in chairs(db, plan.clinic_id)],
            duty=_duty(db, actor, plan.clinic_id, clinic.time_zone, days[0], days[-1]),
            busy=_busy(db, plan.clinic_id, days[0], days[-1], duration),
            hours=hours(db, plan.clinic_id),
        )
    except scheduling.NoSlot as exc:
        raise _booking_error(exc) from exc
    doses = {s["number"]: s["dose_mg"] for s in plan.session_doses}
    rows = []
    for number, slot in enumerate(slots, start=1):
        row = PlanSession(
            plan_id=plan.id,
            clinic_id=plan.clinic_id,
            number=number,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            chair_id=slot.chair_id,
            staff_id=slot.staff_id,
            dose_mg=doses.get(number),
            status=BOOKED,
        )
        db.add(row)
        rows.append(row)
    plan.status = "scheduled"
    db.flush()
    audit.record(
        db,
        actor,
        "plan.schedule",
        "plan",
        resource_id=plan.id,
        patient_id=plan.patient_id,
        detail=f"{len(rows)} sessions from {days[0].isoformat()}",
    )
    return rows


# --- changing a plan after it is written ---------------------------------------------------


def _session(db: Session, plan: TreatmentPlan, number: int) -> PlanSession:
    row = db.execute(
        select(PlanSession).where(PlanSession.plan_id == plan.id, PlanSession.number == number)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"Plan #{plan.id} has no booked session {number}.")
    return row


def _changeable(row: PlanSession, now: dt.datetime, field: str) -> None:
    if row.status != BOOKED:
        raise InvalidInput(errors={field: f"Session {row.number} is {row.status}."})
    if row.starts_at <= now:
        raise InvalidInput(
            errors={field: f"Session {row.number} has started or passed; it can no longer be changed."}
        )


def cancel_session(db: Session, actor: Principal, plan_id: int, number: int, data: CancelIn) -> PlanSession:
    plan = _plan(db, actor, plan_id, "plan.session.cancel")
    row = _session(db, plan, number)
    now = dt.datetime.now(dt.UTC)
    _changeable(row, now, "reason")
    row.status, row.cancel_reason = CANCELLED, data.reason
    row.cancelled_at, row.cancelled_by_id = now, actor.user_id
    db.flush()
    audit.record(
        db,
        actor,
        "plan.session.cancel",
        "plan_session",
        resource_id=row.id,
        patient_id=plan.patient_id,
        detail=f"plan #{plan.id} session {number} ({row.starts_at.isoformat()}): {data.reason}",
    )
    return row


def reschedule_session(
    db: Session, actor: Principal, plan_id: int, number: int, data: RescheduleIn
) -> PlanSession:
    """Move a booked session to another day and time with the same checks as booking: a free
    chair, free on-duty staff, a prescriber onsite, opening hours; the patient has nothing else
    then, and the sessions keep their order (the doses follow the titration)."""
    plan = _plan(db, actor, plan_id, "plan.session.reschedule")
    row = _session(db, plan, number)
    now = dt.datetime.now(dt.UTC)
    _changeable(row, now, "on_date")
    clinic = auth.clinic(db, plan.clinic_id)
    zone = clinic.time_zone
    duration = int((row.ends_at - row.starts_at).total_seconds() // 60)
    tz = zoneinfo.ZoneInfo(zone)
    start = scheduling.local_dt(data.on_date, data.start_time, zone)
    end = start + dt.timedelta(minutes=duration)
    if start <= now:
        raise InvalidInput(errors={"on_date": "Choose a time in the future."})
    siblings = [
        s
        for s in db.execute(select(PlanSession).where(PlanSession.plan_id == plan.id)).scalars()
        if s.status == BOOKED and s.id != row.id
    ]
    before = [s for s in siblings if s.number < number]
    after = [s for s in siblings if s.number > number]
    if before and data.on_date <= max(s.starts_at.astimezone(tz).date() for s in before):
        last = max(before, key=lambda s: s.number)
        raise InvalidInput(
            errors={
                "on_date": f"Session {number} stays after session {last.number} "
                f"({last.starts_at.astimezone(tz):%Y-%m-%d}), on a later day: "
                "the doses follow the titration order."
            }
        )
    if after and data.on_date >= min(s.starts_at.astimezone(tz).date() for s in after):
        nxt = min(after, key=lambda s: s.number)
        raise InvalidInput(
            errors={
                "on_date": f"Session {number} stays before session {nxt.number} "
                f"({nxt.starts_at.astimezone(tz):%Y-%m-%d}), on an earlier day: "
                "the doses follow the titration order."
            }
        )
    clash = db.execute(
        select(PlanSession)
        .join(TreatmentPlan, TreatmentPlan.id == PlanSession.plan_id)
        .where(
            TreatmentPlan.patient_id == plan.patient_id,
            PlanSession.status == BOOKED,
            PlanSession.id != row.id,
            PlanSession.starts_at < end,
            PlanSession.ends_at > start,
        )
    ).scalar_one_or_none()
    if clash is not None:
        raise InvalidInput(
            errors={"start_time": f"The patient has session {clash.number} of plan #{clash.plan_id} then."}
        )
    day = data.on_date
    other_plan = _overlapping(
        db,
        plan.patient_id,
        min(day, plan.start_date),
        max(day, plan.end_date),
        exclude=plan.id,
    )
    if other_plan is not None:
        raise InvalidInput(
            errors={
                "on_date": f"Moving it there overlaps plan #{other_plan.id} "
                f"({other_plan.start_date.isoformat()} to {other_plan.end_date.isoformat()})."
            }
        )
    place = functools.partial(
        scheduling.place,
        [day],
        preferred=data.start_time,
        duration_min=duration,
        zone=zone,
        chair_ids=[c.id for c in chairs(db, plan.clinic_id)],
        duty=_duty(db, actor, plan.clinic_id, zone, day, day),
        busy=_busy(db, plan.clinic_id, day, day, duration, exclude=row.id),
        hours=hours(db, plan.clinic_id),
    )
    try:
        (slot,) = place(exact=True)
    except scheduling.NoSlot as exc:
        message = f"Could not move session {number} to {day.isoformat()} {data.start_time:%H:%M}: {exc.why}."
        try:
            (later,) = place()
            message += f" The next free time that day is {later.starts_at.astimezone(tz):%H:%M}."
        except scheduling.NoSlot:
            message += " Nothing else is free that day."
        raise InvalidInput(errors={"start_time": message}) from exc
    old = row.starts_at
    row.starts_at, row.ends_at = slot.starts_at, slot.ends_at
    row.chair_id, row.staff_id = slot.chair_id, slot.staff_id
    plan.start_date, plan.end_date = min(day, plan.start_date), max(day, plan.end_date)
    db.flush()
    audit.record(
        db,
        actor,
        "plan.session.reschedule",
        "plan_session",
        resource_id=row.id,
        patient_id=plan.patient_id,
        detail=f"plan #{plan.id} session {number}: {old.astimezone(tz):%Y-%m-%d %H:%M} -> "
        f"{data.on_date.isoformat()} {data.start_time:%H:%M}" + (f" ({data.reason})" if data.reason else ""),
    )
    return row


def cancel_plan(db: Session, actor: Principal, plan_id: int, data: CancelIn) -> TreatmentPlan:
    """Cancel a planned or scheduled plan: its future booked sessions are cancelled with it;
    sessions already started or passed stay as they are. The consent is never touched."""
    plan = _plan(db, actor, plan_id, "plan.cancel")
    if plan.status not in ACTIVE:
        raise InvalidInput(errors={"reason": f"The plan is {plan.status} already."})
    now = dt.datetime.now(dt.UTC)
    future = [
        s
        for s in db.execute(
            select(PlanSession).where(PlanSession.plan_id == plan.id, PlanSession.status == BOOKED)
        ).scalars()
        if s.starts_at > now
    ]
    for s in future:
        s.status, s.cancel_reason, s.cancelled_at, s.cancelled_by_id = (
            CANCELLED,
            data.reason,
            now,
            actor.user_id,
        )
    plan.status, plan.cancel_reason = CANCELLED, data.reason
    plan.cancelled_at, plan.cancelled_by_id = now, actor.user_id
    db.flush()
    audit.record(
        db,
        actor,
        "plan.cancel",
        "plan",
        resource_id=plan.id,
        patient_id=plan.patient_id,
        detail=f"{len(future)} future sessions cancelled: {data.reason}",
    )
    return plan


# --- the clinic's calendar ---------------------------------------------------------------


@dataclass(frozen=True)
class CalendarEntry:
    session: PlanSession
    patient_name: str
    patient_id: int
    chair: str
    staff: str
    holds: tuple[holds_service.HoldNotice, ...] = ()  # active long-term safety holds


def calendar(db: Session, actor: Principal, start: dt.date, days: int = 7) -> list[CalendarEntry]:
    begin = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC) - dt.timedelta(hours=14)
    end = begin + dt.timedelta(days=days, hours=28)
    rows = list(
        db.execute(
            select(PlanSession, TreatmentPlan.patient_id)
            .join(TreatmentPlan, TreatmentPlan.id == PlanSession.plan_id)
            .where(
                PlanSession.clinic_id == actor.clinic_id,
                PlanSession.status == BOOKED,
                PlanSession.starts_at < end,
                PlanSession.ends_at > begin,
            )
            .order_by(PlanSession.starts_at)
        ).all()
    )
    names = {c.id: f"{c.room} · {c.name}" for c in chairs(db, actor.clinic_id)}
    staff = _staff(db, actor)
    holds = holds_service.holds_by_patient(db, actor.clinic_id, (pid for _, pid in rows))
    out = []
    seen: set[int] = set()
    for session, pid in rows:
        patient = patients.visible_patient(db, actor, pid, "plan.calendar")
        if pid not in seen:
            audit.record(db, actor, "plan.calendar", "patient", resource_id=pid, patient_id=pid)
            seen.add(pid)
        out.append(
            CalendarEntry(
                session,
                f"{patient.family_name}, {patient.given_name}",
                pid,
                names.get(session.chair_id, "?"),
                staff.get(session.staff_id, "?"),
                holds.get(pid, ()),
            )
        )
    return out


# --- booked sessions, for the treatment-session feature ----------------------------------


@dataclass(frozen=True)
class BookedSession:
    """A booked plan session with what the session room needs from its plan."""

    plan_session_id: int
    plan_id: int
    patient_id: int
    clinic_id: int
    number: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    chair_id: int
    chair_name: str
    staff_id: int
    status: str
    dose_mg: float | None
    route: str
    protocol_key: str
    protocol_name: str
    duration_min: int
    concentration_mg_per_ml: float
    premedication: tuple[str, ...]
    plan_weight_kg: float
    plan_status: str
    consent_signed: bool


def _booked(db: Session, row: PlanSession, plan: TreatmentPlan, chair_names: dict[int, str]) -> BookedSession:
    return BookedSession(
        plan_session_id=row.id,
        plan_id=plan.id,
        patient_id=plan.patient_id,
        clinic_id=plan.clinic_id,
        number=row.number,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        chair_id=row.chair_id,
        chair_name=chair_names.get(row.chair_id, "?"),
        staff_id=row.staff_id,
        status=row.status,
        dose_mg=row.dose_mg,
        route=plan.route,
        protocol_key=plan.protocol_key,
        protocol_name=str(plan.protocol_snapshot.get("name", plan.protocol_key)),
        duration_min=plan.session_duration_min,
        concentration_mg_per_ml=plan.concentration_mg_per_ml,
        premedication=tuple(plan.premedication),
        plan_weight_kg=plan.weight_kg,
        plan_status=plan.status,
        consent_signed=consent_signed(db, plan.id),
    )


def booked_session(db: Session, actor: Principal, plan_session_id: int) -> BookedSession:
    row = db.get(PlanSession, plan_session_id)
    plan = db.get(TreatmentPlan, row.plan_id) if row is not None else None
    if row is None or plan is None or row.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such booked session in your clinic.",
            audit=[
                PendingAudit(
                    "session.booked.read",
                    "plan_session",
                    str(plan_session_id),
                    plan.patient_id if plan else None,
                    "denied",
                    "not found or another clinic",
                )
            ],
        )
    patients.visible_patient(db, actor, plan.patient_id, "session.booked.read")
    names = {c.id: f"{c.room} · {c.name}" for c in chairs(db, actor.clinic_id)}
    return _booked(db, row, plan, names)


def booked_sessions_between(
    db: Session, actor: Principal, begin: dt.datetime, end: dt.datetime
) -> list[BookedSession]:
    """Booked (not cancelled) sessions of the clinic starting in [begin, end), in time order."""
    rows = db.execute(
        select(PlanSession, TreatmentPlan)
        .join(TreatmentPlan, TreatmentPlan.id == PlanSession.plan_id)
        .where(
            PlanSession.clinic_id == actor.clinic_id,
            PlanSession.status == BOOKED,
            PlanSession.starts_at >= begin,
            PlanSession.starts_at < end,
        )
        .order_by(PlanSession.starts_at, PlanSession.id)
    ).all()
    names = {c.id: f"{c.room} · {c.name}" for c in chairs(db, actor.clinic_id)}
    return [_booked(db, row, plan, names) for row, plan in rows]
