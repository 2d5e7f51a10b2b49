"""Session report (printable page and PDF), the esketamine REMS monitoring form, and the
clinic's alarm-settings page. Included by ``sessions.routes``."""

from __future__ import annotations

import datetime as dt
import json
import math
import zoneinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import InvalidInput
from ketacare.knowledge.sessions import AlarmRule, clinic_setting_specs, session_rules
from ketacare.sessions import alarm_settings, pdf, rems, report, views
from ketacare.sessions.access import Admin, AdminSensitive, Exporter, Reader, Writer
from ketacare.sessions.device import VITAL_LABELS, VITAL_UNITS
from ketacare.sessions.schemas import AlarmSettingIn, AlarmSettingsIn
from ketacare.validation import ReasonableDate, parse
from ketacare.web.deps import DbSession, RowId
from ketacare.web.forms import FormData
from ketacare.web.templating import render

router = APIRouter()
# The REMS export holds names and dates of birth: identified data leaves only in sudo mode.

PDF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The session report as a PDF."}
}
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "One row per esketamine session."}
}


# --- the session report -----------------------------------------------------------------------


def _report(
    db: DbSession, actor: Principal, session_id: int, action: str
) -> tuple[views.SessionView, report.Report, report.Timeline]:
    v = views.view(db, actor, session_id, audit_read=False)
    built = report.build(v, auth.clinic(db, actor.clinic_id).name, views.report_digest(v))
    audit.record(db, actor, action, "session", resource_id=v.session.id, patient_id=v.patient_id)
    return v, built, report.timeline(v)


@router.get("/sessions/{session_id}/report", include_in_schema=False)
def report_page(request: Request, db: DbSession, actor: Reader, session_id: RowId) -> Response:
    v, rep, tl = _report(db, actor, session_id, "session.report")
    s = v.session
    may_sign = {
        Role.nurse: s.nurse_signed_at is None,
        Role.prescriber: s.prescriber_signed_at is None,
    }
    return render(
        request,
        "session_report.html",
        {
            "rep": rep,
            "v": v,
            "figure_json": "" if tl.empty else json.dumps(report.plotly_figure(tl)),
            "can_sign": rep.signable and actor.role is not None and may_sign.get(actor.role, False),
            "saved": request.query_params.get("saved"),
        },
    )


@router.get("/sessions/{session_id}/report.pdf", include_in_schema=False)
@router.get(
    "/api/v1/sessions/{session_id}/report.pdf",
    tags=["sessions"],
    response_class=Response,
    responses=PDF_RESPONSE,
)
def report_pdf(db: DbSession, actor: Reader, session_id: RowId) -> Response:
    """The session report as a PDF: totals, timeline, scores, alarms, adverse events, discharge,
    billing units and signatures."""
    _, rep, tl = _report(db, actor, session_id, "session.report.pdf")
    return Response(
        pdf.build(rep, tl),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="ketacare-session-{session_id}.pdf"'},
    )


# --- the REMS monitoring form -----------------------------------------------------------------


def _rems_out(d: rems.RemsDraft) -> dict[str, Any]:
    saved = d.saved
    return {
        "session_id": d.session_id,
        "status": "saved" if saved is not None else "draft",
        "answers": d.values,
        "suggested": d.suggested,
        "hints": d.hints,
        "saved_at": None if saved is None else clinic_time.as_utc(saved.recorded_at).isoformat(),
        "saved_by": d.saved_by,
        "first_device_at": None if d.first_device_at is None else d.first_device_at.isoformat(),
        "min_monitoring_min": d.min_monitoring_min,
        "submit_within_days": d.knowledge.submit_within_days,
        "source": d.knowledge.form.source,
    }


def _form_values(values: dict[str, object]) -> dict[str, str]:
    """Stored answers as the HTML inputs hold them (yes/no radios, ticked boxes)."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            out[name] = ("on" if value else "") if name in rems.CHECKBOXES else ("yes" if value else "no")
        elif value is None:
            out[name] = ""
        elif isinstance(value, float):
            out[name] = f"{value:g}"
        else:
            out[name] = str(value)
    return out


def _rems_page(
    request: Request,
    db: DbSession,
    actor: Principal,
    session_id: int,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    d = rems.form(db, actor, session_id)
    zone = zoneinfo.ZoneInfo(d.zone)
    return render(
        request,
        "rems_form.html",
        {
            "d": d,
            "fields": rems.FIELDS,
            "booleans": rems.BOOLEAN_FIELDS,
            "saved_values": d.saved.answers if d.saved is not None else {},
            "saved_at": clinic_time.as_utc(d.saved.recorded_at).astimezone(zone).strftime("%Y-%m-%d %H:%M")
            if d.saved is not None
            else None,
            "values": values if values is not None else _form_values(d.values),
            "errors": errors or {},
            "saved": request.query_params.get("saved"),
            "can_write": Permission.session_write in auth.permissions_of(actor),
            "today": utcnow().astimezone(zone).date(),
        },
        status,
    )


@router.get("/sessions/{session_id}/rems", include_in_schema=False)
def rems_page(request: Request, db: DbSession, actor: Reader, session_id: RowId) -> Response:
    return _rems_page(request, db, actor, session_id)


@router.post("/sessions/{session_id}/rems", include_in_schema=False)
def rems_save_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData
) -> Response:
    try:
        rems.save(db, actor, session_id, rems.parse_form(form))
    except InvalidInput as exc:
        return _rems_page(request, db, actor, session_id, values=form, errors=exc.errors, status=422)
    return RedirectResponse(f"/sessions/{session_id}/rems?saved=1", status_code=303)


@router.get("/api/v1/sessions/{session_id}/rems", tags=["sessions"])
def api_rems(db: DbSession, actor: Reader, session_id: RowId) -> dict[str, Any]:
    """The REMS Patient Monitoring Form of an esketamine session: the saved answers, or the
    answers KetaCare suggests from the record (``status`` draft)."""
    return _rems_out(rems.form(db, actor, session_id))


@router.put("/api/v1/sessions/{session_id}/rems", tags=["sessions"])
def api_rems_save(db: DbSession, actor: Writer, session_id: RowId, body: rems.RemsIn) -> dict[str, Any]:
    rems.save(db, actor, session_id, body)
    return _rems_out(rems.form(db, actor, session_id))


def _month_so_far(db: DbSession, actor: Principal) -> tuple[dt.date, dt.date]:
    today = clinic_time.today(db, actor.clinic_id)
    return today.replace(day=1), today


@router.get("/rems/export.csv", include_in_schema=False)
@router.get("/api/v1/rems/export.csv", tags=["sessions"], response_class=Response, responses=CSV_RESPONSE)
def rems_export(
    db: DbSession,
    actor: Exporter,
    start: Annotated[ReasonableDate | None, Query()] = None,
    end: Annotated[ReasonableDate | None, Query()] = None,
) -> Response:
    """REMS monitoring forms of the clinic's esketamine sessions from ``start`` to ``end``
    (clinic days; default: this month so far), one row per session."""
    first, last = _month_so_far(db, actor)
    text = rems.export_csv(db, actor, start or first, end or last)
    name = f"ketacare-rems-{(start or first).isoformat()}-{(end or last).isoformat()}.csv"
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- alarm settings ---------------------------------------------------------------------------

UNIT_TEXT = {"mm[Hg]": "mmHg", "/min": "/min", "%": "%"}
SCORE_UNITS = {"moaas": "MOAA/S level", "rass": "RASS level"}
CONDITIONS = {
    "above": "at or above",
    "below": "below",
    "at_or_below": "at or below",
    "rise_pct": "rise from baseline of more than",
    "sustained_below": "sustained below",
}


def _unit(rule: AlarmRule) -> str:
    if rule.kind == "rise_pct":
        return "%"
    if rule.vital in SCORE_UNITS:
        return SCORE_UNITS[rule.vital]
    return UNIT_TEXT.get(VITAL_UNITS.get(rule.vital, ""), VITAL_UNITS.get(rule.vital, ""))


def _settings_values(
    in_force: list[alarm_settings.AlarmRuleInForce],
    escalation_s: int,
    clinic: list[alarm_settings.ClinicSettingInForce],
) -> dict[str, str]:
    values = {r.rule.key: f"{r.rule.value:g}" for r in in_force}
    values |= {f"{r.rule.key}__on": "on" if r.enabled else "" for r in in_force}
    values["escalation_s"] = str(escalation_s)
    values |= {c.spec.key: f"{c.value:g}" for c in clinic}
    return values


def _settings_page(
    request: Request,
    db: DbSession,
    actor: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    in_force, escalation_s = alarm_settings.alarm_rules_in_force(db, actor.clinic_id)
    clinic = alarm_settings.clinic_settings_in_force(db, actor.clinic_id)
    knowledge = session_rules()
    return render(
        request,
        "alarm_settings.html",
        {
            "rules": in_force,
            "escalation_s": escalation_s,
            "escalation_default": knowledge.escalation_s,
            "escalation": knowledge.escalation,
            "escalation_own": escalation_s != knowledge.escalation_s,
            "escalation_range": knowledge.escalation_range_s,
            "clinic_settings": clinic,
            "units": {r.rule.key: _unit(r.rule) for r in in_force},
            "conditions": CONDITIONS,
            "vital_labels": {**VITAL_LABELS, "moaas": "MOAA/S", "rass": "RASS"},
            "values": values if values is not None else _settings_values(in_force, escalation_s, clinic),
            "errors": errors or {},
            "saved": request.query_params.get("saved"),
        },
        status,
    )


@router.get("/alarm-settings", include_in_schema=False)
def alarm_settings_page(request: Request, db: DbSession, actor: Admin) -> Response:
    return _settings_page(request, db, actor)


def _settings_from_form(
    form: dict[str, str], in_force: list[alarm_settings.AlarmRuleInForce]
) -> AlarmSettingsIn:
    """Every rule as posted; numbers that are not numbers are named by their rule."""
    errors: dict[str, str] = {}
    settings = []
    for r in in_force:
        raw = (form.get(r.rule.key) or "").strip()
        try:
            value = float(raw)
        except ValueError:
            errors[r.rule.key] = "Enter a number."
            continue
        settings.append(
            AlarmSettingIn(rule_key=r.rule.key, value=value, enabled=form.get(f"{r.rule.key}__on") == "on")
        )
    raw_esc = (form.get("escalation_s") or "").strip()
    if not raw_esc.isdigit():
        errors["escalation_s"] = "Enter whole seconds."
    extra: dict[str, float | int] = {}
    for spec in clinic_setting_specs():
        if spec.key not in form:
            continue  # not on the form posted: left as it is
        raw = (form.get(spec.key) or "").strip()
        try:
            number = float(raw)
        except ValueError:
            errors[spec.key] = "Enter whole seconds." if spec.integer else "Enter a number."
            continue
        if not math.isfinite(number):
            errors[spec.key] = "Enter a number."
        elif spec.integer and number != int(number):
            errors[spec.key] = "Enter whole seconds."
        else:
            extra[spec.key] = int(number) if spec.integer else number
    try:
        data = parse(
            AlarmSettingsIn,
            {"settings": settings, "escalation_s": int(raw_esc) if raw_esc.isdigit() else None, **extra},
        )
    except InvalidInput as exc:
        errors |= exc.errors
    if errors:
        raise InvalidInput(errors=errors)
    return data


@router.post("/alarm-settings", include_in_schema=False)
def alarm_settings_save(request: Request, db: DbSession, actor: AdminSensitive, form: FormData) -> Response:
    in_force, escalation_s = alarm_settings.alarm_rules_in_force(db, actor.clinic_id)
    clinic = {c.spec.key: c.value for c in alarm_settings.clinic_settings_in_force(db, actor.clinic_id)}
    try:
        data = _settings_from_form(form, in_force)
        # Only what changed is saved, so a rule left as it was keeps showing the default in force.
        current = {r.rule.key: (r.rule.value, r.enabled) for r in in_force}
        changed = [s for s in data.settings if current.get(s.rule_key) != (s.value, s.enabled)]
        escalation = data.escalation_s if data.escalation_s != escalation_s else None
        others = {k: None for k in clinic if getattr(data, k) in (None, clinic[k])}
        if not changed and escalation is None and len(others) == len(clinic):
            return RedirectResponse("/alarm-settings?saved=unchanged", status_code=303)
        alarm_settings.save_alarm_settings(
            db, actor, data.model_copy(update={"settings": changed, "escalation_s": escalation, **others})
        )
    except InvalidInput as exc:
        return _settings_page(request, db, actor, values=form, errors=exc.errors, status=422)
    return RedirectResponse("/alarm-settings?saved=1", status_code=303)
