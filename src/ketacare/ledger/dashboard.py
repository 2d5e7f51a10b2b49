"""The admin's stock and compliance view, records retention, and the facts the pages cite. Runs
in the caller's transaction; never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.knowledge.ledger import Fact, ledger_rules
from ketacare.ledger import rules
from ketacare.ledger.common import check_permission
from ketacare.ledger.inventories import InvestigationView, investigations
from ketacare.ledger.losses import LossView, loss_reports
from ketacare.ledger.lots import LotRow, lot_rows
from ketacare.ledger.models import (
    Inventory,
    LedgerEntry,
    Registration,
)
from ketacare.ledger.setup import SettingsView, registrations, settings

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


# --- retention and the facts the pages cite ---------------------------------------------------


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
