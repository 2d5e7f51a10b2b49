"""The planning JSON API: protocols, plans (schedule, session changes, cancelling, care items,
responses), consent and its signature, the calendar, prices, the duty roster, clinical
defaults and opening hours; with the JSON shapes the pages share. Mounted by ``planning.routes``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from ketacare.auth.principal import Principal
from ketacare.knowledge.protocols import Protocol
from ketacare.planning import bookings, consent, plans, setup
from ketacare.planning.access import Admin, CareWriter, ClinicalAdmin, Patient_, Reader, Signer, Writer
from ketacare.planning.clinical_defaults import SPECS, ClinicalDefaults, value_of
from ketacare.planning.models import TreatmentPlan
from ketacare.planning.schemas import (
    CancelIn,
    CareItemIn,
    CareItemOut,
    CareStatusIn,
    ClinicalDefaultOut,
    ClinicalDefaultsIn,
    ClinicProtocolIn,
    CodeOut,
    ConsentOut,
    DutyIn,
    DutyOut,
    EstimateLineOut,
    EstimateOut,
    FindingOut,
    HoursIn,
    PkOut,
    PkSessionOut,
    PlanIn,
    PlanOut,
    PriceListIn,
    ProtocolOut,
    RescheduleIn,
    ResponseIn,
    ResponseOut,
    SessionOut,
    SignIn,
)
from ketacare.validation import ReasonableDate
from ketacare.web.deps import DbSession, RowId

router = APIRouter()
# Clinical defaults change clinical rules: a password confirmed in the last minutes.


def plan_out(v: plans.PlanView) -> PlanOut:
    plan, ev = v.plan, v.evaluation
    booked = {s.number: s for s in v.sessions}
    sessions = []
    for s in ev.calc.sessions:
        b = booked.get(s.number)
        sessions.append(
            SessionOut(
                number=s.number,
                starts_at=b.starts_at if b else None,
                ends_at=b.ends_at if b else None,
                chair=v.chair_names.get(b.chair_id) if b else None,
                staff=v.staff_names.get(b.staff_id) if b else None,
                dose=s.dose,
                dose_mg=s.dose_mg,
                rate_mg_per_kg_h=s.rate_mg_per_kg_h,
                pump_ml_per_h=s.pump_ml_per_h,
                volume_ml=s.volume_ml,
                status=b.status if b else None,
                cancel_reason=b.cancel_reason if b else None,
                plan_session_id=b.id if b else None,
            )
        )
    pk = ev.pk
    return PlanOut(
        id=plan.id,
        patient_id=plan.patient_id,
        purpose=plan.purpose,
        status=plan.status,
        protocol_key=plan.protocol_key,
        protocol_version=plan.protocol_version,
        protocol_name=ev.protocol.name,
        protocol_source=ev.protocol.source,
        indication=plan.indication,
        evidence_grade=plan.evidence_grade,
        route=plan.route,
        dose=plan.dose,
        dose_unit=plan.dose_unit,
        titration_start=plan.titration_start,
        session_duration_min=plan.session_duration_min,
        sessions=sessions,
        interval_days=plan.interval_days,
        start_date=plan.start_date,
        end_date=plan.end_date,
        weight_kg=plan.weight_kg,
        weight_measured_on=plan.weight_measured_on,
        concentration_mg_per_ml=plan.concentration_mg_per_ml,
        premedication=list(plan.premedication),
        max_session_mg=plan.max_session_mg,
        series_mg=plan.series_mg,
        findings=[FindingOut(**{k: f[k] for k in FindingOut.model_fields}) for f in plan.findings],
        dose_override_reason=plan.dose_override_reason,
        series_override_reason=plan.series_override_reason,
        pk=PkOut(
            available=pk.available,
            reason=pk.reason,
            sessions=[PkSessionOut(**s.__dict__) for s in pk.sessions],
            warnings=list(pk.warnings),
            p_reach_analgesia=pk.p_reach_analgesia,
            population_size=pk.population_size,
            source=pk.source,
        ),
        estimate=EstimateOut(
            lines=[
                EstimateLineOut(
                    label=li.label, quantity=li.quantity, unit_usd=li.unit_usd, total_usd=li.total_usd
                )
                for li in ev.estimate.lines
            ],
            codes=[CodeOut(**c.__dict__) for c in ev.estimate.codes],
            total_usd=ev.estimate.total_usd,
        ),
        care_items=[CareItemOut.model_validate(c) for c in v.care_items],
        responses=[ResponseOut.model_validate(r) for r in v.responses],
        consent_signed=bool(v.consent and v.consent.signed_at),
        cancel_reason=plan.cancel_reason,
    )


def _consent_out(plan: TreatmentPlan, row: Any) -> ConsentOut:
    return ConsentOut(
        plan_id=plan.id,
        text=row.text,
        content_sha256=row.content_sha256,
        signed=row.signed_at is not None,
        signed_name=row.signed_name,
        signed_on=row.signed_on,
        signed_at=row.signed_at,
        signature_sha256=row.signature_sha256,
    )


def _protocol_out(p: Protocol) -> ProtocolOut:
    return ProtocolOut(
        key=p.key,
        version=p.version,
        name=p.name,
        route=p.route,
        dose_unit=p.dose_unit,
        dose_min=p.dose_min,
        dose_max=p.dose_max,
        dose_default=p.dose_default,
        duration_min=p.duration_min,
        sessions_min=p.sessions_min,
        sessions_max=p.sessions_max,
        interval_days=p.interval_days,
        setting=p.setting,
        monitoring=p.monitoring,
        premedication=list(p.premedication),
        titration_start=p.titration_start,
        titration_step=p.titration_step,
        source=p.source,
        tag=p.tag,
        builtin=p.builtin,
    )


def _clinical_rows(db: DbSession, actor: Principal) -> list[ClinicalDefaultOut]:
    in_force = setup.clinical_defaults(db, actor.clinic_id)
    own = setup.clinical_default_overrides(db, actor.clinic_id)
    return [_clinical_out(in_force, own, spec.key) for spec in SPECS]


def _clinical_out(in_force: ClinicalDefaults, own: dict[str, float | None], key: str) -> ClinicalDefaultOut:
    spec = next(s for s in SPECS if s.key == key)
    return ClinicalDefaultOut(
        key=spec.key,
        label=spec.label,
        unit=spec.unit,
        value=value_of(in_force, key),
        origin=in_force.origin(key),
        knowledge_value=spec.knowledge_value,
        tag=spec.tag(),
        source=spec.source(),
        minimum=spec.minimum,
        maximum=spec.maximum,
        clinic_value=own.get(key),
    )


# --- JSON API ----------------------------------------------------------------------------


@router.get("/api/v1/protocols", response_model=list[ProtocolOut], tags=["planning"])
def api_protocols(db: DbSession, actor: Reader) -> list[ProtocolOut]:
    return [_protocol_out(p) for p in setup.protocols(db, actor.clinic_id)]


@router.post("/api/v1/protocols", response_model=ProtocolOut, status_code=201, tags=["planning"])
def api_add_protocol(db: DbSession, actor: Writer, body: ClinicProtocolIn) -> ProtocolOut:
    return _protocol_out(setup.add_clinic_protocol(db, actor, body))


@router.post(
    "/api/v1/patients/{patient_id}/plans", response_model=PlanOut, status_code=201, tags=["planning"]
)
def api_create_plan(db: DbSession, actor: Writer, patient_id: RowId, body: PlanIn) -> PlanOut:
    plan = plans.create_plan(db, actor, patient_id, body)
    return plan_out(plans.view(db, actor, plan.id))


@router.get("/api/v1/plans/{plan_id}", response_model=PlanOut, tags=["planning"])
def api_plan(db: DbSession, actor: Reader, plan_id: RowId) -> PlanOut:
    return plan_out(plans.view(db, actor, plan_id))


@router.post("/api/v1/plans/{plan_id}/schedule", response_model=PlanOut, tags=["planning"])
def api_schedule(db: DbSession, actor: Writer, plan_id: RowId) -> PlanOut:
    bookings.schedule(db, actor, plan_id)
    return plan_out(plans.view(db, actor, plan_id))


@router.post("/api/v1/plans/{plan_id}/sessions/{number}/cancel", response_model=PlanOut, tags=["planning"])
def api_session_cancel(
    db: DbSession, actor: Writer, plan_id: RowId, number: RowId, body: CancelIn
) -> PlanOut:
    bookings.cancel_session(db, actor, plan_id, number, body)
    return plan_out(plans.view(db, actor, plan_id))


@router.post(
    "/api/v1/plans/{plan_id}/sessions/{number}/reschedule", response_model=PlanOut, tags=["planning"]
)
def api_session_reschedule(
    db: DbSession, actor: Writer, plan_id: RowId, number: RowId, body: RescheduleIn
) -> PlanOut:
    bookings.reschedule_session(db, actor, plan_id, number, body)
    return plan_out(plans.view(db, actor, plan_id))


@router.post("/api/v1/plans/{plan_id}/cancel", response_model=PlanOut, tags=["planning"])
def api_plan_cancel(db: DbSession, actor: Writer, plan_id: RowId, body: CancelIn) -> PlanOut:
    bookings.cancel_plan(db, actor, plan_id, body)
    return plan_out(plans.view(db, actor, plan_id))


@router.post(
    "/api/v1/plans/{plan_id}/care-items", response_model=CareItemOut, status_code=201, tags=["planning"]
)
def api_care_add(db: DbSession, actor: CareWriter, plan_id: RowId, body: CareItemIn) -> CareItemOut:
    return CareItemOut.model_validate(plans.add_care_item(db, actor, plan_id, body))


@router.patch("/api/v1/plans/{plan_id}/care-items/{item_id}", response_model=CareItemOut, tags=["planning"])
def api_care_status(
    db: DbSession, actor: CareWriter, plan_id: RowId, item_id: RowId, body: CareStatusIn
) -> CareItemOut:
    return CareItemOut.model_validate(plans.set_care_status(db, actor, plan_id, item_id, body.status.value))


@router.post(
    "/api/v1/plans/{plan_id}/responses", response_model=ResponseOut, status_code=201, tags=["planning"]
)
def api_response(db: DbSession, actor: Writer, plan_id: RowId, body: ResponseIn) -> ResponseOut:
    return ResponseOut.model_validate(plans.add_response(db, actor, plan_id, body))


@router.get("/api/v1/plans/{plan_id}/consent", response_model=ConsentOut, tags=["planning"])
def api_consent(db: DbSession, actor: Reader, plan_id: RowId) -> ConsentOut:
    plan, row = consent.consent(db, actor, plan_id)
    return _consent_out(plan, row)


@router.get("/api/v1/me/plans/{plan_id}/consent", response_model=ConsentOut, tags=["planning"])
def api_my_consent(db: DbSession, actor: Patient_, plan_id: RowId) -> ConsentOut:
    plan, row = consent.consent(db, actor, plan_id)
    return _consent_out(plan, row)


@router.post("/api/v1/me/plans/{plan_id}/consent/sign", response_model=ConsentOut, tags=["planning"])
def api_sign(db: DbSession, actor: Signer, plan_id: RowId, body: SignIn) -> ConsentOut:
    row = consent.sign_consent(db, actor, plan_id, body)
    plan, _ = consent.consent(db, actor, plan_id)
    return _consent_out(plan, row)


@router.get("/api/v1/calendar", tags=["planning"])
def api_calendar(
    db: DbSession, actor: Reader, start: ReasonableDate, days: Annotated[int, Query(ge=1, le=31)] = 7
) -> list[dict[str, Any]]:
    return [
        {
            "plan_id": e.session.plan_id,
            "session": e.session.number,
            "patient_id": e.patient_id,
            "patient": e.patient_name,
            "starts_at": e.session.starts_at.isoformat(),
            "ends_at": e.session.ends_at.isoformat(),
            "chair": e.chair,
            "staff": e.staff,
            "safety_holds": [{"kind": h.kind, "reason": h.reason} for h in e.holds],
        }
        for e in bookings.calendar(db, actor, start, days)
    ]


@router.get("/api/v1/prices", response_model=PriceListIn, tags=["planning"])
def api_prices(db: DbSession, actor: Admin) -> PriceListIn:
    p = setup.price_list(db, actor.clinic_id)
    return PriceListIn(
        consultation_usd=p.consultation_usd,
        drug_usd_per_mg=p.drug_usd_per_mg,
        premedication_usd_per_session=p.premedication_usd_per_session,
        session_bands=list(p.session_bands),
    )


@router.put("/api/v1/prices", response_model=PriceListIn, tags=["planning"])
def api_save_prices(db: DbSession, actor: Admin, body: PriceListIn) -> PriceListIn:
    setup.save_price_list(db, actor, body)
    return body


def _duty_out(row: setup.DutyRow) -> DutyOut:
    shift = row.shift
    return DutyOut(
        id=shift.id,
        user_id=shift.user_id,
        name=row.name,
        role=row.role,
        on_date=shift.on_date,
        start_time=shift.start_time,
        end_time=shift.end_time,
    )


@router.get("/api/v1/duty", response_model=list[DutyOut], tags=["planning"])
def api_duty(
    db: DbSession, actor: Reader, start: ReasonableDate, days: Annotated[int, Query(ge=1, le=62)] = 7
) -> list[DutyOut]:
    return [_duty_out(r) for r in setup.duty_roster(db, actor, start, days)]


@router.post("/api/v1/duty", response_model=list[DutyOut], status_code=201, tags=["planning"])
def api_duty_add(db: DbSession, actor: Admin, body: DutyIn) -> list[DutyOut]:
    rows = setup.add_duty(db, actor, body)
    user = next(u for u in setup.duty_candidates(db, actor) if u.id == body.user_id)
    return [_duty_out(setup.DutyRow(r, user.name, user.role)) for r in rows]


@router.delete("/api/v1/duty/{shift_id}", status_code=204, tags=["planning"])
def api_duty_remove(db: DbSession, actor: Admin, shift_id: RowId) -> Response:
    setup.remove_duty(db, actor, shift_id)
    return Response(status_code=204)


@router.get("/api/v1/clinical-defaults", response_model=list[ClinicalDefaultOut], tags=["planning"])
def api_clinical_defaults(db: DbSession, actor: Admin) -> list[ClinicalDefaultOut]:
    return _clinical_rows(db, actor)


@router.put("/api/v1/clinical-defaults", response_model=list[ClinicalDefaultOut], tags=["planning"])
def api_save_clinical_defaults(
    db: DbSession, actor: ClinicalAdmin, body: ClinicalDefaultsIn
) -> list[ClinicalDefaultOut]:
    setup.save_clinical_defaults(db, actor, body)
    return _clinical_rows(db, actor)


@router.get("/api/v1/clinic-hours", response_model=HoursIn, tags=["planning"])
def api_hours(db: DbSession, actor: Admin) -> HoursIn:
    h = setup.hours(db, actor.clinic_id)
    return HoursIn(opens_at=h.opens, closes_at=h.closes, slot_min=h.slot_min)


@router.put("/api/v1/clinic-hours", response_model=HoursIn, tags=["planning"])
def api_save_hours(db: DbSession, actor: Admin, body: HoursIn) -> HoursIn:
    h = setup.save_hours(db, actor, body)
    return HoursIn(opens_at=h.opens, closes_at=h.closes, slot_min=h.slot_min)
