"""FHIR NDJSON import over HTTP: ``POST /fhir/R4/$import`` for system clients, and the staff page
``/fhir-exchange/imports`` where a clinic admin uploads files. Thin: read the body, run the
importer, answer with the per-line report."""

from __future__ import annotations

import tempfile
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.responses import JSONResponse, Response

from ketacare.config import Settings
from ketacare.errors import InvalidInput
from ketacare.interop.fhir import importer
from ketacare.interop.fhir.http import BASE, Writer, fhir_response
from ketacare.web.deps import DbSession, SettingsDep, get_settings
from ketacare.web.limits import size_text
from ketacare.web.templating import render

router = APIRouter()
# The size limit per request is the setting KETACARE_MAX_IMPORT_BODY_BYTES, the same one the body
# limit middleware (web/limits.py) applies to these paths: larger migrations use `ketacare fhir import`.
NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/x-ndjson", "application/ndjson"})
MAX_ISSUES = 1000  # rejected lines listed in the OperationOutcome; the JSON report lists all


def _outcome(status: int, code: str, text: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return fhir_response(body, status)


def _too_large(limit: int) -> Response:
    return _outcome(
        413,
        "too-long",
        f"The body is larger than {size_text(limit)}; nothing was imported. "
        "Split the file, or import it with `ketacare fhir import`.",
    )


class Body:
    """The request body spooled to a temporary file (streamed, never held whole in memory), or
    ``too_large`` once it passes the limit."""

    def __init__(self, spool: IO[bytes] | None, limit: int) -> None:
        self.spool = spool
        self.limit = limit

    @property
    def too_large(self) -> bool:
        return self.spool is None


async def ndjson_body(request: Request) -> Body:
    limit = _limit(get_settings(request))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return Body(None, limit)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115 (returned)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            spool.close()
            return Body(None, limit)
        spool.write(chunk)
    return Body(spool, limit)


def _limit(settings: Settings) -> int:
    return settings.max_import_body_bytes


def report_outcome(report: importer.ImportReport) -> dict[str, Any]:
    """The summary first (information), then one issue per rejected line."""
    issues: list[dict[str, Any]] = [
        {"severity": "information", "code": "informational", "diagnostics": f"Import: {report.summary()}."}
    ]
    several = len(report.files) > 1
    for result in report.rejected[:MAX_ISSUES]:
        where = f"{result.file} line {result.line}" if several else f"line {result.line}"
        issues.append(
            {
                "severity": "error",
                "code": result.issue_code or "processing",
                "diagnostics": result.reason or "rejected",
                "expression": [where],
            }
        )
    more = len(report.rejected) - MAX_ISSUES
    if more > 0:
        issues.append(
            {
                "severity": "warning",
                "code": "too-costly",
                "diagnostics": f"{more} more rejected lines are not listed; ask with _report=json for all.",
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues}


@router.post(BASE + "/$import", tags=["FHIR"])
def import_ndjson(
    request: Request,
    db: DbSession,
    actor: Writer,
    body: Annotated[Body, Depends(ndjson_body)],
    source: str | None = None,
    _report: str | None = None,
) -> Response:
    """Import Patient, Condition, Observation and MedicationStatement resources, one per line,
    from the system named by ``source`` (required: ids are only unique within it). Answers 200
    with an OperationOutcome (or ``_report=json``: the plain per-line report)."""
    if body.too_large or body.spool is None:
        return _too_large(body.limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in NDJSON_TYPES:
        body.spool.close()
        return _outcome(
            415,
            "not-supported",
            "Send the resources as NDJSON (Content-Type: application/fhir+ndjson or application/x-ndjson).",
        )
    if _report not in (None, "json", "outcome"):
        body.spool.close()
        return _outcome(400, "invalid", "_report is 'json' (the per-line report) or 'outcome' (the default).")
    try:
        source = importer.check_source(source)
    except InvalidInput as exc:
        body.spool.close()
        code = "required" if not (source or "").strip() else "value"
        return _outcome(422, code, f"source: {exc.errors['source']} Nothing was imported.")
    with body.spool as spool:
        report = importer.Importer(db, actor, source_system=source).run([importer.NdjsonFile("body", spool)])
    if _report == "json":
        return JSONResponse(report.as_json())
    return fhir_response(report_outcome(report))


# --- the staff page ---------------------------------------------------------------------------


@router.get("/fhir-exchange/imports", include_in_schema=False)
def imports_page(request: Request, settings: SettingsDep, actor: Writer) -> Response:
    return render(request, "fhir_imports.html", {"report": None, "max_size": size_text(_limit(settings))})


@router.post("/fhir-exchange/imports", include_in_schema=False)
def imports_upload(
    request: Request,
    db: DbSession,
    settings: SettingsDep,
    actor: Writer,
    files: Annotated[list[UploadFile], File()],
    source: Annotated[str, Form()] = "",  # required, checked below: the error keeps the files' names
) -> Response:
    limit = _limit(settings)
    context: dict[str, Any] = {"report": None, "max_size": size_text(limit), "source": source}
    chosen = [f for f in files if f.filename]
    if not chosen:
        return render(
            request, "fhir_imports.html", {**context, "error": "Choose one or more .ndjson files."}, 422
        )
    try:
        source = importer.check_source(source)
    except InvalidInput as exc:
        # A browser never fills a file field back in: name the files so they are easy to choose again.
        names = ", ".join(f.filename or "" for f in chosen)
        error = f"Source system: {exc.errors['source']} Nothing was imported; choose {names} again."
        return render(request, "fhir_imports.html", {**context, "error": error}, 422)
    if sum(f.size or 0 for f in chosen) > limit:
        error = f"The files are larger than {context['max_size']} together; nothing was imported."
        return render(request, "fhir_imports.html", {**context, "error": error}, 413)
    sources = [importer.NdjsonFile(f.filename or "upload", f.file) for f in chosen]
    report = importer.Importer(db, actor, source_system=source).run(sources)
    return render(request, "fhir_imports.html", {**context, "report": report})
