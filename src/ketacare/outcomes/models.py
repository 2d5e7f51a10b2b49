"""Outcome tables: the clinic's follow-up settings, each follow-up questionnaire (with its
single-use link, stored hashed, and its draft), the answers item by item with their scores,
the pain diary and the opioid load (MME/day) over time."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class OutcomeSettings(Base):
    """A clinic's follow-up schedule and link settings; absent = the sourced defaults."""

    __tablename__ = "outcome_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), unique=True)
    schedule_days: Mapped[list[int]] = mapped_column(JSON)
    monthly_every_days: Mapped[int] = mapped_column(Integer)
    monthly_until_days: Mapped[int] = mapped_column(Integer)
    link_valid_days: Mapped[int] = mapped_column(Integer)
    reminder_after_days: Mapped[int] = mapped_column(Integer)
    bpi_licence: Mapped[str | None] = mapped_column(String(200))
    # how far before a series its baseline NRS may be (days); none: the design default
    baseline_lookback_days: Mapped[int | None] = mapped_column(Integer)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FollowUp(Base):
    """One questionnaire due for one patient. ``status``: scheduled, sent, completed, cancelled.

    The link is an HMAC-signed token; only its SHA-256 is kept, so the database cannot mint a
    link. Issuing a new link replaces the hash (the old link stops working); the draft stays.
    """

    __tablename__ = "outcome_follow_ups"
    __table_args__ = (Index("ix_outcome_follow_ups_due", "status", "due_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    # the series (treatment plan) a follow-up after a series belongs to; none for a baseline or
    # end-of-session questionnaire, which are not follow-ups
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_plans.id"), index=True)
    timepoint: Mapped[str] = mapped_column(String(30))
    days_after_series: Mapped[int | None] = mapped_column(Integer)
    series_end_on: Mapped[dt.date | None] = mapped_column(Date)
    due_on: Mapped[dt.date] = mapped_column(Date)
    instruments: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="scheduled")
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    reminded_at: Mapped[dt.datetime | None] = mapped_column()
    draft: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    draft_saved_at: Mapped[dt.datetime | None] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column()
    completed_via: Mapped[str | None] = mapped_column(String(10))  # link, staff
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutcomeAnswer(Base):
    """One answered item; PGIC answers carry the scale orientation they were given in."""

    __tablename__ = "outcome_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    follow_up_id: Mapped[int] = mapped_column(ForeignKey("outcome_follow_ups.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    instrument: Mapped[str] = mapped_column(String(20))
    item: Mapped[str] = mapped_column(String(40))
    value: Mapped[int] = mapped_column(Integer)
    orientation: Mapped[str | None] = mapped_column(String(30))
    answered_at: Mapped[dt.datetime] = mapped_column()


class OutcomeScore(Base):
    """An instrument's score for one completed follow-up (derived from the answers, kept for the registry)."""

    __tablename__ = "outcome_scores"
    __table_args__ = (Index("ix_outcome_scores_patient_instrument", "patient_id", "instrument"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    follow_up_id: Mapped[int] = mapped_column(ForeignKey("outcome_follow_ups.id"), index=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    instrument: Mapped[str] = mapped_column(String(20))
    timepoint: Mapped[str] = mapped_column(String(30))
    score: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[dt.datetime] = mapped_column()


class DiaryEntry(Base):
    """A pain-diary entry by the patient (a flare or a day's pain)."""

    __tablename__ = "outcome_diary"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    nrs: Mapped[int] = mapped_column(Integer)
    flare: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MmeReading(Base):
    """The patient's opioid load on a day (CDC 2022 MME/day from the medication list);
    opioids with no factor are listed, never counted as zero."""

    __tablename__ = "outcome_mme"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    measured_on: Mapped[dt.date] = mapped_column(Date)
    mme_per_day: Mapped[float | None] = mapped_column(Float)
    unconverted: Mapped[list[str]] = mapped_column(JSON)
    benzodiazepine: Mapped[bool] = mapped_column(Boolean)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
