"""Treatment-session pages and JSON API: the day list, check-in, the session page (pre-checks,
administration record, vitals, scores, alarms, adverse events, discharge), the live board,
notices, and the device batch endpoint."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import Conflict, InvalidInput
from ketacare.knowledge.sessions import session_rules
from ketacare.sessions import (
    administration,
    adverse_events,
    alarm_settings,
    checkin,
    common,
    discharge,
    monitoring,
    rules,
    views,
)
from ketacare.sessions.device import VITAL_DISPLAY_UNITS, VITAL_LABELS, VITAL_UNITS
from ketacare.sessions.schemas import (
    AbortIn,
    AdministrationIn,
    AdverseEventIn,
    AeCodeIn,
    AlarmSettingsIn,
    BpDecisionIn,
    DeviceBatchIn,
    DischargeChecksIn,
    DischargeIn,
    NoteIn,
    PrecheckIn,
    ReasonIn,
    ScoreIn,
    SessionWasteIn,
    VitalIn,
    VitalsIn,
)
from ketacare.validation import ReasonableDate, parse
from ketacare.web.deps import DbSession, RowId, require
from ketacare.web.forms import FormData, FormLists
from ketacare.web.templating import render

router = APIRouter()
Reader = Annotated[Principal, require(Permission.session_read)]
Writer = Annotated[Principal, require(Permission.session_write)]
Prescriber = Annotated[Principal, require(Permission.session_prescriber)]
Signer = Annotated[Principal, require(Permission.session_write, sensitive=True)]
# Discharging before the checklist is green: a prescriber, password confirmed in the last minutes.
Overrider = Annotated[Principal, require(Permission.session_prescriber, sensitive=True)]
Admin = Annotated[Principal, require(Permission.session_admin)]
AdminSensitive = Annotated[Principal, require(Permission.session_admin, sensitive=True)]
Device = Annotated[Principal, require(Permission.device_vitals)]


# --- JSON shapes ------------------------------------------------------------------------------


def _t(value: dt.datetime | None) -> str | None:
    return None if value is None else clinic_time.as_utc(value).isoformat()


def _alarm_out(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "session_id": a.session_id,
        "rule": a.rule_key,
        "severity": a.severity,
        "message": a.message,
        "vital": a.vital,
        "value": a.value,
        "threshold": a.threshold,
        "status": a.status,
        "observed_at": _t(a.observed_at),
        "raised_at": _t(a.raised_at),
        "acknowledged_at": _t(a.acknowledged_at),
        "acknowledged_by_id": a.acknowledged_by_id,
        "resolved_at": _t(a.resolved_at),
        "resolved_by_id": a.resolved_by_id,
        "escalated_at": _t(a.escalated_at),
    }


def _ae_out(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "session_id": a.session_id,
        "term_key": a.term_key,
        "term": a.term,
        "grade": a.grade,
        "serious": a.serious,
        "needed_intervention": a.needed_intervention,
        "actions": a.actions,
        "medication_given": a.medication_given,
        "outcome": a.outcome,
        "description": a.description,
        "onset_at": _t(a.onset_at),
        "needs_review": a.needs_review,
        "reviewed_at": _t(a.reviewed_at),
        "review_note": a.review_note,
    }


def session_out(v: views.SessionView) -> dict[str, Any]:
    s = v.session
    return {
        "id": s.id,
        "status": s.status,
        "status_label": rules.STATE_LABELS[s.status],
        "patient_id": v.patient_id,
        "record_number": v.record_number,
        "plan_id": s.plan_id,
        "plan_session_id": s.plan_session_id,
        "number": s.number,
        "route": s.route,
        "drug": s.drug,
        "planned_dose_mg": s.planned_dose_mg,
        "planned_duration_min": s.planned_duration_min,
        "weight_kg": s.weight_kg,
        "baseline": s.baseline,
        "prescriber_id": s.prescriber_id,
        "bp_decision": s.bp_decision_reason,
        "safety_holds": [{"kind": h.kind, "reason": h.reason, "source": h.source} for h in v.holds],
        "times": {
            k: _t(getattr(s, f"{k}_at"))
            for k in ("checked_in", "prechecks", "started", "recovery", "ready", "discharged", "aborted")
        },
        "abort_reason": s.abort_reason,
        "discharge_override_reason": s.discharge_override_reason,
        "totals": {
            "total_mg": v.totals.total_mg,
            "mg_per_kg": v.totals.mg_per_kg,
            "infusion_min": v.totals.infusion_min,
            "current_rate_mg_per_h": v.totals.current_rate_mg_per_h,
            "infusion_running": v.totals.infusion_running,
            "first_dose_at": _t(v.totals.first_dose_at),
            "last_dose_at": _t(v.totals.last_dose_at),
        },
        "predicted_cp_ng_per_ml": v.prediction.now_ng_per_ml,
        "prediction_note": v.prediction.reason,
        "administrations": [
            {
                "id": g.id,
                "kind": g.kind,
                "drug": g.drug,
                "route": g.route,
                "product": g.product,
                "lot": g.lot,
                "concentration_mg_per_ml": g.concentration_mg_per_ml,
                "rate_mg_per_h": g.rate_mg_per_h,
                "dose_mg": g.dose_mg,
                "given_at": _t(g.given_at),
                "reason": g.reason,
                "recorded_by_id": g.recorded_by_id,
            }
            for g in v.given
        ],
        "latest_vitals": {
            k: {"value": val, "unit": VITAL_UNITS[k], "at": _t(t)} for k, (val, t) in v.latest.items()
        },
        "vitals_count": len(v.vitals),
        "scores": [
            {
                "scale": x.scale,
                "phase": x.phase,
                "items": x.items,
                "total": x.total,
                "observed_at": _t(x.observed_at),
            }
            for x in v.scores
        ],
        "alarms": [_alarm_out(a) for a in v.alarms],
        "adverse_events": [_ae_out(a) for a in v.adverse_events],
        "due": [{"what": d.what, "due_at": _t(d.due_at), "overdue": d.overdue} for d in v.due],
        "discharge_checklist": [
            {"key": c.key, "label": c.label, "ok": c.ok, "detail": c.detail, "source": c.source, "tag": c.tag}
            for c in v.checklist
        ],
        "billing": [{"code": c, "units": n} for c, n in v.billing],
        "transitions": [
            {"from": t.from_status, "to": t.to_status, "at": _t(t.at), "by_id": t.by_id, "reason": t.reason}
            for t in v.transitions
        ],
        "signatures": {
            "nurse": _t(s.nurse_signed_at),
            "prescriber": _t(s.prescriber_signed_at),
            "report_sha256": s.report_sha256,
        },
    }


def _board_out(rows: list[views.BoardRow]) -> list[dict[str, Any]]:
    return [
        {
            "session_id": r.session.id,
            "status": r.session.status,
            "record_number": r.record_number,
            "patient": r.patient_name,
            "chair": r.chair_name,
            "latest": {k: {"value": v, "at": _t(t)} for k, (v, t) in r.latest.items()},
            "alarms": [_alarm_out(a) for a in r.alarms],
            "predicted_cp_ng_per_ml": r.predicted_ng_per_ml,
            "rate_mg_per_h": r.rate_mg_per_h,
            "total_mg": r.total_mg,
            "moaas": r.moaas,
            "cadss6": r.cadss6,
            "due": [{"what": d.what, "due_at": _t(d.due_at), "overdue": d.overdue} for d in r.due],
        }
        for r in rows
    ]


# --- JSON API ---------------------------------------------------------------------------------


@router.get("/api/v1/sessions/day", tags=["sessions"])
def api_day(
    db: DbSession, actor: Reader, date: Annotated[ReasonableDate | None, Query()] = None
) -> list[dict[str, Any]]:
    day = date or clinic_time.today(db, actor.clinic_id)
    return [
        {
            "plan_session_id": e.booked.plan_session_id,
            "starts_at": _t(e.booked.starts_at),
            "chair": e.booked.chair_name,
            "record_number": e.record_number,
            "patient": e.patient_name,
            "route": e.booked.route,
            "session_id": e.session.id if e.session else None,
            "status": e.session.status if e.session else rules.SCHEDULED,
            "safety_holds": [{"kind": h.kind, "reason": h.reason} for h in e.holds],
        }
        for e in checkin.day_list(db, actor, day)
    ]


@router.post("/api/v1/plan-sessions/{plan_session_id}/check-in", status_code=201, tags=["sessions"])
def api_check_in(db: DbSession, actor: Writer, plan_session_id: RowId) -> dict[str, Any]:
    row = checkin.check_in(db, actor, plan_session_id)
    return session_out(views.view(db, actor, row.id))


@router.get("/api/v1/sessions/{session_id}", tags=["sessions"])
def api_session(db: DbSession, actor: Reader, session_id: RowId) -> dict[str, Any]:
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/bp-decision", tags=["sessions"])
def api_bp_decision(
    db: DbSession, actor: Prescriber, session_id: RowId, body: BpDecisionIn
) -> dict[str, Any]:
    checkin.document_bp_decision(db, actor, session_id, body)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/prechecks", tags=["sessions"])
def api_prechecks(db: DbSession, actor: Writer, session_id: RowId, body: PrecheckIn) -> dict[str, Any]:
    checkin.complete_prechecks(db, actor, session_id, body)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/administrations", status_code=201, tags=["sessions"])
def api_administration(
    db: DbSession, actor: Writer, session_id: RowId, body: AdministrationIn
) -> dict[str, Any]:
    administration.record_administration(db, actor, session_id, body)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/waste", tags=["sessions"])
def api_waste(db: DbSession, actor: Signer, session_id: RowId, body: SessionWasteIn) -> dict[str, Any]:
    """The remainder of a container wasted with a witness (both confirm a password); a ledger entry."""
    administration.waste(db, actor, session_id, body)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/end-dosing", tags=["sessions"])
def api_end_dosing(db: DbSession, actor: Writer, session_id: RowId, body: NoteIn) -> dict[str, Any]:
    administration.end_dosing(db, actor, session_id, body)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/abort", tags=["sessions"])
def api_abort(db: DbSession, actor: Writer, session_id: RowId, body: AbortIn) -> dict[str, Any]:
    administration.abort(db, actor, session_id, body)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/vitals", status_code=201, tags=["sessions"])
def api_vitals(db: DbSession, actor: Writer, session_id: RowId, body: VitalsIn) -> dict[str, Any]:
    alarms = monitoring.record_vitals(db, actor, session_id, body.readings)
    return {"stored": len(body.readings), "alarms": [_alarm_out(a) for a in alarms]}


@router.post("/api/v1/sessions/{session_id}/scores", status_code=201, tags=["sessions"])
def api_score(db: DbSession, actor: Writer, session_id: RowId, body: ScoreIn) -> dict[str, Any]:
    s = monitoring.record_score(db, actor, session_id, body)
    return {"id": s.id, "scale": s.scale, "items": s.items, "total": s.total, "phase": s.phase}


@router.post("/api/v1/sessions/{session_id}/adverse-events", status_code=201, tags=["sessions"])
def api_adverse_event(
    db: DbSession, actor: Writer, session_id: RowId, body: AdverseEventIn
) -> dict[str, Any]:
    return _ae_out(adverse_events.record_adverse_event(db, actor, session_id, body))


@router.post("/api/v1/adverse-events/{ae_id}/review", tags=["sessions"])
def api_ae_review(db: DbSession, actor: Prescriber, ae_id: RowId, body: ReasonIn) -> dict[str, Any]:
    return _ae_out(adverse_events.review_adverse_event(db, actor, ae_id, body))


@router.post("/api/v1/sessions/{session_id}/discharge-checks", tags=["sessions"])
def api_discharge_checks(
    db: DbSession, actor: Writer, session_id: RowId, body: DischargeChecksIn
) -> dict[str, Any]:
    discharge.record_discharge_checks(db, actor, session_id, body)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/discharge", tags=["sessions"])
def api_discharge(db: DbSession, actor: Writer, session_id: RowId, body: DischargeIn) -> dict[str, Any]:
    discharge.discharge(db, actor, session_id, _no_override(body))
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/discharge-override", tags=["sessions"])
def api_discharge_override(
    db: DbSession, actor: Overrider, session_id: RowId, body: ReasonIn
) -> dict[str, Any]:
    """A prescriber discharges before the checklist is green, with the reason on record."""
    discharge.discharge(db, actor, session_id, DischargeIn(override_reason=body.reason))
    return session_out(views.view(db, actor, session_id))


def _no_override(body: DischargeIn) -> DischargeIn:
    if body.override_reason:
        raise InvalidInput(
            errors={
                "override_reason": "A prescriber overrides through discharge-override (password confirmed)."
            }
        )
    return body


@router.post("/api/v1/sessions/{session_id}/sign", tags=["sessions"])
def api_sign(db: DbSession, actor: Signer, session_id: RowId) -> dict[str, Any]:
    views.sign(db, actor, session_id)
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/alarms/{alarm_id}/acknowledge", tags=["sessions"])
def api_ack(db: DbSession, actor: Writer, alarm_id: RowId, body: NoteIn) -> dict[str, Any]:
    return _alarm_out(monitoring.acknowledge_alarm(db, actor, alarm_id, body))


@router.post("/api/v1/alarms/{alarm_id}/resolve", tags=["sessions"])
def api_resolve(db: DbSession, actor: Writer, alarm_id: RowId, body: NoteIn) -> dict[str, Any]:
    return _alarm_out(monitoring.resolve_alarm(db, actor, alarm_id, body))


@router.get("/api/v1/board", tags=["sessions"])
def api_board(db: DbSession, actor: Reader) -> list[dict[str, Any]]:
    return _board_out(views.board(db, actor))


@router.get("/api/v1/notices", tags=["sessions"])
def api_notices(db: DbSession, actor: Reader) -> list[dict[str, Any]]:
    return [
        {
            "id": n.id,
            "kind": n.kind,
            "message": n.message,
            "session_id": n.session_id,
            "created_at": _t(n.created_at),
        }
        for n in monitoring.notices(db, actor)
    ]


@router.post("/api/v1/notices/read", tags=["sessions"])
def api_notices_read(db: DbSession, actor: Reader) -> dict[str, int]:
    return {"marked": monitoring.mark_notices_read(db, actor)}


@router.post("/api/v1/devices/vitals", status_code=201, tags=["sessions"])
def api_device_vitals(db: DbSession, actor: Device, body: DeviceBatchIn) -> dict[str, Any]:
    """For monitors and gateways with an API token holding the ``device:vitals`` scope."""
    result = monitoring.device_batch(db, actor, body)
    return {
        "session_id": result.session_id,
        "stored": result.stored,
        "duplicate": result.duplicate,
        "alarms_raised": list(result.alarms_raised),
    }


@router.get("/api/v1/alarm-settings", tags=["sessions"])
def api_alarm_settings(db: DbSession, actor: Admin) -> dict[str, Any]:
    in_force, escalation_s = alarm_settings.alarm_rules_in_force(db, actor.clinic_id)
    return {
        "escalation_s": escalation_s,
        "settings": [
            {
                "key": c.spec.key,
                "label": c.spec.label,
                "value": c.value,
                "default": c.spec.default,
                "unit": c.spec.unit,
                "min": c.spec.low,
                "max": c.spec.high,
                "clinic_value": c.own,
                "source": c.spec.sourced.source,
                "tag": c.spec.sourced.tag,
            }
            for c in alarm_settings.clinic_settings_in_force(db, actor.clinic_id)
        ],
        "rules": [
            {
                "rule_key": r.rule.key,
                "vital": r.rule.vital,
                "kind": r.rule.kind,
                "value": r.rule.value,
                "default": r.default.value,
                "enabled": r.enabled,
                "clinic_value": r.own,
                "source": r.default.sourced.source,
                "tag": r.default.sourced.tag,
            }
            for r in in_force
        ],
    }


@router.put("/api/v1/alarm-settings", tags=["sessions"])
def api_save_alarm_settings(db: DbSession, actor: AdminSensitive, body: AlarmSettingsIn) -> dict[str, Any]:
    alarm_settings.save_alarm_settings(db, actor, body)
    return api_alarm_settings(db, actor)


# --- pages ------------------------------------------------------------------------------------


def _clock(zone: str) -> dict[str, Any]:
    return clinic_time.clock(zone, "%H:%M")


def sparkline(points: list[tuple[dt.datetime, float]], now: dt.datetime) -> Markup:
    """The last TREND_MIN minutes of one vital sign as a small inline SVG line (no script)."""
    if len(points) < 2:
        return Markup('<svg viewBox="0 0 120 28" aria-hidden="true"></svg>')
    span_s = views.TREND_MIN * 60.0
    values = [v for _, v in points]
    low, high = min(values), max(values)
    spread = (high - low) or 1.0
    coords = " ".join(
        f"{120 * max(0.0, 1 - (now - t).total_seconds() / span_s):.1f},{26 - 24 * (v - low) / spread:.1f}"
        for t, v in points
    )
    return Markup(  # noqa: S704 (only numbers are interpolated)
        f'<svg viewBox="0 0 120 28" role="img" aria-label="trend {low:g} to {high:g}">'
        f'<polyline fill="none" stroke="#2166ac" stroke-width="1.5" points="{coords}"/></svg>'
    )


def alarm_sig(alarms: list[Any]) -> str:
    """A short digest of a session's alarms and their states: the polled alarm list is sent
    again only when it changed."""
    text = ";".join(f"{a.id}:{a.status}:{a.escalated_at is not None}" for a in alarms)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _common() -> dict[str, Any]:
    return {
        "alarm_sig": alarm_sig,
        "labels": rules.STATE_LABELS,
        "vital_labels": VITAL_LABELS,
        "vital_units": VITAL_DISPLAY_UNITS,
        "knowledge": session_rules(),
        "sparkline": sparkline,
    }


@router.get("/sessions", include_in_schema=False)
def day_page(
    request: Request, db: DbSession, actor: Reader, date: Annotated[ReasonableDate | None, Query()] = None
) -> Response:
    day = date or clinic_time.today(db, actor.clinic_id)
    entries = checkin.day_list(db, actor, day)
    return render(
        request,
        "sessions_day.html",
        {
            **_common(),
            **_clock(clinic_time.zone_name(db, actor.clinic_id)),
            "entries": entries,
            "day": day,
            "prev_day": day - dt.timedelta(days=1),
            "next_day": day + dt.timedelta(days=1),
        },
    )


@router.post("/sessions/check-in/{plan_session_id}", include_in_schema=False)
def check_in_page(request: Request, db: DbSession, actor: Writer, plan_session_id: RowId) -> Response:
    try:
        row = checkin.check_in(db, actor, plan_session_id)
    except Conflict as exc:
        # Shown on the day list with its reason (already checked in, cancelled, another session on).
        db.rollback()
        common.record_conflict(db, actor, exc)
        day = clinic_time.today(db, actor.clinic_id)
        entries = checkin.day_list(db, actor, day)
        return render(
            request,
            "sessions_day.html",
            {
                **_common(),
                **_clock(clinic_time.zone_name(db, actor.clinic_id)),
                "entries": entries,
                "day": day,
                "prev_day": day - dt.timedelta(days=1),
                "next_day": day + dt.timedelta(days=1),
                "refused": str(exc),
                "refused_plan_session": plan_session_id,
            },
            409,
        )
    return RedirectResponse(f"/sessions/{row.id}", status_code=303)


def _detail(
    request: Request,
    db: DbSession,
    actor: Principal,
    session_id: int,
    *,
    section: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    v = views.view(db, actor, session_id)
    form = checkin.precheck_form(db, actor, session_id) if v.session.status == rules.CHECKED_IN else None
    lots = administration.lot_choices(db, actor, session_id)
    return render(
        request,
        "session_detail.html",
        {
            **_common(),
            "knowledge": alarm_settings.rules_for_clinic(db, actor.clinic_id),
            **_clock(v.zone),
            "v": v,
            "pre": form,
            "section": section,
            "errors": errors or {},
            "values": values or {},
            "saved": request.query_params.get("saved"),
            "is_prescriber": actor.role is not None and actor.role.value == "prescriber",
            "prescriber_options": [(str(pid), name) for pid, name in form.prescribers] if form else [],
            "lots": lots.fitting,
            "lots_left_out": lots.left_out,
            "witnesses": administration.waste_witnesses(db, actor),
        },
        status,
    )


@router.get("/sessions/{session_id}", include_in_schema=False)
def detail_page(request: Request, db: DbSession, actor: Reader, session_id: RowId) -> Response:
    return _detail(request, db, actor, session_id)


@router.get("/sessions/{session_id}/alarms", include_in_schema=False)
def alarms_fragment(
    request: Request, db: DbSession, actor: Reader, session_id: RowId, sig: str = ""
) -> Response:
    """The session page's alarm list, polled: 204 (nothing to swap) while it has not changed."""
    panel = views.alarm_panel(db, actor, session_id)
    current = alarm_sig(panel.alarms)
    if sig == current:
        return Response(status_code=204)
    return render(
        request,
        "_session_alarms.html",
        {
            **_clock(panel.zone),
            "alarms": panel.alarms,
            "staff": panel.staff,
            "session_id": panel.session.id,
            "alarm_sig": current,
        },
    )


def _form_action(
    request: Request,
    db: DbSession,
    actor: Principal,
    session_id: int,
    section: str,
    form: dict[str, Any],
    action: Any,
) -> Response:
    try:
        action()
    except InvalidInput as exc:
        return _detail(
            request, db, actor, session_id, section=section, errors=exc.errors, values=form, status=422
        )
    except Conflict as exc:
        return _refused(request, db, actor, session_id, exc, section=section, values=form)
    return RedirectResponse(f"/sessions/{session_id}?saved={section}#{section}", status_code=303)


def _refused(
    request: Request,
    db: DbSession,
    actor: Principal,
    session_id: int,
    exc: Conflict,
    *,
    section: str = "",
    values: dict[str, Any] | None = None,
) -> Response:
    """A refused action (409) shows its reason on the session page, never a bare error page.
    What the action may have begun is rolled back first; the refusal's audit entries are kept."""
    db.rollback()
    common.record_conflict(db, actor, exc)
    return _detail(
        request,
        db,
        actor,
        session_id,
        section=section,
        errors={"refused": str(exc)},
        values=values,
        status=409,
    )


def _bool(form: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**form, **{n: form.get(n) in ("on", "true", "1", "yes") for n in names}}


@router.post("/sessions/{session_id}/prechecks", include_in_schema=False)
def prechecks_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData
) -> Response:
    data = _bool(
        form, "consent_on_file", "ecg_on_file", "lft_on_file", "escort_confirmed", "oximeter_connected"
    )
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "prechecks",
        form,
        lambda: checkin.complete_prechecks(db, actor, session_id, parse(PrecheckIn, data)),
    )


@router.post("/sessions/{session_id}/bp-decision", include_in_schema=False)
def bp_decision_page(
    request: Request, db: DbSession, actor: Prescriber, session_id: RowId, form: FormData
) -> Response:
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "prechecks",
        form,
        lambda: checkin.document_bp_decision(db, actor, session_id, parse(BpDecisionIn, form)),
    )


@router.post("/sessions/{session_id}/administrations", include_in_schema=False)
def administration_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData
) -> Response:
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "given",
        form,
        lambda: administration.record_administration(db, actor, session_id, parse(AdministrationIn, form)),
    )


@router.post("/sessions/{session_id}/waste", include_in_schema=False)
def waste_page(request: Request, db: DbSession, actor: Signer, session_id: RowId, form: FormData) -> Response:
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "waste",
        {k: v for k, v in form.items() if k != "witness_password"},
        lambda: _waste(db, actor, session_id, form),
    )


def _waste(db: DbSession, actor: Principal, session_id: int, form: dict[str, str]) -> None:
    try:
        administration.waste(db, actor, session_id, parse(SessionWasteIn, form))
    except InvalidInput as exc:
        # The page re-renders and its request commits: keep the refusal's audit entries (a
        # witness password that did not match) as the API's error handler would.
        administration.record_refusal(db, actor, exc)
        raise


@router.post("/sessions/{session_id}/end-dosing", include_in_schema=False)
def end_dosing_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData
) -> Response:
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "given",
        form,
        lambda: administration.end_dosing(db, actor, session_id, parse(NoteIn, form)),
    )


@router.post("/sessions/{session_id}/abort", include_in_schema=False)
def abort_page(request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData) -> Response:
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "abort",
        form,
        lambda: administration.abort(db, actor, session_id, parse(AbortIn, form)),
    )


@router.post("/sessions/{session_id}/vitals", include_in_schema=False)
def vitals_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData
) -> Response:
    def act() -> None:
        readings = []
        errors: dict[str, str] = {}
        for kind in VITAL_UNITS:
            raw = (form.get(kind) or "").strip()
            if not raw:
                continue
            try:
                readings.append(VitalIn(kind=kind, value=float(raw)))
            except ValueError:
                errors[kind] = "Enter a number."
        if errors:
            raise InvalidInput(errors=errors)
        if not readings:
            raise InvalidInput(errors={"vitals": "Enter at least one reading."})
        try:
            monitoring.record_vitals(db, actor, session_id, readings)
        except InvalidInput as exc:  # name the form's fields, not the batch's positions
            raise InvalidInput(
                errors={
                    readings[int(k.split(".")[1])].kind if k.startswith("readings.") else k: m
                    for k, m in exc.errors.items()
                }
            ) from exc

    return _form_action(request, db, actor, session_id, "vitals", form, act)


def score_form_data(scale_key: str, raw_items: list[str], raw_phase: str) -> dict[str, Any]:
    """A score form's answers, refused whole when any item was left on "Choose…": a score
    exists only when a person chose every item (nothing is pre-selected, nothing is filled in)."""
    scale = session_rules().scales.get(scale_key)
    if scale is None:
        raise InvalidInput(errors={"scale": "Choose a scale."})
    picked = [x.strip() for x in raw_items]
    errors: dict[str, str] = {}
    chosen = [x for x in picked if x]
    if len(picked) != len(scale.items) or len(chosen) != len(scale.items):
        errors["items"] = (
            f"Choose a value for every item of {scale.name}: {len(chosen)} of {len(scale.items)} chosen. "
            "Nothing was recorded."
        )
    phase = raw_phase.strip()
    if scale_key == "nrs" and not phase:
        errors["phase"] = "Say when the pain score was taken (before, during or after). Nothing was recorded."
    if errors:
        raise InvalidInput(errors=errors)
    try:
        items = [int(x) for x in chosen]
    except ValueError as exc:
        raise InvalidInput(errors={"items": "Scores are whole numbers."}) from exc
    return {"scale": scale_key, "phase": phase or "during", "items": items}


@router.post("/sessions/{session_id}/scores", include_in_schema=False)
def score_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormLists
) -> Response:
    flat: dict[str, Any] = {k: v[-1] for k, v in form.items() if v}
    flat["items_chosen"] = [x.strip() for x in form.get("items", [])]

    def act() -> None:
        data = score_form_data(flat.get("scale", ""), form.get("items", []), flat.get("phase", ""))
        monitoring.record_score(db, actor, session_id, parse(ScoreIn, data))

    return _form_action(request, db, actor, session_id, f"score-{flat.get('scale', '')}", flat, act)


@router.post("/sessions/{session_id}/adverse-events", include_in_schema=False)
def ae_page(request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormLists) -> Response:
    flat = {k: v[-1] for k, v in form.items() if v and k != "actions"}
    data = {**flat, "actions": form.get("actions", []), "serious": flat.get("serious") == "on"}
    if not flat.get("grade", "").strip():
        # The grade starts on "Choose…": refused with a clear message, never defaulted.
        return _detail(
            request,
            db,
            actor,
            session_id,
            section="ae",
            errors={"grade": "Choose the CTCAE grade. Nothing was recorded."},
            values=flat,
            status=422,
        )
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "ae",
        flat,
        lambda: adverse_events.record_adverse_event(db, actor, session_id, parse(AdverseEventIn, data)),
    )


@router.post("/adverse-events/{ae_id}/review", include_in_schema=False)
def ae_review_page(
    request: Request, db: DbSession, actor: Prescriber, ae_id: RowId, form: FormData
) -> Response:
    ae = adverse_events.review_adverse_event(db, actor, ae_id, parse(ReasonIn, form))
    target = f"/sessions/{ae.session_id}?saved=ae#ae" if ae.session_id else "/sessions/board"
    return RedirectResponse(target, status_code=303)


@router.post("/sessions/{session_id}/discharge-checks", include_in_schema=False)
def discharge_checks_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData
) -> Response:
    data = _bool(form, "alert_and_oriented", "escort_present", "instructions_given")
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "discharge",
        form,
        lambda: discharge.record_discharge_checks(db, actor, session_id, parse(DischargeChecksIn, data)),
    )


@router.post("/sessions/{session_id}/discharge", include_in_schema=False)
def discharge_page(
    request: Request, db: DbSession, actor: Writer, session_id: RowId, form: FormData
) -> Response:
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "discharge",
        form,
        lambda: discharge.discharge(db, actor, session_id, _no_override(parse(DischargeIn, form))),
    )


@router.post("/sessions/{session_id}/discharge-override", include_in_schema=False)
def discharge_override_page(
    request: Request, db: DbSession, actor: Overrider, session_id: RowId, form: FormData
) -> Response:
    return _form_action(
        request,
        db,
        actor,
        session_id,
        "discharge",
        form,
        lambda: discharge.discharge(
            db, actor, session_id, DischargeIn(override_reason=parse(ReasonIn, form).reason)
        ),
    )


@router.post("/sessions/{session_id}/sign", include_in_schema=False)
def sign_page(db: DbSession, actor: Signer, session_id: RowId) -> Response:
    views.sign(db, actor, session_id)
    return RedirectResponse(f"/sessions/{session_id}/report?saved=signed", status_code=303)


@router.post("/alarms/{alarm_id}/acknowledge", include_in_schema=False)
def ack_page(request: Request, db: DbSession, actor: Writer, alarm_id: RowId, form: FormData) -> Response:
    return _alarm_action(
        request,
        db,
        actor,
        alarm_id,
        lambda: monitoring.acknowledge_alarm(db, actor, alarm_id, parse(NoteIn, form)),
    )


@router.post("/alarms/{alarm_id}/resolve", include_in_schema=False)
def resolve_page(request: Request, db: DbSession, actor: Writer, alarm_id: RowId, form: FormData) -> Response:
    return _alarm_action(
        request,
        db,
        actor,
        alarm_id,
        lambda: monitoring.resolve_alarm(db, actor, alarm_id, parse(NoteIn, form)),
    )


def _alarm_action(request: Request, db: DbSession, actor: Principal, alarm_id: int, action: Any) -> Response:
    """Acknowledge or resolve; a refusal (another nurse was first) is shown with its reason: on
    the session page, or on the board as a notice line (htmx keeps the board live)."""
    try:
        alarm = action()
    except Conflict as exc:
        session_id = monitoring.alarm_session_id(db, actor, alarm_id)
        if request.headers.get("HX-Request"):
            db.rollback()
            trigger = json.dumps({"board-refresh": "", "ketacare-refused": {"value": str(exc)}})
            return Response(status_code=200, headers={"HX-Trigger": trigger, "HX-Reswap": "none"})
        return _refused(request, db, actor, session_id, exc, section="alarms")
    return _back(request, f"/sessions/{alarm.session_id}#alarms")


def _back(request: Request, default: str) -> Response:
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Trigger": "board-refresh"})
    return RedirectResponse(default, status_code=303)


@router.get("/sessions-board", include_in_schema=False)
def board_page(request: Request, db: DbSession, actor: Reader) -> Response:
    rows = views.board(db, actor)
    return render(
        request,
        "board.html",
        {
            **_common(),
            "knowledge": alarm_settings.rules_for_clinic(db, actor.clinic_id),
            **_clock(clinic_time.zone_name(db, actor.clinic_id)),
            "rows": rows,
            "notices": monitoring.notices(db, actor, limit=10),
            "now": utcnow(),
        },
    )


@router.get("/sessions-board/rows", include_in_schema=False)
def board_rows(request: Request, db: DbSession, actor: Reader) -> Response:
    rows = views.board(db, actor, audit_view=False)  # the page load was audited; polls are not
    return render(
        request,
        "board_rows.html",
        {
            **_common(),
            **_clock(clinic_time.zone_name(db, actor.clinic_id)),
            "rows": rows,
            "notices": monitoring.notices(db, actor, limit=10),
            "now": utcnow(),
        },
    )


@router.get("/notices", include_in_schema=False)
def notices_page(request: Request, db: DbSession, actor: Reader) -> Response:
    items = monitoring.notices(db, actor, unread_only=False, limit=100)
    return render(
        request,
        "notices.html",
        {
            **_common(),
            **_clock(clinic_time.zone_name(db, actor.clinic_id)),
            "items": items,
            "queue": adverse_events.review_queue(db, actor),
        },
    )


@router.post("/notices/read", include_in_schema=False)
def notices_read_page(db: DbSession, actor: Reader) -> Response:
    monitoring.mark_notices_read(db, actor)
    return RedirectResponse("/notices", status_code=303)


# --- coding "other" adverse events (their free text never reaches the registry) --------------


@router.get("/api/v1/adverse-events/uncoded", tags=["sessions"])
def api_uncoded_aes(db: DbSession, actor: Prescriber) -> list[dict[str, Any]]:
    return [_ae_out(a) for a in adverse_events.uncoded_adverse_events(db, actor)]


@router.post("/api/v1/adverse-events/{ae_id}/code", tags=["sessions"])
def api_code_ae(db: DbSession, actor: Prescriber, ae_id: RowId, body: AeCodeIn) -> dict[str, Any]:
    return _ae_out(adverse_events.code_adverse_event(db, actor, ae_id, body))


def _uncoded_page(request: Request, db: DbSession, actor: Principal, errors: dict[int, str]) -> Response:
    return render(
        request,
        "ae_coding.html",
        {
            "items": adverse_events.uncoded_adverse_events(db, actor),
            "terms": [t for t in session_rules().ae_terms if t.key != "other"],
            "errors": errors,
        },
        status_code=422 if errors else 200,
    )


@router.get("/adverse-events/uncoded", include_in_schema=False)
def uncoded_aes_page(request: Request, db: DbSession, actor: Prescriber) -> Response:
    return _uncoded_page(request, db, actor, {})


@router.post("/adverse-events/{ae_id}/code", include_in_schema=False)
def code_ae_page(
    request: Request, db: DbSession, actor: Prescriber, ae_id: RowId, form: FormData
) -> Response:
    try:
        adverse_events.code_adverse_event(db, actor, ae_id, parse(AeCodeIn, form))
    except InvalidInput as exc:
        return _uncoded_page(request, db, actor, {ae_id: "; ".join(exc.errors.values())})
    return RedirectResponse("/adverse-events/uncoded", status_code=303)


# The report, REMS form and alarm-settings pages live in their own module.
from ketacare.sessions.report_routes import router as _report_router  # noqa: E402

router.include_router(_report_router)
