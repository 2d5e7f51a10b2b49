"""Outcome pages: the public questionnaire link, the patient's pain diary, the prescriber's
trajectory against baseline, scheduling follow-ups and the clinic's follow-up settings."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.auth import service as auth
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.knowledge.contraindications import mme_rule
from ketacare.knowledge.outcomes import default_schedule, instruments, outcome_rules, registry_definitions
from ketacare.outcomes import rules, service
from ketacare.outcomes.schemas import DiaryIn, OneOffIn, SeriesIn, SettingsIn
from ketacare.sessions import views as session_views
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, public, require
from ketacare.web.forms import FormData, form_action
from ketacare.web.templating import render

router = APIRouter()
Reader = Annotated[Principal, require(Permission.outcome_read)]
Writer = Annotated[Principal, require(Permission.outcome_write)]
# The follow-up schedule and the BPI licence are clinic-wide: the clinic admin, password confirmed.
SettingsAdmin = Annotated[Principal, require(Permission.planning_admin, sensitive=True)]
Self_ = Annotated[Principal, require(Permission.patient_self)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _secret(request: Request) -> str:
    secret: str = request.app.state.settings.secret_key
    return secret


def _common() -> dict[str, Any]:
    return {
        "INSTRUMENTS": instruments(),
        "RULES": outcome_rules(),
        "SCHEDULE": default_schedule(),
        "MME_RULE": mme_rule(),
        "DEFINITIONS": registry_definitions(),
    }


# --- the public questionnaire link ------------------------------------------------------------


@router.get("/q/{token}", include_in_schema=False, dependencies=[public()])
def questionnaire(request: Request, db: DbSession, token: str) -> Response:
    try:
        view = service.open_link(db, _secret(request), token, _now())
    except InvalidInput as exc:
        db.rollback()
        return render(request, "outcomes_link_problem.html", {"errors": exc.errors}, 410)
    values = {k: str(v) for k, v in view.draft.items()}
    return render(
        request, "outcomes_questionnaire.html", {"view": view, "token": token, "values": values, **_common()}
    )


@router.post("/q/{token}", include_in_schema=False, dependencies=[public()])
def questionnaire_submit(request: Request, db: DbSession, token: str, form: FormData) -> Response:
    submit = form.get("action") != "save"
    try:
        row = service.answer_link(db, _secret(request), token, form, _now(), submit=submit)
    except InvalidInput as exc:
        db.rollback()
        if "link" in exc.errors:
            return render(request, "outcomes_link_problem.html", {"errors": exc.errors}, 410)
        view = service.open_link(db, _secret(request), token, _now())
        return render(
            request,
            "outcomes_questionnaire.html",
            {"view": view, "token": token, "values": form, "errors": exc.errors, **_common()},
            422,
        )
    if not submit:
        view = service.open_link(db, _secret(request), token, _now())
        values = {k: str(v) for k, v in row.draft.items()}
        return render(
            request,
            "outcomes_questionnaire.html",
            {"view": view, "token": token, "values": values, "draft_saved": True, **_common()},
        )
    return render(request, "outcomes_thanks.html", {})


# --- the patient's own diary -----------------------------------------------------------------------


@router.get("/me/diary", include_in_schema=False)
def my_diary(request: Request, db: DbSession, actor: Self_) -> Response:
    if actor.patient_id is None:
        raise InvalidInput("This account is not linked to a patient record.")
    entries = service.diary(db, actor, actor.patient_id)
    saved = request.query_params.get("saved")
    return render(request, "outcomes_diary.html", {"entries": entries, "saved": saved})


@router.post("/me/diary", include_in_schema=False)
def my_diary_add(request: Request, db: DbSession, actor: Self_, form: FormData) -> Response:
    data = {**form, "flare": form.get("flare") == "on"}
    return form_action(
        db,
        lambda: service.add_diary(db, actor, parse(DiaryIn, data), _now()),
        done="/me/diary?saved=1",
        again=lambda errors: render(
            request,
            "outcomes_diary.html",
            {
                "entries": service.diary(db, actor, actor.patient_id) if actor.patient_id else [],
                "values": form,
                "errors": errors,
            },
        ),
    )


# --- the prescriber's view -----------------------------------------------------------------------------


def _trajectory(db: DbSession, actor: Principal, patient_id: int) -> service.Trajectory:
    starts = [s.started_at for s in session_views.patient_sessions(db, actor, patient_id) if s.started_at]
    return service.trajectory(db, actor, patient_id, starts)


def _series_ends(db: DbSession, actor: Principal, patient_id: int) -> dict[int, dt.date]:
    """The patient's series: plan -> the (UTC) day of its last discharged session."""
    ends: dict[int, dt.date] = {}
    for s in session_views.patient_sessions(db, actor, patient_id):
        if s.status == "discharged" and s.started_at is not None and s.plan_id is not None:
            day = s.started_at.astimezone(dt.UTC).date()
            ends[s.plan_id] = max(day, ends.get(s.plan_id, day))
    return ends


def _patient_context(db: DbSession, actor: Principal, patient_id: int) -> dict[str, Any]:
    t = _trajectory(db, actor, patient_id)
    return {
        "t": t,
        "series_options": [
            (str(plan), f"Plan {plan} (last session {end.isoformat()})")
            for plan, end in sorted(_series_ends(db, actor, patient_id).items(), key=lambda kv: kv[1])
        ],
        "patient_id": patient_id,
        "figure_json": json.dumps(t.figure()),
        "settings_": service.settings_for(db, actor.clinic_id),
        "pgic_improved": t.latest_pgic is not None and rules.pgic_improved(t.latest_pgic),
        "can_write": Permission.outcome_write in auth.permissions_of(actor),
        **_common(),
    }


@router.get("/patients/{patient_id}/outcomes/summary", include_in_schema=False)
def outcomes_summary(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    return render(request, "outcomes_summary_fragment.html", _patient_context(db, actor, patient_id))


@router.get("/patients/{patient_id}/outcomes", include_in_schema=False)
def outcomes_page(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    context = _patient_context(db, actor, patient_id)
    context["link"] = request.query_params.get("link")
    context["saved"] = request.query_params.get("saved")
    return render(request, "outcomes_patient_outcomes.html", context)


def _page_error(
    request: Request, db: DbSession, actor: Principal, patient_id: int, exc: InvalidInput
) -> Response:
    db.rollback()
    context = _patient_context(db, actor, patient_id)
    return render(request, "outcomes_patient_outcomes.html", {**context, "errors": exc.errors}, 422)


@router.post("/patients/{patient_id}/outcomes/series", include_in_schema=False)
def schedule_series(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, form: FormData
) -> Response:
    try:
        data = parse(SeriesIn, {k: v for k, v in form.items() if not (k == "plan_id" and not v)})
        service.schedule_series(db, actor, patient_id, data, series_ends=_series_ends(db, actor, patient_id))
    except InvalidInput as exc:
        return _page_error(request, db, actor, patient_id, exc)
    return RedirectResponse(f"/patients/{patient_id}/outcomes?saved=series", status_code=303)


@router.post("/patients/{patient_id}/outcomes/one-off", include_in_schema=False)
def schedule_one_off(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, form: FormData
) -> Response:
    try:
        service.add_one_off(db, actor, patient_id, parse(OneOffIn, form))
    except InvalidInput as exc:
        return _page_error(request, db, actor, patient_id, exc)
    return RedirectResponse(f"/patients/{patient_id}/outcomes?saved=one-off", status_code=303)


@router.post("/patients/{patient_id}/outcomes/mme", include_in_schema=False)
def record_mme(request: Request, db: DbSession, actor: Writer, patient_id: RowId) -> Response:
    service.record_mme(db, actor, patient_id, clinic_time.today(db, actor.clinic_id))
    return RedirectResponse(f"/patients/{patient_id}/outcomes?saved=mme", status_code=303)


@router.post("/outcomes/follow-ups/{follow_up_id}/link", include_in_schema=False)
def issue_link(request: Request, db: DbSession, actor: Writer, follow_up_id: RowId) -> Response:
    patient_id = service.follow_up_patient(db, actor, follow_up_id)
    try:
        token = service.issue_link(db, actor, _secret(request), follow_up_id, _now())
    except InvalidInput as exc:
        return _page_error(request, db, actor, patient_id, exc)
    context = _patient_context(db, actor, patient_id)
    url = str(request.base_url).rstrip("/") + f"/q/{token}"
    return render(request, "outcomes_patient_outcomes.html", {**context, "link_url": url})


# --- the clinic's settings --------------------------------------------------------------------------


def _settings_values(eff: service.EffectiveSettings) -> dict[str, str]:
    return {
        "schedule_days": ", ".join(str(t.days) for t in eff.schedule.timepoints),
        "monthly_every_days": str(eff.schedule.monthly_every_days),
        "monthly_until_days": str(eff.schedule.monthly_until_days),
        "link_valid_days": str(eff.link_valid_days),
        "reminder_after_days": str(eff.reminder_after_days),
        "bpi_licence": eff.bpi_licence or "",
        "baseline_lookback_days": str(eff.baseline_lookback_days),
    }


@router.get("/outcomes/settings", include_in_schema=False)
def settings_page(request: Request, db: DbSession, actor: Reader) -> Response:
    eff = service.settings_for(db, actor.clinic_id)
    return render(
        request,
        "outcomes_settings.html",
        {
            "eff": eff,
            "values": _settings_values(eff),
            "saved": request.query_params.get("saved"),
            **_common(),
        },
    )


@router.post("/outcomes/settings", include_in_schema=False)
def settings_save(request: Request, db: DbSession, actor: SettingsAdmin, form: FormData) -> Response:
    return form_action(
        db,
        lambda: service.save_settings(db, actor, parse(SettingsIn, form)),
        done="/outcomes/settings?saved=1",
        again=lambda errors: render(
            request,
            "outcomes_settings.html",
            {"eff": service.settings_for(db, actor.clinic_id), "values": form, "errors": errors, **_common()},
        ),
    )


# --- JSON API -------------------------------------------------------------------------------------------


@router.get("/api/v1/patients/{patient_id}/outcomes", tags=["outcomes"])
def api_outcomes(db: DbSession, actor: Reader, patient_id: RowId) -> dict[str, Any]:
    t = _trajectory(db, actor, patient_id)
    return {
        "patient_id": patient_id,
        "baseline": t.baseline,
        "scores": {k: [{"at": a.isoformat(), "score": s} for a, s in v] for k, v in t.scores.items()},
        "mme": [
            {"on": m.measured_on.isoformat(), "mme_per_day": m.mme_per_day, "unconverted": m.unconverted}
            for m in t.mme
        ],
        "latest_response": None
        if t.latest is None
        else {
            "change_points": t.latest.change_points,
            "reduction_pct": t.latest.reduction_pct,
            "responder_30": t.latest.responder_30,
            "responder_50": t.latest.responder_50,
            "responder_2pt": t.latest.responder_2pt,
        },
    }
