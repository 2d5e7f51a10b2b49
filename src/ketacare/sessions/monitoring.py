"""Vital signs (manual and device batches), scores, alarms with their acknowledgement, resolution
and escalation, and the notices staff read. Device messages are logged in
``session_device_messages`` instead of the audit trail.
Each function runs in the caller's transaction and never commits; people's actions are audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.errors import Conflict, InvalidInput, NotFound, PendingAudit
from ketacare.knowledge.sessions import session_rules
from ketacare.patients import service as patients
from ketacare.sessions import rules
from ketacare.sessions.alarm_settings import _active_rules
from ketacare.sessions.common import _aware, _notify, _now, _prescribers_to_notify, _session
from ketacare.sessions.device import VITAL_UNITS, DeviceBatch, DeviceObservation, DeviceRejected, IngestResult
from ketacare.sessions.models import Alarm, DeviceMessage, Notice, ScoreRecord, TreatmentSession, VitalSign
from ketacare.sessions.schemas import DeviceBatchIn, NoteIn, ScoreIn, VitalIn

SCORE_VITALS = {"moaas": "moaas", "rass": "rass"}  # scores that alarm rules watch


DEVICE_CLOCK_SKEW = dt.timedelta(minutes=5)  # (design) how far ahead a device clock may run


def alarm_session_id(db: Session, actor: Principal, alarm_id: int) -> int:
    return _alarm(db, actor, alarm_id, "session.alarm").session_id


def _plausibility_errors(readings: Sequence[tuple[str, float]]) -> dict[str, str]:
    plausible = session_rules().plausible
    errors: dict[str, str] = {}
    for i, (kind, value) in enumerate(readings):
        if kind not in VITAL_UNITS:
            errors[f"readings.{i}.kind"] = f"Unknown vital sign {kind!r}."
            continue
        if not np.isfinite(value):
            errors[f"readings.{i}.value"] = "Not a number."
            continue
        low, high = plausible[kind]
        if not low <= value <= high:
            errors[f"readings.{i}.value"] = (
                f"{VITAL_UNITS[kind]} {value:g} for {kind} is outside the plausible range {low:g}-{high:g}: "
                "a sensor fault or a typo; nothing was stored."
            )
    return errors


def _store_readings(
    db: Session,
    row: TreatmentSession,
    readings: Sequence[rules.Reading],
    *,
    source: str,
    device_id: str | None,
    user_id: int | None,
    now: dt.datetime,
) -> list[Alarm]:
    db.execute(
        VitalSign.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                "session_id": row.id,
                "kind": r.kind,
                "value": r.value,
                "observed_at": r.at,
                "source": source,
                "device_id": device_id,
                "recorded_by_id": user_id,
                "received_at": now,
            }
            for r in readings
        ],
    )
    return _evaluate(db, row, readings, now)


def _evaluate(
    db: Session, row: TreatmentSession, readings: Sequence[rules.Reading], now: dt.datetime
) -> list[Alarm]:
    active, _ = _active_rules(db, row.clinic_id)
    watched = {r.kind for r in readings}
    relevant = [r for r in active if r.vital in watched]
    if not relevant:
        return []
    history: list[rules.Reading] = []
    window = rules.sustained_window_s(relevant)
    sustained = {r.vital for r in relevant if r.kind == "sustained_below"}
    if window and sustained:
        since = min(r.at for r in readings) - dt.timedelta(seconds=window * 3)
        history = [
            rules.Reading(k, v, _aware(t))
            for k, v, t in db.execute(
                select(VitalSign.kind, VitalSign.value, VitalSign.observed_at).where(
                    VitalSign.session_id == row.id,
                    VitalSign.kind.in_(sustained),
                    VitalSign.observed_at >= since,
                )
            ).all()
        ]
        fresh = {(r.kind, r.at) for r in readings}
        history = [h for h in history if (h.kind, h.at) not in fresh]
    baseline = {k: float(v) for k, v in (row.baseline or {}).items()}
    raised = []
    for trig in rules.alarm_triggers(relevant, readings, history, baseline):
        alarm = _raise(db, row, trig, now)
        if alarm is not None:
            raised.append(alarm)
    return raised


def _raise(db: Session, row: TreatmentSession, trig: rules.Trigger, now: dt.datetime) -> Alarm | None:
    open_same = db.execute(
        select(Alarm.id).where(Alarm.session_id == row.id, Alarm.open_rule == trig.rule.key)
    ).first()
    if open_same is not None:
        return None
    alarm = Alarm(
        session_id=row.id,
        clinic_id=row.clinic_id,
        rule_key=trig.rule.key,
        open_rule=trig.rule.key,
        severity=trig.rule.severity,
        message=trig.message,
        vital=trig.rule.vital,
        value=trig.value,
        threshold=trig.rule.value,
        status="raised",
        observed_at=trig.at,
        raised_at=now,
    )
    try:
        with db.begin_nested():  # two feeds for one patient at once: the database keeps one open alarm
            db.add(alarm)
            db.flush()
    except IntegrityError:
        return None
    _notify(
        db,
        row,
        _prescribers_to_notify(db, row),
        "alarm",
        f"Alarm in session {row.id}: {trig.message} — {trig.value:g}",
        now,
    )
    return alarm


def _open_alarms(db: Session, session_id: int) -> list[Alarm]:
    return list(
        db.execute(
            select(Alarm).where(Alarm.session_id == session_id, Alarm.status != "resolved").order_by(Alarm.id)
        ).scalars()
    )


def record_vitals(
    db: Session, actor: Principal, session_id: int, data: Sequence[VitalIn], now: dt.datetime | None = None
) -> list[Alarm]:
    """Manual entry by a nurse: the whole batch is stored, or none of it."""
    at = _now(now)
    row = _session(db, actor, session_id, "session.vitals")
    if row.status not in rules.ACTIVE:
        raise Conflict("Vital signs are recorded while the patient is in the session.")
    errors = _plausibility_errors([(v.kind, v.value) for v in data])
    for i, v in enumerate(data):
        if v.observed_at is not None and v.observed_at > at + dt.timedelta(minutes=1):
            errors[f"readings.{i}.observed_at"] = "A reading cannot be in the future."
    if errors:
        raise InvalidInput(errors=errors)
    readings = [rules.Reading(v.kind, float(v.value), v.observed_at or at) for v in data]
    alarms = _store_readings(
        db, row, readings, source="manual", device_id=None, user_id=actor.user_id, now=at
    )
    audit.record(
        db,
        actor,
        "session.vitals",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=", ".join(f"{r.kind} {r.value:g}" for r in readings),
    )
    return alarms


def ingest_device_batch(db: Session, batch: DeviceBatch, *, now: dt.datetime | None = None) -> IngestResult:
    """Store a device's observations for the patient's active session; raise alarms.

    Does not commit: the caller acknowledges only after its commit. A control id seen before
    from the same device is a duplicate: nothing is stored and the result says so."""
    at = _now(now)
    try:
        clinic = auth.clinic_by_slug(db, batch.clinic_slug)
    except NotFound as exc:
        raise DeviceRejected("unknown_clinic", f"No clinic {batch.clinic_slug!r}.") from exc
    if batch.control_id is not None:
        seen = db.execute(
            select(DeviceMessage.session_id).where(
                DeviceMessage.clinic_id == clinic.id,
                DeviceMessage.device_id == batch.device_id,
                DeviceMessage.control_id == batch.control_id,
            )
        ).scalar_one_or_none()
        if seen is not None:
            return IngestResult(seen, 0, True, ())
    patient_id = patients.id_in_clinic(db, clinic.id, batch.record_number)
    if patient_id is None:
        raise DeviceRejected(
            "unknown_patient", f"No patient {batch.record_number!r} in clinic {batch.clinic_slug!r}."
        )
    row = db.execute(
        select(TreatmentSession)
        .where(TreatmentSession.patient_id == patient_id, TreatmentSession.status.in_(rules.ACTIVE))
        .order_by(TreatmentSession.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None:
        raise DeviceRejected(
            "no_active_session", f"Patient {batch.record_number!r} has no session in progress."
        )
    if not batch.observations:
        raise DeviceRejected("invalid", "The message holds no vital sign KetaCare records.")
    errors = _plausibility_errors([(o.kind, o.value) for o in batch.observations])
    if errors:
        raise DeviceRejected("implausible", "; ".join(errors.values()))
    ahead = max(o.observed_at for o in batch.observations) - at
    if ahead > DEVICE_CLOCK_SKEW:
        raise DeviceRejected(
            "invalid",
            f"An observation is timed {ahead.total_seconds():.0f} s in the future: check the device clock.",
        )
    if batch.control_id is not None:
        db.add(
            DeviceMessage(
                clinic_id=clinic.id,
                device_id=batch.device_id,
                control_id=batch.control_id,
                session_id=row.id,
                source=batch.source,
                observations=len(batch.observations),
                received_at=at,
            )
        )
        try:
            db.flush()
        except IntegrityError as exc:  # the same message on two connections at once
            raise DeviceRejected(
                "duplicate_race", "The same message is being stored by another connection."
            ) from exc
    readings = [
        rules.Reading(o.kind, float(o.value), o.observed_at.astimezone(dt.UTC)) for o in batch.observations
    ]
    alarms = _store_readings(
        db, row, readings, source=batch.source, device_id=batch.device_id, user_id=None, now=at
    )
    return IngestResult(row.id, len(readings), False, tuple(a.id for a in alarms))


def device_batch(
    db: Session, actor: Principal, data: DeviceBatchIn, now: dt.datetime | None = None
) -> IngestResult:
    """The REST endpoint for devices: the token's clinic, the body's device and patient."""
    at = _now(now)
    clinic = auth.clinic(db, actor.clinic_id)
    for i, o in enumerate(data.observations):
        if o.observed_at is None:
            raise InvalidInput(
                errors={f"observations.{i}.observed_at": "Devices must time every observation."}
            )
    batch = DeviceBatch(
        clinic_slug=clinic.slug,
        record_number=data.record_number,
        device_id=data.device_id,
        source="rest",
        control_id=data.batch_id,
        observations=tuple(
            DeviceObservation(o.kind, float(o.value), o.observed_at or at) for o in data.observations
        ),
    )
    try:
        result = ingest_device_batch(db, batch, now=at)
    except DeviceRejected as exc:
        if exc.code in ("unknown_patient",):
            raise NotFound(exc.message) from exc
        if exc.code in ("no_active_session", "duplicate_race"):
            raise Conflict(exc.message) from exc
        raise InvalidInput(errors={"observations": exc.message}) from exc
    if not result.duplicate:
        audit.record(
            db,
            actor,
            "session.device_batch",
            "session",
            resource_id=result.session_id,
            detail=f"{data.device_id}: {result.stored} observations",
        )
    return result


def acknowledge_alarm(
    db: Session, actor: Principal, alarm_id: int, data: NoteIn, now: dt.datetime | None = None
) -> Alarm:
    at = _now(now)
    alarm = _alarm(db, actor, alarm_id, "session.alarm.acknowledge")
    if alarm.status != "raised":
        raise Conflict(f"This alarm is already {alarm.status}.")
    alarm.status = "acknowledged"
    alarm.acknowledged_at, alarm.acknowledged_by_id, alarm.acknowledge_note = at, actor.user_id, data.note
    row = db.get(TreatmentSession, alarm.session_id)
    assert row is not None
    audit.record(
        db,
        actor,
        "session.alarm.acknowledge",
        "session",
        resource_id=alarm.session_id,
        patient_id=row.patient_id,
        detail=f"{alarm.rule_key} {data.note or ''}".strip(),
    )
    return alarm


def _close_alarm(alarm: Alarm, actor: Principal, at: dt.datetime, note: str | None) -> None:
    if alarm.status == "raised":
        alarm.acknowledged_at, alarm.acknowledged_by_id = at, actor.user_id
    alarm.status = "resolved"
    alarm.open_rule = None
    alarm.resolved_at, alarm.resolved_by_id, alarm.resolve_note = at, actor.user_id, note


def resolve_alarm(
    db: Session, actor: Principal, alarm_id: int, data: NoteIn, now: dt.datetime | None = None
) -> Alarm:
    at = _now(now)
    alarm = _alarm(db, actor, alarm_id, "session.alarm.resolve")
    if alarm.status == "resolved":
        raise Conflict("This alarm is already resolved.")
    if alarm.status == "raised":
        raise Conflict("Acknowledge the alarm first.")
    _close_alarm(alarm, actor, at, data.note)
    row = db.get(TreatmentSession, alarm.session_id)
    assert row is not None
    audit.record(
        db,
        actor,
        "session.alarm.resolve",
        "session",
        resource_id=alarm.session_id,
        patient_id=row.patient_id,
        detail=f"{alarm.rule_key} {data.note or ''}".strip(),
    )
    return alarm


def _alarm(db: Session, actor: Principal, alarm_id: int, action: str) -> Alarm:
    alarm = db.get(Alarm, alarm_id)
    if alarm is None or alarm.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such alarm in your clinic.",
            audit=[PendingAudit(action, "alarm", str(alarm_id), None, "denied", "not found")],
        )
    _session(db, actor, alarm.session_id, action)
    return alarm


def sweep_escalations(db: Session, clinic_id: int | None = None, now: dt.datetime | None = None) -> int:
    """Escalate alarms left unacknowledged past the clinic's time: a notice to the prescriber(s).
    Idempotent; called by the live board's refresh and by the HL7 listener's timer."""
    at = _now(now)
    query = select(Alarm).where(Alarm.status == "raised", Alarm.escalated_at.is_(None))
    if clinic_id is not None:
        query = query.where(Alarm.clinic_id == clinic_id)
    count = 0
    limits: dict[int, int] = {}
    for alarm in db.execute(query).scalars():
        if alarm.clinic_id not in limits:
            limits[alarm.clinic_id] = _active_rules(db, alarm.clinic_id)[1]
        if (at - _aware(alarm.raised_at)).total_seconds() < limits[alarm.clinic_id]:
            continue
        won = db.execute(
            update(Alarm).where(Alarm.id == alarm.id, Alarm.escalated_at.is_(None)).values(escalated_at=at)
        ).rowcount  # type: ignore[attr-defined]
        if not won:
            continue
        row = db.get(TreatmentSession, alarm.session_id)
        assert row is not None
        _notify(
            db,
            row,
            _prescribers_to_notify(db, row),
            "escalation",
            f"ESCALATED: not acknowledged in {limits[alarm.clinic_id]} s — session {row.id}: "
            f"{alarm.message} ({alarm.value:g})",
            at,
        )
        audit.record(
            db,
            None,
            "session.alarm.escalate",
            "session",
            resource_id=row.id,
            patient_id=row.patient_id,
            detail=alarm.rule_key,
            username="system",
            clinic_id=row.clinic_id,
        )
        count += 1
    return count


def notices(db: Session, actor: Principal, unread_only: bool = True, limit: int = 50) -> list[Notice]:
    query = select(Notice).where(Notice.user_id == actor.user_id, Notice.clinic_id == actor.clinic_id)
    if unread_only:
        query = query.where(Notice.read_at.is_(None))
    return list(db.execute(query.order_by(Notice.id.desc()).limit(limit)).scalars())


def mark_notices_read(db: Session, actor: Principal, now: dt.datetime | None = None) -> int:
    return int(
        db.execute(
            update(Notice)
            .where(Notice.user_id == actor.user_id, Notice.read_at.is_(None))
            .values(read_at=_now(now))
        ).rowcount  # type: ignore[attr-defined]
    )


def record_score(
    db: Session, actor: Principal, session_id: int, data: ScoreIn, now: dt.datetime | None = None
) -> ScoreRecord:
    at = _now(now)
    row = _session(db, actor, session_id, "session.score")
    if row.status not in rules.ACTIVE:
        raise Conflict("Scores are recorded while the patient is in the session.")
    scale = session_rules().scales[data.scale.value]
    try:
        total = rules.score_total(scale, data.items)
    except ValueError as exc:
        raise InvalidInput(errors={"items": str(exc)}) from exc
    observed = data.observed_at or at
    record = ScoreRecord(
        session_id=row.id,
        scale=scale.key,
        phase=data.phase.value,
        items=list(data.items),
        total=total,
        observed_at=observed,
        recorded_by_id=actor.user_id,
        recorded_at=at,
    )
    db.add(record)
    if scale.key in SCORE_VITALS:
        _evaluate(db, row, [rules.Reading(scale.key, float(total), observed)], at)
    audit.record(
        db,
        actor,
        "session.score",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=f"{scale.key} {total}",
    )
    db.flush()
    return record


def _latest_vitals(db: Session, session_id: int) -> dict[str, tuple[float, dt.datetime]]:
    sub = (
        select(VitalSign.kind, func.max(VitalSign.observed_at).label("at"))
        .where(VitalSign.session_id == session_id)
        .group_by(VitalSign.kind)
        .subquery()
    )
    rows = db.execute(
        select(VitalSign.kind, VitalSign.value, VitalSign.observed_at)
        .join(sub, (VitalSign.kind == sub.c.kind) & (VitalSign.observed_at == sub.c.at))
        .where(VitalSign.session_id == session_id)
    ).all()
    return {k: (v, _aware(t)) for k, v, t in rows}
