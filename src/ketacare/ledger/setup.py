"""The ledger's set-up: the clinic's ledger settings, its DEA registrations and its products
(with their coding and the drug and route each fits). Runs in the caller's transaction; never
commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import InvalidInput, NotFound
from ketacare.knowledge import products as products_knowledge
from ketacare.knowledge.ledger import ledger_rules
from ketacare.ledger.common import check_permission
from ketacare.ledger.models import (
    LedgerSettings,
    Product,
    Registration,
)
from ketacare.ledger.schemas import (
    ProductCodingIn,
    ProductIn,
    RegistrationIn,
    SettingsIn,
)

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
