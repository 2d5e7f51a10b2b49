"""Controlled-substance ledger use-cases: set-up (registrations, products, settings), every
movement of stock (receipt, administration, waste, transfer, return, destruction, theft or loss,
adjustment), inventories with their investigations, theft and loss reporting, the dashboard and
the chain check. Reports for inspection are in ``reports.py``; the chain itself in ``chain.py``.

Each function runs in the caller's transaction and never commits. A movement is written inside
a savepoint, so a refusal leaves nothing behind even when the caller goes on. Locks are taken in
one order, always: the audit chain's head, then the clinic's ledger head, then lot rows. The
lot's balance changes only by a conditional UPDATE (``WHERE balance_ug >= :amount``) after the
ledger head is held; with ``CHECK (balance_ug >= 0)`` two people can never both draw the last
of a lot, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare import clinic_time, integrity
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth import throttle
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.config import Settings
from ketacare.db import lock_keys, utcnow
from ketacare.errors import Conflict, Forbidden, InvalidInput, NotFound, PendingAudit
from ketacare.knowledge import products as products_knowledge
from ketacare.knowledge.ledger import Fact, LedgerRules, ledger_rules
from ketacare.ledger import chain, rules
from ketacare.ledger.models import (
    Inventory,
    Investigation,
    InvestigationNote,
    LedgerEntry,
    LedgerHead,
    LedgerSettings,
    LossReport,
    Lot,
    Product,
    Registration,
)
from ketacare.ledger.rules import EntryKind
from ketacare.ledger.schemas import (
    AdjustmentIn,
    BiennialInventoryIn,
    CloseIn,
    DestructionIn,
    Form106In,
    InitialInventoryIn,
    NoteIn,
    NoticeIn,
    PackageState,
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
from ketacare.patients import service as patients

# The home-use rule and the FDA warning, for the prescribing feature and the pages.
requires_home_acknowledgement = rules.requires_home_acknowledgement
compounded_warning = rules.compounded_warning
home_acknowledgement = rules.home_acknowledgement

FUTURE_SLACK = dt.timedelta(minutes=1)


def knowledge() -> LedgerRules:
    return ledger_rules()


# --- access and time --------------------------------------------------------------------------


def permissions(actor: Principal) -> frozenset[Permission]:
    return auth.permissions_of(actor)


def now() -> dt.datetime:
    return utcnow()


def attempt_limits(settings: Settings) -> throttle.Limits:
    """The password-attempt limits a witness's password is checked under."""
    return auth.attempt_limits(settings)


def clinic_name(db: Session, clinic_id: int) -> str:
    return auth.clinic(db, clinic_id).name


def record_refusal(db: Session, actor: Principal, exc: InvalidInput) -> None:
    """A form shown again with its errors commits the request: write the audit entries the
    refusal carries (a witness password that did not match) as the error handler would."""
    for item in exc.audit:
        audit.record(
            db,
            actor,
            item.action,
            item.resource_type,
            resource_id=item.resource_id,
            patient_id=item.patient_id,
            outcome=item.outcome,
            detail=item.detail,
        )


def check_permission(actor: Principal, permission: Permission) -> None:
    if permission not in auth.permissions_of(actor):
        raise Forbidden(
            "Your role does not allow this.",
            audit=[PendingAudit("access.denied", "ledger", None, detail=f"needs {permission.value}")],
        )


# (design) A floor for back-dated entries: a typo like year 0001 would otherwise sit forever in an
# append-only table and break every page that converts it to clinic time.
EARLIEST_EVENT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _when(value: dt.datetime | None, field_name: str, now: dt.datetime) -> dt.datetime:
    """The actual time of the event (21 CFR 1304.21: the actual date), never in the future."""
    if value is None:
        return now
    if value > now + FUTURE_SLACK:
        raise InvalidInput(errors={field_name: "This cannot be in the future."})
    if value < EARLIEST_EVENT:
        raise InvalidInput(errors={field_name: "This is before any record KetaCare can hold (2000)."})
    return value.astimezone(dt.UTC)


def _person(db: Session, actor: Principal) -> str:
    if actor.user_id is None:
        raise Forbidden("Ledger entries are made by a person, not an API token.")
    user = auth.staff_user(db, actor, actor.user_id)
    return f"{user.full_name} ({user.username})"


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingsView:
    retention_years: int
    retention_basis: str
    expiry_warning_days: int
    saved: bool


def settings(db: Session, clinic_id: int) -> SettingsView:
    row = db.get(LedgerSettings, clinic_id)
    if row is None:
        k = ledger_rules()
        return SettingsView(k.retention_min_years, "", k.expiry_warning_days, False)
    return SettingsView(row.retention_years, row.retention_basis, row.expiry_warning_days, True)


def save_settings(db: Session, actor: Principal, data: SettingsIn) -> SettingsView:
    check_permission(actor, Permission.ledger_admin)
    row = db.get(LedgerSettings, actor.clinic_id)
    if row is None:
        row = LedgerSettings(clinic_id=actor.clinic_id)
        db.add(row)
    old = f"{row.retention_years} years" if row.retention_years else "default"
    row.retention_years = data.retention_years
    row.retention_basis = data.retention_basis or ""
    row.expiry_warning_days = data.expiry_warning_days
    row.updated_at = utcnow()
    row.updated_by_id = actor.user_id
    db.flush()
    audit.record(
        db,
        actor,
        "ledger.settings",
        "ledger_settings",
        resource_id=actor.clinic_id,
        detail=f"retention {old} -> {data.retention_years} years; "
        f"expiry warning {data.expiry_warning_days} days",
    )
    return settings(db, actor.clinic_id)


# --- registrations and products ---------------------------------------------------------------


def registrations(db: Session, actor: Principal, *, active_only: bool = False) -> list[Registration]:
    check_permission(actor, Permission.ledger_read)
    query = select(Registration).where(Registration.clinic_id == actor.clinic_id)
    if active_only:
        query = query.where(Registration.active.is_(True))
    return list(db.execute(query.order_by(Registration.location_name, Registration.id)).scalars())


def registration(db: Session, actor: Principal, registration_id: int) -> Registration:
    row = db.get(Registration, registration_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise InvalidInput(errors={"registration_id": "No such registration in your clinic."})
    return row


def create_registration(db: Session, actor: Principal, data: RegistrationIn) -> Registration:
    check_permission(actor, Permission.ledger_admin)
    exists = db.execute(
        select(Registration.id).where(
            Registration.clinic_id == actor.clinic_id, Registration.dea_number == data.dea_number
        )
    ).first()
    if exists:
        raise InvalidInput(errors={"dea_number": "This registration is already recorded."})
    row = Registration(
        clinic_id=actor.clinic_id,
        dea_number=data.dea_number,
        location_name=data.location_name,
        address=data.address,
        state=data.state,
        expires_on=data.expires_on,
        active=True,
        created_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "ledger.registration.create",
        "ledger_registration",
        resource_id=row.id,
        detail=f"{row.dea_number} {row.location_name}",
    )
    return row


def products(db: Session, actor: Principal) -> list[Product]:
    check_permission(actor, Permission.ledger_read)
    query = select(Product).where(Product.clinic_id == actor.clinic_id)
    return list(db.execute(query.order_by(Product.name, Product.id)).scalars())


def product(db: Session, actor: Principal, product_id: int) -> Product:
    check_permission(actor, Permission.ledger_read)
    row = db.get(Product, product_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("No such product in your clinic.")
    return row


def create_product(db: Session, actor: Principal, data: ProductIn) -> Product:
    check_permission(actor, Permission.ledger_admin)
    row = Product(
        clinic_id=actor.clinic_id,
        name=data.name,
        ndc=data.ndc,
        strength_mg_per_ml=data.strength_mg_per_ml,
        container_ml=data.container_ml,
        ingredient=data.ingredient.value,
        dosage_form=data.dosage_form.value,
        compounded=data.compounded,
        schedule=ledger_rules().schedule,
        active=True,
        created_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "ledger.product.create",
        "ledger_product",
        resource_id=row.id,
        detail=f"{row.name} {row.strength_mg_per_ml:g} mg/mL x {row.container_ml:g} mL "
        f"{row.ingredient} {row.dosage_form}" + (" compounded" if row.compounded else f" NDC {row.ndc}"),
    )
    return row


def product_coding_problem(p: Product) -> str | None:
    """Why a product cannot be drawn for any administration until an admin codes it, or None."""
    return products_knowledge.coding_problem(p.ingredient, p.dosage_form)


def product_fit_problem(p: Product, drug: str, route: str) -> str | None:
    """Why a product cannot be given as ``drug`` by ``route`` (knowledge: products), or None."""
    return products_knowledge.fit_problem(p.ingredient, p.dosage_form, drug, route)


def product_routes(p: Product) -> list[str]:
    """The routes a product's coded dosage form may be given by (empty when not coded)."""
    form = products_knowledge.dosage_forms().get(p.dosage_form)
    return list(form.routes) if form is not None and product_coding_problem(p) is None else []


def form_routes(p: Product) -> str:
    """The routes a product's dosage form may be given by, with the source (knowledge: products)."""
    form = products_knowledge.dosage_forms().get(p.dosage_form)
    if form is None:
        return "unknown: the dosage form is not coded"
    routes = ", ".join(products_knowledge.route_label(r) for r in form.routes)
    return f"{routes} ({form.sourced.source} [{form.sourced.tag}])"


def code_product(db: Session, actor: Principal, product_id: int, data: ProductCodingIn) -> Product:
    """An admin codes a product created before products were coded (its drug unknown, or its
    dosage form not one of the coded forms). A coded product is never re-coded: a nasal spray
    does not become an injection by an edit; a wrong product is retired and a new one created."""
    check_permission(actor, Permission.ledger_admin)
    row = product(db, actor, product_id)
    if product_coding_problem(row) is None:
        raise InvalidInput(
            errors={
                "ingredient": f"This product is already coded ({row.ingredient}, {row.dosage_form}); "
                "a coded product is not changed."
            }
        )
    before = f"{row.ingredient or 'not coded'}, {row.dosage_form}"
    row.ingredient = data.ingredient.value
    row.dosage_form = data.dosage_form.value
    db.flush()
    audit.record(
        db,
        actor,
        "ledger.product.code",
        "ledger_product",
        resource_id=row.id,
        detail=f"{row.name}: {before} -> {row.ingredient}, {row.dosage_form}",
    )
    return row


def product_label(p: Product) -> str:
    return f"{p.name} {p.strength_mg_per_ml:g} mg/mL, {p.container_ml:g} mL {p.dosage_form}" + (
        " (compounded)" if p.compounded else ""
    )


# --- lots -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotChoice:
    """A lot that can be used now: what the session page offers for an administration."""

    lot_id: int
    lot_number: str
    product_id: int
    product_name: str
    strength_mg_per_ml: float
    container_ml: float
    ingredient: str | None
    dosage_form: str
    compounded: bool
    balance_mg: float
    balance_ml: float
    expires_on: dt.date
    registration: str
    warning: str | None  # the FDA warning for a compounded product

    def fit_problem(self, drug: str, route: str) -> str | None:
        """Why this lot cannot be given as ``drug`` by ``route`` (knowledge: products), or None."""
        problem = products_knowledge.fit_problem(self.ingredient, self.dosage_form, drug, route)
        return f"Lot {self.lot_number} ({self.product_name}): {problem}" if problem else None

    @property
    def label(self) -> str:
        return (
            f"{self.product_name} ({self.ingredient or 'drug not coded'}, {self.dosage_form}) "
            f"{self.strength_mg_per_ml:g} mg/mL · lot {self.lot_number} · "
            f"exp {self.expires_on.isoformat()} · {self.balance_mg:g} mg left"
            + (" · COMPOUNDED" if self.compounded else "")
        )


@dataclass(frozen=True)
class LotRow:
    lot: Lot
    product: Product
    registration: Registration
    expired: bool
    expiring: bool

    @property
    def balance(self) -> str:
        return amounts(self.lot.balance_ug, self.product)


def amounts(amount_ug: int, p: Product) -> str:
    return f"{rules.fmt_mg(amount_ug)} ({rules.fmt_ml(amount_ug, p.strength_mg_per_ml)})"


def lot_rows(db: Session, actor: Principal, today: dt.date, *, in_stock: bool) -> list[LotRow]:
    query = (
        select(Lot, Product, Registration)
        .join(Product, Product.id == Lot.product_id)
        .join(Registration, Registration.id == Lot.registration_id)
        .where(Lot.clinic_id == actor.clinic_id)
    )
    if in_stock:
        query = query.where(Lot.balance_ug > 0)
    warn = settings(db, actor.clinic_id).expiry_warning_days
    return [
        LotRow(
            lot,
            prod,
            reg,
            rules.is_expired(lot.expires_on, today),
            rules.expires_within(lot.expires_on, today, warn),
        )
        for lot, prod, reg in db.execute(query.order_by(Lot.expires_on, Product.name, Lot.lot_number))
    ]


def lots(db: Session, actor: Principal, *, in_stock: bool = False) -> list[LotRow]:
    check_permission(actor, Permission.ledger_read)
    return lot_rows(db, actor, clinic_time.today(db, actor.clinic_id), in_stock=in_stock)


def available_lots(
    db: Session, actor: Principal, *, drug: str | None = None, route: str | None = None
) -> list[LotChoice]:
    """Lots of the actor's clinic with stock left and not expired today (clinic time), soonest
    expiry first. Compounded products carry the FDA warning. With ``drug`` and ``route``, only
    the lots whose product fits them (knowledge: products): what a lot picker offers."""
    check_permission(actor, Permission.ledger_read)
    warning = compounded_warning().text
    return [
        LotChoice(
            lot_id=r.lot.id,
            lot_number=r.lot.lot_number,
            product_id=r.product.id,
            product_name=r.product.name,
            strength_mg_per_ml=r.product.strength_mg_per_ml,
            container_ml=r.product.container_ml,
            ingredient=r.product.ingredient,
            dosage_form=r.product.dosage_form,
            compounded=r.product.compounded,
            balance_mg=rules.ug_to_mg(r.lot.balance_ug),
            balance_ml=rules.ug_to_ml(r.lot.balance_ug, r.product.strength_mg_per_ml),
            expires_on=r.lot.expires_on,
            registration=f"{r.registration.location_name} ({r.registration.dea_number})",
            warning=warning if r.product.compounded else None,
        )
        for r in lots(db, actor, in_stock=True)
        if not r.expired
        and (
            drug is None
            or route is None
            or products_knowledge.fit_problem(r.product.ingredient, r.product.dosage_form, drug, route)
            is None
        )
    ]


def lot_fit_problem(db: Session, actor: Principal, lot_id: int, drug: str, route: str) -> str | None:
    """Why a lot of the clinic cannot be used for ``drug`` by ``route`` (knowledge: products)."""
    check_permission(actor, Permission.ledger_read)
    lot, prod, _reg = _lot(db, actor, lot_id)
    problem = products_knowledge.fit_problem(prod.ingredient, prod.dosage_form, drug, route)
    return f"Lot {lot.lot_number} ({prod.name}): {problem}" if problem else None


@dataclass(frozen=True)
class LotDetail:
    row: LotRow
    entries: list[LedgerEntry]


def lot_detail(db: Session, actor: Principal, lot_id: int) -> LotDetail:
    check_permission(actor, Permission.ledger_read)
    lot, prod, reg = _lot(db, actor, lot_id, not_found=NotFound)
    today = clinic_time.today(db, actor.clinic_id)
    warn = settings(db, actor.clinic_id).expiry_warning_days
    row = LotRow(
        lot,
        prod,
        reg,
        rules.is_expired(lot.expires_on, today),
        rules.expires_within(lot.expires_on, today, warn),
    )
    entries = db.execute(select(LedgerEntry).where(LedgerEntry.lot_id == lot.id).order_by(LedgerEntry.seq))
    return LotDetail(row, list(entries.scalars()))


def _lot(
    db: Session, actor: Principal, lot_id: int, *, not_found: type[Exception] = InvalidInput
) -> tuple[Lot, Product, Registration]:
    found = db.execute(
        select(Lot, Product, Registration)
        .join(Product, Product.id == Lot.product_id)
        .join(Registration, Registration.id == Lot.registration_id)
        .where(Lot.id == lot_id)
    ).first()
    if found is None or found[0].clinic_id != actor.clinic_id:
        if not_found is NotFound:
            raise NotFound("No such lot in your clinic.")
        raise InvalidInput(errors={"lot_id": "No such lot in your clinic."})
    return found[0], found[1], found[2]


def _find_or_create_lot(
    db: Session,
    actor: Principal,
    reg: Registration,
    prod: Product,
    lot_number: str,
    expires_on: dt.date,
    supplier: str,
) -> Lot:
    lot = db.execute(
        select(Lot).where(
            Lot.registration_id == reg.id, Lot.product_id == prod.id, Lot.lot_number == lot_number
        )
    ).scalar_one_or_none()
    if lot is not None:
        if lot.expires_on != expires_on:
            raise InvalidInput(
                errors={
                    "expires_on": f"Lot {lot_number} is recorded with expiry {lot.expires_on.isoformat()}; "
                    "check the label."
                }
            )
        return lot
    lot = Lot(
        clinic_id=actor.clinic_id,
        registration_id=reg.id,
        product_id=prod.id,
        lot_number=lot_number,
        expires_on=expires_on,
        supplier=supplier,
        balance_ug=0,
    )
    db.add(lot)
    db.flush()
    return lot


# --- writing entries --------------------------------------------------------------------------


def _entry(
    actor: Principal,
    actor_name: str,
    kind: EntryKind,
    lot: Lot | None,
    registration_id: int,
    occurred_at: dt.datetime,
    **values: Any,
) -> LedgerEntry:
    return LedgerEntry(
        kind=kind.value,
        registration_id=registration_id,
        lot_id=lot.id if lot else None,
        occurred_at=occurred_at,
        actor_id=actor.user_id,
        actor_name=actor_name,
        change_ug=values.pop("change_ug", 0),
        reason=values.pop("reason", ""),
        detail=chain.dump_detail(values.pop("detail", {})),
        **values,
    )


def _has_initial_inventory(db: Session, registration_id: int) -> bool:
    query = select(Inventory.id).where(
        Inventory.registration_id == registration_id, Inventory.kind == "initial"
    )
    return db.execute(query).first() is not None


def _ensure_initial_inventory(db: Session, reg: Registration) -> None:
    if not _has_initial_inventory(db, reg.id):
        raise InvalidInput(
            errors={
                "registration_id": f"Take the initial inventory of {reg.location_name} first "
                "(record zero if nothing is on hand): 21 USC 827(a)(1)."
            }
        )


# --- movements --------------------------------------------------------------------------------


def _serialise(db: Session, clinic_id: int) -> None:
    """One clinic's ledger writes run one after another from their first read: a check such as
    "is this lot new?" or "is the initial inventory on record?" then holds until commit. (The
    audit chain's lock is taken only at commit, so it no longer orders them.)"""
    lock_keys(db, f"ledger:{clinic_id}")


def record_receipt(
    db: Session, actor: Principal, data: ReceiptIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """A delivery on an invoice (Schedule III needs no Form 222): whole containers into a lot."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    reg = registration(db, actor, data.registration_id)
    if not reg.active:
        raise InvalidInput(errors={"registration_id": "This registration is not active."})
    prod = db.get(Product, data.product_id)
    if prod is None or prod.clinic_id != actor.clinic_id or not prod.active:
        raise InvalidInput(errors={"product_id": "No such product in your clinic."})
    received_at = _when(data.received_at, "received_at", at)
    _ensure_initial_inventory(db, reg)
    change = data.containers * rules.container_ug(prod.container_ml, prod.strength_mg_per_ml)
    with db.begin_nested():
        # ``_serialise`` ordered two deliveries of the same new lot one after the other, so the
        # second finds the lot the first created.
        audit.record(
            db,
            actor,
            "ledger.receipt",
            "ledger_registration",
            resource_id=reg.id,
            detail=f"invoice {data.invoice_number}: {data.containers} x {prod.container_ml:g} mL "
            f"{prod.name} lot {data.lot_number}",
        )
        lot = _find_or_create_lot(db, actor, reg, prod, data.lot_number, data.expires_on, data.supplier)
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, change)
        entry = _entry(
            actor,
            name,
            EntryKind.receipt,
            lot,
            reg.id,
            received_at,
            change_ug=change,
            balance_after_ug=balance,
            detail={
                "invoice_number": data.invoice_number,
                "supplier": data.supplier,
                "supplier_dea_number": data.supplier_dea_number,
                "containers": data.containers,
            },
        )
        chain.append(db, head, [entry])
    return entry


def record_administration(
    db: Session,
    actor: Principal,
    *,
    lot_id: int,
    amount_mg: float,
    patient_id: int,
    session_id: int,
    given_at: dt.datetime,
    drug: str,
    route: str,
) -> LedgerEntry:
    """Take what a session gave out of a lot. Refuses (InvalidInput, nothing written) an unknown
    or expired lot, a product whose drug or dosage form does not fit ``drug`` by ``route`` (or is
    not coded), an amount above the balance, a patient of another clinic, a time in the future or
    an unknown session. Never commits."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    now = utcnow()
    name = _person(db, actor)
    if given_at.tzinfo is None:
        raise InvalidInput(errors={"given_at": "Give the time with its time zone."})
    given = _when(given_at, "given_at", now)
    lot, prod, reg = _lot(db, actor, lot_id)
    if problem := products_knowledge.fit_problem(prod.ingredient, prod.dosage_form, drug, route):
        raise InvalidInput(errors={"lot_id": f"Lot {lot.lot_number} ({prod.name}): {problem}"})
    given_on = given.astimezone(clinic_time.zone(db, actor.clinic_id)).date()
    if rules.is_expired(lot.expires_on, given_on):
        raise InvalidInput(
            errors={
                "lot_id": f"Lot {lot.lot_number} expired on {lot.expires_on.isoformat()}: it cannot be given."
            }
        )
    amount = rules.mg_to_ug(amount_mg)
    if problem := rules.take_problem(lot.balance_ug, amount, prod.strength_mg_per_ml):
        raise InvalidInput(errors={"amount_mg": problem})
    record_number = patients.record_numbers(db, actor, {patient_id}).get(patient_id)
    if record_number is None:
        raise InvalidInput(errors={"patient_id": "No such patient in your clinic."})
    try:
        with db.begin_nested():
            audit.record(
                db,
                actor,
                "ledger.administration",
                "ledger_lot",
                resource_id=lot.id,
                patient_id=patient_id,
                detail=f"session {session_id}: {rules.fmt_mg(amount)} from lot {lot.lot_number} "
                f"({prod.ingredient}, {prod.dosage_form}) by {route}",
            )
            head = chain.reserve(db, actor.clinic_id, 1)
            balance = chain.move(db, lot, prod, -amount, "amount_mg")
            entry = _entry(
                actor,
                name,
                EntryKind.administration,
                lot,
                reg.id,
                given,
                change_ug=-amount,
                balance_after_ug=balance,
                patient_id=patient_id,
                session_id=session_id,
                detail={"record_number": record_number, "route": route},
            )
            chain.append(db, head, [entry])
    except IntegrityError as exc:
        raise InvalidInput(errors={"session_id": "No such treatment session."}) from exc
    return entry


@dataclass(frozen=True)
class WitnessOption:
    user_id: int
    name: str
    role: str


def witness_options(
    db: Session, actor: Principal, *, roles: frozenset[str], include_self: bool = False
) -> list[WitnessOption]:
    """Active staff of the clinic in ``roles`` for the witness choice on a form (other than the
    actor, unless ``include_self``: the person destroying may be one of the two witnesses)."""
    check_permission(actor, Permission.ledger_read)
    return [
        WitnessOption(u.id, f"{u.full_name} ({u.role.replace('_', ' ')})", u.role)
        for u in auth.staff_directory(db, actor.clinic_id)
        if u.is_active and (include_self or u.id != actor.user_id) and u.role in roles
    ]


def _witnesses(
    db: Session, actor: Principal, limits: throttle.Limits, named: list[tuple[str, int, str]]
) -> tuple[list[tuple[rules.Witness | None, str]], dict[str, str]]:
    """The named witnesses (field, user id, password), each password checked against and
    counted towards its owner's log-in limits (a wrong one is a failed attempt; a witness whose
    limit is reached is not checked). Returns each witness and the limit refusals by field."""
    found: list[tuple[str, Any, str]] = []  # (field, the user or None, password)
    for field_name, user_id, password in named:
        try:
            found.append((field_name, auth.staff_user(db, actor, user_id), password))
        except NotFound:
            found.append((field_name, None, password))
    people = [(user, password) for _, user, password in found if user is not None]
    checks = iter(auth.check_passwords(db, limits, people, actor.client_addr or ""))
    out: list[tuple[rules.Witness | None, str]] = []
    refused: dict[str, str] = {}
    for field_name, user, _ in found:
        if user is None:
            out.append((None, ""))
            continue
        check = next(checks)
        if check.refused:
            refused[field_name] = check.refused
        witness = rules.Witness(user.id, user.clinic_id, user.role, user.is_active, check.ok)
        out.append((witness, f"{user.full_name} ({user.username})"))
    return out, refused


def _witness_failure(errors: dict[str, str], action: str) -> InvalidInput:
    """Refused witness confirmations are audited, and the failed attempt is kept: it counts
    towards the witness's log-in limit (nothing else was written before the check)."""
    return InvalidInput(
        errors=errors,
        audit=[PendingAudit(action, "ledger_witness", outcome="failure", detail="; ".join(errors.values()))],
        keep_writes=True,
    )


def _amount_ug(amount: float, unit: str, prod: Product) -> int:
    return rules.amount_ug(amount, unit, prod.strength_mg_per_ml)


def record_waste(
    db: Session,
    actor: Principal,
    *,
    lot_id: int,
    amount_mg: float,
    reason: str,
    witness_user_id: int,
    witness_password: str,
    session_id: int | None = None,
    occurred_at: dt.datetime | None = None,
    limits: throttle.Limits | None = None,
) -> LedgerEntry:
    """The unused remainder of a container, wasted in front of a second nurse or prescriber who
    confirms with their own password on the same screen. The actor re-authenticated (the route is
    sensitive). Not a DEA Form 41 destruction (knowledge: waste)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    now = utcnow()
    name = _person(db, actor)
    when = _when(occurred_at, "occurred_at", now)
    lot, prod, reg = _lot(db, actor, lot_id)
    amount = rules.mg_to_ug(amount_mg)
    errors: dict[str, str] = {}
    if problem := rules.take_problem(lot.balance_ug, amount, prod.strength_mg_per_ml):
        errors["amount"] = problem
    if len(reason.strip()) < 3:
        errors["reason"] = "Say why the amount was wasted."
    checked, refused = _witnesses(
        db, actor, limits or auth.attempt_limits(), [("witness_user_id", witness_user_id, witness_password)]
    )
    witness, witness_name = checked[0]
    if refused:
        raise InvalidInput(errors={**errors, **refused})
    if problem := rules.waste_witness_problem(actor.user_id, actor.clinic_id, witness):
        errors["witness_user_id"] = problem
        if witness is not None and not witness.password_ok:
            raise _witness_failure(errors, "ledger.waste.witness")
    if errors:
        raise InvalidInput(errors=errors)
    try:
        with db.begin_nested():
            audit.record(
                db,
                actor,
                "ledger.waste",
                "ledger_lot",
                resource_id=lot.id,
                detail=f"{rules.fmt_mg(amount)} from lot {lot.lot_number}, witness {witness_name}: {reason}",
            )
            head = chain.reserve(db, actor.clinic_id, 1)
            balance = chain.move(db, lot, prod, -amount)
            entry = _entry(
                actor,
                name,
                EntryKind.waste,
                lot,
                reg.id,
                when,
                change_ug=-amount,
                balance_after_ug=balance,
                session_id=session_id,
                witness_id=witness_user_id,
                reason=reason.strip(),
                detail={"witness": witness_name},
            )
            chain.append(db, head, [entry])
    except IntegrityError as exc:
        raise InvalidInput(errors={"session_id": "No such treatment session."}) from exc
    return entry


def record_waste_in(
    db: Session, actor: Principal, lot_id: int, data: WasteIn, limits: throttle.Limits | None = None
) -> LedgerEntry:
    """The page and API form of ``record_waste``: the amount may be typed in mg or mL."""
    _lot_row, prod, _reg = _lot(db, actor, lot_id)
    return record_waste(
        db,
        actor,
        lot_id=lot_id,
        amount_mg=rules.ug_to_mg(_amount_ug(data.amount, data.unit.value, prod)),
        reason=data.reason,
        witness_user_id=data.witness_user_id,
        witness_password=data.witness_password,
        session_id=data.session_id,
        occurred_at=data.occurred_at,
        limits=limits,
    )


def _outgoing(
    db: Session,
    actor: Principal,
    lot_id: int,
    amount: float,
    unit: str,
) -> tuple[Lot, Product, Registration, int]:
    lot, prod, reg = _lot(db, actor, lot_id)
    amount_ug = _amount_ug(amount, unit, prod)
    if problem := rules.take_problem(lot.balance_ug, amount_ug, prod.strength_mg_per_ml):
        raise InvalidInput(errors={"amount": problem})
    return lot, prod, reg, amount_ug


def record_transfer(
    db: Session, actor: Principal, lot_id: int, data: TransferIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """Stock leaving this registration: to another registration of the clinic (which receives the
    same lot in the same transaction) or to another registrant."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg, amount = _outgoing(db, actor, lot_id, data.amount, data.unit.value)
    target: Registration | None = None
    if data.to_registration_id is not None:
        target = registration(db, actor, data.to_registration_id)
        if target.id == reg.id:
            raise InvalidInput(errors={"to_registration_id": "Choose a different registration."})
        if not target.active:
            raise InvalidInput(errors={"to_registration_id": "That registration is not active."})
        _ensure_initial_inventory(db, target)
    recipient = (
        {
            "recipient_name": target.location_name,
            "recipient_dea_number": target.dea_number,
            "recipient_address": target.address,
        }
        if target
        else {
            "recipient_name": data.recipient_name,
            "recipient_dea_number": data.recipient_dea_number,
            "recipient_address": data.recipient_address,
        }
    )
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.transfer",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{rules.fmt_mg(amount)} of lot {lot.lot_number} to {recipient['recipient_name']} "
            f"({recipient['recipient_dea_number']})",
        )
        into = (
            _find_or_create_lot(db, actor, target, prod, lot.lot_number, lot.expires_on, lot.supplier)
            if target
            else None
        )
        head = chain.reserve(db, actor.clinic_id, 2 if into else 1)
        balance = chain.move(db, lot, prod, -amount)
        out = _entry(
            actor,
            name,
            EntryKind.transfer_out,
            lot,
            reg.id,
            when,
            change_ug=-amount,
            balance_after_ug=balance,
            reason=data.reason,
            detail=recipient,
        )
        entries = [out]
        if into is not None and target is not None:
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.transfer_in,
                    into,
                    target.id,
                    when,
                    change_ug=amount,
                    balance_after_ug=chain.move(db, into, prod, amount),
                    reason=data.reason,
                    detail={"from_registration": reg.dea_number, "from_location": reg.location_name},
                )
            )
        chain.append(db, head, entries)
    return out


def record_return(
    db: Session, actor: Principal, lot_id: int, data: ReturnIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """Stock returned to the supplier or a reverse distributor."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg, amount = _outgoing(db, actor, lot_id, data.amount, data.unit.value)
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.return",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{rules.fmt_mg(amount)} of lot {lot.lot_number} to {data.recipient_name}",
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, -amount)
        entry = _entry(
            actor,
            name,
            EntryKind.return_,
            lot,
            reg.id,
            when,
            change_ug=-amount,
            balance_after_ug=balance,
            reason=data.reason,
            detail={"recipient_name": data.recipient_name, "recipient_dea_number": data.recipient_dea_number},
        )
        chain.append(db, head, [entry])
    return entry


def record_destruction(
    db: Session,
    actor: Principal,
    lot_id: int,
    data: DestructionIn,
    now: dt.datetime | None = None,
    limits: throttle.Limits | None = None,
) -> LedgerEntry:
    """An on-site destruction with the data of DEA Form 41 and two witnessing employees, each
    confirming with their own password (knowledge: destruction)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg = _lot(db, actor, lot_id)
    per_package = rules.container_ug(prod.container_ml, prod.strength_mg_per_ml)
    errors: dict[str, str] = {}
    if data.package_state == PackageState.full:
        amount = data.packages * per_package
    else:
        assert data.amount is not None
        amount = _amount_ug(data.amount, data.unit.value, prod)
        if amount > data.packages * per_package:
            errors["amount"] = (
                f"{data.packages} partial package(s) hold at most "
                f"{rules.fmt_mg(data.packages * per_package)}."
            )
    if problem := rules.take_problem(lot.balance_ug, amount, prod.strength_mg_per_ml):
        errors["amount"] = problem
    checked, refused = _witnesses(
        db,
        actor,
        limits or auth.attempt_limits(),
        [
            ("witness_user_id", data.witness_user_id, data.witness_password),
            ("witness2_user_id", data.witness2_user_id, data.witness2_password),
        ],
    )
    if refused:
        raise InvalidInput(errors={**errors, **refused})
    (first, first_name), (second, second_name) = checked
    witness_problems = rules.destruction_witness_problems(actor.clinic_id, first, second)
    if witness_problems:
        errors.update(witness_problems)
        if any(w is not None and not w.password_ok for w in (first, second)):
            raise _witness_failure(errors, "ledger.destruction.witness")
    if errors:
        raise InvalidInput(errors=errors)
    form41 = {
        "ndc": prod.ndc or "none (compounded product)",
        "name": prod.name,
        "strength": f"{prod.strength_mg_per_ml:g} mg/mL",
        "form": prod.dosage_form,
        "package_ml": prod.container_ml,
        "packages": data.packages,
        "package_state": data.package_state.value,
        "total_destroyed_mg": rules.ug_to_mg(amount),
        "method": data.method,
        "location": data.location,
        "registration": reg.dea_number,
        "witness": first_name,
        "witness2": second_name,
    }
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.destruction",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"Form 41: {rules.fmt_mg(amount)} of lot {lot.lot_number}, {data.method}, "
            f"witnesses {first_name} and {second_name}",
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, -amount)
        entry = _entry(
            actor,
            name,
            EntryKind.destruction,
            lot,
            reg.id,
            when,
            change_ug=-amount,
            balance_after_ug=balance,
            witness_id=data.witness_user_id,
            witness2_id=data.witness2_user_id,
            reason=data.method,
            detail=form41,
        )
        chain.append(db, head, [entry])
    return entry


def record_theft_loss(
    db: Session, actor: Principal, lot_id: int, data: TheftLossIn, now: dt.datetime | None = None
) -> LossReport:
    """Stock stolen or lost: out of the lot, with the notice and Form 106 deadlines when it is
    reportable (a theft always; a loss when significant; knowledge: theft_loss)."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    discovered = _when(data.discovered_at, "discovered_at", at)
    lot, prod, reg, amount = _outgoing(db, actor, lot_id, data.amount, data.unit.value)
    discovered_on = discovered.astimezone(clinic_time.zone(db, actor.clinic_id)).date()
    deadlines = rules.loss_deadlines(data.kind.value, data.significant, discovered_on)
    with db.begin_nested():
        audit.record(
            db,
            actor,
            f"ledger.{data.kind.value}",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{rules.fmt_mg(amount)} of lot {lot.lot_number}"
            + (f"; notice due {deadlines.notice_due_on}" if deadlines.reportable else "; not reportable"),
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, -amount)
        entry = _entry(
            actor,
            name,
            EntryKind.theft_loss,
            lot,
            reg.id,
            discovered,
            change_ug=-amount,
            balance_after_ug=balance,
            reason=data.description,
            detail={
                "kind": data.kind.value,
                "significant": data.significant,
                "reportable": deadlines.reportable,
            },
        )
        chain.append(db, head, [entry])
        report = LossReport(
            clinic_id=actor.clinic_id,
            entry_id=entry.id,
            kind=data.kind.value,
            discovered_at=discovered,
            reportable=deadlines.reportable,
            notice_due_on=deadlines.notice_due_on,
            form106_due_on=deadlines.form106_due_on,
        )
        db.add(report)
        db.flush()
    return report


def record_adjustment(
    db: Session, actor: Principal, lot_id: int, data: AdjustmentIn, now: dt.datetime | None = None
) -> LedgerEntry:
    """A correction as a new entry, with its reason (the route re-authenticates the actor)."""
    check_permission(actor, Permission.ledger_admin)
    at = now or utcnow()
    name = _person(db, actor)
    when = _when(data.occurred_at, "occurred_at", at)
    lot, prod, reg = _lot(db, actor, lot_id)
    change = (1 if data.change > 0 else -1) * _amount_ug(abs(data.change), data.unit.value, prod)
    if change == 0:
        raise InvalidInput(errors={"change": "The change rounds to zero micrograms."})
    if change < 0 and (problem := rules.take_problem(lot.balance_ug, -change, prod.strength_mg_per_ml)):
        raise InvalidInput(errors={"change": problem})
    if data.corrects_seq is not None:
        corrected = db.execute(
            select(LedgerEntry.lot_id).where(
                LedgerEntry.clinic_id == actor.clinic_id, LedgerEntry.seq == data.corrects_seq
            )
        ).first()
        if corrected is None or corrected[0] != lot.id:
            raise InvalidInput(errors={"corrects_seq": "No entry with that number for this lot."})
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.adjustment",
            "ledger_lot",
            resource_id=lot.id,
            detail=f"{'+' if change > 0 else '-'}{rules.fmt_mg(abs(change))} on lot {lot.lot_number}: "
            f"{data.reason}",
        )
        head = chain.reserve(db, actor.clinic_id, 1)
        balance = chain.move(db, lot, prod, change, "change")
        entry = _entry(
            actor,
            name,
            EntryKind.adjustment,
            lot,
            reg.id,
            when,
            change_ug=change,
            balance_after_ug=balance,
            reason=data.reason,
            corrects_seq=data.corrects_seq,
        )
        chain.append(db, head, [entry])
    return entry


# --- inventories ------------------------------------------------------------------------------


def take_initial_inventory(
    db: Session, actor: Principal, data: InitialInventoryIn, now: dt.datetime | None = None
) -> Inventory:
    """The count when the registration first handles controlled substances: it opens each lot
    on hand with what was counted; no lines record a zero inventory (knowledge: inventory)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    reg = registration(db, actor, data.registration_id)
    taken_at = _when(data.taken_at, "taken_at", at)
    if _has_initial_inventory(db, reg.id):
        raise InvalidInput(errors={"registration_id": "This registration's initial inventory is on record."})
    errors: dict[str, str] = {}
    prods: dict[int, Product] = {}
    seen: set[tuple[int, str]] = set()
    for n, line in enumerate(data.lines):
        prod = db.get(Product, line.product_id)
        if prod is None or prod.clinic_id != actor.clinic_id:
            errors[f"lines.{n}.product_id"] = "No such product in your clinic."
            continue
        if (line.product_id, line.lot_number) in seen:
            errors[f"lines.{n}.lot_number"] = "This lot is listed twice."
        seen.add((line.product_id, line.lot_number))
        prods[n] = prod
    if errors:
        raise InvalidInput(errors=errors)
    with db.begin_nested():
        # ``_serialise`` orders two people taking the initial inventory at once; the
        # second then finds the first one's and is refused.
        audit.record(
            db,
            actor,
            "ledger.inventory.initial",
            "ledger_registration",
            resource_id=reg.id,
            detail=f"{reg.dea_number}: {len(data.lines)} lot(s)"
            + ("" if data.lines else " (zero inventory)"),
        )
        if _has_initial_inventory(db, reg.id):
            raise InvalidInput(
                errors={"registration_id": "This registration's initial inventory is on record."}
            )
        inventory = Inventory(
            clinic_id=actor.clinic_id,
            registration_id=reg.id,
            kind="initial",
            taken_at=taken_at,
            taken_by_id=actor.user_id,
            note=data.note or "",
        )
        db.add(inventory)
        db.flush()
        opened = []
        for n, line in enumerate(data.lines):
            prod = prods[n]
            lot = _find_or_create_lot(db, actor, reg, prod, line.lot_number, line.expires_on, line.supplier)
            opened.append((lot, prod, _amount_ug(line.counted, line.unit.value, prod), line.method.value))
        head = chain.reserve(db, actor.clinic_id, max(len(opened), 1))
        entries = []
        for lot, prod, counted, method in opened:
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.inventory_initial,
                    lot,
                    reg.id,
                    taken_at,
                    change_ug=counted,
                    balance_after_ug=chain.move(db, lot, prod, counted),
                    counted_ug=counted,
                    book_ug=0,
                    inventory_id=inventory.id,
                    detail={"method": method},
                )
            )
        if not entries:
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.inventory_initial,
                    None,
                    reg.id,
                    taken_at,
                    inventory_id=inventory.id,
                    reason="Nothing on hand: zero inventory",
                )
            )
        chain.append(db, head, entries)
    return inventory


def take_biennial_inventory(
    db: Session, actor: Principal, data: BiennialInventoryIn, now: dt.datetime | None = None
) -> Inventory:
    """A count of every lot with stock under one registration. A count that differs from the
    book balance opens an investigation; the book balance is not changed by a count (a finding
    is corrected by an adjustment, or reported as a theft or loss)."""
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    at = now or utcnow()
    name = _person(db, actor)
    reg = registration(db, actor, data.registration_id)
    taken_at = _when(data.taken_at, "taken_at", at)
    _ensure_initial_inventory(db, reg)
    errors: dict[str, str] = {}
    counted: dict[int, tuple[Lot, Product, int, str]] = {}
    for n, line in enumerate(data.lines):
        found = db.execute(
            select(Lot, Product).join(Product, Product.id == Lot.product_id).where(Lot.id == line.lot_id)
        ).first()
        if found is None or found[0].registration_id != reg.id or found[0].clinic_id != actor.clinic_id:
            errors[f"lines.{n}.lot_id"] = "No such lot under this registration."
            continue
        if line.lot_id in counted:
            errors[f"lines.{n}.lot_id"] = "This lot is counted twice."
        counted[line.lot_id] = (
            found[0],
            found[1],
            _amount_ug(line.counted, line.unit.value, found[1]),
            line.method.value,
        )
    in_stock = db.execute(
        select(Lot.id, Lot.lot_number).where(Lot.registration_id == reg.id, Lot.balance_ug > 0)
    ).all()
    missing = [number for lot_id, number in in_stock if lot_id not in counted]
    if missing:
        errors["lines"] = f"Count every lot with stock; missing: {', '.join(missing)}."
    if not counted and not missing:
        errors["lines"] = "Nothing to count: no lot of this registration has stock."
    if errors:
        raise InvalidInput(errors=errors)
    with db.begin_nested():
        audit.record(
            db,
            actor,
            "ledger.inventory.biennial",
            "ledger_registration",
            resource_id=reg.id,
            detail=f"{reg.dea_number}: {len(counted)} lot(s)",
        )
        inventory = Inventory(
            clinic_id=actor.clinic_id,
            registration_id=reg.id,
            kind="biennial",
            taken_at=taken_at,
            taken_by_id=actor.user_id,
            note=data.note or "",
        )
        db.add(inventory)
        db.flush()
        head = chain.reserve(db, actor.clinic_id, len(counted))
        # Book balances are read under the head lock: nothing moves while the count is stored.
        entries = []
        for lot, _prod, amount, method in counted.values():
            book = int(db.execute(select(Lot.balance_ug).where(Lot.id == lot.id)).scalar_one())
            entries.append(
                _entry(
                    actor,
                    name,
                    EntryKind.inventory_biennial,
                    lot,
                    reg.id,
                    taken_at,
                    balance_after_ug=book,
                    counted_ug=amount,
                    book_ug=book,
                    inventory_id=inventory.id,
                    detail={"method": method},
                )
            )
        chain.append(db, head, entries)
        for entry in entries:
            assert entry.counted_ug is not None and entry.book_ug is not None and entry.lot_id is not None
            if entry.counted_ug != entry.book_ug:
                db.add(
                    Investigation(
                        clinic_id=actor.clinic_id,
                        entry_id=entry.id,
                        lot_id=entry.lot_id,
                        discrepancy_ug=entry.counted_ug - entry.book_ug,
                        status="open",
                        opened_at=utcnow(),
                    )
                )
        db.flush()
    return inventory


@dataclass(frozen=True)
class InvestigationView:
    investigation: Investigation
    lot: Lot
    product: Product
    entry: LedgerEntry
    notes: list[InvestigationNote]

    @property
    def discrepancy(self) -> str:
        sign = "+" if self.investigation.discrepancy_ug > 0 else "−"
        return sign + amounts(abs(self.investigation.discrepancy_ug), self.product)


def investigations(db: Session, actor: Principal, *, open_only: bool = False) -> list[InvestigationView]:
    check_permission(actor, Permission.ledger_read)
    query = (
        select(Investigation, Lot, Product, LedgerEntry)
        .join(Lot, Lot.id == Investigation.lot_id)
        .join(Product, Product.id == Lot.product_id)
        .join(LedgerEntry, LedgerEntry.id == Investigation.entry_id)
        .where(Investigation.clinic_id == actor.clinic_id)
    )
    if open_only:
        query = query.where(Investigation.status == "open")
    rows = db.execute(query.order_by(Investigation.opened_at.desc(), Investigation.id.desc())).all()
    ids = [inv.id for inv, *_ in rows]
    notes: dict[int, list[InvestigationNote]] = {i: [] for i in ids}
    if ids:
        for note in db.execute(
            select(InvestigationNote)
            .where(InvestigationNote.investigation_id.in_(ids))
            .order_by(InvestigationNote.at, InvestigationNote.id)
        ).scalars():
            notes[note.investigation_id].append(note)
    return [InvestigationView(inv, lot, prod, entry, notes[inv.id]) for inv, lot, prod, entry in rows]


def _investigation(db: Session, actor: Principal, investigation_id: int) -> Investigation:
    row = db.get(Investigation, investigation_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("No such investigation in your clinic.")
    return row


def add_investigation_note(
    db: Session, actor: Principal, investigation_id: int, data: NoteIn
) -> InvestigationNote:
    check_permission(actor, Permission.ledger_write)
    _serialise(db, actor.clinic_id)
    row = _investigation(db, actor, investigation_id)
    if row.status != "open":
        raise Conflict("This investigation is closed.")
    note = InvestigationNote(
        investigation_id=row.id, by_id=actor.user_id, by_name=_person(db, actor), text=data.text
    )
    db.add(note)
    db.flush()
    audit.record(
        db, actor, "ledger.investigation.note", "ledger_investigation", resource_id=row.id, detail=data.text
    )
    return note


def close_investigation(db: Session, actor: Principal, investigation_id: int, data: CloseIn) -> Investigation:
    """Closed with its outcome by an admin: explained, corrected by an adjustment, or reported."""
    check_permission(actor, Permission.ledger_admin)
    row = _investigation(db, actor, investigation_id)
    if row.status != "open":
        raise Conflict("This investigation is already closed.")
    row.status = "closed"
    row.closed_at = utcnow()
    row.closed_by_id = actor.user_id
    row.outcome = data.outcome
    db.add(
        InvestigationNote(
            investigation_id=row.id,
            by_id=actor.user_id,
            by_name=_person(db, actor),
            text=f"Closed: {data.outcome}",
        )
    )
    db.flush()
    audit.record(
        db,
        actor,
        "ledger.investigation.close",
        "ledger_investigation",
        resource_id=row.id,
        detail=data.outcome,
    )
    return row


# --- theft and loss reporting -----------------------------------------------------------------


@dataclass(frozen=True)
class LossView:
    report: LossReport
    entry: LedgerEntry
    lot: Lot
    product: Product
    notice_overdue: bool
    form106_overdue: bool

    @property
    def amount(self) -> str:
        return amounts(-self.entry.change_ug, self.product)


def loss_reports(db: Session, actor: Principal, today: dt.date | None = None) -> list[LossView]:
    check_permission(actor, Permission.ledger_read)
    today = today or clinic_time.today(db, actor.clinic_id)
    rows = db.execute(
        select(LossReport, LedgerEntry, Lot, Product)
        .join(LedgerEntry, LedgerEntry.id == LossReport.entry_id)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .join(Product, Product.id == Lot.product_id)
        .where(LossReport.clinic_id == actor.clinic_id)
        .order_by(LossReport.discovered_at.desc(), LossReport.id.desc())
    )
    return [
        LossView(
            r,
            e,
            lot,
            prod,
            r.reportable
            and r.notice_sent_at is None
            and r.notice_due_on is not None
            and today > r.notice_due_on,
            r.reportable
            and r.form106_filed_at is None
            and r.form106_due_on is not None
            and today > r.form106_due_on,
        )
        for r, e, lot, prod in rows
    ]


def _loss(db: Session, actor: Principal, report_id: int) -> LossReport:
    row = db.get(LossReport, report_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("No such theft or loss report in your clinic.")
    return row


# The two reporting duties of a theft or loss: (column prefix, form field, name, audit action).
_DUTIES = {
    "notice": ("notice_sent", "sent_at", "The notice", "ledger.loss.notice"),
    "form106": ("form106_filed", "filed_at", "Form 106", "ledger.loss.form106"),
}


def _record_duty(
    db: Session, actor: Principal, report_id: int, duty: str, at: dt.datetime | None, reference: str | None
) -> LossReport:
    check_permission(actor, Permission.ledger_admin)
    prefix, field_name, name, action = _DUTIES[duty]
    row = _loss(db, actor, report_id)
    if getattr(row, f"{prefix}_at") is not None:
        raise Conflict(f"{name} is already on record.")
    when = _when(at, field_name, utcnow())
    if when < row.discovered_at:
        raise InvalidInput(errors={field_name: f"{name} cannot come before the discovery."})
    setattr(row, f"{prefix}_at", when)
    setattr(row, f"{prefix}_by_id", actor.user_id)
    setattr(row, f"{duty}_reference", reference)
    db.flush()
    audit.record(db, actor, action, "ledger_loss_report", resource_id=row.id, detail=reference or "")
    return row


def mark_notice_sent(db: Session, actor: Principal, report_id: int, data: NoticeIn) -> LossReport:
    return _record_duty(db, actor, report_id, "notice", data.sent_at, data.reference)


def mark_form106_filed(db: Session, actor: Principal, report_id: int, data: Form106In) -> LossReport:
    return _record_duty(db, actor, report_id, "form106", data.filed_at, data.reference)


# --- dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationStatus:
    registration: Registration
    initial_on: dt.date | None
    last_on: dt.date | None
    biennial: rules.BiennialDue | None


@dataclass(frozen=True)
class Dashboard:
    today: dt.date
    stock: list[LotRow]
    expiring: list[LotRow]
    expired_with_stock: list[LotRow]
    open_investigations: list[InvestigationView]
    losses_due: list[LossView]
    registrations: list[RegistrationStatus]
    settings: SettingsView


def _registration_statuses(db: Session, actor: Principal, today: dt.date) -> list[RegistrationStatus]:
    zone = clinic_time.zone(db, actor.clinic_id)
    statuses = []
    for reg in registrations(db, actor):
        taken = db.execute(
            select(Inventory.kind, Inventory.taken_at)
            .where(Inventory.registration_id == reg.id)
            .order_by(Inventory.taken_at)
        ).all()
        initial = next((t.astimezone(zone).date() for k, t in taken if k == "initial"), None)
        last = taken[-1][1].astimezone(zone).date() if taken else None
        statuses.append(
            RegistrationStatus(reg, initial, last, rules.biennial_due(last, today) if last else None)
        )
    return statuses


def dashboard(db: Session, actor: Principal) -> Dashboard:
    """The admin's stock and compliance view (witnesses sign on the same screen as the waste or
    destruction, so no signature is ever left pending)."""
    check_permission(actor, Permission.ledger_read)
    today = clinic_time.today(db, actor.clinic_id)
    stock = lot_rows(db, actor, today, in_stock=True)
    return Dashboard(
        today=today,
        stock=stock,
        expiring=[r for r in stock if r.expiring],
        expired_with_stock=[r for r in stock if r.expired],
        open_investigations=investigations(db, actor, open_only=True),
        losses_due=[
            v
            for v in loss_reports(db, actor, today)
            if v.report.reportable and (v.report.notice_sent_at is None or v.report.form106_filed_at is None)
        ],
        registrations=_registration_statuses(db, actor, today),
        settings=settings(db, actor.clinic_id),
    )


# --- verification and retention ---------------------------------------------------------------


def verify(db: Session, actor: Principal) -> chain.VerifyResult:
    check_permission(actor, Permission.ledger_read)
    result = chain.verify_clinic(db, actor.clinic_id, integrity.configured_anchors())
    audit.record(
        db,
        actor,
        "ledger.verify",
        "ledger",
        outcome="success" if result.ok else "failure",
        detail=result.problem or f"{result.checked} entries intact",
    )
    return result


@dataclass(frozen=True)
class Retention:
    settings: SettingsView
    oldest_on: dt.date | None
    kept_until: dt.date | None
    entries: int
    past_retention: int


def retention(db: Session, actor: Principal) -> Retention:
    """How long records are kept and how many are past it. KetaCare offers no purge before the
    retention date, and none after it either: the ledger is append-only in the database."""
    check_permission(actor, Permission.ledger_read)
    s = settings(db, actor.clinic_id)
    zone = clinic_time.zone(db, actor.clinic_id)
    oldest, count = db.execute(
        select(func.min(LedgerEntry.occurred_at), func.count()).where(
            LedgerEntry.clinic_id == actor.clinic_id
        )
    ).one()
    today = clinic_time.today(db, actor.clinic_id)
    cutoff_day = rules.add_months(today, -12 * s.retention_years)
    cutoff = dt.datetime.combine(cutoff_day, dt.time(), tzinfo=zone)
    past = db.execute(
        select(func.count()).where(LedgerEntry.clinic_id == actor.clinic_id, LedgerEntry.occurred_at < cutoff)
    ).scalar_one()
    oldest_on = oldest.astimezone(zone).date() if oldest is not None else None
    return Retention(
        s,
        oldest_on,
        rules.kept_until(oldest_on, s.retention_years) if oldest_on else None,
        int(count),
        int(past),
    )


def facts_for_pages() -> dict[str, Fact]:
    k = ledger_rules()
    return {
        "receipt": k.receipt,
        "records": k.records,
        "administration": k.administration_record,
        "retention": k.retention,
        "initial": k.initial_inventory,
        "biennial": k.biennial,
        "estimate": k.estimated_count,
        "discrepancy": k.discrepancy,
        "waste": k.waste,
        "waste_witness": k.waste_witness,
        "destruction": k.destruction,
        "destruction_witnesses": k.destruction_witnesses_fact,
        "destruction_filing": k.destruction_filing,
        "notice": k.notice,
        "business_days": k.business_days,
        "form106": k.form106,
        "theft": k.theft_always,
        "significant": k.significant_loss,
        "state": k.state_notice,
        "compounded": k.compounded_warning,
        "compounded_nasal": k.compounded_nasal_warning,
        "home": k.home_acknowledgement,
        "scheduling": k.scheduling,
    }


def stream(text: str) -> Iterator[str]:
    yield text


# --- what the public directory may say (counts and yes/no only, never a patient) ---------------


@dataclass(frozen=True)
class ComplianceSignal:
    compliant: bool | None  # None: the clinic keeps no ledger in KetaCare
    detail: str


# The public directory asks on every search: re-walk a clinic's chain only when its head moved
# (or at most every VERIFY_TTL_S seconds, so a change made behind the ledger's back shows).
_VERIFIED: dict[int, tuple[str, float, bool]] = {}
VERIFY_TTL_S = 600.0


def _verified(db: Session, clinic_id: int) -> bool:
    head = db.get(LedgerHead, clinic_id)
    key = f"{head.seq}:{head.last_hash}" if head is not None else "none"
    cached = _VERIFIED.get(clinic_id)
    if cached is not None and cached[0] == key and time.monotonic() - cached[1] < VERIFY_TTL_S:
        return cached[2]
    ok = chain.verify_clinic(db, clinic_id).ok
    _VERIFIED[clinic_id] = (key, time.monotonic(), ok)
    return ok


def compliance_signal(db: Session, clinic_id: int) -> ComplianceSignal:
    """Whether the clinic's controlled-substance records are in order: an initial inventory for
    every registration, no biennial inventory late, the ledger's chain and balances intact, no
    expired lot left in stock uncounted, no theft/loss notice or Form 106 overdue."""
    regs = list(db.execute(select(Registration).where(Registration.clinic_id == clinic_id)).scalars())
    if not regs:
        return ComplianceSignal(None, "no controlled-substance ledger kept on KetaCare")
    today = clinic_time.today(db, clinic_id)
    problems: list[str] = []
    for reg in regs:
        taken = [
            (k, t)
            for k, t in db.execute(
                select(Inventory.kind, Inventory.taken_at)
                .where(Inventory.registration_id == reg.id)
                .order_by(Inventory.taken_at)
            ).all()
        ]
        if not any(k == "initial" for k, _ in taken):
            problems.append("an initial inventory is missing")
        elif rules.biennial_due(taken[-1][1].date(), today).status == "late":
            problems.append("a biennial inventory is late")
    if not _verified(db, clinic_id):
        problems.append("the ledger does not verify")
    overdue = db.execute(
        select(func.count(LossReport.id)).where(
            LossReport.clinic_id == clinic_id,
            LossReport.reportable.is_(True),
            ((LossReport.notice_sent_at.is_(None)) & (LossReport.notice_due_on < today))
            | ((LossReport.form106_filed_at.is_(None)) & (LossReport.form106_due_on < today)),
        )
    ).scalar_one()
    if overdue:
        problems.append("a theft or loss report is overdue")
    if problems:
        return ComplianceSignal(False, "; ".join(sorted(set(problems))))
    return ComplianceSignal(True, "inventories on time, ledger verifies, no overdue theft/loss report")
