"""Screening pages and API: the eligibility decision with its reasons, the screening form, overrides."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ketacare import clinic_time
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.knowledge.contraindications import contraindications, prior_therapy_rule, risk_factors
from ketacare.screening import service
from ketacare.screening.eligibility import overridable
from ketacare.screening.schemas import DecisionOut, OverrideIn, OverrideOut, ReasonOut, ScreeningIn
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, require
from ketacare.web.forms import FormLists, form_action
from ketacare.web.templating import render

router = APIRouter()
Reader = Annotated[Principal, require(Permission.plan_read)]
Screener = Annotated[Principal, require(Permission.screening_write)]
Overrider = Annotated[Principal, require(Permission.eligibility_override, sensitive=True)]


def _choices() -> dict[str, Any]:
    return {
        "contraindications": contraindications(),
        "risk_factors": risk_factors(),
        "prior_options": prior_therapy_rule().options,
        "prior_rule": prior_therapy_rule(),
        "today": clinic_time.latest_today().isoformat(),
    }


def _values_from(screening: Any) -> dict[str, Any]:
    if screening is None:
        return {"prior_therapies": []}
    values: dict[str, Any] = {f"answer_{k}": v for k, v in (screening.answers or {}).items()}
    for name in ("referred_on", "referral_source", "sbp_mmhg", "dbp_mmhg", "ecg_on", "lft_on", "notes"):
        value = getattr(screening, name)
        values[name] = "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    values["prior_therapies"] = list(screening.prior_therapies or [])
    return values


def _context(view: service.Eligibility, **extra: Any) -> dict[str, Any]:
    return {
        "patient": view.record.patient,
        "view": view,
        "decision": view.decision,
        "can_override": overridable(view.decision),
        "values": _values_from(view.screening),
        **_choices(),
        **extra,
    }


def _screening_from_form(form: dict[str, list[str]]) -> dict[str, Any]:
    single = {k: v[-1] for k, v in form.items() if v}
    answers = {
        key.removeprefix("answer_"): value
        for key, value in single.items()
        if key.startswith("answer_") and value
    }
    data: dict[str, Any] = {
        k: single.get(k)
        for k in ("referred_on", "referral_source", "sbp_mmhg", "dbp_mmhg", "ecg_on", "lft_on", "notes")
    }
    data["answers"] = answers
    data["prior_therapies"] = form.get("prior_therapies", [])
    return data


def decision_out(view: service.Eligibility) -> DecisionOut:
    d = view.decision

    def out(r: Any) -> ReasonOut:
        return ReasonOut(code=r.code, kind=r.kind, message=r.message, source=r.source, tag=r.tag)

    return DecisionOut(
        patient_id=view.record.patient.id,
        status=d.status,
        label=d.label,
        evidence_grade=d.evidence_grade,
        indication=d.indication,
        mme_per_day=d.mme_per_day,
        reasons=[out(r) for r in d.reasons],
        missing=[out(r) for r in d.missing],
        sources=d.sources,
        screened_at=view.screening.recorded_at if view.screening else None,
        referred_on=view.screening.referred_on if view.screening else None,
    )


# --- pages -------------------------------------------------------------------------------


@router.get("/patients/{patient_id}/screening", include_in_schema=False)
def screening_page(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    view = service.eligibility(db, actor, patient_id)
    return render(request, "screening.html", _context(view, saved=request.query_params.get("saved")))


@router.get("/patients/{patient_id}/eligibility", include_in_schema=False)
def eligibility_fragment(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    view = service.eligibility(db, actor, patient_id)
    return render(request, "eligibility_fragment.html", _context(view))


@router.post("/patients/{patient_id}/screening/save", include_in_schema=False)
def screening_save(
    request: Request, db: DbSession, actor: Screener, patient_id: RowId, form: FormLists
) -> Response:
    data = _screening_from_form(form)
    values = {
        **{k: v for k, v in data.items() if k not in ("answers",)},
        **{f"answer_{k}": v for k, v in data["answers"].items()},
    }
    return form_action(
        db,
        lambda: service.save_screening(db, actor, patient_id, parse(ScreeningIn, data)),
        done=f"/patients/{patient_id}/screening?saved=screening",
        again=lambda errors: render(
            request,
            "screening.html",
            _context(
                service.eligibility(db, actor, patient_id), values=values, errors=errors, section="screening"
            ),
        ),
    )


@router.post("/patients/{patient_id}/screening/override", include_in_schema=False)
def screening_override(
    request: Request, db: DbSession, actor: Overrider, patient_id: RowId, form: FormLists
) -> Response:
    single = {k: v[-1] for k, v in form.items() if v}
    return form_action(
        db,
        lambda: service.override(db, actor, patient_id, parse(OverrideIn, single)),
        done=f"/patients/{patient_id}/screening?saved=override",
        again=lambda errors: render(
            request,
            "screening.html",
            _context(
                service.eligibility(db, actor, patient_id),
                errors=errors,
                section="override",
                override_values=single,
            ),
        ),
    )


# --- JSON API ----------------------------------------------------------------------------


@router.get("/api/v1/patients/{patient_id}/eligibility", response_model=DecisionOut, tags=["screening"])
def api_eligibility(db: DbSession, actor: Reader, patient_id: RowId) -> DecisionOut:
    return decision_out(service.eligibility(db, actor, patient_id))


@router.post(
    "/api/v1/patients/{patient_id}/screening",
    response_model=DecisionOut,
    status_code=201,
    tags=["screening"],
)
def api_save_screening(db: DbSession, actor: Screener, patient_id: RowId, body: ScreeningIn) -> DecisionOut:
    service.save_screening(db, actor, patient_id, body)
    return decision_out(service.eligibility(db, actor, patient_id))


@router.post(
    "/api/v1/patients/{patient_id}/eligibility/overrides",
    response_model=OverrideOut,
    status_code=201,
    tags=["screening"],
)
def api_override(db: DbSession, actor: Overrider, patient_id: RowId, body: OverrideIn) -> OverrideOut:
    row = service.override(db, actor, patient_id, body)
    return OverrideOut(
        id=row.id, caution_key=row.caution_key, reason=row.reason, overridden_at=row.overridden_at
    )
