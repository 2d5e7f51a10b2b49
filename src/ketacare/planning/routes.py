"""Planning pages and API: plans, schedule, calendar, care plan, responses, consent, prices."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.knowledge.billing import default_prices
from ketacare.knowledge.dose_limits import dose_limits, planning_defaults
from ketacare.knowledge.protocols import Protocol
from ketacare.patients import service as patients
from ketacare.planning import service
from ketacare.planning.models import TreatmentPlan
from ketacare.planning.schemas import (
    CareCategory,
    CareItemIn,
    CareItemOut,
    CareStatus,
    CareStatusIn,
    ChairIn,
    ClinicProtocolIn,
    CodeOut,
    ConsentOut,
    EstimateLineOut,
    EstimateOut,
    FindingOut,
    PkOut,
    PkSessionOut,
    PlanIn,
    PlanOut,
    PriceListIn,
    ProtocolOut,
    ResponseIn,
    ResponseOut,
    SessionOut,
    SignIn,
)
from ketacare.validation import parse
from ketacare.web.deps import DbSession, require
from ketacare.web.forms import FormData, FormLists
from ketacare.web.templating import render

router = APIRouter()
Reader = Annotated[Principal, require(Permission.plan_read)]
Writer = Annotated[Principal, require(Permission.plan_write)]
CareWriter = Annotated[Principal, require(Permission.careplan_write)]
Patient_ = Annotated[Principal, require(Permission.consent_sign)]
Signer = Annotated[Principal, require(Permission.consent_sign, sensitive=True)]
Admin = Annotated[Principal, require(Permission.planning_admin)]


def _plan_form(form: dict[str, list[str]]) -> dict[str, Any]:
    data: dict[str, Any] = {k: v[-1] for k, v in form.items() if v and k != "premedication"}
    data["premedication"] = form.get("premedication", [])
    return data


def _form_context(db: DbSession, actor: Principal, patient_id: int, values: dict[str, Any]) -> dict[str, Any]:
    from ketacare.screening import service as screening

    library = service.protocols(db, actor.clinic_id)
    chosen = next((p for p in library if p.key == values.get("protocol_key")), library[0])
    elig = screening.eligibility(db, actor, patient_id)
    return {
        "patient": elig.record.patient,
        "record": elig.record,
        "decision": elig.decision,
        "protocols": library,
        "chosen": chosen,
        "concentrations": planning_defaults().product_concentrations_mg_per_ml,
        "values": values,
        "today": dt.date.today().isoformat(),
    }


def _defaults(p: Protocol) -> dict[str, Any]:
    return {
        "protocol_key": p.key,
        "dose": f"{p.dose_default:g}",
        "dose_unit": p.dose_unit,
        "sessions": str(p.sessions_min),
        "session_duration_min": str(p.duration_min),
        "interval_days": str(p.interval_days),
        "titration_start": f"{p.titration_start:g}" if p.titration_start else "",
        "start_date": (dt.date.today() + dt.timedelta(days=1)).isoformat(),
        "preferred_time": "09:00",
        "concentration_mg_per_ml": "10",
        "premedication": [],
        "purpose": "series",
    }


def _view_context(v: service.PlanView) -> dict[str, Any]:
    return {
        "v": v,
        "plan": v.plan,
        "patient": v.evaluation.record.patient,
        "ev": v.evaluation,
        "figure_json": json.dumps(v.evaluation.pk.figure) if v.evaluation.pk.available else "",
        "care_categories": list(CareCategory),
        "care_statuses": list(CareStatus),
        "today": dt.date.today().isoformat(),
        "limits": dose_limits(),
    }


def plan_out(v: service.PlanView) -> PlanOut:
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


# --- pages: plans ------------------------------------------------------------------------


@router.get("/patients/{patient_id}/plans", include_in_schema=False)
def plans_page(request: Request, db: DbSession, actor: Reader, patient_id: int) -> Response:
    plans = service.patient_plans(db, actor, patient_id)
    patient = patients.visible_patient(db, actor, patient_id, "plan.list")
    return render(request, "plan_list.html", {"patient": patient, "plans": plans})


@router.get("/patients/{patient_id}/plans/new", include_in_schema=False)
def plan_new(request: Request, db: DbSession, actor: Writer, patient_id: int, protocol: str = "") -> Response:
    library = service.protocols(db, actor.clinic_id)
    chosen = next((p for p in library if p.key == protocol), library[0])
    return render(request, "plan_form.html", _form_context(db, actor, patient_id, _defaults(chosen)))


@router.post("/patients/{patient_id}/plans/new", include_in_schema=False)
def plan_create(request: Request, db: DbSession, actor: Writer, patient_id: int, form: FormLists) -> Response:
    data = _plan_form(form)
    try:
        plan = service.create_plan(db, actor, patient_id, parse(PlanIn, data))
    except InvalidInput as exc:
        db.rollback()
        context = _form_context(db, actor, patient_id, data)
        return render(request, "plan_form.html", {**context, "errors": exc.errors}, 422)
    return RedirectResponse(f"/plans/{plan.id}?saved=created", status_code=303)


@router.get("/plans/{plan_id}", include_in_schema=False)
def plan_page(request: Request, db: DbSession, actor: Reader, plan_id: int) -> Response:
    v = service.view(db, actor, plan_id)
    return render(
        request, "plan_detail.html", {**_view_context(v), "saved": request.query_params.get("saved")}
    )


def _plan_error(
    request: Request,
    db: DbSession,
    actor: Principal,
    plan_id: int,
    section: str,
    exc: InvalidInput,
    values: dict[str, Any],
) -> Response:
    db.rollback()
    v = service.view(db, actor, plan_id)
    return render(
        request,
        "plan_detail.html",
        {**_view_context(v), "section": section, "errors": exc.errors, "values": values},
        422,
    )


@router.post("/plans/{plan_id}/schedule", include_in_schema=False)
def plan_schedule(request: Request, db: DbSession, actor: Writer, plan_id: int) -> Response:
    try:
        service.schedule(db, actor, plan_id)
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "schedule", exc, {})
    return RedirectResponse(f"/plans/{plan_id}?saved=schedule#schedule", status_code=303)


@router.post("/plans/{plan_id}/care-items", include_in_schema=False)
def care_add(request: Request, db: DbSession, actor: CareWriter, plan_id: int, form: FormData) -> Response:
    try:
        service.add_care_item(db, actor, plan_id, parse(CareItemIn, form))
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "care", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=care#care", status_code=303)


@router.post("/plans/{plan_id}/care-items/{item_id}/status", include_in_schema=False)
def care_status(
    request: Request, db: DbSession, actor: CareWriter, plan_id: int, item_id: int, form: FormData
) -> Response:
    try:
        data = parse(CareStatusIn, form)
        service.set_care_status(db, actor, plan_id, item_id, data.status.value)
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "care", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=care#care", status_code=303)


@router.post("/plans/{plan_id}/responses", include_in_schema=False)
def response_add(request: Request, db: DbSession, actor: Writer, plan_id: int, form: FormData) -> Response:
    try:
        service.add_response(db, actor, plan_id, parse(ResponseIn, form))
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "response", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=response#response", status_code=303)


@router.get("/plans/{plan_id}/consent", include_in_schema=False)
def consent_page(request: Request, db: DbSession, actor: Reader, plan_id: int) -> Response:
    plan, row = service.consent(db, actor, plan_id)
    return render(
        request, "consent.html", {"plan": plan, "consent": row, "verified": service.verify_consent(row)}
    )


# --- pages: the patient ------------------------------------------------------------------


@router.get("/my/plans", include_in_schema=False)
def my_plans(request: Request, db: DbSession, actor: Patient_) -> Response:
    if actor.patient_id is None:
        raise InvalidInput("This account is not linked to a patient record.")
    plans = service.patient_plans(db, actor, actor.patient_id)
    signed = {p.id: service.consent_signed(db, p.id) for p in plans}
    return render(request, "my_plans.html", {"plans": plans, "signed": signed})


@router.get("/my/plans/{plan_id}/consent", include_in_schema=False)
def my_consent(request: Request, db: DbSession, actor: Patient_, plan_id: int) -> Response:
    plan, row = service.consent(db, actor, plan_id)
    return render(
        request,
        "consent.html",
        {
            "plan": plan,
            "consent": row,
            "verified": service.verify_consent(row),
            "can_sign": row.signed_at is None,
            "values": {"signed_on": dt.date.today().isoformat()},
            "saved": request.query_params.get("saved"),
        },
    )


@router.post("/my/plans/{plan_id}/consent", include_in_schema=False)
def my_consent_sign(request: Request, db: DbSession, actor: Signer, plan_id: int, form: FormData) -> Response:
    data = {**form, "agree": form.get("agree") == "yes"}
    try:
        service.sign_consent(db, actor, plan_id, parse(SignIn, data))
    except InvalidInput as exc:
        db.rollback()
        plan, row = service.consent(db, actor, plan_id)
        return render(
            request,
            "consent.html",
            {
                "plan": plan,
                "consent": row,
                "verified": service.verify_consent(row),
                "can_sign": True,
                "values": form,
                "errors": exc.errors,
            },
            422,
        )
    return RedirectResponse(f"/my/plans/{plan_id}/consent?saved=signed", status_code=303)


# --- pages: clinic ------------------------------------------------------------------------


@router.get("/planning/calendar", include_in_schema=False)
def calendar_page(request: Request, db: DbSession, actor: Reader, start: dt.date | None = None) -> Response:
    first = start or dt.date.today()
    entries = service.calendar(db, actor, first, 7)
    days = [first + dt.timedelta(days=i) for i in range(7)]
    return render(
        request,
        "calendar.html",
        {
            "entries": entries,
            "days": days,
            "first": first,
            "prev": first - dt.timedelta(days=7),
            "next": first + dt.timedelta(days=7),
        },
    )


@router.get("/planning/protocols", include_in_schema=False)
def protocols_page(request: Request, db: DbSession, actor: Reader) -> Response:
    return render(
        request,
        "protocols.html",
        {
            "protocols": service.protocols(db, actor.clinic_id),
            "limits": dose_limits(),
            "defaults": planning_defaults(),
        },
    )


@router.get("/planning/prices", include_in_schema=False)
def prices_page(request: Request, db: DbSession, actor: Admin) -> Response:
    prices = service.price_list(db, actor.clinic_id)
    return render(request, "prices.html", _prices_context(db, actor, prices, {}))


def _prices_context(db: DbSession, actor: Principal, prices: Any, values: dict[str, str]) -> dict[str, Any]:
    shown = values or {
        "consultation_usd": f"{prices.consultation_usd:g}",
        "drug_usd_per_mg": f"{prices.drug_usd_per_mg:g}",
        "premedication_usd_per_session": f"{prices.premedication_usd_per_session:g}",
        "session_bands": "; ".join(f"{m}={fee:g}" for m, fee in prices.session_bands),
    }
    return {
        "values": shown,
        "own": service.has_own_prices(db, actor.clinic_id),
        "defaults": default_prices(),
        "chairs": service.chairs(db, actor.clinic_id),
    }


def _bands(text: str) -> list[list[str]]:
    """``60=600; 240=1000`` -> [["60", "600"], ["240", "1000"]] (pydantic checks the numbers)."""
    bands = []
    for part in (text or "").replace(",", ";").split(";"):
        if part.strip():
            minutes, _, fee = part.partition("=")
            bands.append([minutes.strip(), fee.strip()])
    return bands


@router.post("/planning/prices", include_in_schema=False)
def prices_save(request: Request, db: DbSession, actor: Admin, form: FormData) -> Response:
    try:
        service.save_price_list(
            db, actor, parse(PriceListIn, {**form, "session_bands": _bands(form.get("session_bands", ""))})
        )
    except InvalidInput as exc:
        db.rollback()
        context = _prices_context(db, actor, service.price_list(db, actor.clinic_id), form)
        return render(request, "prices.html", {**context, "errors": exc.errors}, 422)
    return RedirectResponse("/planning/prices?saved=prices", status_code=303)


@router.post("/planning/chairs", include_in_schema=False)
def chairs_add(request: Request, db: DbSession, actor: Admin, form: FormData) -> Response:
    try:
        service.add_chair(db, actor, parse(ChairIn, form))
    except InvalidInput as exc:
        db.rollback()
        context = _prices_context(db, actor, service.price_list(db, actor.clinic_id), {})
        return render(request, "prices.html", {**context, "errors": exc.errors, "chair_values": form}, 422)
    return RedirectResponse("/planning/prices?saved=chair#chairs", status_code=303)


# --- JSON API ----------------------------------------------------------------------------


@router.get("/api/v1/protocols", response_model=list[ProtocolOut], tags=["planning"])
def api_protocols(db: DbSession, actor: Reader) -> list[ProtocolOut]:
    return [_protocol_out(p) for p in service.protocols(db, actor.clinic_id)]


@router.post("/api/v1/protocols", response_model=ProtocolOut, status_code=201, tags=["planning"])
def api_add_protocol(db: DbSession, actor: Writer, body: ClinicProtocolIn) -> ProtocolOut:
    return _protocol_out(service.add_clinic_protocol(db, actor, body))


@router.post(
    "/api/v1/patients/{patient_id}/plans", response_model=PlanOut, status_code=201, tags=["planning"]
)
def api_create_plan(db: DbSession, actor: Writer, patient_id: int, body: PlanIn) -> PlanOut:
    plan = service.create_plan(db, actor, patient_id, body)
    return plan_out(service.view(db, actor, plan.id))


@router.get("/api/v1/plans/{plan_id}", response_model=PlanOut, tags=["planning"])
def api_plan(db: DbSession, actor: Reader, plan_id: int) -> PlanOut:
    return plan_out(service.view(db, actor, plan_id))


@router.post("/api/v1/plans/{plan_id}/schedule", response_model=PlanOut, tags=["planning"])
def api_schedule(db: DbSession, actor: Writer, plan_id: int) -> PlanOut:
    service.schedule(db, actor, plan_id)
    return plan_out(service.view(db, actor, plan_id))


@router.post(
    "/api/v1/plans/{plan_id}/care-items", response_model=CareItemOut, status_code=201, tags=["planning"]
)
def api_care_add(db: DbSession, actor: CareWriter, plan_id: int, body: CareItemIn) -> CareItemOut:
    return CareItemOut.model_validate(service.add_care_item(db, actor, plan_id, body))


@router.patch("/api/v1/plans/{plan_id}/care-items/{item_id}", response_model=CareItemOut, tags=["planning"])
def api_care_status(
    db: DbSession, actor: CareWriter, plan_id: int, item_id: int, body: CareStatusIn
) -> CareItemOut:
    return CareItemOut.model_validate(service.set_care_status(db, actor, plan_id, item_id, body.status.value))


@router.post(
    "/api/v1/plans/{plan_id}/responses", response_model=ResponseOut, status_code=201, tags=["planning"]
)
def api_response(db: DbSession, actor: Writer, plan_id: int, body: ResponseIn) -> ResponseOut:
    return ResponseOut.model_validate(service.add_response(db, actor, plan_id, body))


@router.get("/api/v1/plans/{plan_id}/consent", response_model=ConsentOut, tags=["planning"])
def api_consent(db: DbSession, actor: Reader, plan_id: int) -> ConsentOut:
    plan, row = service.consent(db, actor, plan_id)
    return _consent_out(plan, row)


@router.get("/api/v1/me/plans/{plan_id}/consent", response_model=ConsentOut, tags=["planning"])
def api_my_consent(db: DbSession, actor: Patient_, plan_id: int) -> ConsentOut:
    plan, row = service.consent(db, actor, plan_id)
    return _consent_out(plan, row)


@router.post("/api/v1/me/plans/{plan_id}/consent/sign", response_model=ConsentOut, tags=["planning"])
def api_sign(db: DbSession, actor: Signer, plan_id: int, body: SignIn) -> ConsentOut:
    row = service.sign_consent(db, actor, plan_id, body)
    plan, _ = service.consent(db, actor, plan_id)
    return _consent_out(plan, row)


@router.get("/api/v1/calendar", tags=["planning"])
def api_calendar(
    db: DbSession, actor: Reader, start: dt.date, days: Annotated[int, Query(ge=1, le=31)] = 7
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
        }
        for e in service.calendar(db, actor, start, days)
    ]


@router.get("/api/v1/prices", response_model=PriceListIn, tags=["planning"])
def api_prices(db: DbSession, actor: Admin) -> PriceListIn:
    p = service.price_list(db, actor.clinic_id)
    return PriceListIn(
        consultation_usd=p.consultation_usd,
        drug_usd_per_mg=p.drug_usd_per_mg,
        premedication_usd_per_session=p.premedication_usd_per_session,
        session_bands=list(p.session_bands),
    )


@router.put("/api/v1/prices", response_model=PriceListIn, tags=["planning"])
def api_save_prices(db: DbSession, actor: Admin, body: PriceListIn) -> PriceListIn:
    service.save_price_list(db, actor, body)
    return body
