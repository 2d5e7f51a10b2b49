"""Patient pages and the patient JSON API. Thin: parse, call the service, render."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.knowledge import pain_conditions
from ketacare.knowledge.allergens import allergens
from ketacare.patients import service
from ketacare.patients.schemas import (
    AllergyCreate,
    AllergyOut,
    AllergySeverity,
    ConditionCreate,
    ConditionOut,
    DrugClass,
    MeasurementCreate,
    MeasurementOut,
    MedicationCreate,
    MedicationOut,
    PatientCreate,
    PatientOut,
    PatientPage,
    PatientRecordOut,
    PatientUpdate,
    Sex,
)
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, require
from ketacare.web.forms import FormData, form_action
from ketacare.web.templating import render

router = APIRouter()
Reader = Annotated[Principal, require(Permission.patient_read)]
Writer = Annotated[Principal, require(Permission.patient_write)]
Self_ = Annotated[Principal, require(Permission.patient_self)]
Page = Annotated[int, Query(ge=1, le=100_000)]
PerPage = Annotated[int, Query(ge=1, le=service.PER_PAGE_MAX)]

SECTIONS: dict[str, tuple[type[BaseModel], Any]] = {
    "measurements": (MeasurementCreate, service.add_measurement),
    "conditions": (ConditionCreate, service.add_condition),
    "medications": (MedicationCreate, service.add_medication),
    "allergies": (AllergyCreate, service.add_allergy),
}
REMOVE_KIND = {"conditions": "condition", "medications": "medication", "allergies": "allergy"}


def _form_choices(today: dt.date) -> dict[str, Any]:
    return {
        "sexes": list(Sex),
        "drug_classes": list(DrugClass),
        "severities": list(AllergySeverity),
        "allergens": list(allergens().values()),
        "allergen_names": {a.key: a.display for a in allergens().values()},
        "pain_conditions": pain_conditions(),
        "today": today.isoformat(),
    }


def _record_context(record: service.PatientRecord, today: dt.date) -> dict[str, Any]:
    return {
        "record": record,
        "patient": record.patient,
        "age": service.age_years(record.patient.date_of_birth, today),
        **_form_choices(today),
    }


# --- pages -------------------------------------------------------------------------------


@router.get("/patients", include_in_schema=False)
def patient_list(request: Request, db: DbSession, actor: Reader, q: str = "", page: Page = 1) -> Response:
    patients, total = service.search(db, actor, q, page)
    context = {
        "patients": patients,
        "total": total,
        "q": q,
        "page": page,
        "pages": max(1, -(-total // service.PER_PAGE_DEFAULT)),
        "today": clinic_time.today(db, actor.clinic_id),
        "age_years": service.age_years,
    }
    template = "patient_rows.html" if request.headers.get("hx-request") else "patient_list.html"
    return render(request, template, context)


@router.get("/patients/new", include_in_schema=False)
def patient_new(request: Request, db: DbSession, actor: Writer) -> Response:
    return render(
        request, "patient_form.html", {"mode": "new", **_form_choices(clinic_time.today(db, actor.clinic_id))}
    )


@router.post("/patients", include_in_schema=False)
def patient_create(request: Request, db: DbSession, actor: Writer, form: FormData) -> Response:
    return form_action(
        db,
        lambda: service.create(db, actor, parse(PatientCreate, form)),
        done=lambda patient: f"/patients/{patient.id}?saved=created",
        again=lambda errors: render(
            request,
            "patient_form.html",
            {
                "mode": "new",
                "values": form,
                "errors": errors,
                **_form_choices(clinic_time.today(db, actor.clinic_id)),
            },
            422,
        ),
    )


@router.get("/patients/{patient_id}", include_in_schema=False)
def patient_page(request: Request, db: DbSession, actor: Reader, patient_id: RowId) -> Response:
    record = service.record(db, actor, patient_id)
    return render(
        request,
        "patient_detail.html",
        {
            **_record_context(record, clinic_time.today(db, actor.clinic_id)),
            "saved": request.query_params.get("saved"),
        },
    )


@router.get("/patients/{patient_id}/edit", include_in_schema=False)
def patient_edit(request: Request, db: DbSession, actor: Writer, patient_id: RowId) -> Response:
    patient = service.record(db, actor, patient_id).patient
    values = {
        k: ("" if v is None else str(v)) for k, v in PatientOut.model_validate(patient).model_dump().items()
    }
    return render(
        request,
        "patient_form.html",
        {
            "mode": "edit",
            "patient": patient,
            "values": values,
            **_form_choices(clinic_time.today(db, actor.clinic_id)),
        },
    )


@router.post("/patients/{patient_id}/edit", include_in_schema=False)
def patient_update(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, form: FormData
) -> Response:
    return form_action(
        db,
        lambda: service.update_demographics(db, actor, patient_id, parse(PatientUpdate, form)),
        done=f"/patients/{patient_id}?saved=details",
        again=lambda errors: render(
            request,
            "patient_form.html",
            {
                "mode": "edit",
                "patient": service.visible_patient(db, actor, patient_id, "patient.update"),
                "values": form,
                "errors": errors,
                **_form_choices(clinic_time.today(db, actor.clinic_id)),
            },
        ),
    )


@router.post("/patients/{patient_id}/{section}", include_in_schema=False)
def patient_add_item(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, section: str, form: FormData
) -> Response:
    if section not in SECTIONS:
        return render(
            request,
            "error.html",
            {"title": "Page not found", "detail": "There is nothing at this address.", "status": 404},
            404,
        )
    schema, add = SECTIONS[section]
    return form_action(
        db,
        lambda: add(db, actor, patient_id, parse(schema, form)),
        done=f"/patients/{patient_id}?saved={section}#{section}",
        again=lambda errors: render(
            request,
            "patient_detail.html",
            {
                **_record_context(
                    service.record(db, actor, patient_id), clinic_time.today(db, actor.clinic_id)
                ),
                "section": section,
                "values": form,
                "errors": errors,
            },
        ),
    )


@router.post("/patients/{patient_id}/{section}/{item_id}/remove", include_in_schema=False)
def patient_remove_item(
    request: Request, db: DbSession, actor: Writer, patient_id: RowId, section: str, item_id: RowId
) -> Response:
    service.remove_item(db, actor, patient_id, REMOVE_KIND.get(section, section), item_id)
    return RedirectResponse(f"/patients/{patient_id}?saved={section}#{section}", status_code=303)


@router.get("/me", include_in_schema=False)
def my_record(request: Request, db: DbSession, actor: Self_) -> Response:
    if actor.patient_id is None:
        raise InvalidInput("This account is not linked to a patient record.")
    record = service.record(db, actor, actor.patient_id)
    return render(
        request,
        "patient_detail.html",
        {**_record_context(record, clinic_time.today(db, actor.clinic_id)), "read_only": True},
    )


# --- JSON API ----------------------------------------------------------------------------


def _record_out(record: service.PatientRecord, today: dt.date) -> PatientRecordOut:
    weight, height = record.latest_weight, record.latest_height
    return PatientRecordOut(
        **PatientOut.model_validate(record.patient).model_dump(),
        age_years=service.age_years(record.patient.date_of_birth, today),
        weight_kg=weight.weight_kg if weight else None,
        weight_measured_on=weight.measured_on if weight else None,
        height_cm=height.height_cm if height else None,
        measurements=[MeasurementOut.model_validate(m) for m in record.measurements],
        conditions=[ConditionOut.model_validate(c) for c in record.conditions],
        medications=[MedicationOut.model_validate(m) for m in record.medications],
        allergies=[AllergyOut.model_validate(a) for a in record.allergies],
    )


@router.get("/api/v1/patients", response_model=PatientPage, tags=["patients"])
def api_search(
    db: DbSession, actor: Reader, q: str = "", page: Page = 1, per_page: PerPage = 25
) -> PatientPage:
    patients, total = service.search(db, actor, q, page, per_page)
    return PatientPage(
        items=[PatientOut.model_validate(p) for p in patients], total=total, page=page, per_page=per_page
    )


@router.post("/api/v1/patients", response_model=PatientOut, status_code=201, tags=["patients"])
def api_create(db: DbSession, actor: Writer, body: PatientCreate) -> PatientOut:
    return PatientOut.model_validate(service.create(db, actor, body))


@router.get("/api/v1/patients/{patient_id}", response_model=PatientRecordOut, tags=["patients"])
def api_read(db: DbSession, actor: Reader, patient_id: RowId) -> PatientRecordOut:
    return _record_out(service.record(db, actor, patient_id), clinic_time.today(db, actor.clinic_id))


@router.patch("/api/v1/patients/{patient_id}", response_model=PatientOut, tags=["patients"])
def api_update(db: DbSession, actor: Writer, patient_id: RowId, body: PatientUpdate) -> PatientOut:
    return PatientOut.model_validate(service.update_demographics(db, actor, patient_id, body))


@router.post(
    "/api/v1/patients/{patient_id}/measurements",
    response_model=MeasurementOut,
    status_code=201,
    tags=["patients"],
)
def api_add_measurement(
    db: DbSession, actor: Writer, patient_id: RowId, body: MeasurementCreate
) -> MeasurementOut:
    return MeasurementOut.model_validate(service.add_measurement(db, actor, patient_id, body))


@router.post(
    "/api/v1/patients/{patient_id}/conditions",
    response_model=ConditionOut,
    status_code=201,
    tags=["patients"],
)
def api_add_condition(db: DbSession, actor: Writer, patient_id: RowId, body: ConditionCreate) -> ConditionOut:
    return ConditionOut.model_validate(service.add_condition(db, actor, patient_id, body))


@router.post(
    "/api/v1/patients/{patient_id}/medications",
    response_model=MedicationOut,
    status_code=201,
    tags=["patients"],
)
def api_add_medication(
    db: DbSession, actor: Writer, patient_id: RowId, body: MedicationCreate
) -> MedicationOut:
    return MedicationOut.model_validate(service.add_medication(db, actor, patient_id, body))


@router.post(
    "/api/v1/patients/{patient_id}/allergies", response_model=AllergyOut, status_code=201, tags=["patients"]
)
def api_add_allergy(db: DbSession, actor: Writer, patient_id: RowId, body: AllergyCreate) -> AllergyOut:
    return AllergyOut.model_validate(service.add_allergy(db, actor, patient_id, body))


@router.delete("/api/v1/patients/{patient_id}/{section}/{item_id}", status_code=204, tags=["patients"])
def api_remove_item(
    db: DbSession, actor: Writer, patient_id: RowId, section: str, item_id: RowId
) -> Response:
    service.remove_item(db, actor, patient_id, REMOVE_KIND.get(section, section), item_id)
    return Response(status_code=204)


@router.get("/api/v1/me", response_model=PatientRecordOut, tags=["patients"])
def api_me(db: DbSession, actor: Self_) -> PatientRecordOut:
    if actor.patient_id is None:
        raise InvalidInput("This account is not linked to a patient record.")
    return _record_out(service.record(db, actor, actor.patient_id), clinic_time.today(db, actor.clinic_id))
