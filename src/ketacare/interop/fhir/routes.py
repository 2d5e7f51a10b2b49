"""``/fhir/R4``: the FHIR REST API (JSON only; every error an OperationOutcome), and the staff
page that explains it. Thin: parse, call the service, answer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from ketacare.interop.fhir import bulk_routes, import_routes, service
from ketacare.interop.fhir.http import BASE, Reader, base_url, fhir_response
from ketacare.interop.fhir.resources import mappers
from ketacare.web.deps import DbSession, public
from ketacare.web.templating import render

router = APIRouter()
TypeName = Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{1,40}$")]
LogicalId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
PatientId = Annotated[int, Path(ge=1, le=2**62)]
PUBLISHED = dt.date.today().isoformat()


# --- the staff page --------------------------------------------------------------------------


@router.get("/fhir-exchange", include_in_schema=False)
def exchange_page(request: Request, actor: Reader) -> Response:
    return render(
        request,
        "fhir_exchange.html",
        {"base": base_url(request), "mappers": mappers(), "actor": actor},
    )


# --- the API: order matters, the fixed paths before /{type}/{id} -----------------------------
# Sub-routers with fixed paths ($export, $import, bulk status) are included here, above the
# generic /{resource_type} routes.
router.include_router(bulk_routes.router)
router.include_router(import_routes.router)


@router.get(f"{BASE}/metadata", tags=["FHIR"])
def metadata(request: Request, _public: Annotated[None, public()]) -> Response:
    return fhir_response(
        service.capability_statement(base_url(request), PUBLISHED, bulk_routes.CAPABILITY_OPERATIONS)
    )


@router.get(BASE + "/Patient/{patient_id}/$everything", tags=["FHIR"])
def patient_everything(
    request: Request,
    db: DbSession,
    actor: Reader,
    patient_id: PatientId,
    _type: str | None = None,
    _since: str | None = None,
) -> Response:
    types = [t for t in _type.split(",") if t] if _type else None
    found = service.everything(db, actor, patient_id, types=types, since=_since)
    return fhir_response(service.everything_bundle(str(request.url), base_url(request), found))


@router.get(BASE + "/{resource_type}", tags=["FHIR"])
def search_type(request: Request, db: DbSession, actor: Reader, resource_type: TypeName) -> Response:
    query, page = service.search_page(db, actor, resource_type, list(request.query_params.multi_items()))
    return fhir_response(service.searchset(base_url(request), resource_type, query, page))


@router.get(BASE + "/{resource_type}/{logical_id}", tags=["FHIR"])
def read(db: DbSession, actor: Reader, resource_type: TypeName, logical_id: LogicalId) -> Response:
    return fhir_response(service.read(db, actor, resource_type, logical_id))
