"""The treatment-session pages: the day list, check-in, the session page (pre-checks,
administration record, vitals, scores, alarms, adverse events, discharge), the live board,
notices, and coding "other" adverse events. Mounted by ``sessions.routes``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
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
from ketacare.sessions.access import Overrider, Prescriber, Reader, Signer, Writer
from ketacare.sessions.device import VITAL_DISPLAY_UNITS, VITAL_LABELS, VITAL_UNITS
from ketacare.sessions.schemas import (
    AbortIn,
    AdministrationIn,
    AdverseEventIn,
    AeCodeIn,
    BpDecisionIn,
    DischargeChecksIn,
    DischargeIn,
    NoteIn,
    PrecheckIn,
    ReasonIn,
    ScoreIn,
    SessionWasteIn,
    VitalIn,
)
from ketacare.validation import ReasonableDate, parse
from ketacare.web.deps import DbSession, RowId
from ketacare.web.forms import FormData, FormLists
from ketacare.web.templating import render

router = APIRouter()
# Discharging before the checklist is green: a prescriber, password confirmed in the last minutes.


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
        lambda: discharge.discharge(
            db, actor, session_id, discharge.refuse_override(parse(DischargeIn, form))
        ),
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
