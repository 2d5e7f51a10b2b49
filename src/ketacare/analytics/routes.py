"""Registry pages: the clinic's report (registry_read), the de-identified research report and
the de-identified dataset (research_read), each as a page with charts, CSV per table, and a
standalone HTML report."""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.analytics import report as rendering
from ketacare.analytics import service
from ketacare.analytics.models import DataUseAgreement
from ketacare.analytics.registry import Report
from ketacare.analytics.schemas import AgreementIn, AgreementOut
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput, NotFound
from ketacare.exports import frame_csv
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, require
from ketacare.web.forms import FormData
from ketacare.web.templating import render

# A query parameter naming an agreement: a 32-bit row id or nothing.
AgreementId = Annotated[int | None, Query(ge=1, le=2_147_483_647)]

router = APIRouter()
Director = Annotated[Principal, require(Permission.registry_read)]
Researcher = Annotated[Principal, require(Permission.research_read)]
# the clinic admin, who grants researchers their accounts, records the clinic's agreements
AgreementAdmin = Annotated[Principal, require(Permission.user_manage)]


def _today(db: DbSession, actor: Principal) -> dt.date:
    """The clinic's day: a report's date and a data use agreement's last day are the clinic's."""
    return clinic_time.today(db, actor.clinic_id)


def _page(request: Request, report: Report, base: str, overrides: tuple[int, int] | None = None) -> Response:
    figures = {k: json.dumps(v) for k, v in rendering.figures(report).items()}
    return render(
        request,
        "registry.html",
        {
            "report": report,
            "figures": figures,
            "base": base,
            "notes": rendering.notes(report),
            "overrides": overrides,
        },
    )


def _csv(report: Report, table: str) -> Response:
    if table not in report.tables:
        raise NotFound("No such table.")
    body = frame_csv(report.tables[table].frame())
    headers = {"Content-Disposition": f'attachment; filename="registry-{report.scope}-{table}.csv"'}
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


def _standalone(report: Report) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="registry-{report.scope}.html"'}
    return Response(rendering.standalone_html(report), media_type="text/html; charset=utf-8", headers=headers)


@router.get("/registry", include_in_schema=False)
def clinic_registry(request: Request, db: DbSession, actor: Director) -> Response:
    report = service.clinic_report(db, actor, _today(db, actor))
    return _page(request, report, "/registry", service.dose_overrides(db, actor.clinic_id))


@router.get("/registry/report.html", include_in_schema=False)
def clinic_registry_html(db: DbSession, actor: Director) -> Response:
    return _standalone(service.clinic_report(db, actor, _today(db, actor)))


@router.get("/registry/{table}.csv", include_in_schema=False)
def clinic_registry_csv(db: DbSession, actor: Director, table: str) -> Response:
    return _csv(service.clinic_report(db, actor, _today(db, actor)), table)


@router.get("/research/registry", include_in_schema=False)
def research_registry(request: Request, db: DbSession, actor: Researcher) -> Response:
    return _page(request, service.research_report(db, actor, _today(db, actor)), "/research/registry")


@router.get("/research/registry/report.html", include_in_schema=False)
def research_registry_html(db: DbSession, actor: Researcher) -> Response:
    return _standalone(service.research_report(db, actor, _today(db, actor)))


@router.get("/research/registry/{table}.csv", include_in_schema=False)
def research_registry_csv(db: DbSession, actor: Researcher, table: str) -> Response:
    return _csv(service.research_report(db, actor, _today(db, actor)), table)


def _zip(db: DbSession, actor: Principal, method: str, agreement: int | None) -> Response:
    data = service.deidentified(db, actor, method, agreement, _today(db, actor))
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in data.write(Path(tmp)):
            archive.write(path, path.name)
    name = "ketacare-safe-harbor" if method == "safe_harbor" else "ketacare-limited-data-set"
    headers = {"Content-Disposition": f'attachment; filename="{name}.zip"'}
    return Response(buffer.getvalue(), media_type="application/zip", headers=headers)


@router.get("/research/export.zip", include_in_schema=False)
def research_export(
    db: DbSession, actor: Researcher, method: str = "safe_harbor", agreement: AgreementId = None
) -> Response:
    """The Safe Harbor dataset; ``method=limited&agreement=ID`` a limited data set under an
    active data use agreement (refused, 422, without one)."""
    return _zip(db, actor, method, agreement)


@router.get(
    "/api/v1/research/export",
    tags=["registry"],
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "The dataset as a ZIP."}},
)
def api_research_export(
    db: DbSession, actor: Researcher, method: str = "safe_harbor", agreement: AgreementId = None
) -> Response:
    """The de-identified dataset as a ZIP (Parquet per table, data dictionary, README naming the
    method): ``safe_harbor`` (45 CFR 164.514(b)(2)) or ``limited`` (164.514(e), with ``agreement``)."""
    return _zip(db, actor, method, agreement)


# --- data use agreements (the clinic admin records them) --------------------------------------


def _out(dua: DataUseAgreement) -> dict[str, Any]:
    return AgreementOut(
        id=dua.id, recipient=dua.recipient, purpose=dua.purpose, starts_on=dua.starts_on,
        ends_on=dua.ends_on, approved_by=dua.approved_by, revoked=dua.revoked_at is not None,
    ).model_dump(mode="json")  # fmt: skip


@router.get("/api/v1/research/agreements", tags=["registry"])
def api_agreements(db: DbSession, actor: AgreementAdmin) -> list[dict[str, Any]]:
    return [_out(d) for d in service.agreements(db, actor.clinic_id)]


@router.post("/api/v1/research/agreements", status_code=201, tags=["registry"])
def api_record_agreement(db: DbSession, actor: AgreementAdmin, body: AgreementIn) -> dict[str, Any]:
    return _out(service.record_agreement(db, actor, actor.clinic_id, body))


@router.post("/api/v1/research/agreements/{agreement_id}/revoke", tags=["registry"])
def api_revoke_agreement(db: DbSession, actor: AgreementAdmin, agreement_id: RowId) -> dict[str, Any]:
    return _out(service.revoke_agreement(db, actor, agreement_id))


def _agreements_page(
    request: Request, db: DbSession, actor: Principal, form: dict[str, str], errors: dict[str, str]
) -> Response:
    return render(
        request,
        "agreements.html",
        {"agreements": service.agreements(db, actor.clinic_id), "form": form, "errors": errors},
        status_code=422 if errors else 200,
    )


@router.get("/research/agreements", include_in_schema=False)
def agreements_page(request: Request, db: DbSession, actor: AgreementAdmin) -> Response:
    return _agreements_page(request, db, actor, {}, {})


@router.post("/research/agreements", include_in_schema=False)
def agreements_record(request: Request, db: DbSession, actor: AgreementAdmin, form: FormData) -> Response:
    try:
        service.record_agreement(db, actor, actor.clinic_id, parse(AgreementIn, form))
    except InvalidInput as exc:
        return _agreements_page(request, db, actor, dict(form), exc.errors)
    return RedirectResponse("/research/agreements", status_code=303)


@router.post("/research/agreements/{agreement_id}/revoke", include_in_schema=False)
def agreements_revoke(db: DbSession, actor: AgreementAdmin, agreement_id: RowId) -> Response:
    service.revoke_agreement(db, actor, agreement_id)
    return RedirectResponse("/research/agreements", status_code=303)
