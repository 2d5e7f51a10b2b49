"""FHIR Bulk Data export over HTTP: ``$export`` kick-off (system, all patients, a Group), the
status URL, the NDJSON files and deletion; plus the staff page that starts and lists exports.
Thin: parse, call ``bulk``, answer."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.interop.fhir import bulk, service
from ketacare.interop.fhir.http import BASE, Reader, base_url, fhir_response
from ketacare.interop.fhir.models import FhirExportJob
from ketacare.interop.fhir.resources import mappers
from ketacare.web.deps import DbSession, SettingsDep
from ketacare.web.forms import FormLists
from ketacare.web.problems import operation_outcome
from ketacare.web.templating import render

router = APIRouter()
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
FileName = Annotated[str, Path(pattern=r"^[A-Za-z0-9.]{1,80}$")]
GroupId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
KICK_OFF_PARAMS = frozenset({"_outputFormat", "_type", "_since"})
RETRY_AFTER_SECONDS = "2"
# What the bulk-data routes answer besides errors, for the OpenAPI document (FHIR Bulk Data
# Access IG: kick-off 202 with Content-Location; status 202 while running, then the manifest).
_OUTCOME = {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
KICK_OFF_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Queued: poll the status URL in Content-Location.",
        "content": _OUTCOME,
        "headers": {"Content-Location": {"schema": {"type": "string"}}},
    }
}
STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The manifest of a finished export.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    202: {
        "description": "Still running (no body); X-Progress says how far.",
        "headers": {"X-Progress": {"schema": {"type": "string"}}},
    },
}
DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {202: {"description": "Deleted (no body)."}}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "One NDJSON output file.", "content": {"application/fhir+ndjson": {}}}
}
# What the CapabilityStatement lists (HL7 FHIR Bulk Data Access, the export operation).
CAPABILITY_OPERATIONS = (
    {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
)


def _params(request: Request, level: str, group_id: str | None = None) -> bulk.ExportParams:
    """The kick-off's headers and query; anything not understood is a 400 and no job."""
    if request.headers.get("prefer", "").strip().lower() != "respond-async":
        raise bulk.ExportRefused(
            "A bulk export runs asynchronously: send the header 'Prefer: respond-async'."
        )
    accept = request.headers.get("accept", "")
    if accept and not any(
        kind.split(";")[0].strip() in ("application/fhir+json", "application/json", "*/*")
        for kind in accept.split(",")
    ):
        raise bulk.ExportRefused("The kick-off answers in FHIR JSON: send 'Accept: application/fhir+json'.")
    query = request.query_params
    unknown = sorted(set(query.keys()) - KICK_OFF_PARAMS)
    if unknown:
        raise bulk.ExportRefused(
            f"Parameter {', '.join(unknown)} is not supported; "
            f"supported: {', '.join(sorted(KICK_OFF_PARAMS))}."
        )
    type_values = query.getlist("_type")
    types = [t.strip() for value in type_values for t in value.split(",") if t.strip()]
    formats = query.getlist("_outputFormat")
    sinces = query.getlist("_since")
    if len(formats) > 1 or len(sinces) > 1:
        raise bulk.ExportRefused("Give _outputFormat and _since at most once each.")
    return bulk.ExportParams(
        level=level,
        group_id=group_id,
        types=types if type_values else None,  # _type=,, names no type: refused, not "every type"
        since=sinces[0] if sinces else None,
        output_format=formats[0] if formats else None,
        request_url=str(request.url),
    )


def _accepted(request: Request, job: FhirExportJob) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"Export queued ({', '.join(job.types)}); poll the Content-Location URL.",
            }
        ],
    }
    headers = {"Content-Location": f"{base_url(request)}/bulk/{job.id}"}
    return fhir_response(body, 202, headers)


# --- kick-off ---------------------------------------------------------------------------------


@router.get(
    BASE + "/$export",
    tags=["FHIR Bulk Data"],
    status_code=202,
    response_class=Response,
    responses=KICK_OFF_RESPONSES,
)
def export_system(request: Request, db: DbSession, actor: Reader) -> Response:
    return _accepted(request, bulk.kick_off(db, actor, _params(request, "system")))


@router.get(
    BASE + "/Patient/$export",
    tags=["FHIR Bulk Data"],
    status_code=202,
    response_class=Response,
    responses=KICK_OFF_RESPONSES,
)
def export_patients(request: Request, db: DbSession, actor: Reader) -> Response:
    return _accepted(request, bulk.kick_off(db, actor, _params(request, "patient")))


@router.get(
    BASE + "/Group/{group_id}/$export",
    tags=["FHIR Bulk Data"],
    status_code=202,
    response_class=Response,
    responses=KICK_OFF_RESPONSES,
)
def export_group(request: Request, db: DbSession, actor: Reader, group_id: GroupId) -> Response:
    return _accepted(request, bulk.kick_off(db, actor, _params(request, "group", group_id)))


# --- status, files, deletion ------------------------------------------------------------------


@router.get(
    BASE + "/bulk/{job_id}", tags=["FHIR Bulk Data"], response_class=Response, responses=STATUS_RESPONSES
)
def export_status(request: Request, db: DbSession, actor: Reader, job_id: JobId) -> Response:
    job = bulk.job_of(db, actor, job_id)
    if job.status in bulk.ACTIVE:
        headers = {"X-Progress": job.progress or job.status, "Retry-After": RETRY_AFTER_SECONDS}
        return Response(status_code=202, headers=headers)
    if job.status == "failed":
        body = operation_outcome(500, "The export failed", job.error or "The export failed.")
        return fhir_response(body, 500)
    manifest = bulk.manifest(job, bulk.files_of(db, job.id), base_url(request))
    return JSONResponse(manifest, media_type="application/json")


def _delete(db: DbSession, settings: SettingsDep, actor: Principal, job_id: str) -> BackgroundTask:
    """Deletes (or cancels) the requester's job; the returned task removes its files once the
    deletion is committed (background tasks run after the response). The API and the page."""
    job = bulk.cancel(db, actor, job_id)
    return BackgroundTask(bulk.remove_files, settings.resolved_fhir_export_dir, job.id)


@router.delete(
    BASE + "/bulk/{job_id}",
    tags=["FHIR Bulk Data"],
    status_code=202,
    response_class=Response,
    responses=DELETE_RESPONSES,
)
def export_delete(db: DbSession, settings: SettingsDep, actor: Reader, job_id: JobId) -> Response:
    return Response(status_code=202, background=_delete(db, settings, actor, job_id))


@router.get(
    BASE + "/bulk/{job_id}/{file_name}",
    tags=["FHIR Bulk Data"],
    response_class=Response,
    responses=FILE_RESPONSES,
)
def export_file(
    db: DbSession, settings: SettingsDep, actor: Reader, job_id: JobId, file_name: FileName
) -> Response:
    path = bulk.file_path(db, actor, job_id, file_name, settings.resolved_fhir_export_dir)
    return FileResponse(path, media_type=bulk.NDJSON, filename=file_name, content_disposition_type="inline")


# --- the staff page ---------------------------------------------------------------------------


def _page(request: Request, db: DbSession, actor: Principal, **extra: object) -> Response:
    status_code = 422 if extra.get("errors") else 200
    jobs = bulk.clinic_jobs(db, actor.clinic_id)
    context = {
        "base": base_url(request),
        "jobs": jobs,
        "files": {job.id: bulk.files_of(db, job.id) for job in jobs if bulk.may_download(job, actor)},
        "types": [t for t, m in mappers().items() if service.may_read(actor, m)],
        "actor": actor,
        "is_requester": bulk.is_requester,
        "errors": {},
        "values": {},
        **extra,
    }
    return render(request, "fhir_exports.html", context, status_code)


@router.get("/fhir-exchange/exports", include_in_schema=False)
def exports_page(request: Request, db: DbSession, actor: Reader) -> Response:
    return _page(request, db, actor)


def _since_from_form(value: str, time_zone: str) -> str | None:
    """A date on the form is midnight in the clinic's zone, sent on as a FHIR instant."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(errors={"since": "Give the date as YYYY-MM-DD."}) from exc
    local = dt.datetime.combine(day, dt.time(), zoneinfo.ZoneInfo(time_zone))
    try:
        return local.astimezone(dt.UTC).isoformat(timespec="seconds")
    except OverflowError as exc:  # midnight of 0001-01-01 east of Greenwich is before the year 1 in UTC
        raise InvalidInput(errors={"since": "Give a date between the years 1 and 9999."}) from exc


@router.post("/fhir-exchange/exports", include_in_schema=False)
def exports_start(
    request: Request, db: DbSession, settings: SettingsDep, actor: Reader, form: FormLists
) -> Response:
    chosen = form.get("types", [])
    since_text = (form.get("since") or [""])[0].strip()
    try:
        since = _since_from_form(since_text, settings.clinic_time_zone)
        query = [("_type", ",".join(chosen))] if chosen else []
        query += [("_since", since)] if since else []
        params = bulk.ExportParams(
            level="system",
            types=chosen or None,
            since=since,
            request_url=base_url(request) + "/$export?" + urlencode(query),
        )
        bulk.kick_off(db, actor, params)
    except (InvalidInput, bulk.ExportRefused) as exc:
        db.rollback()
        errors = getattr(exc, "errors", None) or {"types": str(exc)}
        return _page(request, db, actor, errors=errors, values={"since": since_text, "types": chosen})
    return RedirectResponse("/fhir-exchange/exports", status_code=303)


@router.post("/fhir-exchange/exports/{job_id}/delete", include_in_schema=False)
def exports_delete(db: DbSession, settings: SettingsDep, actor: Reader, job_id: JobId) -> Response:
    task = _delete(db, settings, actor, job_id)
    return RedirectResponse("/fhir-exchange/exports", status_code=303, background=task)
