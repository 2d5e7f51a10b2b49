"""Planning use-cases: protocols, plans (dose-checked, PK-checked, eligibility-gated), the
calendar, care-plan items, response assessments, consent and prices. Services never commit."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import zoneinfo
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.errors import Conflict, Forbidden, InvalidInput, NotFound, PendingAudit
from ketacare.knowledge.billing import default_prices
from ketacare.knowledge.dose_limits import planning_defaults
from ketacare.knowledge.protocols import Protocol, builtin_protocols, protocol_from_row, validate_protocol
from ketacare.patients import service as patients
from ketacare.planning import boosters, clinical_defaults_service, costing, dosing, pk, scheduling
from ketacare.planning.clinical_defaults import ClinicalDefaults
from ketacare.planning.models import (
    CarePlanItem,
    Chair,
    ClinicProtocol,
    Consent,
    DutyShift,
    PlanSession,
    PriceList,
    ResponseAssessment,
    ScheduleSettings,
    TreatmentPlan,
)
from ketacare.planning.schemas import (
    CancelIn,
    CareItemIn,
    ChairIn,
    ClinicalDefaultsIn,
    ClinicProtocolIn,
    DutyIn,
    HoursIn,
    PlanIn,
    PriceListIn,
    RescheduleIn,
    ResponseIn,
    SignIn,
)
from ketacare.safety import holds_service
from ketacare.screening import service as screening
from ketacare.screening.eligibility import ELIGIBLE

ACTIVE = ("planned", "scheduled")
BOOKED, CANCELLED = "booked", "cancelled"
FINDING_FIELDS = {
    "weight": "dose",
    "protocol_key": "protocol_key",
    "dose_unit": "dose_unit",
    "concentration_mg_per_ml": "concentration_mg_per_ml",
    "sessions": "sessions",
    "titration_start": "titration_start",
}

# --- protocols ---------------------------------------------------------------------------


def protocols(db: Session, clinic_id: int) -> list[Protocol]:
    """The library: built-in templates and the clinic's own rows; the newest version of a key wins."""
    library = {p.key: p for p in builtin_protocols()}
    rows = db.execute(
        select(ClinicProtocol).where(ClinicProtocol.clinic_id == clinic_id).order_by(ClinicProtocol.version)
    ).scalars()
    for row in rows:
        current = library.get(row.key)
        if current is None or row.version > current.version:
            library[row.key] = protocol_from_row({**row.fields, "version": row.version}, builtin=False)
    return list(library.values())


def protocol(db: Session, clinic_id: int, key: str) -> Protocol:
    found = next((p for p in protocols(db, clinic_id) if p.key == key), None)
    if found is None:
        raise InvalidInput(errors={"protocol_key": f"No protocol {key!r} in the library."})
    return found


def add_clinic_protocol(db: Session, actor: Principal, data: ClinicProtocolIn) -> Protocol:
    current = next((p for p in protocols(db, actor.clinic_id) if p.key == data.key), None)
    version = (current.version + 1) if current else 1
    row_fields = data.row()
    errors = validate_protocol({**row_fields, "version": version})
    if errors:
        raise InvalidInput(errors=errors)
    row = ClinicProtocol(
        clinic_id=actor.clinic_id,
        key=data.key,
        version=version,
        fields=row_fields,
        created_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db, actor, "planning.protocol.add", "protocol", resource_id=row.id, detail=f"{data.key} v{version}"
    )
    return protocol_from_row({**row_fields, "version": version}, builtin=False)


# --- prices and chairs -------------------------------------------------------------------


def price_list(db: Session, clinic_id: int) -> costing.PriceList:
    row = db.execute(select(PriceList).where(PriceList.clinic_id == clinic_id)).scalar_one_or_none()
    if row is None:
        d = default_prices()
        return costing.PriceList(
            d.consultation_usd, d.drug_usd_per_mg, d.premedication_usd_per_session, d.session_bands
        )
    return costing.PriceList(
        row.consultation_usd,
        row.drug_usd_per_mg,
        row.premedication_usd_per_session,
        tuple((int(m), float(f)) for m, f in row.session_bands),
    )


def has_own_prices(db: Session, clinic_id: int) -> bool:
    return db.execute(select(PriceList.id).where(PriceList.clinic_id == clinic_id)).first() is not None


def save_price_list(db: Session, actor: Principal, data: PriceListIn) -> costing.PriceList:
    row = db.execute(select(PriceList).where(PriceList.clinic_id == actor.clinic_id)).scalar_one_or_none()
    if row is None:
        row = PriceList(clinic_id=actor.clinic_id)
        db.add(row)
    row.consultation_usd = data.consultation_usd
    row.drug_usd_per_mg = data.drug_usd_per_mg
    row.premedication_usd_per_session = data.premedication_usd_per_session
    row.session_bands = [list(b) for b in data.session_bands]
    row.updated_by_id = actor.user_id
    row.updated_at = dt.datetime.now(dt.UTC)
    db.flush()
    audit.record(db, actor, "planning.prices.save", "price_list", resource_id=row.id)
    return price_list(db, actor.clinic_id)


def estimate_for(db: Session, clinic_id: int, plan: costing.EstimateInput) -> costing.Estimate:
    """The public front door (a later issue) calls this for estimates without a patient."""
    return costing.estimate(price_list(db, clinic_id), plan)


def chairs(db: Session, clinic_id: int) -> list[Chair]:
    return list(
        db.execute(
            select(Chair).where(Chair.clinic_id == clinic_id, Chair.active).order_by(Chair.room, Chair.name)
        ).scalars()
    )


def add_chair(db: Session, actor: Principal, data: ChairIn) -> Chair:
    if any(c.room == data.room and c.name == data.name for c in chairs(db, actor.clinic_id)):
        raise InvalidInput(errors={"name": f"{data.room} already has a chair called {data.name}."})
    row = Chair(clinic_id=actor.clinic_id, room=data.room, name=data.name, active=True)
    db.add(row)
    db.flush()
    audit.record(
        db, actor, "planning.chair.add", "chair", resource_id=row.id, detail=f"{data.room} {data.name}"
    )
    return row


def _staff(db: Session, actor: Principal) -> dict[int, str]:
    """Nurses and prescribers of the clinic by id: the names shown for booked sessions."""
    staff = [u for u in auth.list_staff(db, actor) if u.is_active and u.role in (Role.nurse, Role.prescriber)]
    return {u.id: u.full_name for u in sorted(staff, key=lambda u: (u.role, u.id))}


# --- clinical defaults ([M] or design values the clinic may set) ------------------------


def clinical_defaults(db: Session, clinic_id: int) -> ClinicalDefaults:
    """The clinic's values in force: its own where set, else the knowledge defaults."""
    return clinical_defaults_service.in_force(db, clinic_id)


def clinical_default_overrides(db: Session, clinic_id: int) -> dict[str, float | None]:
    return clinical_defaults_service.overrides(db, clinic_id)


def save_clinical_defaults(db: Session, actor: Principal, data: ClinicalDefaultsIn) -> ClinicalDefaults:
    return clinical_defaults_service.save(db, actor, data)


# --- opening hours and the duty roster --------------------------------------------------


def hours(db: Session, clinic_id: int) -> scheduling.Hours:
    row = db.execute(
        select(ScheduleSettings).where(ScheduleSettings.clinic_id == clinic_id)
    ).scalar_one_or_none()
    if row is None:
        return scheduling.DEFAULT_HOURS
    return scheduling.Hours(row.opens_at, row.closes_at, row.slot_min)


def has_own_hours(db: Session, clinic_id: int) -> bool:
    query = select(ScheduleSettings.id).where(ScheduleSettings.clinic_id == clinic_id)
    return db.execute(query).first() is not None


def save_hours(db: Session, actor: Principal, data: HoursIn) -> scheduling.Hours:
    row = db.execute(
        select(ScheduleSettings).where(ScheduleSettings.clinic_id == actor.clinic_id)
    ).scalar_one_or_none()
    if row is None:
        row = ScheduleSettings(clinic_id=actor.clinic_id)
        db.add(row)
    row.opens_at, row.closes_at, row.slot_min = data.opens_at, data.closes_at, data.slot_min
    row.updated_by_id = actor.user_id
    row.updated_at = dt.datetime.now(dt.UTC)
    db.flush()
    saved = hours(db, actor.clinic_id)
    audit.record(
        db,
        actor,
        "planning.hours.save",
        "clinic_hours",
        resource_id=row.id,
        detail=f"{saved.label()}, {saved.slot_min} min slots",
    )
    return saved


@dataclass(frozen=True)
class StaffMember:
    id: int
    name: str
    role: str
    active: bool


def _clinic_staff(db: Session, actor: Principal) -> dict[int, StaffMember]:
    return {
        u.id: StaffMember(u.id, u.full_name, u.role, u.is_active)
        for u in auth.list_staff(db, actor)
        if u.role in (Role.nurse.value, Role.prescriber.value)
    }


def duty_candidates(db: Session, actor: Principal) -> list[StaffMember]:
    """Active nurses and prescribers of the clinic: who can be on the duty roster."""
    staff = [m for m in _clinic_staff(db, actor).values() if m.active]
    return sorted(staff, key=lambda m: (m.role, m.name, m.id))


@dataclass(frozen=True)
class DutyRow:
    shift: DutyShift
    name: str
    role: str


def duty_roster(db: Session, actor: Principal, start: dt.date, days: int) -> list[DutyRow]:
    staff = _clinic_staff(db, actor)
    rows = db.execute(
        select(DutyShift)
        .where(
            DutyShift.clinic_id == actor.clinic_id,
            DutyShift.on_date >= start,
            DutyShift.on_date < start + dt.timedelta(days=days),
        )
        .order_by(DutyShift.on_date, DutyShift.start_time, DutyShift.id)
    ).scalars()
    gone = StaffMember(0, "?", "?", False)
    out = [DutyRow(r, staff.get(r.user_id, gone).name, staff.get(r.user_id, gone).role) for r in rows]
    return sorted(out, key=lambda d: (d.shift.on_date, d.shift.start_time, d.role, d.name))


def _duty(
    db: Session, actor: Principal, clinic_id: int, zone: str, first: dt.date, last: dt.date
) -> list[scheduling.Duty]:
    """The roster between two dates as instants; nurses first, so they staff the chair."""
    staff = {m.id: m for m in duty_candidates(db, actor)}
    rows = db.execute(
        select(DutyShift).where(
            DutyShift.clinic_id == clinic_id,
            DutyShift.on_date >= first,
            DutyShift.on_date <= last,
            DutyShift.user_id.in_(list(staff)),
        )
    ).scalars()
    out = [
        scheduling.Duty(
            r.user_id,
            staff[r.user_id].role == Role.prescriber.value,
            scheduling.local_dt(r.on_date, r.start_time, zone),
            scheduling.local_dt(r.on_date, r.end_time, zone),
        )
        for r in rows
    ]
    return sorted(out, key=lambda d: (d.prescriber, d.staff_id, d.starts_at))


def add_duty(db: Session, actor: Principal, data: DutyIn) -> list[DutyShift]:
    user = next((m for m in duty_candidates(db, actor) if m.id == data.user_id), None)
    if user is None:
        raise InvalidInput(errors={"user_id": "Choose an active nurse or prescriber of this clinic."})
    if data.on_date < clinic_time.today(db, actor.clinic_id):
        raise InvalidInput(errors={"on_date": "The roster is written for today or later."})
    dates = [data.on_date + dt.timedelta(weeks=w) for w in range(data.repeat_weeks)]
    existing = db.execute(
        select(DutyShift).where(DutyShift.user_id == user.id, DutyShift.on_date.in_(dates))
    ).scalars()
    for other in existing:
        if other.start_time < data.end_time and data.start_time < other.end_time:
            raise InvalidInput(
                errors={
                    "start_time": f"{user.name} is already on duty on {other.on_date.isoformat()} "
                    f"{other.start_time:%H:%M}-{other.end_time:%H:%M}."
                }
            )
    rows = [
        DutyShift(
            clinic_id=actor.clinic_id,
            user_id=user.id,
            on_date=day,
            start_time=data.start_time,
            end_time=data.end_time,
            created_by_id=actor.user_id,
        )
        for day in dates
    ]
    db.add_all(rows)
    db.flush()
    audit.record_many(
        db,
        actor,
        [
            audit.AuditEvent(
                "planning.duty.add",
                "duty_shift",
                r.id,
                detail=f"{user.name} ({user.role}) {r.on_date.isoformat()} "
                f"{r.start_time:%H:%M}-{r.end_time:%H:%M}",
            )
            for r in rows
        ],
    )
    return rows


def remove_duty(db: Session, actor: Principal, shift_id: int) -> None:
    """Take a shift off the roster, unless a booked session then loses its staff or the onsite
    prescriber (cancel or reschedule those sessions first)."""
    row = db.get(DutyShift, shift_id)
    if row is None or row.clinic_id != actor.clinic_id:
        why = "no such shift" if row is None else "shift of another clinic"
        raise NotFound(
            "No such shift on your clinic's roster.",
            audit=[PendingAudit("planning.duty.remove", "duty_shift", str(shift_id), None, "denied", why)],
        )
    zone = auth.clinic(db, actor.clinic_id).time_zone
    duty = _duty(db, actor, actor.clinic_id, zone, row.on_date - dt.timedelta(days=1), row.on_date)
    removed = scheduling.local_dt(row.on_date, row.start_time, zone)
    remaining = [d for d in duty if not (d.staff_id == row.user_id and d.starts_at == removed)]
    window_end = scheduling.local_dt(row.on_date, row.end_time, zone)
    sessions = db.execute(
        select(PlanSession).where(
            PlanSession.clinic_id == actor.clinic_id,
            PlanSession.status == BOOKED,
            PlanSession.starts_at < window_end,
            PlanSession.starts_at >= removed,
        )
    ).scalars()
    hrs = hours(db, actor.clinic_id)
    for s in sessions:
        long = (s.ends_at - s.starts_at).total_seconds() / 60 > hrs.open_minutes
        covered = [d for d in remaining if scheduling.covers(d, s.starts_at, s.ends_at, long)]
        if s.staff_id == row.user_id and not any(d.staff_id == s.staff_id for d in covered):
            why = "its nurse or prescriber"
        elif not any(d.prescriber for d in covered):
            why = "its onsite prescriber"
        else:
            continue
        raise InvalidInput(
            errors={
                "duty": f"Session {s.number} of plan #{s.plan_id} at "
                f"{s.starts_at.astimezone(zoneinfo.ZoneInfo(zone)):%H:%M} would lose {why}: "
                "reschedule or cancel it first."
            }
        )
    db.delete(row)
    db.flush()
    audit.record(
        db,
        actor,
        "planning.duty.remove",
        "duty_shift",
        resource_id=shift_id,
        detail=f"user {row.user_id} {row.on_date.isoformat()} {row.start_time:%H:%M}-{row.end_time:%H:%M}",
    )


# --- evaluating a plan -------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    record: patients.PatientRecord
    eligibility: screening.Eligibility
    protocol: Protocol
    calc: dosing.DoseCalculation
    pk: pk.PkCheck
    estimate: costing.Estimate
    series: boosters.Verdict
    booster: boosters.Verdict


def _assessments(db: Session, patient_id: int) -> list[boosters.Assessment]:
    rows = db.execute(
        select(ResponseAssessment)
        .where(ResponseAssessment.patient_id == patient_id)
        .order_by(ResponseAssessment.id)
    ).scalars()
    return [
        boosters.Assessment(r.plan_id, r.assessed_on, r.baseline_nrs, r.followup_nrs, r.pgic, r.relief_days)
        for r in rows
    ]


def _dosings(p: Protocol, calc: dosing.DoseCalculation, duration_min: int) -> list[pk.SessionDosing]:
    """One simulation per distinct session dose (titration steps), labelled by session numbers."""
    groups: dict[float, list[int]] = {}
    for s in calc.sessions:
        if s.dose_mg is not None:
            groups.setdefault(s.dose_mg, []).append(s.number)
    out = []
    route = "iv_infusion" if p.route == "iv_infusion" else p.route
    for mg, numbers in groups.items():
        first = calc.sessions[numbers[0] - 1]
        span = f"session {numbers[0]}" if len(numbers) == 1 else f"sessions {numbers[0]}-{numbers[-1]}"
        per_dose = mg / p.doses_per_day if p.dose_unit == "mg/kg/day" and p.doses_per_day else mg
        out.append(
            pk.SessionDosing(
                f"{span}: {first.dose:g} {p.dose_unit} ({per_dose:g} mg)",
                route,
                per_dose,
                float(duration_min),
            )
        )
    return out


def evaluate(
    db: Session, actor: Principal, patient_id: int, data: PlanIn, *, today: dt.date | None = None
) -> Evaluation:
    today = today or clinic_time.today(db, actor.clinic_id)
    p = protocol(db, actor.clinic_id, data.protocol_key)
    record = patients.record(db, actor, patient_id)
    weight = record.latest_weight
    duration = data.session_duration_min if data.session_duration_min is not None else p.duration_min
    clinic = clinical_defaults(db, actor.clinic_id)
    calc = dosing.calculate(
        dosing.DoseRequest(
            protocol=p,
            dose=data.dose,
            dose_unit=data.dose_unit,
            sessions=data.sessions,
            duration_min=duration,
            concentration_mg_per_ml=data.concentration_mg_per_ml,
            weight_kg=weight.weight_kg if weight else None,
            weight_measured_on=weight.measured_on if weight else None,
            today=today,
            titration_start=data.titration_start,
            override_reason=data.dose_override_reason,
            clinic=clinic,
            age_years=patients.age_years(record.patient.date_of_birth, today),
        )
    )
    hdhf = dosing.high_dose_high_frequency(calc, p, clinic.high_frequency_sessions)
    elig = screening.eligibility(db, actor, patient_id, high_dose_high_frequency=hdhf)
    defaults = planning_defaults()
    check = (
        pk.check(
            _dosings(p, calc, duration),
            weight_kg=weight.weight_kg or 70.0,
            age_y=patients.age_years(record.patient.date_of_birth, today),
            sex=record.patient.sex,
            psychotomimetic_long_min=clinic.psychotomimetic_long_min,
            population_size=defaults.population_size,
            seed=patient_id,
            long_min_note=clinic.note("psychotomimetic_long_min"),
        )
        if calc.sessions and weight is not None
        else pk.PkCheck(False, "No doses to simulate until the dose problems are fixed.", (), (), {})
    )
    estimate = costing.estimate(
        price_list(db, actor.clinic_id),
        costing.EstimateInput(
            route=p.route,
            session_minutes=tuple(duration for _ in calc.sessions),
            session_mg=tuple(s.dose_mg for s in calc.sessions),
            premedication=bool(data.premedication),
        ),
    )
    history = _assessments(db, patient_id)
    return Evaluation(
        record,
        elig,
        p,
        calc,
        check,
        estimate,
        boosters.next_series_allowed(history),
        boosters.booster_allowed(history),
    )


def _overlapping(
    db: Session, patient_id: int, start: dt.date, end: dt.date, exclude: int | None = None
) -> TreatmentPlan | None:
    return (
        db.execute(
            select(TreatmentPlan).where(
                TreatmentPlan.patient_id == patient_id,
                TreatmentPlan.status.in_(ACTIVE),
                TreatmentPlan.start_date <= end,
                TreatmentPlan.end_date >= start,
                TreatmentPlan.id != (exclude or 0),
            )
        )
        .scalars()
        .first()
    )


def _rule_errors(db: Session, patient_id: int, data: PlanIn, ev: Evaluation) -> dict[str, str]:
    errors: dict[str, str] = {}
    decision = ev.eligibility.decision
    if decision.status != ELIGIBLE:
        first = (decision.hard_stops or decision.open_cautions or decision.missing)[:3]
        errors["eligibility"] = f"{decision.label}: " + " ".join(r.message for r in first)
    refused: dict[str, list[str]] = {}
    for f in ev.calc.blocks:  # every hard limit a field breaks, each with its source
        refused.setdefault(FINDING_FIELDS.get(f.field, "dose"), []).append(
            f"{f.message} ({f.source} [{f.tag}])."
        )
    for name, texts in refused.items():
        errors.setdefault(
            name, " ".join(texts) + " A hard limit: refused, with or without an override reason."
        )
    if ev.calc.needs_override and not ev.calc.overridden:
        errors["dose_override_reason"] = (
            " ".join(f.message for f in ev.calc.needs_override)
            + f" Write the reason to go ahead (at least {dosing.MIN_OVERRIDE_REASON_CHARS} characters)."
        )
    bad_premed = sorted(set(data.premedication) - set(ev.protocol.premedication))
    if bad_premed:
        errors["premedication"] = f"Not a premedication option of this protocol: {', '.join(bad_premed)}."
    if data.purpose == "booster" and not ev.booster.allowed:
        errors["purpose"] = ev.booster.reason
    series_reason = (data.series_override_reason or "").strip()
    if (
        data.purpose == "series"
        and not ev.series.allowed
        and len(series_reason) < dosing.MIN_OVERRIDE_REASON_CHARS
    ):
        errors["series_override_reason"] = ev.series.reason
    interval = data.interval_days or ev.protocol.interval_days
    end = data.start_date + dt.timedelta(days=interval * (data.sessions - 1))
    clash = _overlapping(db, patient_id, data.start_date, end)
    if clash is not None:
        errors["start_date"] = (
            f"Overlaps plan #{clash.id} ({clash.start_date.isoformat()} to {clash.end_date.isoformat()})."
        )
    if data.start_date < clinic_time.today(db, ev.record.patient.clinic_id):
        errors.setdefault("start_date", "A plan starts today or later.")
    return errors


def create_plan(db: Session, actor: Principal, patient_id: int, data: PlanIn) -> TreatmentPlan:
    ev = evaluate(db, actor, patient_id, data)
    errors = _rule_errors(db, patient_id, data, ev)
    if errors:
        raise InvalidInput(errors=errors)
    p, calc, weight = ev.protocol, ev.calc, ev.record.latest_weight
    assert weight is not None and weight.weight_kg is not None  # a block otherwise
    interval = data.interval_days or p.interval_days
    plan = TreatmentPlan(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        purpose=data.purpose.value,
        status="planned",
        protocol_key=p.key,
        protocol_version=p.version,
        protocol_snapshot={k: v for k, v in p.__dict__.items() if k != "extra"},
        indication=ev.eligibility.decision.indication,
        evidence_grade=ev.eligibility.decision.evidence_grade,
        eligibility_status=ev.eligibility.decision.status,
        route=p.route,
        dose=data.dose,
        dose_unit=data.dose_unit,
        titration_start=data.titration_start,
        session_duration_min=data.session_duration_min
        if data.session_duration_min is not None
        else p.duration_min,
        sessions=data.sessions,
        interval_days=interval,
        start_date=data.start_date,
        end_date=data.start_date + dt.timedelta(days=interval * (data.sessions - 1)),
        preferred_time=data.preferred_time,
        concentration_mg_per_ml=data.concentration_mg_per_ml,
        premedication=list(data.premedication),
        weight_kg=weight.weight_kg,
        weight_measured_on=weight.measured_on,
        session_doses=[s.__dict__ for s in calc.sessions],
        max_session_mg=calc.max_session_mg,
        series_mg=calc.series_mg,
        findings=[f.__dict__ for f in calc.findings],
        dose_override_reason=(data.dose_override_reason or None) if calc.needs_override else None,
        series_override_reason=(data.series_override_reason or None) if not ev.series.allowed else None,
        notes=data.notes,
        created_by_id=actor.user_id,
    )
    db.add(plan)
    db.flush()
    audit.record(
        db,
        actor,
        "plan.create",
        "plan",
        resource_id=plan.id,
        patient_id=patient_id,
        detail=f"{p.key} v{p.version} {data.dose:g} {data.dose_unit} x {data.sessions}",
    )
    if plan.dose_override_reason:
        audit.record(
            db,
            actor,
            "plan.dose_override",
            "plan",
            resource_id=plan.id,
            patient_id=patient_id,
            detail="; ".join(f.code for f in calc.needs_override) + f": {plan.dose_override_reason}",
        )
    if plan.series_override_reason:
        audit.record(
            db,
            actor,
            "plan.series_override",
            "plan",
            resource_id=plan.id,
            patient_id=patient_id,
            detail=plan.series_override_reason,
        )
    _generate_consent(db, plan, ev)
    return plan


# --- reading a plan ----------------------------------------------------------------------


def _plan(db: Session, actor: Principal, plan_id: int, action: str) -> TreatmentPlan:
    plan = db.get(TreatmentPlan, plan_id)
    if plan is None or plan.clinic_id != actor.clinic_id:
        why = "no such plan" if plan is None else "plan of another clinic"
        pid = plan.patient_id if plan is not None else None
        raise NotFound(
            "No such plan in your clinic.",
            audit=[PendingAudit(action, "plan", str(plan_id), pid, "denied", why)],
        )
    patients.visible_patient(db, actor, plan.patient_id, action)
    return plan


@dataclass(frozen=True)
class PlanView:
    plan: TreatmentPlan
    evaluation: Evaluation
    sessions: list[PlanSession]
    chair_names: dict[int, str]
    staff_names: dict[int, str]
    care_items: list[CarePlanItem]
    responses: list[ResponseAssessment]
    consent: Consent | None
    clinic_zone: str = "UTC"


def plan_input(plan: TreatmentPlan) -> PlanIn:
    return PlanIn(
        protocol_key=plan.protocol_key,
        purpose=plan.purpose,
        dose=plan.dose,
        dose_unit=plan.dose_unit,
        titration_start=plan.titration_start,
        session_duration_min=plan.session_duration_min,
        sessions=plan.sessions,
        interval_days=plan.interval_days,
        start_date=plan.start_date,
        preferred_time=plan.preferred_time,
        concentration_mg_per_ml=plan.concentration_mg_per_ml,
        premedication=list(plan.premedication),
        dose_override_reason=plan.dose_override_reason,
    )


def _saved_protocol(plan: TreatmentPlan) -> Protocol:
    snap = dict(plan.protocol_snapshot)
    snap.pop("builtin", None)
    return protocol_from_row(snap, builtin=bool(plan.protocol_snapshot.get("builtin", True)))


def session_allowance(db: Session, actor: Principal, plan_id: int) -> dosing.Allowance:
    """The plan's setting and what it allows at the bedside without a prescriber's override."""
    plan = _plan(db, actor, plan_id, "plan.read")
    return dosing.plan_allowance(_saved_protocol(plan), plan.dose, plan.session_duration_min, plan.weight_kg)


def dose_overridden_plans(db: Session, clinic_id: int) -> int:
    """How many of the clinic's plans went past a protocol's range on a prescriber's override."""
    query = select(TreatmentPlan.id).where(
        TreatmentPlan.clinic_id == clinic_id, TreatmentPlan.dose_override_reason.is_not(None)
    )
    return len(db.execute(query).all())


def view(db: Session, actor: Principal, plan_id: int) -> PlanView:
    plan = _plan(db, actor, plan_id, "plan.read")
    record = patients.record(db, actor, plan.patient_id)
    p = _saved_protocol(plan)
    calc = dosing.DoseCalculation(
        sessions=tuple(dosing.SessionDose(**s) for s in plan.session_doses),
        findings=tuple(dosing.Finding(**f) for f in plan.findings),
        overridden=plan.dose_override_reason is not None,
    )
    defaults = planning_defaults()
    clinic = clinical_defaults(db, plan.clinic_id)
    check = pk.check(
        _dosings(p, calc, plan.session_duration_min),
        weight_kg=plan.weight_kg,
        age_y=patients.age_years(record.patient.date_of_birth, plan.start_date),
        sex=record.patient.sex,
        psychotomimetic_long_min=clinic.psychotomimetic_long_min,
        population_size=defaults.population_size,
        seed=plan.patient_id,
        long_min_note=clinic.note("psychotomimetic_long_min"),
    )
    estimate = costing.estimate(
        price_list(db, plan.clinic_id),
        costing.EstimateInput(
            route=plan.route,
            session_minutes=tuple(plan.session_duration_min for _ in calc.sessions),
            session_mg=tuple(s.dose_mg for s in calc.sessions),
            premedication=bool(plan.premedication),
        ),
    )
    history = _assessments(db, plan.patient_id)
    elig = screening.eligibility(db, actor, plan.patient_id)
    ev = Evaluation(
        record,
        elig,
        p,
        calc,
        check,
        estimate,
        boosters.next_series_allowed(history),
        boosters.booster_allowed(history),
    )
    sessions = list(
        db.execute(
            select(PlanSession).where(PlanSession.plan_id == plan.id).order_by(PlanSession.number)
        ).scalars()
    )
    chair_names = {c.id: f"{c.room} · {c.name}" for c in chairs(db, plan.clinic_id)}
    staff_names = _staff(db, actor)
    care = list(
        db.execute(
            select(CarePlanItem).where(CarePlanItem.plan_id == plan.id).order_by(CarePlanItem.id)
        ).scalars()
    )
    responses = list(
        db.execute(
            select(ResponseAssessment)
            .where(ResponseAssessment.plan_id == plan.id)
            .order_by(ResponseAssessment.id)
        ).scalars()
    )
    consent = db.execute(select(Consent).where(Consent.plan_id == plan.id)).scalar_one_or_none()
    audit.record(db, actor, "plan.read", "plan", resource_id=plan.id, patient_id=plan.patient_id)
    zone = clinic_time.zone_name(db, plan.clinic_id)
    return PlanView(plan, ev, sessions, chair_names, staff_names, care, responses, consent, zone)


def patient_plans(db: Session, actor: Principal, patient_id: int) -> list[TreatmentPlan]:
    patients.visible_patient(db, actor, patient_id, "plan.list")
    plans = list(
        db.execute(
            select(TreatmentPlan)
            .where(TreatmentPlan.patient_id == patient_id)
            .order_by(TreatmentPlan.start_date.desc())
        ).scalars()
    )
    audit.record(db, actor, "plan.list", "patient", resource_id=patient_id, patient_id=patient_id)
    return plans


def consent_signed(db: Session, plan_id: int) -> bool:
    return (
        db.execute(
            select(Consent.id).where(Consent.plan_id == plan_id, Consent.signed_at.is_not(None))
        ).first()
        is not None
    )


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


# --- care plan and responses -------------------------------------------------------------


def add_care_item(db: Session, actor: Principal, plan_id: int, data: CareItemIn) -> CarePlanItem:
    plan = _plan(db, actor, plan_id, "careplan.add")
    row = CarePlanItem(patient_id=plan.patient_id, plan_id=plan.id, **data.model_dump())
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "careplan.add",
        "care_item",
        resource_id=row.id,
        patient_id=plan.patient_id,
        detail=f"{data.category.value}: {data.description}",
    )
    return row


def set_care_status(db: Session, actor: Principal, plan_id: int, item_id: int, status: str) -> CarePlanItem:
    plan = _plan(db, actor, plan_id, "careplan.status")
    row = db.get(CarePlanItem, item_id)
    if row is None or row.plan_id != plan.id:
        raise NotFound("No such care-plan item on this plan.")
    row.status = status
    row.updated_at = dt.datetime.now(dt.UTC)
    audit.record(
        db,
        actor,
        "careplan.status",
        "care_item",
        resource_id=row.id,
        patient_id=plan.patient_id,
        detail=status,
    )
    return row


def add_response(db: Session, actor: Principal, plan_id: int, data: ResponseIn) -> ResponseAssessment:
    plan = _plan(db, actor, plan_id, "plan.response.add")
    if data.assessed_on < plan.start_date:
        raise InvalidInput(errors={"assessed_on": "The response is assessed after the series started."})
    row = ResponseAssessment(
        patient_id=plan.patient_id, plan_id=plan.id, recorded_by_id=actor.user_id, **data.model_dump()
    )
    db.add(row)
    db.flush()
    verdict = (
        "responder"
        if boosters.responded(
            boosters.Assessment(
                plan.id, data.assessed_on, data.baseline_nrs, data.followup_nrs, data.pgic, data.relief_days
            )
        )
        else "non-responder"
    )
    audit.record(
        db,
        actor,
        "plan.response.add",
        "response",
        resource_id=row.id,
        patient_id=plan.patient_id,
        detail=verdict,
    )
    return row


# --- consent -----------------------------------------------------------------------------

CONSENT_RISKS = (
    (
        "Sedation and dissociation (feeling detached, perceptual changes) during and after the session; "
        "with esketamine, sedation in 48-61% and dissociation in 61-75% of patients.",
        "Spravato label (SPRAVATO-PI) [V]",
    ),
    (
        "A rise in blood pressure; with esketamine it peaks about 40 minutes after the dose and lasts about "
        "4 hours, and 8-19% had a rise of 40 mmHg systolic or more.",
        "Spravato label (SPRAVATO-PI) [V]",
    ),
    ("Nausea and vomiting, sleepiness, hallucinations.", "UIC Drug Information Group review 2022 [V]"),
    (
        "With repeated treatment: liver and bladder (urinary) problems; liver tests and bladder symptom "
        "questions may be needed.",
        "ASRA-2018 testing (grade C); FDA 2023 warning on compounded ketamine (bladder symptoms) [V]",
    ),
    ("Misuse: ketamine is a Schedule III controlled substance with abuse potential.", "Spravato label [V]"),
    (
        "No driving or operating machinery until the next day after restful sleep; "
        "an adult must take you home.",
        "Spravato label and REMS [V]",
    ),
)


def _consent_text(plan: TreatmentPlan, ev: Evaluation) -> str:
    p = ev.protocol
    patient = ev.record.patient
    grade = plan.evidence_grade or "none on record"
    lines = [
        "CONSENT TO OFF-LABEL KETAMINE TREATMENT",
        "",
        f"Patient: {patient.given_name} {patient.family_name} ({patient.record_number}), "
        f"born {patient.date_of_birth.isoformat()}",
        f"Plan #{plan.id}: {p.name} (protocol {p.key} version {p.version})",
        f"Indication: {plan.indication or 'not recorded'}; evidence grade {grade} (ASRA-2018).",
        "Ketamine is not approved by the FDA for pain. Using it for pain is off-label."
        + (
            " The evidence for your condition is weak or absent (grade C or D)."
            if plan.evidence_grade != "B"
            else " For CRPS the evidence is moderate (grade B), for up to 12 weeks."
        ),
        "",
        "WHAT IS PLANNED",
        f"Route: {plan.route.replace('_', ' ')}. Dose: {plan.dose:g} {plan.dose_unit}"
        + (f", titrated from {plan.titration_start:g}" if plan.titration_start else "")
        + f", {plan.sessions} session(s) of {plan.session_duration_min} min "
        f"every {plan.interval_days} day(s) "
        f"from {plan.start_date.isoformat()}.",
        f"Weight used: {plan.weight_kg:g} kg (measured {plan.weight_measured_on.isoformat()}). "
        f"Largest session: {plan.max_session_mg if plan.max_session_mg is not None else '-'} mg; "
        f"whole series: {plan.series_mg if plan.series_mg is not None else '-'} mg.",
        f"Premedication: {', '.join(plan.premedication) or 'none'}. Monitoring: {p.monitoring}.",
        "",
        "RISKS",
        *[f"- {text} ({source})" for text, source in CONSENT_RISKS],
        "",
        "ALTERNATIVES",
        "- Continuing or adjusting your current medicines and therapies.",
        "- Physical therapy, psychological therapy (CBT), sleep, exercise, diet and stress care "
        "(your care plan).",
        "- Oral or intranasal ketamine may be tried instead of repeated infusions in people who respond "
        "(ASRA-2018) [V].",
        "- Not having ketamine treatment.",
        "",
        "COSTS",
        f"Estimated total: ${ev.estimate.total_usd:,.2f} from the clinic's price list "
        "(an estimate, not a promise). "
        "Most insurers treat ketamine for pain as experimental (Aetna CPB 0938) [V].",
        "",
        "You may stop at any time. Ask us anything before you sign.",
    ]
    return "\n".join(lines)


def _generate_consent(db: Session, plan: TreatmentPlan, ev: Evaluation) -> Consent:
    text = _consent_text(plan, ev)
    row = Consent(
        plan_id=plan.id,
        patient_id=plan.patient_id,
        text=text,
        content_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    db.add(row)
    db.flush()
    return row


def consent(db: Session, actor: Principal, plan_id: int) -> tuple[TreatmentPlan, Consent]:
    plan = _plan(db, actor, plan_id, "consent.read")
    row = db.execute(select(Consent).where(Consent.plan_id == plan.id)).scalar_one()
    audit.record(db, actor, "consent.read", "consent", resource_id=row.id, patient_id=plan.patient_id)
    return plan, row


def signature_hash(row: Consent) -> str:
    assert row.signed_at is not None and row.signed_on is not None
    payload = "|".join(
        [
            row.content_sha256,
            row.signed_name or "",
            row.signed_on.isoformat(),
            row.signed_at.astimezone(dt.UTC).isoformat(),
            str(row.signed_by_id),
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def sign_consent(db: Session, actor: Principal, plan_id: int, data: SignIn) -> Consent:
    plan = _plan(db, actor, plan_id, "consent.sign")
    if actor.role != Role.patient or actor.patient_id != plan.patient_id:
        raise Forbidden("Only the patient signs their own consent.")
    row = db.execute(select(Consent).where(Consent.plan_id == plan.id)).scalar_one()
    if row.signed_at is not None:
        raise Conflict("This consent was signed already; a signed consent is never changed.")
    patient = patients.visible_patient(db, actor, plan.patient_id, "consent.sign")
    errors: dict[str, str] = {}
    expected = f"{patient.given_name} {patient.family_name}".casefold().split()
    if data.typed_name.casefold().split() != expected:
        errors["typed_name"] = "Type your full name as on your record (given name, then family name)."
    if data.signed_on != clinic_time.today(db, actor.clinic_id):
        errors["signed_on"] = "Use today's date."
    if not data.agree:
        errors["agree"] = "Tick the box to confirm you read and agree to the consent."
    if hashlib.sha256(row.text.encode()).hexdigest() != row.content_sha256:
        errors["consent"] = "The consent text does not match its hash: ask the clinic."
    if errors:
        raise InvalidInput(errors=errors)
    row.signed_name = data.typed_name.strip()
    row.signed_on = data.signed_on
    row.signed_at = dt.datetime.now(dt.UTC)
    row.signed_by_id = actor.user_id
    row.signature_sha256 = signature_hash(row)
    db.flush()
    audit.record(
        db,
        actor,
        "consent.sign",
        "consent",
        resource_id=row.id,
        patient_id=plan.patient_id,
        detail=f"content {row.content_sha256[:16]} signature {row.signature_sha256[:16]}",
    )
    return row


def verify_consent(row: Consent) -> bool:
    if hashlib.sha256(row.text.encode()).hexdigest() != row.content_sha256:
        return False
    return row.signed_at is None or row.signature_sha256 == signature_hash(row)


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
