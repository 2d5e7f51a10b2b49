"""The controlled-substance ledger: registrations, products, lots, and the append-only,
hash-chained entries an inspector reads.

``ledger_entries`` and ``ledger_inventories`` are append-only in the database (migration 0005
adds triggers refusing UPDATE and DELETE on SQLite and PostgreSQL); a correction is a new
entry. Each clinic has its own chain: ``ledger_heads`` holds the clinic's last sequence number
and hash, and appending first updates that row, so concurrent writers of one clinic append one
after another. ``ledger_lots.balance_ug`` is the running balance per lot: it changes only by a
conditional UPDATE (``... WHERE balance_ug >= :amount``) in the same transaction as the entry,
and ``CHECK (balance_ug >= 0)`` refuses anything that would make it negative. Quantities are
integer micrograms (see ``ledger.rules``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ketacare import integrity
from ketacare.db import Base, utcnow

GENESIS_HASH = integrity.GENESIS_HASH
# The least retention the law allows, held by the database too (21 USC 827(b), knowledge: retention).
MIN_RETENTION_YEARS = 2


class Registration(Base):
    """A DEA registration of the clinic at one location (a clinic may hold several)."""

    __tablename__ = "ledger_registrations"
    __table_args__ = (UniqueConstraint("clinic_id", "dea_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    dea_number: Mapped[str] = mapped_column(String(9))
    location_name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(400))
    state: Mapped[str] = mapped_column(String(2))
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Product(Base):
    """A stocked product: ketamine at one strength in one container, compounded or approved."""

    __tablename__ = "ledger_products"
    __table_args__ = (
        CheckConstraint("strength_mg_per_ml > 0", name="strength"),
        CheckConstraint("container_ml > 0", name="container"),
        CheckConstraint("schedule = 'III'", name="schedule"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    ndc: Mapped[str | None] = mapped_column(String(13))
    strength_mg_per_ml: Mapped[float] = mapped_column(Float)
    container_ml: Mapped[float] = mapped_column(Float)
    dosage_form: Mapped[str] = mapped_column(String(60))  # a key of knowledge products.toml [form]
    # ketamine or esketamine (knowledge products.toml [ingredient]); None: not coded yet (a
    # product from before coding), never drawn for an administration until an admin codes it.
    ingredient: Mapped[str | None] = mapped_column(String(20))
    compounded: Mapped[bool] = mapped_column(Boolean, default=False)
    schedule: Mapped[str] = mapped_column(String(4), default="III")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Lot(Base):
    """One manufacturer's lot of a product held under one registration, with its balance."""

    __tablename__ = "ledger_lots"
    __table_args__ = (
        UniqueConstraint("registration_id", "product_id", "lot_number"),
        CheckConstraint("balance_ug >= 0", name="balance_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("ledger_registrations.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("ledger_products.id"), index=True)
    lot_number: Mapped[str] = mapped_column(String(60))
    expires_on: Mapped[dt.date] = mapped_column(Date)
    supplier: Mapped[str] = mapped_column(String(200))
    balance_ug: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LedgerHead(Base):
    """The end of one clinic's chain: its last sequence number and hash."""

    __tablename__ = "ledger_heads"

    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class Inventory(Base):
    """An initial or biennial inventory of one registration; its counts are ledger entries."""

    __tablename__ = "ledger_inventories"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("ledger_registrations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # initial or biennial
    taken_at: Mapped[dt.datetime] = mapped_column()
    taken_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LedgerEntry(Base):
    """One movement or count of stock. ``change_ug`` is signed (receipts add, administrations
    take out, counts change nothing but the initial inventory, which opens the lot)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("clinic_id", "seq"),
        Index("ix_ledger_entries_lot_seq", "lot_id", "seq"),
        Index("ix_ledger_entries_patient", "patient_id"),
        Index("ix_ledger_entries_clinic_kind", "clinic_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    seq: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[dt.datetime] = mapped_column()
    occurred_at: Mapped[dt.datetime] = mapped_column()
    kind: Mapped[str] = mapped_column(String(24))
    registration_id: Mapped[int] = mapped_column(ForeignKey("ledger_registrations.id"))
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_lots.id"))
    change_ug: Mapped[int] = mapped_column(BigInteger, default=0)
    balance_after_ug: Mapped[int | None] = mapped_column(BigInteger)
    counted_ug: Mapped[int | None] = mapped_column(BigInteger)
    book_ug: Mapped[int | None] = mapped_column(BigInteger)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(200))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    witness_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    witness2_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON of the kind's fields
    corrects_seq: Mapped[int | None] = mapped_column(Integer)
    inventory_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_inventories.id"), index=True)
    scheme: Mapped[int] = mapped_column(Integer, server_default="1")  # 1 unkeyed (old), 2 keyed
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class Investigation(Base):
    """Opened by a count that differs from the book balance; closed with an outcome."""

    __tablename__ = "ledger_investigations"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("ledger_lots.id"))
    discrepancy_ug: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open or closed
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    outcome: Mapped[str | None] = mapped_column(Text)


class InvestigationNote(Base):
    __tablename__ = "ledger_investigation_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    investigation_id: Mapped[int] = mapped_column(ForeignKey("ledger_investigations.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    by_name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)


class LossReport(Base):
    """The reporting duties of a theft or loss entry: the notice and DEA Form 106."""

    __tablename__ = "ledger_loss_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # theft or loss
    discovered_at: Mapped[dt.datetime] = mapped_column()
    reportable: Mapped[bool] = mapped_column(Boolean)
    notice_due_on: Mapped[dt.date | None] = mapped_column(Date)
    form106_due_on: Mapped[dt.date | None] = mapped_column(Date)
    notice_sent_at: Mapped[dt.datetime | None] = mapped_column()
    notice_sent_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    notice_reference: Mapped[str | None] = mapped_column(Text)
    form106_filed_at: Mapped[dt.datetime | None] = mapped_column()
    form106_filed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    form106_reference: Mapped[str | None] = mapped_column(String(100))


class LedgerSettings(Base):
    """The clinic's retention (stricter states ask for more than two years) and dashboard window."""

    __tablename__ = "ledger_settings"
    __table_args__ = (
        CheckConstraint(f"retention_years >= {MIN_RETENTION_YEARS}", name="retention_minimum"),
        CheckConstraint("expiry_warning_days >= 0", name="expiry_warning"),
    )

    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), primary_key=True, autoincrement=False)
    retention_years: Mapped[int] = mapped_column(Integer)
    retention_basis: Mapped[str] = mapped_column(Text, default="")
    expiry_warning_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
