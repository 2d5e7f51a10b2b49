"""The patient record: demographics, contact, body measurements, conditions, medications, allergies,
and observations recorded by other systems."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("clinic_id", "record_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    record_number: Mapped[str] = mapped_column(String(20))
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100), index=True)
    date_of_birth: Mapped[dt.date] = mapped_column(Date, index=True)
    sex: Mapped[str] = mapped_column(String(10))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    address_line: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(2))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Measurement(Base):
    """Weight and height on the date measured: doses are computed from the latest weight."""

    __tablename__ = "patient_measurements"
    __table_args__ = (
        CheckConstraint("weight_kg IS NULL OR (weight_kg > 0 AND weight_kg < 700)", name="weight"),
        CheckConstraint("height_cm IS NULL OR (height_cm > 0 AND height_cm < 300)", name="height"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    weight_kg: Mapped[float | None] = mapped_column(Float)
    height_cm: Mapped[float | None] = mapped_column(Float)
    measured_on: Mapped[dt.date] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Condition(Base):
    __tablename__ = "patient_conditions"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    icd10_code: Mapped[str] = mapped_column(String(10))
    display: Mapped[str] = mapped_column(String(200))
    onset_date: Mapped[dt.date | None] = mapped_column(Date)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Medication(Base):
    __tablename__ = "patient_medications"
    __table_args__ = (
        CheckConstraint("dose_amount IS NULL OR dose_amount > 0", name="dose_positive"),
        CheckConstraint(
            "doses_per_day IS NULL OR (doses_per_day > 0 AND doses_per_day <= 24)",
            name="doses_per_day",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    drug_class: Mapped[str] = mapped_column(String(40))
    dose_amount: Mapped[float | None] = mapped_column(Float)
    dose_unit: Mapped[str | None] = mapped_column(String(20))
    doses_per_day: Mapped[float | None] = mapped_column(Float)
    route: Mapped[str | None] = mapped_column(String(30))
    started_on: Mapped[dt.date | None] = mapped_column(Date)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Allergy(Base):
    __tablename__ = "patient_allergies"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    substance: Mapped[str] = mapped_column(String(120))  # as written (free text)
    # The coded allergen (knowledge allergens.toml); None: free text only.
    substance_code: Mapped[str | None] = mapped_column(String(40))
    reaction: Mapped[str | None] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PatientObservation(Base):
    """An observation another system recorded (vital signs, a pain score), kept with its original
    code and the unit KetaCare stores it in; imported from FHIR, shown on the record and exported
    again. KetaCare's own rules (doses, alarms, outcomes) never read it. A panel (blood pressure)
    has no ``value`` of its own: its parts are in ``components``."""

    __tablename__ = "patient_observations"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    code_system: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(40))
    display: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40))  # FHIR observation-category code
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(40))  # UCUM
    # [{"code_system", "code", "display", "value", "unit"}] for a panel; None otherwise.
    components: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    effective_at: Mapped[dt.datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(200))  # where it came from, e.g. "FHIR import: Observation/x"
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
