"""The lots of stock: the lists and choices the pages and a session's administration show, a
lot's history, and the look-ups a movement uses to find or create its lot. Runs in the caller's
transaction; never commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput, NotFound
from ketacare.knowledge import products as products_knowledge
from ketacare.ledger import rules
from ketacare.ledger.common import check_permission
from ketacare.ledger.models import (
    LedgerEntry,
    Lot,
    Product,
    Registration,
)
from ketacare.ledger.setup import settings

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
    warning = rules.compounded_warning().text
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
