"""The auditor's pages: filter the trail, export it as CSV, verify the chain."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session
from starlette.responses import Response, StreamingResponse

from ketacare import integrity
from ketacare.audit import service
from ketacare.audit.models import AuditEntry
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.patients import service as patients
from ketacare.web.deps import DbSession, require
from ketacare.web.templating import render

router = APIRouter()
Auditor = Annotated[Principal, require(Permission.audit_read)]
Exporter = Annotated[Principal, require(Permission.audit_export, sensitive=True)]
PER_PAGE = 50


def _date(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(errors={name: "Use a date like 2026-11-22."}) from exc


def _filter(db: Session, actor: Principal, params: dict[str, str]) -> service.AuditFilter:
    patient_id = None
    number = (params.get("patient") or "").strip().upper()
    if number:
        patient_id = patients.id_by_record_number(db, actor, number)
        if patient_id is None:
            raise InvalidInput(errors={"patient": f"No patient with record number {number} in your clinic."})
    return service.AuditFilter(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        username=(params.get("user") or "").strip().lower() or None,
        date_from=_date(params.get("date_from"), "date_from"),
        date_to=_date(params.get("date_to"), "date_to"),
        action=(params.get("action") or "").strip() or None,
    )


def _record_numbers(db: Session, actor: Principal, entries: list[AuditEntry]) -> dict[int, str]:
    return patients.record_numbers(db, actor, {e.patient_id for e in entries if e.patient_id is not None})


@router.get("/audit", include_in_schema=False)
def audit_page(
    request: Request, db: DbSession, actor: Auditor, page: Annotated[int, Query(ge=1, le=1_000_000)] = 1
) -> Response:
    params = dict(request.query_params)
    try:
        flt = _filter(db, actor, params)
    except InvalidInput as exc:
        return render(
            request,
            "audit.html",
            {"entries": [], "total": 0, "page": 1, "pages": 1, "values": params, "errors": exc.errors},
            422,
        )
    entries, total = service.search(db, flt, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    service.record(
        db,
        actor,
        "audit.search",
        "audit",
        patient_id=flt.patient_id,
        detail=" ".join(f"{k}={v}" for k, v in params.items() if v),
    )
    query = "&".join(f"{k}={v}" for k, v in params.items() if k != "page" and v)
    return render(
        request,
        "audit.html",
        {
            "entries": entries,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PER_PAGE)),
            "values": params,
            "record_numbers": _record_numbers(db, actor, entries),
            "query": query,
        },
    )


@router.get("/audit.csv", include_in_schema=False)
def audit_csv(request: Request, db: DbSession, actor: Exporter) -> Response:
    flt = _filter(db, actor, dict(request.query_params))
    service.record(
        db, actor, "audit.export", "audit", patient_id=flt.patient_id, detail=str(dict(request.query_params))
    )
    db.commit()  # the export is recorded before a single row leaves
    filename = f"ketacare-audit-{dt.date.today().isoformat()}.csv"
    return StreamingResponse(
        iter(list(service.export_csv(db, flt))),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/audit/verify", include_in_schema=False)
def audit_verify(request: Request, db: DbSession, actor: Auditor) -> Response:
    result = service.verify_database(db, integrity.configured_anchors())
    service.record(
        db,
        actor,
        "audit.verify",
        "audit",
        outcome="success" if result.ok else "failure",
        detail=result.problem or f"{result.checked} entries intact",
    )
    return render(request, "audit_verify.html", {"result": result})


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: dt.datetime
    username: str | None
    role: str | None
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: int | None
    outcome: str
    client_addr: str | None
    detail: str
    entry_hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
    page: int


@router.get("/api/v1/audit", response_model=AuditPage, tags=["audit"])
def api_audit(
    request: Request, db: DbSession, actor: Auditor, page: Annotated[int, Query(ge=1, le=1_000_000)] = 1
) -> AuditPage:
    flt = _filter(db, actor, dict(request.query_params))
    entries, total = service.search(db, flt, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    service.record(db, actor, "audit.search", "audit", patient_id=flt.patient_id, detail="api")
    return AuditPage(items=[AuditEntryOut.model_validate(e) for e in entries], total=total, page=page)
