"""Long-term safety use-cases: record liver tests and bladder screens (a hold and a task when
they call for one), release holds, complete tasks, the patient's monitoring summary, the
prescriber's safety view, and the clinic's intervals. Never commits; every change and every
read of patient data is audited."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import Conflict, Forbidden, InvalidInput, NotFound, PendingAudit
from ketacare.knowledge.contraindications import mme_rule
from ketacare.knowledge.safety import safety_rules
from ketacare.patients import service as patients
from ketacare.planning import bookings as plan_bookings
from ketacare.prescribing import credentials as rx_credentials
from ketacare.prescribing import supplies as rx_supplies
from ketacare.safety import monitoring
from ketacare.safety.holds_service import active_holds
from ketacare.safety.models import BladderScreen, LiverTest, SafetyHold, SafetySettingsRow, SafetyTask
from ketacare.safety.schemas import BladderScreenIn, LiverTestIn, ReleaseIn, SafetySettingsIn, TaskDoneIn
from ketacare.screening.eligibility import MedicationFact, mme_per_day
from ketacare.sessions import views as session_views

URINALYSIS = "urinalysis"


def _today(db: Session, actor: Principal, today: dt.date | None) -> dt.date:
    return today if today is not None else clinic_time.today(db, actor.clinic_id)


# --- the clinic's intervals --------------------------------------------------------------------


def _settings_row(db: Session, clinic_id: int) -> SafetySettingsRow | None:
    query = select(SafetySettingsRow).where(SafetySettingsRow.clinic_id == clinic_id)
    return db.execute(query).scalar_one_or_none()


def interval_overrides(db: Session, clinic_id: int) -> dict[str, int | None]:
    row = _settings_row(db, clinic_id)
    return {s.key: (getattr(row, s.key) if row is not None else None) for s in monitoring.interval_specs()}


def intervals_in_force(db: Session, clinic_id: int) -> monitoring.Intervals:
    return monitoring.resolve_intervals(interval_overrides(db, clinic_id))


def save_settings(db: Session, actor: Principal, data: SafetySettingsIn) -> monitoring.Intervals:
    row = _settings_row(db, actor.clinic_id)
    if row is None:
        row = SafetySettingsRow(clinic_id=actor.clinic_id)
        db.add(row)
    changes = []
    for spec in monitoring.interval_specs():
        if spec.key not in data.model_fields_set:
            continue
        new, old = getattr(data, spec.key), getattr(row, spec.key, None)
        if new == old:
            continue
        setattr(row, spec.key, new)
        changes.append(
            f"{spec.key}: {old if old is not None else f'default ({spec.default})'} -> "
            f"{new if new is not None else f'default ({spec.default})'}"
        )
    row.updated_by_id, row.updated_at = actor.user_id, utcnow()
    db.flush()
    audit.record_many(
        db,
        actor,
        [audit.AuditEvent("safety.settings.save", "safety_settings", row.id, detail=c) for c in changes],
    )
    return intervals_in_force(db, actor.clinic_id)


# --- recording results -------------------------------------------------------------------------


def _place_hold(
    db: Session, actor: Principal, patient_id: int, kind: str, judgement: monitoring.Judgement, **link: int
) -> SafetyHold:
    holds = judgement.holds
    hold = SafetyHold(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        kind=kind,
        reason=" ".join(f.message for f in holds),
        source="; ".join(dict.fromkeys(f.source for f in holds)),
        tag=holds[0].tag,
        placed_by_id=actor.user_id,
        **link,
    )
    db.add(hold)
    db.flush()
    audit.record(
        db,
        actor,
        "safety.hold.place",
        "safety_hold",
        resource_id=hold.id,
        patient_id=patient_id,
        detail=hold.reason,
    )
    return hold


@dataclass(frozen=True)
class LiverResult:
    test: LiverTest
    judgement: monitoring.Judgement
    hold: SafetyHold | None


def record_liver_test(
    db: Session, actor: Principal, patient_id: int, data: LiverTestIn, today: dt.date | None = None
) -> LiverResult:
    patients.visible_patient(db, actor, patient_id, "safety.lft.add")
    if data.drawn_on > _today(db, actor, today):
        raise InvalidInput(errors={"drawn_on": "A blood test is recorded after it was drawn."})
    panel = monitoring.LiverPanel(
        **data.model_dump(exclude={"drawn_on", "lab"}),
    )
    judgement = monitoring.judge_liver(panel)
    row = LiverTest(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        outcome=judgement.outcome,
        findings=[dataclasses.asdict(f) for f in judgement.findings],
        recorded_by_id=actor.user_id,
        **data.model_dump(),
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "safety.lft.add",
        "liver_test",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{data.drawn_on}: ALT {data.alt_u_per_l:g}/{data.alt_uln_u_per_l:g}, "
        f"AST {data.ast_u_per_l:g}/{data.ast_uln_u_per_l:g} U/L -> {judgement.outcome}",
    )
    hold = (
        _place_hold(db, actor, patient_id, "liver", judgement, liver_test_id=row.id)
        if judgement.outcome == monitoring.HOLD
        else None
    )
    return LiverResult(row, judgement, hold)


@dataclass(frozen=True)
class BladderResult:
    screen: BladderScreen
    judgement: monitoring.Judgement
    hold: SafetyHold | None
    task: SafetyTask | None


def record_bladder_screen(
    db: Session, actor: Principal, patient_id: int, data: BladderScreenIn, today: dt.date | None = None
) -> BladderResult:
    patients.visible_patient(db, actor, patient_id, "safety.bladder.add")
    errors: dict[str, str] = {}
    if data.screened_on > _today(db, actor, today):
        errors["screened_on"] = "A screen is recorded after it was done."
    known = {k for k, _ in safety_rules().bladder_items}
    for key in sorted(set(data.answers) - known):
        errors[f"answers.{key}"] = "Not a question of the bladder screen."
    for key in monitoring.unanswered(data.answers):
        errors[f"answer_{key}"] = "Answer yes or no."
    if errors:
        raise InvalidInput(errors=errors)
    judgement = monitoring.judge_bladder(data.answers)
    positive = judgement.outcome == monitoring.HOLD
    row = BladderScreen(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        screened_on=data.screened_on,
        answers=dict(data.answers),
        positive=positive,
        note=data.note,
        recorded_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "safety.bladder.add",
        "bladder_screen",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{data.screened_on}: {'positive' if positive else 'negative'}",
    )
    if not positive:
        return BladderResult(row, judgement, None, None)
    hold = _place_hold(db, actor, patient_id, "bladder", judgement, bladder_screen_id=row.id)
    task = SafetyTask(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        kind=URINALYSIS,
        title="Urinalysis after a positive bladder (LUTS) screen",
        due_on=data.screened_on,
        hold_id=hold.id,
        created_by_id=actor.user_id,
    )
    db.add(task)
    db.flush()
    audit.record(
        db,
        actor,
        "safety.task.add",
        "safety_task",
        resource_id=task.id,
        patient_id=patient_id,
        detail=task.title,
    )
    return BladderResult(row, judgement, hold, task)


def _hold(db: Session, actor: Principal, hold_id: int, action: str) -> SafetyHold:
    hold = db.get(SafetyHold, hold_id)
    if hold is None or hold.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such hold in your clinic.",
            audit=[
                PendingAudit(
                    action, "safety_hold", str(hold_id), None, "denied", "not found or another clinic"
                )
            ],
        )
    patients.visible_patient(db, actor, hold.patient_id, action)
    return hold


def release_hold(db: Session, actor: Principal, hold_id: int, data: ReleaseIn) -> SafetyHold:
    hold = _hold(db, actor, hold_id, "safety.hold.release")
    if actor.role != Role.prescriber:
        raise Forbidden("A hold is released by a prescriber.")
    if hold.released_at is not None:
        raise Conflict("This hold was already released.")
    hold.released_at, hold.released_by_id, hold.release_reason = utcnow(), actor.user_id, data.reason
    db.flush()
    audit.record(
        db,
        actor,
        "safety.hold.release",
        "safety_hold",
        resource_id=hold.id,
        patient_id=hold.patient_id,
        detail=data.reason,
    )
    return hold


def _task(db: Session, actor: Principal, task_id: int, action: str) -> SafetyTask:
    task = db.get(SafetyTask, task_id)
    if task is None or task.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such task in your clinic.",
            audit=[
                PendingAudit(
                    action, "safety_task", str(task_id), None, "denied", "not found or another clinic"
                )
            ],
        )
    patients.visible_patient(db, actor, task.patient_id, action)
    return task


def hold_patient(db: Session, actor: Principal, hold_id: int) -> int:
    return _hold(db, actor, hold_id, "safety.hold.read").patient_id


def task_patient(db: Session, actor: Principal, task_id: int) -> int:
    return _task(db, actor, task_id, "safety.task.read").patient_id


def complete_task(db: Session, actor: Principal, task_id: int, data: TaskDoneIn) -> SafetyTask:
    task = _task(db, actor, task_id, "safety.task.done")
    if task.completed_at is not None:
        raise Conflict("This task is already done.")
    task.completed_at, task.completed_by_id, task.result = utcnow(), actor.user_id, data.result
    db.flush()
    audit.record(
        db,
        actor,
        "safety.task.done",
        "safety_task",
        resource_id=task.id,
        patient_id=task.patient_id,
        detail=data.result,
    )
    return task


# --- exposure and what is due ------------------------------------------------------------------


def _session_exposures(db: Session, actor: Principal, patient_id: int) -> list[monitoring.Exposure]:
    """Session days only (no mg): enough to say what is due, without reading every session record."""
    zone = zoneinfo.ZoneInfo(auth.clinic(db, actor.clinic_id).time_zone)
    found = []
    for row in session_views.patient_sessions(db, actor, patient_id):
        if row.started_at is None:
            continue
        started = clinic_time.as_utc(row.started_at)
        found.append(
            monitoring.Exposure(
                monitoring.SESSION, started.astimezone(zone).date(), row.route, 0.0, series=row.plan_id
            )
        )
    return found


def _exposures(
    db: Session, actor: Principal, patient_id: int, today: dt.date, *, with_mg: bool
) -> list[monitoring.Exposure]:
    if with_mg:
        found = [
            monitoring.Exposure(monitoring.SESSION, d.on, d.route, d.mg, series=d.plan_id)
            for d in rx_supplies.session_doses(db, actor, patient_id)
        ]
    else:
        found = _session_exposures(db, actor, patient_id)
    for s in rx_supplies.supply_doses(db, actor, patient_id, today):
        found.append(
            monitoring.Exposure(monitoring.PRESCRIPTION, s.issued_on, s.route, s.mg_to_date, until=s.end)
        )
    return found


def _patient_rows(db: Session, model: Any, newest_first: Any, clinic_id: int, patient_id: int) -> list[Any]:
    """One patient's rows of a safety table in the clinic, newest first."""
    return list(
        db.execute(
            select(model)
            .where(model.clinic_id == clinic_id, model.patient_id == patient_id)
            .order_by(newest_first.desc(), model.id.desc())
        ).scalars()
    )


def _liver_tests(db: Session, clinic_id: int, patient_id: int) -> list[LiverTest]:
    return _patient_rows(db, LiverTest, LiverTest.drawn_on, clinic_id, patient_id)


def _bladder_screens(db: Session, clinic_id: int, patient_id: int) -> list[BladderScreen]:
    return _patient_rows(db, BladderScreen, BladderScreen.screened_on, clinic_id, patient_id)


def _holds(db: Session, clinic_id: int, patient_id: int) -> list[SafetyHold]:
    return _patient_rows(db, SafetyHold, SafetyHold.placed_at, clinic_id, patient_id)


def _tasks(db: Session, clinic_id: int, patient_id: int) -> list[SafetyTask]:
    return _patient_rows(db, SafetyTask, SafetyTask.due_on, clinic_id, patient_id)


def _due(
    db: Session, actor: Principal, patient_id: int, exposures: list[monitoring.Exposure], today: dt.date
) -> list[monitoring.Due]:
    lft = _liver_tests(db, actor.clinic_id, patient_id)
    screens = _bladder_screens(db, actor.clinic_id, patient_id)
    return monitoring.due_checks(
        exposures,
        lft[0].drawn_on if lft else None,
        screens[0].screened_on if screens else None,
        intervals_in_force(db, actor.clinic_id),
        today,
    )


@dataclass(frozen=True)
class PatientSafety:
    patient_id: int
    patient_name: str
    cumulative: monitoring.Cumulative
    exposures: list[monitoring.Exposure]
    due: list[monitoring.Due]
    holds: list[SafetyHold]
    tasks: list[SafetyTask]
    liver_tests: list[LiverTest]
    bladder_screens: list[BladderScreen]
    intervals: monitoring.Intervals
    today: dt.date
    staff: dict[int, str]

    @property
    def active_holds(self) -> list[SafetyHold]:
        return [h for h in self.holds if h.released_at is None]

    @property
    def open_tasks(self) -> list[SafetyTask]:
        return [t for t in self.tasks if t.completed_at is None]


def patient_safety(
    db: Session, actor: Principal, patient_id: int, today: dt.date | None = None
) -> PatientSafety:
    patient = patients.visible_patient(db, actor, patient_id, "safety.read")
    on = _today(db, actor, today)
    exposures = _exposures(db, actor, patient_id, on, with_mg=True)
    audit.record(db, actor, "safety.read", "patient", resource_id=patient_id, patient_id=patient_id)
    return PatientSafety(
        patient_id=patient_id,
        patient_name=f"{patient.family_name}, {patient.given_name}",
        cumulative=monitoring.cumulative(exposures),
        exposures=sorted(exposures, key=lambda e: e.on, reverse=True),
        due=_due(db, actor, patient_id, exposures, on),
        holds=_holds(db, actor.clinic_id, patient_id),
        tasks=_tasks(db, actor.clinic_id, patient_id),
        liver_tests=_liver_tests(db, actor.clinic_id, patient_id),
        bladder_screens=_bladder_screens(db, actor.clinic_id, patient_id),
        intervals=intervals_in_force(db, actor.clinic_id),
        today=on,
        staff={s.id: s.full_name for s in auth.staff_directory(db, actor.clinic_id)},
    )


# --- the prescriber's safety view --------------------------------------------------------------


@dataclass(frozen=True)
class BoardPatient:
    patient_id: int
    name: str
    record_number: str
    holds: list[SafetyHold]
    overdue: list[monitoring.Due]
    open_tasks: list[SafetyTask]
    mme_per_day: float | None  # None: no opioid, or not every opioid converted
    mme_level: str  # "", flag, review
    mme_summary: str
    benzodiazepines: list[str]
    opioids: list[str]

    @property
    def flagged(self) -> bool:
        return bool(self.holds or self.overdue or self.open_tasks or self.mme_level or self.benzodiazepines)


@dataclass(frozen=True)
class SafetyBoard:
    patients: list[BoardPatient]
    expiring: list[rx_credentials.Expiring]
    flexibility_alert: str | None
    today: dt.date
    population: int
    mme_source: str


def _population(db: Session, actor: Principal, today: dt.date) -> set[int]:
    """Patients with ketamine exposure in the look-back window, or anything open in safety."""
    since = today - dt.timedelta(days=safety_rules().lookback_days)
    begin = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    found = {b.patient_id for b in plan_bookings.booked_sessions_between(db, actor, begin, utcnow())}
    found.update(rx_supplies.patients_with_supplies(db, actor, since))
    for model in (SafetyHold, SafetyTask):
        column = SafetyHold.released_at if model is SafetyHold else SafetyTask.completed_at
        found.update(
            db.execute(
                select(model.patient_id).where(model.clinic_id == actor.clinic_id, column.is_(None))
            ).scalars()
        )
    return found


def _medications(record: patients.PatientRecord) -> tuple[MedicationFact, ...]:
    return tuple(
        MedicationFact(m.name, m.drug_class, m.dose_amount, m.dose_unit, m.doses_per_day)
        for m in record.medications
    )


def safety_board(db: Session, actor: Principal, today: dt.date | None = None) -> SafetyBoard:
    """The clinic's patients under ketamine treatment with a hold, an overdue check or task, an
    MME at or above the flag, or a benzodiazepine; expiring credentials; the flexibility alert."""
    on = _today(db, actor, today)
    rule = mme_rule()
    rows = []
    population = _population(db, actor, on)
    for pid in sorted(population):
        record = patients.record(db, actor, pid)
        meds = _medications(record)
        result = mme_per_day(meds)
        mme, level = result.total, result.level()
        exposures = _exposures(db, actor, pid, on, with_mg=False)
        p = record.patient
        row = BoardPatient(
            patient_id=pid,
            name=f"{p.family_name}, {p.given_name}",
            record_number=p.record_number,
            holds=active_holds(db, actor.clinic_id, pid),
            overdue=[d for d in _due(db, actor, pid, exposures, on) if d.overdue],
            open_tasks=[t for t in _tasks(db, actor.clinic_id, pid) if t.completed_at is None],
            mme_per_day=mme,
            mme_level=level,
            mme_summary=result.summary() if result.opioids else "",
            benzodiazepines=sorted({m.name for m in meds if m.drug_class == "benzodiazepine"}),
            opioids=sorted({m.name for m in meds if m.drug_class == "opioid"}),
        )
        if row.flagged:
            rows.append(row)
    audit.record_many(
        db, actor, [audit.AuditEvent("safety.view", "patient", r.patient_id, r.patient_id) for r in rows]
    )
    return SafetyBoard(
        patients=rows,
        expiring=rx_credentials.expiring_credentials(db, actor, on),
        flexibility_alert=rx_credentials.flexibility_alert(db, actor.clinic_id, on),
        today=on,
        population=len(population),
        mme_source=f"{rule.sourced.source}; {rule.thresholds.source} [{rule.sourced.tag}]",
    )
