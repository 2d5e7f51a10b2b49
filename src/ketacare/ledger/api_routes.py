"""The controlled-substance ledger's JSON API: the dashboard, set-up, lots and their movements,
inventories, investigations, theft and loss reporting, the entries and the chain check.

Waste, destruction and adjustments re-authenticate the person (``sensitive=True``); witnesses
confirm with their own password in the request."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.ledger import (
    chain,
    common,
    dashboard,
    inventories,
    losses,
    lots,
    movements,
    reports,
    rules,
    setup,
    verification,
)
from ketacare.ledger.access import Admin, AdminSensitive, Reader, Writer, WriterSensitive
from ketacare.ledger.models import LedgerEntry, LossReport
from ketacare.ledger.schemas import (
    AdjustmentIn,
    BiennialInventoryIn,
    CloseIn,
    DestructionIn,
    Form106In,
    Ingredient,
    InitialInventoryIn,
    NoteIn,
    NoticeIn,
    ProductCodingIn,
    ProductIn,
    ReceiptIn,
    RegistrationIn,
    ReturnIn,
    SettingsIn,
    TheftLossIn,
    TransferIn,
    WasteIn,
)
from ketacare.validation import ReasonableDate
from ketacare.web.deps import DbSession, RowId, SettingsDep

router = APIRouter()


# --- JSON shapes ------------------------------------------------------------------------------


def _t(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _mg(amount_ug: int | None) -> float | None:
    return None if amount_ug is None else rules.ug_to_mg(amount_ug)


def entry_out(e: LedgerEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "seq": e.seq,
        "kind": e.kind,
        "occurred_at": _t(e.occurred_at),
        "recorded_at": _t(e.recorded_at),
        "registration_id": e.registration_id,
        "lot_id": e.lot_id,
        "change_mg": _mg(e.change_ug),
        "balance_after_mg": _mg(e.balance_after_ug),
        "counted_mg": _mg(e.counted_ug),
        "book_mg": _mg(e.book_ug),
        "by": e.actor_name,
        "patient_id": e.patient_id,
        "session_id": e.session_id,
        "witness_id": e.witness_id,
        "witness2_id": e.witness2_id,
        "reason": e.reason,
        "detail": chain.detail_of(e),
        "corrects_seq": e.corrects_seq,
        "inventory_id": e.inventory_id,
        "entry_hash": e.entry_hash,
    }


def lot_out(r: lots.LotRow) -> dict[str, Any]:
    p = r.product
    return {
        "id": r.lot.id,
        "lot_number": r.lot.lot_number,
        "expires_on": r.lot.expires_on.isoformat(),
        "expired": r.expired,
        "expiring_soon": r.expiring,
        "supplier": r.lot.supplier,
        "registration": {"id": r.registration.id, "dea_number": r.registration.dea_number},
        "product": product_out(p),
        "balance_mg": rules.ug_to_mg(r.lot.balance_ug),
        "balance_ml": rules.ug_to_ml(r.lot.balance_ug, p.strength_mg_per_ml),
    }


def product_out(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "ndc": p.ndc,
        "strength_mg_per_ml": p.strength_mg_per_ml,
        "container_ml": p.container_ml,
        "ingredient": p.ingredient,
        "dosage_form": p.dosage_form,
        "coding_problem": setup.product_coding_problem(p),
        "routes": setup.product_routes(p),
        "compounded": p.compounded,
        "schedule": p.schedule,
        "warning": rules.compounded_warning().text if p.compounded else None,
        "home_use_needs_acknowledgement": rules.requires_home_acknowledgement(p),
    }


def registration_out(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "dea_number": r.dea_number,
        "location_name": r.location_name,
        "address": r.address,
        "state": r.state,
        "expires_on": r.expires_on.isoformat() if r.expires_on else None,
        "active": r.active,
    }


def loss_out(v: losses.LossView) -> dict[str, Any]:
    r = v.report
    return {
        "id": r.id,
        "entry_id": r.entry_id,
        "kind": r.kind,
        "discovered_at": _t(r.discovered_at),
        "amount_mg": rules.ug_to_mg(-v.entry.change_ug),
        "lot_id": v.lot.id,
        "reportable": r.reportable,
        "notice_due_on": r.notice_due_on.isoformat() if r.notice_due_on else None,
        "notice_sent_at": _t(r.notice_sent_at),
        "notice_overdue": v.notice_overdue,
        "form106_due_on": r.form106_due_on.isoformat() if r.form106_due_on else None,
        "form106_filed_at": _t(r.form106_filed_at),
        "form106_overdue": v.form106_overdue,
    }


def investigation_out(v: inventories.InvestigationView) -> dict[str, Any]:
    i = v.investigation
    return {
        "id": i.id,
        "lot_id": i.lot_id,
        "entry_id": i.entry_id,
        "discrepancy_mg": rules.ug_to_mg(i.discrepancy_ug),
        "status": i.status,
        "opened_at": _t(i.opened_at),
        "closed_at": _t(i.closed_at),
        "outcome": i.outcome,
        "notes": [{"at": _t(n.at), "by": n.by_name, "text": n.text} for n in v.notes],
    }


def _settings_out(s: setup.SettingsView) -> dict[str, Any]:
    k = common.knowledge()
    return {
        "retention_years": s.retention_years,
        "retention_basis": s.retention_basis,
        "expiry_warning_days": s.expiry_warning_days,
        "minimum_retention_years": k.retention_min_years,
        "minimum_source": k.retention.sourced.source,
        "minimum_tag": k.retention.sourced.tag,
    }


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str


# --- JSON API ---------------------------------------------------------------------------------


@router.get("/api/v1/ledger/dashboard", tags=["ledger"])
def api_dashboard(db: DbSession, actor: Reader) -> dict[str, Any]:
    d = dashboard.dashboard(db, actor)
    return {
        "today": d.today.isoformat(),
        "stock": [lot_out(r) for r in d.stock],
        "expiring": [lot_out(r) for r in d.expiring],
        "expired_with_stock": [lot_out(r) for r in d.expired_with_stock],
        "open_investigations": [investigation_out(v) for v in d.open_investigations],
        "losses_due": [loss_out(v) for v in d.losses_due],
        "registrations": [
            {
                **registration_out(s.registration),
                "initial_inventory_on": s.initial_on.isoformat() if s.initial_on else None,
                "last_inventory_on": s.last_on.isoformat() if s.last_on else None,
                "biennial_due_on": s.biennial.due_on.isoformat() if s.biennial else None,
                "biennial_status": s.biennial.status if s.biennial else None,
            }
            for s in d.registrations
        ],
        "settings": _settings_out(d.settings),
    }


@router.get("/api/v1/ledger/registrations", tags=["ledger"])
def api_registrations(db: DbSession, actor: Reader) -> list[dict[str, Any]]:
    return [registration_out(r) for r in setup.registrations(db, actor)]


@router.post("/api/v1/ledger/registrations", status_code=201, tags=["ledger"])
def api_create_registration(db: DbSession, actor: Admin, body: RegistrationIn) -> dict[str, Any]:
    return registration_out(setup.create_registration(db, actor, body))


@router.get("/api/v1/ledger/products", tags=["ledger"])
def api_products(db: DbSession, actor: Reader) -> list[dict[str, Any]]:
    return [product_out(p) for p in setup.products(db, actor)]


@router.post("/api/v1/ledger/products", status_code=201, tags=["ledger"])
def api_create_product(db: DbSession, actor: Admin, body: ProductIn) -> dict[str, Any]:
    return product_out(setup.create_product(db, actor, body))


@router.post("/api/v1/ledger/products/{product_id}/coding", tags=["ledger"])
def api_code_product(db: DbSession, actor: Admin, product_id: RowId, body: ProductCodingIn) -> dict[str, Any]:
    """Code a product created before products were coded (its drug and dosage form)."""
    return product_out(setup.code_product(db, actor, product_id, body))


@router.get("/api/v1/ledger/settings", tags=["ledger"])
def api_settings(db: DbSession, actor: Reader) -> dict[str, Any]:
    return _settings_out(setup.settings(db, actor.clinic_id))


@router.put("/api/v1/ledger/settings", tags=["ledger"])
def api_save_settings(db: DbSession, actor: AdminSensitive, body: SettingsIn) -> dict[str, Any]:
    return _settings_out(setup.save_settings(db, actor, body))


@router.get("/api/v1/ledger/lots", tags=["ledger"])
def api_lots(
    db: DbSession,
    actor: Reader,
    available: Annotated[bool, Query()] = False,
    drug: Annotated[Ingredient | None, Query()] = None,
    route: Annotated[str | None, Query(min_length=1, max_length=30)] = None,
) -> list[dict[str, Any]]:
    """All lots, or with ``available=true`` those with stock that are not expired; with ``drug``
    and ``route`` (both), only the lots whose product fits them (what a lot picker offers)."""
    if (drug is None) != (route is None):
        raise InvalidInput(errors={"route": "Give both drug and route, or neither."})
    rows = lots.lots(db, actor, in_stock=available)
    return [
        lot_out(r)
        for r in rows
        if not (available and r.expired)
        and (drug is None or route is None or setup.product_fit_problem(r.product, drug.value, route) is None)
    ]


@router.get("/api/v1/ledger/lots/{lot_id}", tags=["ledger"])
def api_lot(db: DbSession, actor: Reader, lot_id: RowId) -> dict[str, Any]:
    d = lots.lot_detail(db, actor, lot_id)
    return {**lot_out(d.row), "entries": [entry_out(e) for e in d.entries]}


@router.post("/api/v1/ledger/receipts", status_code=201, tags=["ledger"])
def api_receipt(db: DbSession, actor: Writer, body: ReceiptIn) -> dict[str, Any]:
    return entry_out(movements.record_receipt(db, actor, body))


@router.post("/api/v1/ledger/lots/{lot_id}/waste", status_code=201, tags=["ledger"])
def api_waste(
    db: DbSession, settings: SettingsDep, actor: WriterSensitive, lot_id: RowId, body: WasteIn
) -> dict[str, Any]:
    limits = common.attempt_limits(settings)
    return entry_out(movements.record_waste_in(db, actor, lot_id, body, limits))


@router.post("/api/v1/ledger/lots/{lot_id}/destructions", status_code=201, tags=["ledger"])
def api_destruction(
    db: DbSession, settings: SettingsDep, actor: WriterSensitive, lot_id: RowId, body: DestructionIn
) -> dict[str, Any]:
    limits = common.attempt_limits(settings)
    return entry_out(movements.record_destruction(db, actor, lot_id, body, limits=limits))


@router.post("/api/v1/ledger/lots/{lot_id}/adjustments", status_code=201, tags=["ledger"])
def api_adjustment(db: DbSession, actor: AdminSensitive, lot_id: RowId, body: AdjustmentIn) -> dict[str, Any]:
    return entry_out(movements.record_adjustment(db, actor, lot_id, body))


@router.post("/api/v1/ledger/lots/{lot_id}/transfers", status_code=201, tags=["ledger"])
def api_transfer(db: DbSession, actor: AdminSensitive, lot_id: RowId, body: TransferIn) -> dict[str, Any]:
    return entry_out(movements.record_transfer(db, actor, lot_id, body))


@router.post("/api/v1/ledger/lots/{lot_id}/returns", status_code=201, tags=["ledger"])
def api_return(db: DbSession, actor: AdminSensitive, lot_id: RowId, body: ReturnIn) -> dict[str, Any]:
    return entry_out(movements.record_return(db, actor, lot_id, body))


@router.post("/api/v1/ledger/lots/{lot_id}/theft-loss", status_code=201, tags=["ledger"])
def api_theft_loss(db: DbSession, actor: AdminSensitive, lot_id: RowId, body: TheftLossIn) -> dict[str, Any]:
    report = movements.record_theft_loss(db, actor, lot_id, body)
    return next(loss_out(v) for v in losses.loss_reports(db, actor) if v.report.id == report.id)


@router.post("/api/v1/ledger/inventories/initial", status_code=201, tags=["ledger"])
def api_initial_inventory(db: DbSession, actor: Writer, body: InitialInventoryIn) -> dict[str, Any]:
    inventory = inventories.take_initial_inventory(db, actor, body)
    return {"id": inventory.id, "kind": inventory.kind, "taken_at": _t(inventory.taken_at)}


@router.post("/api/v1/ledger/inventories/biennial", status_code=201, tags=["ledger"])
def api_biennial_inventory(db: DbSession, actor: Writer, body: BiennialInventoryIn) -> dict[str, Any]:
    inventory = inventories.take_biennial_inventory(db, actor, body)
    opened = [
        investigation_out(v)
        for v in inventories.investigations(db, actor, open_only=True)
        if v.entry.inventory_id == inventory.id
    ]
    return {
        "id": inventory.id,
        "kind": inventory.kind,
        "taken_at": _t(inventory.taken_at),
        "investigations": opened,
    }


@router.get("/api/v1/ledger/investigations", tags=["ledger"])
def api_investigations(
    db: DbSession, actor: Reader, open_only: Annotated[bool, Query()] = False
) -> list[dict[str, Any]]:
    return [investigation_out(v) for v in inventories.investigations(db, actor, open_only=open_only)]


@router.post("/api/v1/ledger/investigations/{investigation_id}/notes", status_code=201, tags=["ledger"])
def api_investigation_note(
    db: DbSession, actor: Writer, investigation_id: RowId, body: NoteIn
) -> dict[str, Any]:
    note = inventories.add_investigation_note(db, actor, investigation_id, body)
    return {"id": note.id, "at": _t(note.at), "by": note.by_name, "text": note.text}


@router.post("/api/v1/ledger/investigations/{investigation_id}/close", tags=["ledger"])
def api_investigation_close(
    db: DbSession, actor: Admin, investigation_id: RowId, body: CloseIn
) -> dict[str, Any]:
    inventories.close_investigation(db, actor, investigation_id, body)
    return next(
        investigation_out(v)
        for v in inventories.investigations(db, actor)
        if v.investigation.id == investigation_id
    )


@router.get("/api/v1/ledger/losses", tags=["ledger"])
def api_losses(db: DbSession, actor: Reader) -> list[dict[str, Any]]:
    return [loss_out(v) for v in losses.loss_reports(db, actor)]


def _loss_result(db: DbSession, actor: Principal, row: LossReport) -> dict[str, Any]:
    return next(loss_out(v) for v in losses.loss_reports(db, actor) if v.report.id == row.id)


@router.post("/api/v1/ledger/losses/{report_id}/notice", tags=["ledger"])
def api_loss_notice(db: DbSession, actor: Admin, report_id: RowId, body: NoticeIn) -> dict[str, Any]:
    return _loss_result(db, actor, losses.mark_notice_sent(db, actor, report_id, body))


@router.post("/api/v1/ledger/losses/{report_id}/form106", tags=["ledger"])
def api_loss_form106(db: DbSession, actor: Admin, report_id: RowId, body: Form106In) -> dict[str, Any]:
    return _loss_result(db, actor, losses.mark_form106_filed(db, actor, report_id, body))


@router.get("/api/v1/ledger/entries", tags=["ledger"])
def api_entries(
    db: DbSession,
    actor: Reader,
    date_from: Annotated[ReasonableDate | None, Query()] = None,
    date_to: Annotated[ReasonableDate | None, Query()] = None,
    lot_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> list[dict[str, Any]]:
    """Every entry in chain order, with its hash: what an inspector's tool re-checks."""
    flt = reports.ReportFilter(date_from, date_to, lot_id)
    return [entry_out(e) for e in reports.entry_list(db, actor, flt)]


@router.post("/api/v1/ledger/verify", tags=["ledger"])
def api_verify(db: DbSession, actor: Reader) -> VerifyOut:
    r = verification.verify(db, actor)
    return VerifyOut(ok=r.ok, checked=r.checked, first_bad_seq=r.first_bad_seq, problem=r.problem)
