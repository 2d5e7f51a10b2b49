"""Treatment plans: writing one (dose-checked, PK-checked, eligibility-gated), reading it, and
its care-plan items and response assessments. Services never commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput, NotFound
from ketacare.knowledge.dose_limits import planning_defaults
from ketacare.knowledge.protocols import Protocol, protocol_from_row
from ketacare.patients import service as patients
from ketacare.planning import boosters, costing, dosing, pk
from ketacare.planning.common import _overlapping, _plan
from ketacare.planning.consent import _generate_consent
from ketacare.planning.evaluation import Evaluation, _assessments, _dosings, evaluate
from ketacare.planning.models import (
    CarePlanItem,
    Consent,
    PlanSession,
    ResponseAssessment,
    TreatmentPlan,
)
from ketacare.planning.schemas import (
    CareItemIn,
    PlanIn,
    ResponseIn,
)
from ketacare.planning.setup import _staff, chairs, clinical_defaults, price_list
from ketacare.screening import service as screening
from ketacare.screening.eligibility import ELIGIBLE

# --- writing a plan ----------------------------------------------------------------------

FINDING_FIELDS = {
    "weight": "dose",
    "protocol_key": "protocol_key",
    "dose_unit": "dose_unit",
    "concentration_mg_per_ml": "concentration_mg_per_ml",
    "sessions": "sessions",
    "titration_start": "titration_start",
}


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
