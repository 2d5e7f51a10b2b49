"""Data use agreements: a limited data set (HIPAA 45 CFR 164.514(e)) leaves the clinic only under
one, recorded here with its recipient, purpose, period and who approved it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class DataUseAgreement(Base):
    __tablename__ = "research_data_use_agreements"
    __table_args__ = (Index("ix_research_dua_clinic", "clinic_id", "ends_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    recipient: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    approved_by: Mapped[str] = mapped_column(String(200))  # who signed for the clinic
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
