"""Planning pages: a patient's plans, the new-plan form, the plan page (schedule, session
changes, care plan, responses), the consent, the patient's own plans and signature, the calendar,
the protocol library, prices, clinical defaults, opening hours, chairs and the duty roster.
Mounted by ``planning.routes``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.knowledge.billing import default_prices
from ketacare.knowledge.dose_limits import dose_limits, planning_defaults
from ketacare.knowledge.protocols import DOSE_UNITS, ROUTES, SETTINGS, TAGS, Protocol
from ketacare.patients import service as patients
from ketacare.planning import bookings, consent, plans, setup
from ketacare.planning.access import Admin, CareWriter, ClinicalAdmin, Patient_, Reader, Signer, Writer
from ketacare.planning.api_routes import _clinical_rows
from ketacare.planning.clinical_defaults import SPECS
from ketacare.planning.schemas import (
    CancelIn,
    CareCategory,
    CareItemIn,
    CareStatus,
    CareStatusIn,
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
from ketacare.validation import ReasonableDate, parse
from ketacare.web.deps import DbSession, RowId
from ketacare.web.forms import FormData, FormLists, form_action
from ketacare.web.templating import render

router = APIRouter()
# Clinical defaults change clinical rules: a password confirmed in the last minutes.


def _plan_form(form: dict[str, list[str]]) -> dict[str, Any]:
    data: dict[str, Any] = {k: v[-1] for k, v in form.items() if v and k != "premedication"}
    data["premedication"] = form.get("premedication", [])
    return data


def _form_context(
    db: DbSession, actor: Principal, patient_id: RowId, values: dict[str, Any]
) -> dict[str, Any]:
    from ketacare.screening import service as screening

    library = setup.protocols(db, actor.clinic_id)
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
        "today": clinic_time.today(db, actor.clinic_id).isoformat(),
    }


def _defaults(p: Protocol, today: dt.date) -> dict[str, Any]:
    return {
        "protocol_key": p.key,
        "dose": f"{p.dose_default:g}",
        "dose_unit": p.dose_unit,
        "sessions": str(p.sessions_min),
        "session_duration_min": str(p.duration_min),
        "interval_days": str(p.interval_days),
        "titration_start": f"{p.titration_start:g}" if p.titration_start else "",
        "start_date": (today + dt.timedelta(days=1)).isoformat(),
        "preferred_time": "09:00",
        "concentration_mg_per_ml": "10",
        "premedication": [],
        "purpose": "series",
    }


def _view_context(v: plans.PlanView) -> dict[str, Any]:
    return {
        **clinic_time.clock(v.clinic_zone),
        "v": v,
        "plan": v.plan,
        "patient": v.evaluation.record.patient,
        "ev": v.evaluation,
        "figure_json": json.dumps(v.evaluation.pk.figure) if v.evaluation.pk.available else "",
        "care_categories": list(CareCategory),
        "care_statuses": list(CareStatus),
        "today": clinic_time.today_in(v.clinic_zone).isoformat(),
        "now": dt.datetime.now(dt.UTC),
        "limits": dose_limits(),
    }


# --- pages: plans ------------------------------------------------------------------------


@router.get("/patients/{patient_id}/plans", include_in_schema=False)
def plans_page(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    plan_rows = plans.patient_plans(db, actor, patient_id)
    patient = patients.visible_patient(db, actor, patient_id, "plan.list")
    return render(request, "plan_list.html", {"patient": patient, "plans": plan_rows})


@router.get("/patients/{patient_id}/plans/new", include_in_schema=False)
def plan_new(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, protocol: str = ""
) -> Response:
    library = setup.protocols(db, actor.clinic_id)
    chosen = next((p for p in library if p.key == protocol), library[0])
    return render(
        request,
        "plan_form.html",
        _form_context(db, actor, patient_id, _defaults(chosen, clinic_time.today(db, actor.clinic_id))),
    )


@router.post("/patients/{patient_id}/plans/new", include_in_schema=False)
def plan_create(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, form: FormLists
) -> Response:
    data = _plan_form(form)
    return form_action(
        db,
        lambda: plans.create_plan(db, actor, patient_id, parse(PlanIn, data)),
        done=lambda plan: f"/plans/{plan.id}?saved=created",
        again=lambda errors: render(
            request, "plan_form.html", {**_form_context(db, actor, patient_id, data), "errors": errors}
        ),
    )


@router.get("/plans/{plan_id}", include_in_schema=False)
def plan_page(request: Request, db: DbSession, actor: Reader, plan_id: RowId) -> Response:
    v = plans.view(db, actor, plan_id)
    return render(
        request, "plan_detail.html", {**_view_context(v), "saved": request.query_params.get("saved")}
    )


def _plan_error(
    request: Request,
    db: DbSession,
    actor: Principal,
    plan_id: RowId,
    section: str,
    exc: InvalidInput,
    values: dict[str, Any],
) -> Response:
    db.rollback()
    v = plans.view(db, actor, plan_id)
    return render(
        request,
        "plan_detail.html",
        {**_view_context(v), "section": section, "errors": exc.errors, "values": values},
        422,
    )


@router.post("/plans/{plan_id}/schedule", include_in_schema=False)
def plan_schedule(request: Request, db: DbSession, actor: Writer, plan_id: RowId) -> Response:
    try:
        bookings.schedule(db, actor, plan_id)
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "schedule", exc, {})
    return RedirectResponse(f"/plans/{plan_id}?saved=schedule#schedule", status_code=303)


@router.post("/plans/{plan_id}/sessions/{number}/cancel", include_in_schema=False)
def session_cancel(
    request: Request, db: DbSession, actor: Writer, plan_id: RowId, number: RowId, form: FormData
) -> Response:
    try:
        bookings.cancel_session(db, actor, plan_id, number, parse(CancelIn, form))
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, f"session-{number}", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=session#schedule", status_code=303)


@router.post("/plans/{plan_id}/sessions/{number}/reschedule", include_in_schema=False)
def session_reschedule(
    request: Request, db: DbSession, actor: Writer, plan_id: RowId, number: RowId, form: FormData
) -> Response:
    try:
        bookings.reschedule_session(db, actor, plan_id, number, parse(RescheduleIn, form))
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, f"session-{number}", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=session#schedule", status_code=303)


@router.post("/plans/{plan_id}/cancel", include_in_schema=False)
def plan_cancel(request: Request, db: DbSession, actor: Writer, plan_id: RowId, form: FormData) -> Response:
    try:
        bookings.cancel_plan(db, actor, plan_id, parse(CancelIn, form))
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "cancel", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=cancelled", status_code=303)


@router.post("/plans/{plan_id}/care-items", include_in_schema=False)
def care_add(request: Request, db: DbSession, actor: CareWriter, plan_id: RowId, form: FormData) -> Response:
    try:
        plans.add_care_item(db, actor, plan_id, parse(CareItemIn, form))
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "care", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=care#care", status_code=303)


@router.post("/plans/{plan_id}/care-items/{item_id}/status", include_in_schema=False)
def care_status(
    request: Request, db: DbSession, actor: CareWriter, plan_id: RowId, item_id: RowId, form: FormData
) -> Response:
    try:
        data = parse(CareStatusIn, form)
        plans.set_care_status(db, actor, plan_id, item_id, data.status.value)
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "care", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=care#care", status_code=303)


@router.post("/plans/{plan_id}/responses", include_in_schema=False)
def response_add(request: Request, db: DbSession, actor: Writer, plan_id: RowId, form: FormData) -> Response:
    try:
        plans.add_response(db, actor, plan_id, parse(ResponseIn, form))
    except InvalidInput as exc:
        return _plan_error(request, db, actor, plan_id, "response", exc, form)
    return RedirectResponse(f"/plans/{plan_id}?saved=response#response", status_code=303)


@router.get("/plans/{plan_id}/consent", include_in_schema=False)
def consent_page(request: Request, db: DbSession, actor: Reader, plan_id: RowId) -> Response:
    plan, row = consent.consent(db, actor, plan_id)
    return render(
        request, "consent.html", {"plan": plan, "consent": row, "verified": consent.verify_consent(row)}
    )


# --- pages: the patient ------------------------------------------------------------------


@router.get("/my/plans", include_in_schema=False)
def my_plans(request: Request, db: DbSession, actor: Patient_) -> Response:
    if actor.patient_id is None:
        raise InvalidInput("This account is not linked to a patient record.")
    plan_rows = plans.patient_plans(db, actor, actor.patient_id)
    signed = {p.id: consent.consent_signed(db, p.id) for p in plan_rows}
    return render(request, "my_plans.html", {"plans": plan_rows, "signed": signed})


@router.get("/my/plans/{plan_id}/consent", include_in_schema=False)
def my_consent(request: Request, db: DbSession, actor: Patient_, plan_id: RowId) -> Response:
    plan, row = consent.consent(db, actor, plan_id)
    return render(
        request,
        "consent.html",
        {
            "plan": plan,
            "consent": row,
            "verified": consent.verify_consent(row),
            "can_sign": row.signed_at is None,
            "values": {"signed_on": clinic_time.today(db, actor.clinic_id).isoformat()},
            "saved": request.query_params.get("saved"),
        },
    )


@router.post("/my/plans/{plan_id}/consent", include_in_schema=False)
def my_consent_sign(
    request: Request, db: DbSession, actor: Signer, plan_id: RowId, form: FormData
) -> Response:
    data = {**form, "agree": form.get("agree") == "yes"}
    try:
        consent.sign_consent(db, actor, plan_id, parse(SignIn, data))
    except InvalidInput as exc:
        db.rollback()
        plan, row = consent.consent(db, actor, plan_id)
        return render(
            request,
            "consent.html",
            {
                "plan": plan,
                "consent": row,
                "verified": consent.verify_consent(row),
                "can_sign": True,
                "values": form,
                "errors": exc.errors,
            },
            422,
        )
    return RedirectResponse(f"/my/plans/{plan_id}/consent?saved=signed", status_code=303)


# --- pages: clinic ------------------------------------------------------------------------


@router.get("/planning/calendar", include_in_schema=False)
def calendar_page(
    request: Request, db: DbSession, actor: Reader, start: ReasonableDate | None = None
) -> Response:
    first = start or clinic_time.today(db, actor.clinic_id)
    entries = bookings.calendar(db, actor, first, 7)
    days = [first + dt.timedelta(days=i) for i in range(7)]
    return render(
        request,
        "calendar.html",
        {
            **clinic_time.clock(clinic_time.zone_name(db, actor.clinic_id)),
            "entries": entries,
            "days": days,
            "first": first,
            "prev": first - dt.timedelta(days=7),
            "next": first + dt.timedelta(days=7),
        },
    )


PROTOCOL_FIELDS = (
    "key",
    "name",
    "route",
    "dose_unit",
    "dose_min",
    "dose_max",
    "dose_default",
    "duration_min",
    "sessions_min",
    "sessions_max",
    "interval_days",
    "setting",
    "monitoring",
    "titration_start",
    "titration_step",
    "dose_step",
    "doses_per_day",
    "max_doses_per_episode",
)


def _protocol_values(p: Protocol | None) -> dict[str, str]:
    """A protocol as form values: the start of a new version (``source`` left for the author)."""
    if p is None:
        return {"tag": "design", "monitoring": "standard", "setting": "outpatient", "route": "iv_infusion"}

    def text(value: object) -> str:
        return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    values = {n: text(getattr(p, n)) for n in PROTOCOL_FIELDS}
    values["premedication"] = "; ".join(p.premedication)
    values["tag"] = "design"
    return values


def _protocol_form(form: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = dict(form)
    data["premedication"] = [m.strip() for m in (form.get("premedication") or "").split(";") if m.strip()]
    return data


def _protocols_context(
    db: DbSession, actor: Principal, values: dict[str, str], errors: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "protocols": setup.protocols(db, actor.clinic_id),
        "limits": dose_limits(),
        "defaults": planning_defaults(),
        "clinic_defaults": setup.clinical_defaults(db, actor.clinic_id),
        "values": values,
        "errors": errors or {},
        "routes": ROUTES,
        "units": DOSE_UNITS,
        "settings": SETTINGS,
        "tags": TAGS,
    }


@router.get("/planning/protocols", include_in_schema=False)
def protocols_page(request: Request, db: DbSession, actor: Reader, start_from: str = "") -> Response:
    library = setup.protocols(db, actor.clinic_id)
    base = next((p for p in library if p.key == start_from), None)
    context = _protocols_context(db, actor, _protocol_values(base))
    saved = next((p for p in library if p.key == request.query_params.get("saved") and not p.builtin), None)
    return render(request, "protocols.html", {**context, "start_from": base, "saved": saved})


@router.post("/planning/protocols", include_in_schema=False)
def protocols_add(request: Request, db: DbSession, actor: Writer, form: FormData) -> Response:
    return form_action(
        db,
        lambda: setup.add_clinic_protocol(db, actor, parse(ClinicProtocolIn, _protocol_form(form))),
        done=lambda added: f"/planning/protocols?saved={added.key}#library",
        again=lambda errors: render(
            request, "protocols.html", {**_protocols_context(db, actor, form, errors), "open_form": True}
        ),
    )


SAVED_MESSAGES = {
    "prices": "Prices saved.",
    "chair": "Chair added.",
    "hours": "Opening hours and slot length saved.",
    "clinical": "Clinical defaults saved.",
}


@router.get("/planning/prices", include_in_schema=False)
def prices_page(request: Request, db: DbSession, actor: Admin) -> Response:
    prices = setup.price_list(db, actor.clinic_id)
    saved = SAVED_MESSAGES.get(request.query_params.get("saved", ""))
    return render(request, "prices.html", {**_prices_context(db, actor, prices, {}), "saved": saved})


def _prices_context(
    db: DbSession,
    actor: Principal,
    prices: Any,
    values: dict[str, str],
    hours_values: dict[str, str] | None = None,
    clinical_values: dict[str, str] | None = None,
) -> dict[str, Any]:
    shown = values or {
        "consultation_usd": f"{prices.consultation_usd:g}",
        "drug_usd_per_mg": f"{prices.drug_usd_per_mg:g}",
        "premedication_usd_per_session": f"{prices.premedication_usd_per_session:g}",
        "session_bands": "; ".join(f"{m}={fee:g}" for m, fee in prices.session_bands),
    }
    hrs = setup.hours(db, actor.clinic_id)
    return {
        "values": shown,
        "own": setup.has_own_prices(db, actor.clinic_id),
        "defaults": default_prices(),
        "chairs": setup.chairs(db, actor.clinic_id),
        "hours_values": hours_values
        or {
            "opens_at": f"{hrs.opens:%H:%M}",
            "closes_at": f"{hrs.closes:%H:%M}",
            "slot_min": str(hrs.slot_min),
        },
        "own_hours": setup.has_own_hours(db, actor.clinic_id),
        "clinical_rows": _clinical_rows(db, actor),
        "clinical_values": clinical_values
        if clinical_values is not None
        else {
            k: ("" if v is None else f"{v:g}")
            for k, v in setup.clinical_default_overrides(db, actor.clinic_id).items()
        },
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
    return form_action(
        db,
        lambda: setup.save_price_list(
            db, actor, parse(PriceListIn, {**form, "session_bands": _bands(form.get("session_bands", ""))})
        ),
        done="/planning/prices?saved=prices",
        again=lambda errors: render(
            request,
            "prices.html",
            {**_prices_context(db, actor, setup.price_list(db, actor.clinic_id), form), "errors": errors},
        ),
    )


@router.post("/planning/clinical-defaults", include_in_schema=False)
def clinical_defaults_save(request: Request, db: DbSession, actor: ClinicalAdmin, form: FormData) -> Response:
    values = {s.key: form.get(s.key, "") for s in SPECS}
    return form_action(
        db,
        lambda: setup.save_clinical_defaults(db, actor, parse(ClinicalDefaultsIn, values)),
        done="/planning/prices?saved=clinical#clinical-defaults",
        again=lambda errors: render(
            request,
            "prices.html",
            {
                **_prices_context(
                    db, actor, setup.price_list(db, actor.clinic_id), {}, clinical_values=values
                ),
                "clinical_errors": errors,
            },
        ),
    )


@router.post("/planning/hours", include_in_schema=False)
def hours_save(request: Request, db: DbSession, actor: Admin, form: FormData) -> Response:
    return form_action(
        db,
        lambda: setup.save_hours(db, actor, parse(HoursIn, form)),
        done="/planning/prices?saved=hours#hours",
        again=lambda errors: render(
            request,
            "prices.html",
            {
                **_prices_context(db, actor, setup.price_list(db, actor.clinic_id), {}, form),
                "hours_errors": errors,
            },
        ),
    )


# --- pages: duty roster -------------------------------------------------------------------

ROSTER_DAYS = 14


def _duty_context(
    db: DbSession, actor: Principal, first: dt.date, values: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    roster = setup.duty_roster(db, actor, first, ROSTER_DAYS)
    days = [first + dt.timedelta(days=i) for i in range(ROSTER_DAYS)]
    return {
        "roster": roster,
        "days": days,
        "first": first,
        "prev": first - dt.timedelta(days=7),
        "next": first + dt.timedelta(days=7),
        "staff": setup.duty_candidates(db, actor),
        "hours": setup.hours(db, actor.clinic_id),
        "values": values,
        "errors": errors,
    }


def _duty_defaults(db: DbSession, actor: Principal, first: dt.date) -> dict[str, str]:
    hrs = setup.hours(db, actor.clinic_id)
    return {
        "on_date": max(first, clinic_time.today(db, actor.clinic_id)).isoformat(),
        "start_time": f"{hrs.opens:%H:%M}",
        "end_time": f"{hrs.closes:%H:%M}",
        "repeat_weeks": "1",
    }


@router.get("/planning/duty", include_in_schema=False)
def duty_page(
    request: Request, db: DbSession, actor: Reader, start: ReasonableDate | None = None
) -> Response:
    first = start or clinic_time.today(db, actor.clinic_id)
    context = _duty_context(db, actor, first, _duty_defaults(db, actor, first), {})
    return render(request, "duty.html", {**context, "saved": request.query_params.get("saved")})


@router.post("/planning/duty", include_in_schema=False)
def duty_add(request: Request, db: DbSession, actor: Admin, form: FormData) -> Response:
    try:
        rows = setup.add_duty(db, actor, parse(DutyIn, form))
    except InvalidInput as exc:
        db.rollback()
        context = _duty_context(db, actor, clinic_time.today(db, actor.clinic_id), form, exc.errors)
        return render(request, "duty.html", context, 422)
    return RedirectResponse(
        f"/planning/duty?start={rows[0].on_date.isoformat()}&saved=added", status_code=303
    )


@router.post("/planning/duty/{shift_id}/delete", include_in_schema=False)
def duty_remove(request: Request, db: DbSession, actor: Admin, shift_id: RowId) -> Response:
    try:
        setup.remove_duty(db, actor, shift_id)
    except InvalidInput as exc:
        db.rollback()
        first = clinic_time.today(db, actor.clinic_id)
        context = _duty_context(db, actor, first, _duty_defaults(db, actor, first), exc.errors)
        return render(request, "duty.html", context, 422)
    return RedirectResponse("/planning/duty?saved=removed", status_code=303)


@router.post("/planning/chairs", include_in_schema=False)
def chairs_add(request: Request, db: DbSession, actor: Admin, form: FormData) -> Response:
    try:
        setup.add_chair(db, actor, parse(ChairIn, form))
    except InvalidInput as exc:
        db.rollback()
        context = _prices_context(db, actor, setup.price_list(db, actor.clinic_id), {})
        return render(request, "prices.html", {**context, "errors": exc.errors, "chair_values": form}, 422)
    return RedirectResponse("/planning/prices?saved=chair#chairs", status_code=303)
