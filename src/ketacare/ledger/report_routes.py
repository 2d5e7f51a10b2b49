"""The ledger's reports for inspection (printable pages and CSV) and the chain check, as pages."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ketacare import clinic_time
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput, NotFound
from ketacare.ledger import (
    common,
    lots,
    reports,
    setup,
    verification,
)
from ketacare.ledger.access import Reader
from ketacare.ledger.page_routes import REPORTS, _common, _zone
from ketacare.patients import service as patients
from ketacare.validation import reasonable_date
from ketacare.web.deps import DbSession
from ketacare.web.templating import render

router = APIRouter()


# --- pages: reports and verification ----------------------------------------------------------


def _date(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return reasonable_date(dt.date.fromisoformat(value))
    except ValueError as exc:
        raise InvalidInput(errors={name: "Use a date like 2026-11-22 (between 1900 and 2200)."}) from exc


def _filter(db: DbSession, actor: Principal, params: dict[str, str]) -> reports.ReportFilter:
    patient_id = None
    number = (params.get("patient") or "").strip().upper()
    if number:
        patient_id = patients.id_by_record_number(db, actor, number)
        if patient_id is None:
            raise InvalidInput(errors={"patient": f"No patient with record number {number} in your clinic."})
    lot = (params.get("lot") or "").strip()
    if lot and not (lot.isdigit() and 0 < int(lot) <= 2_147_483_647):
        raise InvalidInput(errors={"lot": "Choose a lot from the list."})
    return reports.ReportFilter(
        date_from=_date(params.get("date_from"), "date_from"),
        date_to=_date(params.get("date_to"), "date_to"),
        lot_id=int(lot) if lot else None,
        patient_id=patient_id,
    )


@router.get("/ledger/reports", include_in_schema=False)
def reports_page(request: Request, db: DbSession, actor: Reader) -> Response:
    return render(
        request,
        "ledger_reports.html",
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "lot_options": [
                (
                    str(r.lot.id),
                    f"{r.product.name} {r.product.strength_mg_per_ml:g} mg/mL · lot {r.lot.lot_number}",
                )
                for r in lots.lots(db, actor)
            ],
        },
    )


def _report_context(db: DbSession, actor: Principal, name: str, flt: reports.ReportFilter) -> dict[str, Any]:
    wanted = list(REPORTS) if name == "inspection" else [name]
    context: dict[str, Any] = {"sections": wanted}
    if "balances" in wanted:
        context["balances"] = reports.balance_report(db, actor, flt)
    if "dispensing" in wanted:
        context["dispensing"] = reports.dispensing_log(db, actor, flt)
    if "inventory" in wanted:
        context["inventory"] = reports.inventory_report(db, actor, flt)
    if "destructions" in wanted:
        context["destructions"] = reports.destruction_report(db, actor, flt)
    if "losses" in wanted:
        context["losses"] = reports.losses_report(db, actor, flt)
    return context


@router.get("/ledger/reports/{name}.csv", include_in_schema=False)
def report_csv(request: Request, db: DbSession, actor: Reader, name: str) -> Response:
    if name not in REPORTS:
        raise NotFound("No such report.")
    flt = _filter(db, actor, dict(request.query_params))
    text = {
        "balances": lambda: reports.balances_csv(db, actor, reports.balance_report(db, actor, flt)),
        "dispensing": lambda: reports.dispensing_csv(db, actor, reports.dispensing_log(db, actor, flt)),
        "inventory": lambda: reports.inventory_csv(db, actor, reports.inventory_report(db, actor, flt)),
        "destructions": lambda: reports.destructions_csv(
            db, actor, reports.destruction_report(db, actor, flt)
        ),
        "losses": lambda: reports.losses_csv(db, actor, reports.losses_report(db, actor, flt)),
    }[name]()
    filename = f"ketacare-ledger-{name}-{clinic_time.today(db, actor.clinic_id).isoformat()}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/ledger/reports/{name}", include_in_schema=False)
def report_page(request: Request, db: DbSession, actor: Reader, name: str) -> Response:
    if name not in REPORTS and name != "inspection":
        raise NotFound("No such report.")
    params = dict(request.query_params)
    flt = _filter(db, actor, params)
    zone = _zone(db, actor)
    return render(
        request,
        "ledger_report.html",
        {
            **_common(actor),
            **clinic_time.clock(zone),
            **_report_context(db, actor, name, flt),
            "name": name,
            "title": "Inspection report" if name == "inspection" else REPORTS[name],
            "flt": flt,
            "params": params,
            "query": "&".join(f"{k}={v}" for k, v in params.items() if v),
            "clinic": common.clinic_name(db, actor.clinic_id),
            "registrations": setup.registrations(db, actor),
            "produced_at": common.now(),
            "produced_by": actor.username,
            "today": clinic_time.today(db, actor.clinic_id),
        },
    )


@router.post("/ledger/verify", include_in_schema=False)
def verify_page(request: Request, db: DbSession, actor: Reader) -> Response:
    result = verification.verify(db, actor)
    return render(request, "ledger_verify.html", {**_common(actor), "result": result})
