"""Controlled-substance ledger pages: the stock and compliance dashboard, set-up, receipts, each
lot's running balance and its movements (waste, transfer, return, destruction, theft or loss,
adjustment), inventories, investigations, and theft and loss reporting. The reports for inspection
and the chain check are in ``report_routes.py``.

Waste, destruction and adjustments re-authenticate the person (``sensitive=True``); witnesses
confirm with their own password on the same form."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.ledger import (
    common,
    dashboard,
    inventories,
    losses,
    lots,
    movements,
    reports,
    rules,
    setup,
)
from ketacare.ledger.access import Admin, AdminSensitive, Reader, Writer, WriterSensitive
from ketacare.ledger.models import LedgerEntry
from ketacare.ledger.rules import EntryKind
from ketacare.ledger.schemas import (
    AdjustmentIn,
    BiennialInventoryIn,
    CloseIn,
    DestructionIn,
    DosageForm,
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
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, SettingsDep
from ketacare.web.forms import FormData, FormLists
from ketacare.web.templating import render

router = APIRouter()
T = TypeVar("T")

REPORTS = {
    "balances": "Running balance per lot",
    "dispensing": "Dispensing log per patient",
    "inventory": "Inventories and discrepancies",
    "destructions": "Destructions (DEA Form 41)",
    "losses": "Thefts and losses (DEA Form 106)",
}


# --- pages: helpers ---------------------------------------------------------------------------


def _zone(db: DbSession, actor: Principal) -> zoneinfo.ZoneInfo:
    return clinic_time.zone(db, actor.clinic_id)


def _local(value: str | None, zone: zoneinfo.ZoneInfo, name: str) -> str | None:
    """A ``datetime-local`` form value is clinic time; the schemas want an aware ISO time."""
    if not value or not value.strip():
        return None
    try:
        naive = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(errors={name: "Use a date and time like 2026-11-22T14:30."}) from exc
    return (naive if naive.tzinfo else naive.replace(tzinfo=zone)).isoformat()


def _with_local_times(form: dict[str, str], zone: zoneinfo.ZoneInfo, *names: str) -> dict[str, str | None]:
    data: dict[str, str | None] = dict(form)
    for name in names:
        data[name] = _local(form.get(name), zone, name)
    return data


def _common(actor: Principal) -> dict[str, Any]:
    held = common.permissions(actor)
    return {
        "facts": dashboard.facts_for_pages(),
        "can_write": Permission.ledger_write in held,
        "can_admin": Permission.ledger_admin in held,
        "fmt_mg": rules.fmt_mg,
        "fmt_ml": rules.fmt_ml,
        "kind_labels": {k.value: k.label for k in EntryKind},
        "reports": REPORTS,
    }


def _try(
    action: Callable[[], T],
    on_error: Callable[[InvalidInput], Response],
    done: str | Callable[[T], str],
    db: DbSession,
    actor: Principal,
) -> Response:
    """Run a form's use-case; on bad input show the page again with the errors (nothing saved)."""
    try:
        result = action()
    except InvalidInput as exc:
        common.record_refusal(db, actor, exc)
        return on_error(exc)
    return RedirectResponse(done if isinstance(done, str) else done(result), status_code=303)


# --- pages: dashboard, set-up, products -------------------------------------------------------


@router.get("/ledger", include_in_schema=False)
def dashboard_page(request: Request, db: DbSession, actor: Reader) -> Response:
    return render(
        request,
        "ledger_dashboard.html",
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "d": dashboard.dashboard(db, actor),
            "saved": request.query_params.get("saved"),
        },
    )


def _setup(
    request: Request,
    db: DbSession,
    actor: Principal,
    *,
    section: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "ledger_setup.html",
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "registrations": setup.registrations(db, actor),
            "products": setup.products(db, actor),
            "settings": setup.settings(db, actor.clinic_id),
            "retention": dashboard.retention(db, actor),
            "dosage_forms": [(f.value, f.value) for f in DosageForm],
            "ingredients": [(i.value, i.value) for i in Ingredient],
            "section": section,
            "errors": errors or {},
            "values": values or {},
            "saved": request.query_params.get("saved"),
        },
        status,
    )


@router.get("/ledger/setup", include_in_schema=False)
def setup_page(request: Request, db: DbSession, actor: Reader) -> Response:
    return _setup(request, db, actor)


@router.post("/ledger/registrations", include_in_schema=False)
def registration_page(request: Request, db: DbSession, actor: Admin, form: FormData) -> Response:
    return _try(
        lambda: setup.create_registration(db, actor, parse(RegistrationIn, form)),
        lambda exc: _setup(
            request, db, actor, section="registration", errors=exc.errors, values=form, status=422
        ),
        "/ledger/setup?saved=registration#registrations",
        db,
        actor,
    )


@router.post("/ledger/products", include_in_schema=False)
def product_create_page(request: Request, db: DbSession, actor: Admin, form: FormData) -> Response:
    data = {**form, "compounded": form.get("compounded") in ("on", "true", "1")}
    return _try(
        lambda: setup.create_product(db, actor, parse(ProductIn, data)),
        lambda exc: _setup(request, db, actor, section="product", errors=exc.errors, values=form, status=422),
        "/ledger/setup?saved=product#products",
        db,
        actor,
    )


@router.post("/ledger/settings", include_in_schema=False)
def settings_page(request: Request, db: DbSession, actor: AdminSensitive, form: FormData) -> Response:
    return _try(
        lambda: setup.save_settings(db, actor, parse(SettingsIn, form)),
        lambda exc: _setup(
            request, db, actor, section="settings", errors=exc.errors, values=form, status=422
        ),
        "/ledger/setup?saved=settings#settings",
        db,
        actor,
    )


def _product(
    request: Request,
    db: DbSession,
    actor: Principal,
    product_id: int,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    prod = setup.product(db, actor, product_id)
    return render(
        request,
        "ledger_product.html",
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "p": prod,
            "lots": [r for r in lots.lots(db, actor) if r.product.id == prod.id],
            "home_ack": rules.requires_home_acknowledgement(prod),
            "coding_problem": setup.product_coding_problem(prod),
            "form_routes": setup.form_routes(prod),
            "dosage_forms": [(f.value, f.value) for f in DosageForm],
            "ingredients": [(i.value, i.value) for i in Ingredient],
            "errors": errors or {},
            "values": values or {},
            "saved": request.query_params.get("saved"),
        },
        status,
    )


@router.get("/ledger/products/{product_id}", include_in_schema=False)
def product_page(request: Request, db: DbSession, actor: Reader, product_id: RowId) -> Response:
    return _product(request, db, actor, product_id)


@router.post("/ledger/products/{product_id}/coding", include_in_schema=False)
def product_coding_page(
    request: Request, db: DbSession, actor: Admin, product_id: RowId, form: FormData
) -> Response:
    return _try(
        lambda: setup.code_product(db, actor, product_id, parse(ProductCodingIn, form)),
        lambda exc: _product(request, db, actor, product_id, errors=exc.errors, values=form, status=422),
        f"/ledger/products/{product_id}?saved=coding",
        db,
        actor,
    )


# --- pages: receipts --------------------------------------------------------------------------


def _receive(
    request: Request,
    db: DbSession,
    actor: Principal,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    prods = [p for p in setup.products(db, actor) if p.active]
    return render(
        request,
        "ledger_receive.html",
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "registrations": setup.registrations(db, actor, active_only=True),
            "products": prods,
            "product_options": [(str(p.id), setup.product_label(p)) for p in prods],
            "compounded_products": [p for p in prods if p.compounded],
            "errors": errors or {},
            "values": values or {},
        },
        status,
    )


@router.get("/ledger/receive", include_in_schema=False)
def receive_page(request: Request, db: DbSession, actor: Writer) -> Response:
    return _receive(request, db, actor)


@router.post("/ledger/receive", include_in_schema=False)
def receive_submit(request: Request, db: DbSession, actor: Writer, form: FormData) -> Response:
    def act() -> LedgerEntry:
        data = _with_local_times(form, _zone(db, actor), "received_at")
        return movements.record_receipt(db, actor, parse(ReceiptIn, data))

    return _try(
        act,
        lambda exc: _receive(request, db, actor, exc.errors, form, 422),
        lambda entry: f"/ledger/lots/{entry.lot_id}?saved=receipt#entries",
        db,
        actor,
    )


# --- pages: a lot and its movements -----------------------------------------------------------


def _lot_page(
    request: Request,
    db: DbSession,
    actor: Principal,
    lot_id: int,
    *,
    section: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    d = lots.lot_detail(db, actor, lot_id)
    held = common.permissions(actor)
    witnesses: list[movements.WitnessOption] = []
    employees: list[movements.WitnessOption] = []
    if Permission.ledger_write in held:
        witnesses = movements.witness_options(db, actor, roles=rules.WASTE_WITNESS_ROLES)
        employees = movements.witness_options(db, actor, roles=rules.EMPLOYEE_ROLES, include_self=True)
    return render(
        request,
        "ledger_lot.html",
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "d": d,
            "lines": [reports.EntryLine(e, d.row.product) for e in d.entries],
            "witness_options": [(str(w.user_id), w.name) for w in witnesses],
            "employee_options": [(str(w.user_id), w.name) for w in employees],
            "other_registrations": [
                (str(r.id), f"{r.location_name} ({r.dea_number})")
                for r in setup.registrations(db, actor, active_only=True)
                if r.id != d.row.registration.id
            ],
            "section": section,
            "errors": errors or {},
            "values": {k: v for k, v in (values or {}).items() if "password" not in k},
            "saved": request.query_params.get("saved"),
        },
        status,
    )


@router.get("/ledger/lots/{lot_id}", include_in_schema=False)
def lot_page(request: Request, db: DbSession, actor: Reader, lot_id: RowId) -> Response:
    return _lot_page(request, db, actor, lot_id)


def _lot_action(
    request: Request,
    db: DbSession,
    actor: Principal,
    lot_id: int,
    section: str,
    form: dict[str, str],
    action: Callable[[], object],
) -> Response:
    return _try(
        action,
        lambda exc: _lot_page(
            request, db, actor, lot_id, section=section, errors=exc.errors, values=form, status=422
        ),
        f"/ledger/lots/{lot_id}?saved={section}#entries",
        db,
        actor,
    )


@router.post("/ledger/lots/{lot_id}/waste", include_in_schema=False)
def waste_page(
    request: Request,
    db: DbSession,
    settings: SettingsDep,
    actor: WriterSensitive,
    lot_id: RowId,
    form: FormData,
) -> Response:
    def act() -> None:
        data = _with_local_times(form, _zone(db, actor), "occurred_at")
        movements.record_waste_in(db, actor, lot_id, parse(WasteIn, data), common.attempt_limits(settings))

    return _lot_action(request, db, actor, lot_id, "waste", form, act)


@router.post("/ledger/lots/{lot_id}/destruction", include_in_schema=False)
def destruction_page(
    request: Request,
    db: DbSession,
    settings: SettingsDep,
    actor: WriterSensitive,
    lot_id: RowId,
    form: FormData,
) -> Response:
    def act() -> None:
        data = _with_local_times(form, _zone(db, actor), "occurred_at")
        limits = common.attempt_limits(settings)
        movements.record_destruction(db, actor, lot_id, parse(DestructionIn, data), limits=limits)

    return _lot_action(request, db, actor, lot_id, "destruction", form, act)


@router.post("/ledger/lots/{lot_id}/adjustment", include_in_schema=False)
def adjustment_page(
    request: Request, db: DbSession, actor: AdminSensitive, lot_id: RowId, form: FormData
) -> Response:
    def act() -> None:
        data = _with_local_times(form, _zone(db, actor), "occurred_at")
        movements.record_adjustment(db, actor, lot_id, parse(AdjustmentIn, data))

    return _lot_action(request, db, actor, lot_id, "adjustment", form, act)


@router.post("/ledger/lots/{lot_id}/transfer", include_in_schema=False)
def transfer_page(
    request: Request, db: DbSession, actor: AdminSensitive, lot_id: RowId, form: FormData
) -> Response:
    def act() -> None:
        data = _with_local_times(form, _zone(db, actor), "occurred_at")
        movements.record_transfer(db, actor, lot_id, parse(TransferIn, data))

    return _lot_action(request, db, actor, lot_id, "transfer", form, act)


@router.post("/ledger/lots/{lot_id}/return", include_in_schema=False)
def return_page(
    request: Request, db: DbSession, actor: AdminSensitive, lot_id: RowId, form: FormData
) -> Response:
    def act() -> None:
        data = _with_local_times(form, _zone(db, actor), "occurred_at")
        movements.record_return(db, actor, lot_id, parse(ReturnIn, data))

    return _lot_action(request, db, actor, lot_id, "return", form, act)


@router.post("/ledger/lots/{lot_id}/theft-loss", include_in_schema=False)
def theft_loss_page(
    request: Request, db: DbSession, actor: AdminSensitive, lot_id: RowId, form: FormData
) -> Response:
    def act() -> None:
        data: dict[str, Any] = _with_local_times(form, _zone(db, actor), "discovered_at")
        data["significant"] = form.get("significant") in ("on", "true", "1")
        movements.record_theft_loss(db, actor, lot_id, parse(TheftLossIn, data))

    return _lot_action(request, db, actor, lot_id, "theft-loss", form, act)


# --- pages: inventories -----------------------------------------------------------------------


def _inventory(
    request: Request,
    db: DbSession,
    actor: Principal,
    registration_id: int | None,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    regs = setup.registrations(db, actor, active_only=True)
    reg = next((r for r in regs if r.id == registration_id), regs[0] if regs else None)
    statuses = {s.registration.id: s for s in dashboard.dashboard(db, actor).registrations}
    prods = [p for p in setup.products(db, actor) if p.active]
    return render(
        request,
        "ledger_inventory.html",
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "registrations": regs,
            "reg": reg,
            "status": statuses.get(reg.id) if reg else None,
            "lots": [r for r in lots.lots(db, actor) if reg and r.registration.id == reg.id],
            "product_options": [(str(p.id), setup.product_label(p)) for p in prods],
            "opening_rows": range(6),
            "errors": errors or {},
            "values": values or {},
        },
        status,
    )


@router.get("/ledger/inventory", include_in_schema=False)
def inventory_page(
    request: Request,
    db: DbSession,
    actor: Writer,
    registration_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> Response:
    return _inventory(request, db, actor, registration_id)


def _number(value: str | None, name: str, errors: dict[str, str]) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        errors[name] = "Enter a number."
        return None


def _form_rows(errors: dict[str, str], rows: list[int]) -> dict[str, str]:
    renamed = {}
    for key, message in errors.items():
        parts = key.split(".")
        if len(parts) >= 3 and parts[0] == "lines" and parts[1].isdigit() and int(parts[1]) < len(rows):
            parts[1] = str(rows[int(parts[1])])
        renamed[".".join(parts)] = message
    return renamed


@router.post("/ledger/inventory/initial", include_in_schema=False)
def initial_inventory_page(request: Request, db: DbSession, actor: Writer, form: FormLists) -> Response:
    flat = {k: v[-1] for k, v in form.items() if v}
    registration_id = int(flat["registration_id"]) if flat.get("registration_id", "").isdigit() else None

    def act() -> None:
        lines = []
        fields = ("product_id", "lot_number", "expires_on", "supplier", "counted", "unit", "method")
        rows = zip(*(form.get(name, []) for name in fields), strict=False)
        for n, row in enumerate(rows):
            line = dict(zip(fields, row, strict=True))
            if not any(line[k].strip() for k in ("product_id", "lot_number", "counted")):
                continue
            lines.append({**line, "_row": n})
        if not lines and flat.get("zero") != "on":
            raise InvalidInput(
                errors={"lines": "List each lot on hand, or tick 'nothing on hand' for a zero inventory."}
            )
        data = {
            "registration_id": flat.get("registration_id"),
            "taken_at": _local(flat.get("taken_at"), _zone(db, actor), "taken_at"),
            "note": flat.get("note", ""),
            "lines": [{k: v for k, v in line.items() if k != "_row"} for line in lines],
        }
        try:
            inventories.take_initial_inventory(db, actor, parse(InitialInventoryIn, data))
        except InvalidInput as exc:  # name the form's rows, not the positions of the filled ones
            raise InvalidInput(
                errors=_form_rows(exc.errors, [int(line["_row"]) for line in lines]), audit=exc.audit
            ) from exc

    return _try(
        act,
        lambda exc: _inventory(
            request, db, actor, registration_id, errors=exc.errors, values=flat, status=422
        ),
        "/ledger?saved=inventory",
        db,
        actor,
    )


@router.post("/ledger/inventory/biennial", include_in_schema=False)
def biennial_inventory_page(request: Request, db: DbSession, actor: Writer, form: FormData) -> Response:
    registration_id = int(form["registration_id"]) if form.get("registration_id", "").isdigit() else None

    def act() -> None:
        errors: dict[str, str] = {}
        lines = []
        for key, value in form.items():
            if not key.startswith("counted_"):
                continue
            lot_id = key.removeprefix("counted_")
            counted = _number(value, key, errors)
            if counted is None:
                errors.setdefault(key, "Enter the amount counted (0 if none).")
                continue
            lines.append(
                {
                    "lot_id": lot_id,
                    "counted": counted,
                    "unit": form.get(f"unit_{lot_id}", "mg"),
                    "method": form.get(f"method_{lot_id}", "exact"),
                }
            )
        if errors:
            raise InvalidInput(errors=errors)
        data = {
            "registration_id": form.get("registration_id"),
            "taken_at": _local(form.get("taken_at"), _zone(db, actor), "taken_at"),
            "note": form.get("note", ""),
            "lines": lines,
        }
        inventories.take_biennial_inventory(db, actor, parse(BiennialInventoryIn, data))

    return _try(
        act,
        lambda exc: _inventory(
            request, db, actor, registration_id, errors=exc.errors, values=form, status=422
        ),
        "/ledger/investigations?saved=inventory",
        db,
        actor,
    )


# --- pages: investigations and losses ---------------------------------------------------------


def _listing(
    request: Request,
    db: DbSession,
    actor: Principal,
    template: str,
    items: object,
    *,
    errors: dict[str, str] | None = None,
    target: int | None = None,
    status: int = 200,
) -> Response:
    """The investigations and the theft/loss pages: a list, one item's form possibly in error."""
    return render(
        request,
        template,
        {
            **_common(actor),
            **clinic_time.clock(_zone(db, actor)),
            "items": items,
            "errors": errors or {},
            "target": target,
            "saved": request.query_params.get("saved"),
        },
        status,
    )


def _investigations(request: Request, db: DbSession, actor: Principal, **kw: Any) -> Response:
    return _listing(
        request, db, actor, "ledger_investigations.html", inventories.investigations(db, actor), **kw
    )


@router.get("/ledger/investigations", include_in_schema=False)
def investigations_page(request: Request, db: DbSession, actor: Reader) -> Response:
    return _investigations(request, db, actor)


@router.post("/ledger/investigations/{investigation_id}/notes", include_in_schema=False)
def investigation_note_page(
    request: Request, db: DbSession, actor: Writer, investigation_id: RowId, form: FormData
) -> Response:
    return _try(
        lambda: inventories.add_investigation_note(db, actor, investigation_id, parse(NoteIn, form)),
        lambda exc: _investigations(
            request, db, actor, errors=exc.errors, target=investigation_id, status=422
        ),
        f"/ledger/investigations?saved=note#inv-{investigation_id}",
        db,
        actor,
    )


@router.post("/ledger/investigations/{investigation_id}/close", include_in_schema=False)
def investigation_close_page(
    request: Request, db: DbSession, actor: Admin, investigation_id: RowId, form: FormData
) -> Response:
    return _try(
        lambda: inventories.close_investigation(db, actor, investigation_id, parse(CloseIn, form)),
        lambda exc: _investigations(
            request, db, actor, errors=exc.errors, target=investigation_id, status=422
        ),
        f"/ledger/investigations?saved=closed#inv-{investigation_id}",
        db,
        actor,
    )


def _losses(request: Request, db: DbSession, actor: Principal, **kw: Any) -> Response:
    return _listing(request, db, actor, "ledger_losses.html", losses.loss_reports(db, actor), **kw)


@router.get("/ledger/losses", include_in_schema=False)
def losses_page(request: Request, db: DbSession, actor: Reader) -> Response:
    return _losses(request, db, actor)


@router.post("/ledger/losses/{report_id}/notice", include_in_schema=False)
def loss_notice_page(
    request: Request, db: DbSession, actor: Admin, report_id: RowId, form: FormData
) -> Response:
    def act() -> None:
        data = _with_local_times(form, _zone(db, actor), "sent_at")
        losses.mark_notice_sent(db, actor, report_id, parse(NoticeIn, data))

    return _try(
        act,
        lambda exc: _losses(request, db, actor, errors=exc.errors, target=report_id, status=422),
        f"/ledger/losses?saved=notice#loss-{report_id}",
        db,
        actor,
    )


@router.post("/ledger/losses/{report_id}/form106", include_in_schema=False)
def loss_form106_page(
    request: Request, db: DbSession, actor: Admin, report_id: RowId, form: FormData
) -> Response:
    def act() -> None:
        data = _with_local_times(form, _zone(db, actor), "filed_at")
        losses.mark_form106_filed(db, actor, report_id, parse(Form106In, data))

    return _try(
        act,
        lambda exc: _losses(request, db, actor, errors=exc.errors, target=report_id, status=422),
        f"/ledger/losses?saved=form106#loss-{report_id}",
        db,
        actor,
    )
