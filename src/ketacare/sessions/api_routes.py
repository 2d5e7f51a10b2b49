"""The treatment-session JSON API: the day list, check-in, the session (pre-checks, administration
record, vitals, scores, alarms, adverse events and their coding, discharge, signatures), the
board, notices, the device batch endpoint and the alarm settings. Mounted by ``sessions.routes``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ketacare import clinic_time
from ketacare.sessions import (
    administration,
    adverse_events,
    alarm_settings,
    checkin,
    discharge,
    monitoring,
    rules,
    views,
)
from ketacare.sessions.access import (
    Admin,
    AdminSensitive,
    Device,
    Overrider,
    Prescriber,
    Reader,
    Signer,
    Writer,
)
from ketacare.sessions.device import VITAL_UNITS
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
    VitalsIn,
)
from ketacare.validation import ReasonableDate
from ketacare.web.deps import DbSession, RowId

router = APIRouter()
# Discharging before the checklist is green: a prescriber, password confirmed in the last minutes.


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
    discharge.discharge(db, actor, session_id, discharge.refuse_override(body))
    return session_out(views.view(db, actor, session_id))


@router.post("/api/v1/sessions/{session_id}/discharge-override", tags=["sessions"])
def api_discharge_override(
    db: DbSession, actor: Overrider, session_id: RowId, body: ReasonIn
) -> dict[str, Any]:
    """A prescriber discharges before the checklist is green, with the reason on record."""
    discharge.discharge(db, actor, session_id, DischargeIn(override_reason=body.reason))
    return session_out(views.view(db, actor, session_id))


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


# --- coding "other" adverse events (their free text never reaches the registry) --------------


@router.get("/api/v1/adverse-events/uncoded", tags=["sessions"])
def api_uncoded_aes(db: DbSession, actor: Prescriber) -> list[dict[str, Any]]:
    return [_ae_out(a) for a in adverse_events.uncoded_adverse_events(db, actor)]


@router.post("/api/v1/adverse-events/{ae_id}/code", tags=["sessions"])
def api_code_ae(db: DbSession, actor: Prescriber, ae_id: RowId, body: AeCodeIn) -> dict[str, Any]:
    return _ae_out(adverse_events.code_adverse_event(db, actor, ae_id, body))
