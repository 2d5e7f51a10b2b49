"""Treatment plans and what hangs off them: sessions on the calendar, care-plan items,
response assessments, consents; plus the clinic's chairs, price list and own protocols."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class Chair(Base):
    """An infusion chair (or bed) in a room: what a session occupies."""

    __tablename__ = "clinic_chairs"
    __table_args__ = (UniqueConstraint("clinic_id", "room", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    room: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(60))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class PriceList(Base):
    """The clinic's prices; one row per clinic, edited by the clinic admin."""

    __tablename__ = "clinic_price_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), unique=True)
    consultation_usd: Mapped[float] = mapped_column(Float)
    drug_usd_per_mg: Mapped[float] = mapped_column(Float)
    premedication_usd_per_session: Mapped[float] = mapped_column(Float)
    session_bands: Mapped[list[Any]] = mapped_column(JSON)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ScheduleSettings(Base):
    """The clinic's opening hours and the slot grid the calendar searches; one row per clinic.
    Without a row the design defaults in ``scheduling.DEFAULT_HOURS`` apply."""

    __tablename__ = "clinic_schedule_settings"
    __table_args__ = (
        CheckConstraint("opens_at < closes_at", name="hours"),
        CheckConstraint("slot_min >= 5 AND slot_min <= 240", name="slot"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), unique=True)
    opens_at: Mapped[dt.time] = mapped_column(Time)
    closes_at: Mapped[dt.time] = mapped_column(Time)
    slot_min: Mapped[int] = mapped_column(Integer)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ClinicClinicalDefaults(Base):
    """The clinic's own values for the clinic-editable clinical defaults ([M] or design in the
    knowledge files); one row per clinic. A NULL column means the knowledge default applies.
    Ranges are checked by ``planning.schemas.ClinicalDefaultsIn`` (see ``clinical_defaults.SPECS``)."""

    __tablename__ = "clinic_clinical_defaults"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), unique=True)
    weight_max_age_days: Mapped[int | None] = mapped_column(Integer)
    pump_increment_ml_per_h: Mapped[float | None] = mapped_column(Float)
    syringe_increment_ml: Mapped[float | None] = mapped_column(Float)
    prior_therapies_minimum: Mapped[int | None] = mapped_column(Integer)
    psychotomimetic_long_min: Mapped[float | None] = mapped_column(Float)
    high_frequency_sessions: Mapped[int | None] = mapped_column(Integer)
    session_max_mg: Mapped[float | None] = mapped_column(Float)
    session_max_mg_per_kg: Mapped[float | None] = mapped_column(Float)
    day_max_mg: Mapped[float | None] = mapped_column(Float)
    day_max_mg_per_kg: Mapped[float | None] = mapped_column(Float)
    inpatient_day_max_mg: Mapped[float | None] = mapped_column(Float)
    inpatient_day_max_mg_per_kg: Mapped[float | None] = mapped_column(Float)
    icu_day_max_mg_per_kg: Mapped[float | None] = mapped_column(Float)
    adult_weight_min_kg: Mapped[float | None] = mapped_column(Float)
    adult_weight_max_kg: Mapped[float | None] = mapped_column(Float)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DutyShift(Base):
    """A nurse or prescriber on duty in the clinic on a date, between two clinic-local times."""

    __tablename__ = "staff_duty_shifts"
    __table_args__ = (CheckConstraint("start_time < end_time", name="hours"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    on_date: Mapped[dt.date] = mapped_column(Date, index=True)
    start_time: Mapped[dt.time] = mapped_column(Time)
    end_time: Mapped[dt.time] = mapped_column(Time)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ClinicProtocol(Base):
    """A clinic's own protocol or a new version of a built-in one (the newest version wins)."""

    __tablename__ = "clinic_protocols"
    __table_args__ = (UniqueConstraint("clinic_id", "key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    key: Mapped[str] = mapped_column(String(60))
    version: Mapped[int] = mapped_column(Integer)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TreatmentPlan(Base):
    __tablename__ = "treatment_plans"
    __table_args__ = (
        CheckConstraint("sessions >= 1", name="sessions"),
        CheckConstraint("weight_kg > 0", name="weight"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))  # series or booster
    status: Mapped[str] = mapped_column(String(20))  # planned, scheduled, cancelled
    protocol_key: Mapped[str] = mapped_column(String(60))
    protocol_version: Mapped[int] = mapped_column(Integer)
    protocol_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    indication: Mapped[str | None] = mapped_column(String(200))
    evidence_grade: Mapped[str | None] = mapped_column(String(2))
    eligibility_status: Mapped[str] = mapped_column(String(20))
    route: Mapped[str] = mapped_column(String(30))
    dose: Mapped[float] = mapped_column(Float)
    dose_unit: Mapped[str] = mapped_column(String(12))
    titration_start: Mapped[float | None] = mapped_column(Float)
    session_duration_min: Mapped[int] = mapped_column(Integer)
    sessions: Mapped[int] = mapped_column(Integer)
    interval_days: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    preferred_time: Mapped[str] = mapped_column(String(5))
    concentration_mg_per_ml: Mapped[float] = mapped_column(Float)
    premedication: Mapped[list[str]] = mapped_column(JSON)
    weight_kg: Mapped[float] = mapped_column(Float)
    weight_measured_on: Mapped[dt.date] = mapped_column(Date)
    session_doses: Mapped[list[Any]] = mapped_column(JSON)
    max_session_mg: Mapped[float | None] = mapped_column(Float)
    series_mg: Mapped[float | None] = mapped_column(Float)
    findings: Mapped[list[Any]] = mapped_column(JSON)
    dose_override_reason: Mapped[str | None] = mapped_column(Text)
    series_override_reason: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column()
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class PlanSession(Base):
    """A booked session; ``status`` is booked or cancelled (a cancelled one keeps its reason)."""

    __tablename__ = "plan_sessions"
    __table_args__ = (UniqueConstraint("plan_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("treatment_plans.id"), index=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[dt.datetime] = mapped_column(index=True)
    ends_at: Mapped[dt.datetime] = mapped_column()
    chair_id: Mapped[int] = mapped_column(ForeignKey("clinic_chairs.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    dose_mg: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="booked")
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column()
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class CarePlanItem(Base):
    __tablename__ = "care_plan_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_plans.id"), index=True)
    category: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(String(300))
    owner: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20))
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ResponseAssessment(Base):
    """A prescriber-documented response to a series; the booster rule reads it."""

    __tablename__ = "response_assessments"
    __table_args__ = (
        CheckConstraint("baseline_nrs >= 0 AND baseline_nrs <= 10", name="baseline_nrs"),
        CheckConstraint("followup_nrs >= 0 AND followup_nrs <= 10", name="followup_nrs"),
        CheckConstraint("pgic IS NULL OR (pgic >= 1 AND pgic <= 7)", name="pgic"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("treatment_plans.id"), index=True)
    assessed_on: Mapped[dt.date] = mapped_column(Date)
    baseline_nrs: Mapped[float] = mapped_column(Float)
    followup_nrs: Mapped[float] = mapped_column(Float)
    pgic: Mapped[int | None] = mapped_column(Integer)
    relief_days: Mapped[int] = mapped_column(Integer)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Consent(Base):
    """Off-label treatment consent: the text generated from the plan, signed once, never edited.
    ``content_sha256`` covers the text; ``signature_sha256`` the text plus the signature.
    Database triggers (migration 0002) refuse any UPDATE or DELETE of a signed row."""

    __tablename__ = "plan_consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("treatment_plans.id"), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    generated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    signed_name: Mapped[str | None] = mapped_column(String(200))
    signed_on: Mapped[dt.date | None] = mapped_column(Date)
    signed_at: Mapped[dt.datetime | None] = mapped_column()
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    signature_sha256: Mapped[str | None] = mapped_column(String(64))
