"""Long-term safety pages and JSON API: a patient's monitoring (cumulative ketamine, liver tests,
bladder screens, holds, tasks, what is due), the section the patient page loads with htmx, the
prescriber's safety view, and the clinic's monitoring intervals."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ketacare.auth.permissions import ROLE_PERMISSIONS, Permission
from ketacare.auth.principal import Principal
from ketacare.knowledge.prescribing import prescribing_rules
from ketacare.knowledge.safety import safety_rules
from ketacare.safety import monitoring, service
from ketacare.safety.schemas import (
    BladderScreenIn,
    BladderScreenOut,
    CumulativeOut,
    DueOut,
    FindingOut,
    HoldOut,
    LiverTestIn,
    LiverTestOut,
    PatientSafetyOut,
    ReleaseIn,
    SafetySettingsIn,
    TaskDoneIn,
    TaskOut,
)
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, require
from ketacare.web.forms import FormData, form_action
from ketacare.web.templating import render

router = APIRouter()
Reader = Annotated[Principal, require(Permission.safety_read)]
Writer = Annotated[Principal, require(Permission.safety_write)]
Releaser = Annotated[Principal, require(Permission.safety_write, sensitive=True)]
SettingsReader = Annotated[Principal, require(Permission.credential_read)]
SettingsManager = Annotated[Principal, require(Permission.credential_manage, sensitive=True)]


# --- JSON shapes ---------------------------------------------------------------------------------


def _hold_out(h: Any) -> HoldOut:
    return HoldOut(
        id=h.id,
        patient_id=h.patient_id,
        kind=h.kind,
        reason=h.reason,
        source=h.source,
        tag=h.tag,
        placed_at=h.placed_at,
        released_at=h.released_at,
        release_reason=h.release_reason,
    )


def _task_out(t: Any) -> TaskOut:
    return TaskOut(
        id=t.id,
        patient_id=t.patient_id,
        kind=t.kind,
        title=t.title,
        due_on=t.due_on,
        completed_at=t.completed_at,
        result=t.result,
    )


def _lft_out(t: Any, hold_id: int | None = None) -> LiverTestOut:
    return LiverTestOut(
        id=t.id,
        patient_id=t.patient_id,
        drawn_on=t.drawn_on,
        alt_u_per_l=t.alt_u_per_l,
        alt_uln_u_per_l=t.alt_uln_u_per_l,
        ast_u_per_l=t.ast_u_per_l,
        ast_uln_u_per_l=t.ast_uln_u_per_l,
        outcome=t.outcome,
        findings=[FindingOut(**f) for f in t.findings],
        hold_id=hold_id,
    )


def _screen_out(s: Any, hold_id: int | None = None, task_id: int | None = None) -> BladderScreenOut:
    return BladderScreenOut(
        id=s.id,
        patient_id=s.patient_id,
        screened_on=s.screened_on,
        answers=dict(s.answers),
        positive=s.positive,
        hold_id=hold_id,
        task_id=task_id,
    )


def _due_out(d: monitoring.Due) -> DueOut:
    return DueOut(**dataclasses.asdict(d))


def patient_safety_out(v: service.PatientSafety) -> PatientSafetyOut:
    c = v.cumulative
    return PatientSafetyOut(
        patient_id=v.patient_id,
        cumulative=CumulativeOut(
            sessions=c.sessions,
            session_mg=c.session_mg,
            prescriptions=c.prescriptions,
            prescription_mg=c.prescription_mg,
            topical_prescriptions=c.topical_prescriptions,
            total_mg=c.total_mg,
        ),
        due=[_due_out(d) for d in v.due],
        holds=[_hold_out(h) for h in v.holds],
        tasks=[_task_out(t) for t in v.tasks],
        liver_tests=[_lft_out(t) for t in v.liver_tests],
        bladder_screens=[_screen_out(s) for s in v.bladder_screens],
    )


# --- pages ---------------------------------------------------------------------------------------


def _can_write(actor: Principal) -> bool:
    return actor.role is not None and Permission.safety_write in ROLE_PERMISSIONS[actor.role]


def _context(v: service.PatientSafety, actor: Principal, **extra: Any) -> dict[str, Any]:
    return {
        "v": v,
        "rules": safety_rules(),
        "topical": prescribing_rules().topical,
        "can_write": _can_write(actor),
        "is_prescriber": actor.role is not None and actor.role.value == "prescriber",
        **extra,
    }


def _patient_page(
    request: Request, db: DbSession, actor: Principal, patient_id: int, status: int = 200, **extra: Any
) -> Response:
    v = service.patient_safety(db, actor, patient_id)
    return render(request, "safety_patient.html", _context(v, actor, **extra), status)


@router.get("/patients/{patient_id}/safety", include_in_schema=False)
def patient_safety_page(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    return _patient_page(request, db, actor, patient_id, saved=request.query_params.get("saved"))


@router.get("/patients/{patient_id}/safety/summary", include_in_schema=False)
def patient_safety_fragment(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    v = service.patient_safety(db, actor, patient_id)
    return render(request, "safety_fragment.html", _context(v, actor))


@router.post("/patients/{patient_id}/safety/liver-tests", include_in_schema=False)
def liver_test_add(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, form: FormData
) -> Response:
    data: dict[str, Any] = {**form, "liver_symptoms": form.get("liver_symptoms") == "yes"}
    return form_action(
        db,
        lambda: service.record_liver_test(db, actor, patient_id, parse(LiverTestIn, data)),
        done=lambda result: f"/patients/{patient_id}/safety?saved={'lft-hold' if result.hold else 'lft'}",
        again=lambda errors: _patient_page(
            request, db, actor, patient_id, 422, section="lft", values=form, errors=errors
        ),
    )


@router.post("/patients/{patient_id}/safety/bladder-screens", include_in_schema=False)
def bladder_screen_add(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, form: FormData
) -> Response:
    answers = {k.removeprefix("answer_"): v for k, v in form.items() if k.startswith("answer_") and v}
    data = {"screened_on": form.get("screened_on"), "answers": answers, "note": form.get("note")}
    return form_action(
        db,
        lambda: service.record_bladder_screen(db, actor, patient_id, parse(BladderScreenIn, data)),
        done=lambda result: (
            f"/patients/{patient_id}/safety?saved={'bladder-hold' if result.hold else 'bladder'}"
        ),
        again=lambda errors: _patient_page(
            request, db, actor, patient_id, 422, section="bladder", values=form, errors=errors
        ),
    )


@router.post("/safety/holds/{hold_id}/release", include_in_schema=False)
def hold_release(
    request: Request, db: DbSession, actor: Releaser, hold_id: RowId, form: FormData
) -> Response:
    return form_action(
        db,
        lambda: service.release_hold(db, actor, hold_id, parse(ReleaseIn, form)),
        done=lambda hold: f"/patients/{hold.patient_id}/safety?saved=released",
        again=lambda errors: _patient_page(
            request,
            db,
            actor,
            service.hold_patient(db, actor, hold_id),
            422,
            section=f"hold-{hold_id}",
            values=form,
            errors=errors,
        ),
    )


@router.post("/safety/tasks/{task_id}/done", include_in_schema=False)
def task_done(request: Request, db: DbSession, actor: Writer, task_id: RowId, form: FormData) -> Response:
    return form_action(
        db,
        lambda: service.complete_task(db, actor, task_id, parse(TaskDoneIn, form)),
        done=lambda task: f"/patients/{task.patient_id}/safety?saved=task",
        again=lambda errors: _patient_page(
            request,
            db,
            actor,
            service.task_patient(db, actor, task_id),
            422,
            section=f"task-{task_id}",
            values=form,
            errors=errors,
        ),
    )


@router.get("/safety", include_in_schema=False)
def safety_view(request: Request, db: DbSession, actor: Reader) -> Response:
    board = service.safety_board(db, actor)
    return render(request, "safety_board.html", {"board": board, "rules": safety_rules()})


def _settings_page(
    request: Request, db: DbSession, actor: Principal, status: int = 200, **extra: Any
) -> Response:
    overrides = service.interval_overrides(db, actor.clinic_id)
    return render(
        request,
        "safety_settings.html",
        {
            "specs": monitoring.interval_specs(),
            "overrides": overrides,
            "rules": safety_rules(),
            "can_manage": actor.role is not None
            and Permission.credential_manage in ROLE_PERMISSIONS[actor.role],
            **extra,
        },
        status,
    )


@router.get("/safety/settings", include_in_schema=False)
def settings_page(request: Request, db: DbSession, actor: SettingsReader) -> Response:
    return _settings_page(request, db, actor, saved=request.query_params.get("saved"))


@router.post("/safety/settings", include_in_schema=False)
def settings_save(request: Request, db: DbSession, actor: SettingsManager, form: FormData) -> Response:
    return form_action(
        db,
        lambda: service.save_settings(db, actor, parse(SafetySettingsIn, form)),
        done="/safety/settings?saved=1",
        again=lambda errors: _settings_page(request, db, actor, 422, values=form, errors=errors),
    )


# --- JSON API ------------------------------------------------------------------------------------


@router.get("/api/v1/patients/{patient_id}/safety", response_model=PatientSafetyOut, tags=["safety"])
def api_patient_safety(db: DbSession, actor: Reader, patient_id: RowId) -> PatientSafetyOut:
    return patient_safety_out(service.patient_safety(db, actor, patient_id))


@router.post(
    "/api/v1/patients/{patient_id}/liver-tests", response_model=LiverTestOut, status_code=201, tags=["safety"]
)
def api_liver_test_add(db: DbSession, actor: Writer, patient_id: RowId, body: LiverTestIn) -> LiverTestOut:
    result = service.record_liver_test(db, actor, patient_id, body)
    return _lft_out(result.test, result.hold.id if result.hold else None)


@router.post(
    "/api/v1/patients/{patient_id}/bladder-screens",
    response_model=BladderScreenOut,
    status_code=201,
    tags=["safety"],
)
def api_bladder_screen_add(
    db: DbSession, actor: Writer, patient_id: RowId, body: BladderScreenIn
) -> BladderScreenOut:
    result = service.record_bladder_screen(db, actor, patient_id, body)
    return _screen_out(
        result.screen, result.hold.id if result.hold else None, result.task.id if result.task else None
    )


@router.post("/api/v1/safety/holds/{hold_id}/release", response_model=HoldOut, tags=["safety"])
def api_hold_release(db: DbSession, actor: Releaser, hold_id: RowId, body: ReleaseIn) -> HoldOut:
    return _hold_out(service.release_hold(db, actor, hold_id, body))


@router.post("/api/v1/safety/tasks/{task_id}/done", response_model=TaskOut, tags=["safety"])
def api_task_done(db: DbSession, actor: Writer, task_id: RowId, body: TaskDoneIn) -> TaskOut:
    return _task_out(service.complete_task(db, actor, task_id, body))


@router.get("/api/v1/safety/board", tags=["safety"])
def api_safety_board(db: DbSession, actor: Reader) -> dict[str, Any]:
    b = service.safety_board(db, actor)
    return {
        "today": b.today.isoformat(),
        "patients_under_treatment": b.population,
        "flexibility_alert": b.flexibility_alert,
        "patients": [
            {
                "patient_id": p.patient_id,
                "record_number": p.record_number,
                "name": p.name,
                "holds": [_hold_out(h).model_dump(mode="json") for h in p.holds],
                "overdue": [_due_out(d).model_dump(mode="json") for d in p.overdue],
                "open_tasks": [_task_out(t).model_dump(mode="json") for t in p.open_tasks],
                "mme_per_day": p.mme_per_day,
                "mme_level": p.mme_level,
                "benzodiazepines": p.benzodiazepines,
                "opioids": p.opioids,
            }
            for p in b.patients
        ],
        "expiring_credentials": [
            {
                "user_id": e.user_id,
                "name": e.name,
                "kind": e.kind,
                "detail": e.detail,
                "expires_on": e.expires_on.isoformat(),
                "expired": e.expired,
            }
            for e in b.expiring
        ],
        "mme_source": b.mme_source,
    }


@router.get("/api/v1/safety/settings", tags=["safety"])
def api_settings(db: DbSession, actor: SettingsReader) -> list[dict[str, Any]]:
    overrides = service.interval_overrides(db, actor.clinic_id)
    return [
        {
            "key": s.key,
            "label": s.label,
            "value": overrides[s.key] if overrides[s.key] is not None else s.default,
            "origin": "clinic" if overrides[s.key] is not None else "knowledge",
            "default": s.default,
            "minimum": s.minimum,
            "maximum": s.maximum,
            "source": s.source,
            "tag": s.tag,
        }
        for s in monitoring.interval_specs()
    ]


@router.put("/api/v1/safety/settings", tags=["safety"])
def api_settings_save(db: DbSession, actor: SettingsManager, body: SafetySettingsIn) -> list[dict[str, Any]]:
    service.save_settings(db, actor, body)
    return api_settings(db, actor)
