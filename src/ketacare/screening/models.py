"""Screening: the referral and screening answers (append-only; the newest counts) and the
prescribers' documented overrides of relative cautions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class ScreeningAssessment(Base):
    __tablename__ = "screening_assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    referred_on: Mapped[dt.date | None] = mapped_column(Date)
    referral_source: Mapped[str | None] = mapped_column(String(200))
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    prior_therapies: Mapped[list[str]] = mapped_column(JSON)
    sbp_mmhg: Mapped[float | None] = mapped_column(Float)
    dbp_mmhg: Mapped[float | None] = mapped_column(Float)
    ecg_on: Mapped[dt.date | None] = mapped_column(Date)
    lft_on: Mapped[dt.date | None] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EligibilityOverride(Base):
    """A prescriber's written reason for going ahead despite a relative caution."""

    __tablename__ = "eligibility_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    caution_key: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    overridden_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    overridden_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
