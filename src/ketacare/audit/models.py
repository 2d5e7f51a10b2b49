"""The append-only, hash-chained audit trail.

Each clinic has its own chain (``chain_id`` = the clinic's id); entries without a clinic (a
failed log-in of an unknown user, commands run by the operator) go to the system chain
(``chain_id`` 0). ``audit_heads`` holds each chain's length and last hash. Entries are appended
when the transaction commits (``service.append_pending``): the head row's lock is held only from
that instant to the commit, and two clinics never wait for one another. ``seq`` is the row's
number across all chains (display order); ``chain_seq`` is its place in its chain. Entries
written before the chains were keyed and split per clinic are the start of the system chain,
with ``scheme`` 1 (see ``ketacare.integrity``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketacare import integrity
from ketacare.db import Base

GENESIS_HASH = integrity.GENESIS_HASH
SYSTEM_CHAIN = 0


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_patient_at", "patient_id", "at"),
        Index("ix_audit_entries_user_at", "user_id", "at"),
        Index("ix_audit_entries_chain", "chain_id", "chain_seq", unique=True),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(Integer)
    chain_seq: Mapped[int] = mapped_column(Integer)
    scheme: Mapped[int] = mapped_column(Integer, server_default="1")
    at: Mapped[dt.datetime] = mapped_column()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str | None] = mapped_column(String(80))
    role: Mapped[str | None] = mapped_column(String(20))
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id"), index=True)
    action: Mapped[str] = mapped_column(String(60))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))
    client_addr: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_heads"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
