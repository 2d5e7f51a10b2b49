"""Theft and loss reporting: the reports with their due dates and the two reporting duties
(the notice and DEA Form 106). Runs in the caller's transaction; never commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import Conflict, InvalidInput, NotFound
from ketacare.ledger.common import _when, check_permission
from ketacare.ledger.lots import amounts
from ketacare.ledger.models import (
    LedgerEntry,
    LossReport,
    Lot,
    Product,
)
from ketacare.ledger.schemas import (
    Form106In,
    NoticeIn,
)

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
