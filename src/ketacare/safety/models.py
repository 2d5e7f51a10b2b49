"""Long-term safety monitoring: liver tests with their reference ranges, bladder (LUTS) screens,
holds, follow-up tasks (a urinalysis after a positive screen) and the clinic's intervals.

Results are append-only: a wrong entry is corrected by a new one. A hold is released, never
deleted; a task is completed, never deleted."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class LiverTest(Base):
    __tablename__ = "safety_liver_tests"
    __table_args__ = (
        CheckConstraint("alt_u_per_l >= 0 AND ast_u_per_l >= 0", name="values"),
        CheckConstraint("alt_uln_u_per_l > 0 AND ast_uln_u_per_l > 0", name="uln"),
        Index("ix_safety_liver_tests_patient_drawn", "patient_id", "drawn_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    drawn_on: Mapped[dt.date] = mapped_column(Date)
    alt_u_per_l: Mapped[float] = mapped_column(Float)
    alt_uln_u_per_l: Mapped[float] = mapped_column(Float)  # the lab's upper limit of normal
    ast_u_per_l: Mapped[float] = mapped_column(Float)
    ast_uln_u_per_l: Mapped[float] = mapped_column(Float)
    alp_u_per_l: Mapped[float | None] = mapped_column(Float)
    alp_uln_u_per_l: Mapped[float | None] = mapped_column(Float)
    ggt_u_per_l: Mapped[float | None] = mapped_column(Float)
    ggt_uln_u_per_l: Mapped[float | None] = mapped_column(Float)
    liver_symptoms: Mapped[bool] = mapped_column(Boolean, default=False)
    lab: Mapped[str | None] = mapped_column(String(120))
    outcome: Mapped[str] = mapped_column(String(20))  # normal, raised, hold
    findings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BladderScreen(Base):
    """A lower-urinary-tract-symptom screen: each item answered yes or no."""

    __tablename__ = "safety_bladder_screens"
    __table_args__ = (Index("ix_safety_bladder_screens_patient_on", "patient_id", "screened_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    screened_on: Mapped[dt.date] = mapped_column(Date)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)  # item key -> "yes" | "no"
    positive: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SafetyHold(Base):
    """Further ketamine is held until a prescriber releases the hold with a reason."""

    __tablename__ = "safety_holds"
    __table_args__ = (Index("ix_safety_holds_clinic_open", "clinic_id", "released_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # liver, bladder
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    tag: Mapped[str] = mapped_column(String(10))
    liver_test_id: Mapped[int | None] = mapped_column(ForeignKey("safety_liver_tests.id"))
    bladder_screen_id: Mapped[int | None] = mapped_column(ForeignKey("safety_bladder_screens.id"))
    placed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    placed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column()
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    release_reason: Mapped[str | None] = mapped_column(Text)


class SafetyTask(Base):
    """Something to do for a patient's safety (a urinalysis after a positive bladder screen)."""

    __tablename__ = "safety_tasks"
    __table_args__ = (Index("ix_safety_tasks_clinic_open", "clinic_id", "completed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # urinalysis
    title: Mapped[str] = mapped_column(String(200))
    due_on: Mapped[dt.date] = mapped_column(Date)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("safety_holds.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column()
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    result: Mapped[str | None] = mapped_column(Text)


class SafetySettingsRow(Base):
    """The clinic's own monitoring intervals; a NULL column means the design default applies."""

    __tablename__ = "safety_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), unique=True)
    lft_interval_days: Mapped[int | None] = mapped_column(Integer)
    bladder_interval_days: Mapped[int | None] = mapped_column(Integer)
    repeated_sessions: Mapped[int | None] = mapped_column(Integer)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
