"""Reports for inspection, as pages and CSV: the running balance of each lot, the dispensing log
per patient, inventories with their discrepancies, the DEA Form 41 records, and thefts and losses
with their due dates. Reading a report is audited (the dispensing log once per patient shown)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.errors import NotFound
from ketacare.exports import csv_text
from ketacare.ledger import chain, rules
from ketacare.ledger.common import check_permission
from ketacare.ledger.losses import LossView, loss_reports
from ketacare.ledger.lots import LotRow, amounts, lot_rows
from ketacare.ledger.models import Inventory, Investigation, LedgerEntry, Lot, Product, Registration
from ketacare.ledger.rules import EntryKind
from ketacare.patients import service as patients


@dataclass(frozen=True)
class ReportFilter:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    lot_id: int | None = None
    patient_id: int | None = None


def _bounds(
    db: Session, actor: Principal, flt: ReportFilter
) -> tuple[dt.datetime | None, dt.datetime | None]:
    zone = clinic_time.zone(db, actor.clinic_id)
    start = dt.datetime.combine(flt.date_from, dt.time(), tzinfo=zone) if flt.date_from else None
    end = (
        dt.datetime.combine(flt.date_to + dt.timedelta(days=1), dt.time(), tzinfo=zone)
        if flt.date_to
        else None
    )
    return start, end


@dataclass(frozen=True)
class EntryLine:
    entry: LedgerEntry
    product: Product | None
    lot: Lot | None = None

    @property
    def detail(self) -> dict[str, Any]:
        return chain.detail_of(self.entry)

    @property
    def kind_label(self) -> str:
        return EntryKind(self.entry.kind).label

    @property
    def change(self) -> str:
        if self.product is None:
            return "—"
        sign = "+" if self.entry.change_ug > 0 else ("−" if self.entry.change_ug < 0 else "±")
        return sign + amounts(abs(self.entry.change_ug), self.product)

    @property
    def balance(self) -> str:
        if self.product is None or self.entry.balance_after_ug is None:
            return "—"
        return amounts(self.entry.balance_after_ug, self.product)

    @property
    def reference(self) -> str:
        """What an inspector looks for next to the amount: invoice, patient, witnesses, recipient."""
        d = chain.detail_of(self.entry)
        e = self.entry
        parts = {
            EntryKind.receipt: lambda: (
                f"invoice {d.get('invoice_number')} from {d.get('supplier')} ({d.get('supplier_dea_number')})"
            ),
            EntryKind.administration: lambda: f"patient {d.get('record_number')}, session {e.session_id}",
            EntryKind.waste: lambda: f"witness {d.get('witness')}; {e.reason}",
            EntryKind.transfer_out: lambda: f"to {d.get('recipient_name')} ({d.get('recipient_dea_number')})",
            EntryKind.transfer_in: lambda: f"from {d.get('from_location')} ({d.get('from_registration')})",
            EntryKind.return_: lambda: (
                f"to {d.get('recipient_name')} ({d.get('recipient_dea_number')}); {e.reason}"
            ),
            EntryKind.destruction: lambda: (
                f"Form 41: {d.get('method')} at {d.get('location')}; witnesses "
                f"{d.get('witness')} and {d.get('witness2')}"
            ),
            EntryKind.theft_loss: lambda: f"{d.get('kind')}: {e.reason}",
            EntryKind.inventory_initial: lambda: e.reason or f"counted ({d.get('method')})",
            EntryKind.inventory_biennial: lambda: self._count_note(d),
            EntryKind.adjustment: lambda: (
                e.reason + (f" (corrects #{e.corrects_seq})" if e.corrects_seq else "")
            ),
        }
        return parts[EntryKind(e.kind)]()

    def _count_note(self, d: dict[str, Any]) -> str:
        e, p = self.entry, self.product
        if p is None or e.counted_ug is None or e.book_ug is None:
            return ""
        diff = e.counted_ug - e.book_ug
        found = (
            "matches the book"
            if diff == 0
            else f"discrepancy {'+' if diff > 0 else '−'}{amounts(abs(diff), p)}"
        )
        return f"counted {amounts(e.counted_ug, p)} ({d.get('method')}); {found}"


@dataclass(frozen=True)
class LotLedger:
    row: LotRow
    lines: list[EntryLine]


def _entries(
    db: Session, actor: Principal, flt: ReportFilter, kinds: Iterable[EntryKind] | None = None
) -> list[tuple[LedgerEntry, Product | None, Lot | None]]:
    start, end = _bounds(db, actor, flt)
    query = (
        select(LedgerEntry, Product, Lot)
        .outerjoin(Lot, Lot.id == LedgerEntry.lot_id)
        .outerjoin(Product, Product.id == Lot.product_id)
        .where(LedgerEntry.clinic_id == actor.clinic_id)
    )
    if kinds is not None:
        query = query.where(LedgerEntry.kind.in_([k.value for k in kinds]))
    if flt.lot_id is not None:
        query = query.where(LedgerEntry.lot_id == flt.lot_id)
    if flt.patient_id is not None:
        query = query.where(LedgerEntry.patient_id == flt.patient_id)
    if start is not None:
        query = query.where(LedgerEntry.occurred_at >= start)
    if end is not None:
        query = query.where(LedgerEntry.occurred_at < end)
    return [(e, p, lot) for e, p, lot in db.execute(query.order_by(LedgerEntry.seq))]


def entry_list(db: Session, actor: Principal, flt: ReportFilter) -> list[LedgerEntry]:
    """Every entry in chain order (the API's export for an inspector's own tools)."""
    check_permission(actor, Permission.ledger_read)
    found = [e for e, _, _ in _entries(db, actor, flt)]
    patient_ids = sorted({e.patient_id for e in found if e.patient_id is not None})
    audit.record_many(
        db,
        actor,
        [
            audit.AuditEvent("ledger.entries", "patient", pid, pid, detail=_flt_text(flt))
            for pid in patient_ids
        ]
        or [audit.AuditEvent("ledger.entries", "ledger", detail=_flt_text(flt))],
    )
    return found


def balance_report(db: Session, actor: Principal, flt: ReportFilter) -> list[LotLedger]:
    """Every entry of each lot in order with the balance after it (the running balance)."""
    check_permission(actor, Permission.ledger_read)
    rows = {r.lot.id: r for r in lot_rows(db, actor, clinic_time.today(db, actor.clinic_id), in_stock=False)}
    by_lot: dict[int, list[EntryLine]] = {}
    for entry, prod, lot in _entries(db, actor, flt):
        if entry.lot_id is not None:
            by_lot.setdefault(entry.lot_id, []).append(EntryLine(entry, prod, lot))
    audit.record(db, actor, "ledger.report.balances", "ledger", detail=_flt_text(flt))
    chosen = [rows[flt.lot_id]] if flt.lot_id is not None and flt.lot_id in rows else list(rows.values())
    if flt.lot_id is not None and flt.lot_id not in rows:
        raise NotFound("No such lot in your clinic.")
    return [LotLedger(r, by_lot.get(r.lot.id, [])) for r in chosen]


def _flt_text(flt: ReportFilter) -> str:
    return " ".join(f"{k}={v}" for k, v in vars(flt).items() if v is not None)


@dataclass(frozen=True)
class DispensingLine:
    entry: LedgerEntry
    product: Product
    lot: Lot
    record_number: str

    @property
    def amount(self) -> str:
        return amounts(-self.entry.change_ug, self.product)


def dispensing_log(db: Session, actor: Principal, flt: ReportFilter) -> list[DispensingLine]:
    """Administrations per patient: date, patient, substance, strength, form, amount, who gave it
    (knowledge: records.administration). Each patient shown is audited."""
    check_permission(actor, Permission.ledger_read)
    start, end = _bounds(db, actor, flt)
    query = (
        select(LedgerEntry, Product, Lot)
        .join(Lot, Lot.id == LedgerEntry.lot_id)
        .join(Product, Product.id == Lot.product_id)
        .where(LedgerEntry.clinic_id == actor.clinic_id, LedgerEntry.kind == EntryKind.administration.value)
    )
    if flt.patient_id is not None:
        query = query.where(LedgerEntry.patient_id == flt.patient_id)
    if flt.lot_id is not None:
        query = query.where(LedgerEntry.lot_id == flt.lot_id)
    if start is not None:
        query = query.where(LedgerEntry.occurred_at >= start)
    if end is not None:
        query = query.where(LedgerEntry.occurred_at < end)
    order = (LedgerEntry.patient_id, LedgerEntry.occurred_at, LedgerEntry.seq)
    rows = db.execute(query.order_by(*order)).all()
    numbers = patients.record_numbers(
        db, actor, {e.patient_id for e, _, _ in rows if e.patient_id is not None}
    )
    audit.record_many(
        db,
        actor,
        [
            audit.AuditEvent("ledger.report.dispensing", "patient", pid, pid, detail=_flt_text(flt))
            for pid in sorted(numbers)
        ]
        or [audit.AuditEvent("ledger.report.dispensing", "ledger", detail=_flt_text(flt) or "no entries")],
    )
    return [DispensingLine(e, p, lot, numbers.get(e.patient_id or 0, "?")) for e, p, lot in rows]


@dataclass(frozen=True)
class InventoryReport:
    inventory: Inventory
    registration: Registration
    lines: list[EntryLine]
    investigations: dict[int, Investigation] = field(default_factory=dict)  # by entry id


def inventory_report(db: Session, actor: Principal, flt: ReportFilter) -> list[InventoryReport]:
    check_permission(actor, Permission.ledger_read)
    start, end = _bounds(db, actor, flt)
    query = (
        select(Inventory, Registration)
        .join(Registration, Registration.id == Inventory.registration_id)
        .where(Inventory.clinic_id == actor.clinic_id)
    )
    if start is not None:
        query = query.where(Inventory.taken_at >= start)
    if end is not None:
        query = query.where(Inventory.taken_at < end)
    found = db.execute(query.order_by(Inventory.taken_at, Inventory.id)).all()
    ids = [inv.id for inv, _ in found]
    lines: dict[int, list[EntryLine]] = {i: [] for i in ids}
    invs: dict[int, Investigation] = {}
    if ids:
        for entry, prod, lot in db.execute(
            select(LedgerEntry, Product, Lot)
            .outerjoin(Lot, Lot.id == LedgerEntry.lot_id)
            .outerjoin(Product, Product.id == Lot.product_id)
            .where(LedgerEntry.inventory_id.in_(ids))
            .order_by(LedgerEntry.seq)
        ):
            assert entry.inventory_id is not None
            lines[entry.inventory_id].append(EntryLine(entry, prod, lot))
        entry_ids = [line.entry.id for group in lines.values() for line in group]
        for inv in db.execute(select(Investigation).where(Investigation.entry_id.in_(entry_ids))).scalars():
            invs[inv.entry_id] = inv
    audit.record(db, actor, "ledger.report.inventory", "ledger", detail=_flt_text(flt))
    return [InventoryReport(inv, reg, lines[inv.id], invs) for inv, reg in found]


def destruction_report(db: Session, actor: Principal, flt: ReportFilter) -> list[EntryLine]:
    """The DEA Form 41 records (kept on file; sent to DEA only on request)."""
    check_permission(actor, Permission.ledger_read)
    audit.record(db, actor, "ledger.report.destructions", "ledger", detail=_flt_text(flt))
    return [EntryLine(e, p, lot) for e, p, lot in _entries(db, actor, flt, [EntryKind.destruction])]


def losses_report(db: Session, actor: Principal, flt: ReportFilter) -> list[LossView]:
    check_permission(actor, Permission.ledger_read)
    start, end = _bounds(db, actor, flt)
    audit.record(db, actor, "ledger.report.losses", "ledger", detail=_flt_text(flt))
    return [
        v
        for v in loss_reports(db, actor)
        if (start is None or v.report.discovered_at >= start)
        and (end is None or v.report.discovered_at < end)
    ]


# --- CSV --------------------------------------------------------------------------------------


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    return csv_text(header, rows)


def _local(value: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _mg(amount_ug: int | None) -> str:
    return "" if amount_ug is None else f"{rules.ug_to_mg(amount_ug):.3f}"


def _ml(amount_ug: int | None, p: Product | None) -> str:
    return "" if amount_ug is None or p is None else f"{rules.ug_to_ml(amount_ug, p.strength_mg_per_ml):.3f}"


def balances_csv(db: Session, actor: Principal, report: list[LotLedger]) -> str:
    zone = clinic_time.zone(db, actor.clinic_id)
    header = (
        "registration", "product", "ndc", "strength_mg_per_ml", "lot", "expires_on", "seq", "occurred_at",
        "kind", "change_mg", "change_ml", "balance_mg", "balance_ml", "by", "reference", "entry_hash",
    )  # fmt: skip
    rows = (
        (
            g.row.registration.dea_number,
            g.row.product.name,
            g.row.product.ndc,
            g.row.product.strength_mg_per_ml,
            g.row.lot.lot_number,
            g.row.lot.expires_on.isoformat(),
            line.entry.seq,
            _local(line.entry.occurred_at, zone),
            line.entry.kind,
            _mg(line.entry.change_ug),
            _ml(line.entry.change_ug, line.product),
            _mg(line.entry.balance_after_ug),
            _ml(line.entry.balance_after_ug, line.product),
            line.entry.actor_name,
            line.reference,
            line.entry.entry_hash,
        )
        for g in report
        for line in g.lines
    )
    return _csv(header, rows)


def dispensing_csv(db: Session, actor: Principal, report: list[DispensingLine]) -> str:
    zone = clinic_time.zone(db, actor.clinic_id)
    header = (
        "given_at", "patient_record_number", "substance", "strength_mg_per_ml", "dosage_form", "ndc", "lot",
        "amount_mg", "amount_ml", "administered_by", "session_id", "seq",
    )  # fmt: skip
    rows = (
        (
            _local(d.entry.occurred_at, zone),
            d.record_number,
            d.product.name,
            d.product.strength_mg_per_ml,
            d.product.dosage_form,
            d.product.ndc,
            d.lot.lot_number,
            _mg(-d.entry.change_ug),
            _ml(-d.entry.change_ug, d.product),
            d.entry.actor_name,
            d.entry.session_id,
            d.entry.seq,
        )
        for d in report
    )
    return _csv(header, rows)


def inventory_csv(db: Session, actor: Principal, report: list[InventoryReport]) -> str:
    zone = clinic_time.zone(db, actor.clinic_id)
    header = (
        "inventory_id", "kind", "taken_at", "registration", "product", "lot", "book_mg", "counted_mg",
        "discrepancy_mg", "method", "investigation", "outcome",
    )  # fmt: skip
    rows = []
    for r in report:
        for line in r.lines:
            e = line.entry
            inv = r.investigations.get(e.id)
            diff = None if e.counted_ug is None or e.book_ug is None else e.counted_ug - e.book_ug
            rows.append(
                (
                    r.inventory.id,
                    r.inventory.kind,
                    _local(r.inventory.taken_at, zone),
                    r.registration.dea_number,
                    line.product.name if line.product else "nothing on hand",
                    line.lot.lot_number if line.lot else "",
                    _mg(e.book_ug),
                    _mg(e.counted_ug),
                    _mg(diff),
                    chain.detail_of(e).get("method", ""),
                    inv.status if inv else "",
                    (inv.outcome or "") if inv else "",
                )
            )
    return _csv(header, rows)


def destructions_csv(db: Session, actor: Principal, report: list[EntryLine]) -> str:
    zone = clinic_time.zone(db, actor.clinic_id)
    header = (
        "destroyed_at", "registration", "ndc", "name", "strength", "form", "package_ml", "packages",
        "package_state", "total_destroyed_mg", "method", "location", "witness", "witness2", "recorded_by",
        "seq",
    )  # fmt: skip
    rows = []
    for line in report:
        d = chain.detail_of(line.entry)
        rows.append(
            (
                _local(line.entry.occurred_at, zone),
                d.get("registration"),
                d.get("ndc"),
                d.get("name"),
                d.get("strength"),
                d.get("form"),
                d.get("package_ml"),
                d.get("packages"),
                d.get("package_state"),
                d.get("total_destroyed_mg"),
                d.get("method"),
                d.get("location"),
                d.get("witness"),
                d.get("witness2"),
                line.entry.actor_name,
                line.entry.seq,
            )
        )
    return _csv(header, rows)


def losses_csv(db: Session, actor: Principal, report: list[LossView]) -> str:
    zone = clinic_time.zone(db, actor.clinic_id)
    header = (
        "discovered_at", "kind", "product", "lot", "amount_mg", "reportable", "notice_due_on",
        "notice_sent_at", "notice_reference", "form106_due_on", "form106_filed_at", "form106_reference",
        "description",
    )  # fmt: skip
    rows = (
        (
            _local(v.report.discovered_at, zone),
            v.report.kind,
            v.product.name,
            v.lot.lot_number,
            _mg(-v.entry.change_ug),
            "yes" if v.report.reportable else "no",
            v.report.notice_due_on,
            _local(v.report.notice_sent_at, zone) if v.report.notice_sent_at else "",
            v.report.notice_reference,
            v.report.form106_due_on,
            _local(v.report.form106_filed_at, zone) if v.report.form106_filed_at else "",
            v.report.form106_reference,
            v.entry.reason,
        )
        for v in report
    )
    return _csv(header, rows)
