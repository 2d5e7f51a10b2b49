"""Prescribers' credentials, the clinic's scope-of-practice rules and prescribing settings,
encounters, PDMP checks, and take-home prescriptions.

A signed prescription is never changed: database triggers (migration 0006) refuse an UPDATE or
a DELETE of a ``prescriptions`` row whose ``signed_at`` is set. A correction is a cancellation
(a row of its own) and a new prescription."""

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
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class StateLicence(Base):
    """A state licence to practise (medicine, nursing) held by a staff member."""

    __tablename__ = "rx_state_licences"
    __table_args__ = (UniqueConstraint("user_id", "state", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(2))
    number: Mapped[str] = mapped_column(String(40))
    profession: Mapped[str] = mapped_column(String(60))
    expires_on: Mapped[dt.date] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeaRegistration(Base):
    """A DEA registration (one per state where the prescriber practises), number checked by its
    check digit; ``name_mismatch_reason`` documents a second letter that is not the last name's."""

    __tablename__ = "rx_dea_registrations"
    __table_args__ = (UniqueConstraint("user_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    number: Mapped[str] = mapped_column(String(9))
    state: Mapped[str] = mapped_column(String(2))
    expires_on: Mapped[dt.date] = mapped_column(Date)
    name_mismatch_reason: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PrescriberProfile(Base):
    """One row per staff member: the NPI (Luhn-checked)."""

    __tablename__ = "rx_prescriber_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    npi: Mapped[str | None] = mapped_column(String(10))
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BoardCertification(Base):
    __tablename__ = "rx_board_certifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    board: Mapped[str] = mapped_column(String(120))
    specialty: Mapped[str] = mapped_column(String(120))
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ScopeRule(Base):
    """The clinic's own scope of practice: ``role`` may (or may not) ``activity`` in ``state``
    ("*" = every state). Without a matching row the design defaults in prescribing.toml apply."""

    __tablename__ = "rx_scope_rules"
    __table_args__ = (UniqueConstraint("clinic_id", "role", "activity", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    activity: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(2))
    allowed: Mapped[bool] = mapped_column(Boolean)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RxSettingsRow(Base):
    """The clinic's own prescribing settings; a NULL column means the knowledge default applies."""

    __tablename__ = "rx_settings"
    __table_args__ = (
        CheckConstraint(
            "pdmp_window_days IS NULL OR (pdmp_window_days >= 1 AND pdmp_window_days <= 90)", name="pdmp"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), unique=True)
    flexibility_end: Mapped[dt.date | None] = mapped_column(Date)
    flexibility_alert_days: Mapped[int | None] = mapped_column(Integer)
    pdmp_window_days: Mapped[int | None] = mapped_column(Integer)
    early_refill_min_used_pct: Mapped[int | None] = mapped_column(Integer)
    monthly_limit_mg: Mapped[float | None] = mapped_column(Float)
    credential_alert_days: Mapped[int | None] = mapped_column(Integer)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Encounter(Base):
    """A prescriber's encounter with the patient: in person (an in-person medical evaluation), or
    telehealth (audio-video or audio-only), with the state the patient was in."""

    __tablename__ = "rx_encounters"
    __table_args__ = (Index("ix_rx_encounters_patient_on", "patient_id", "occurred_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(20))  # in_person or telehealth
    modality: Mapped[str] = mapped_column(String(20))  # in_person, audio_video, audio_only
    occurred_on: Mapped[dt.date] = mapped_column(Date)
    patient_state: Mapped[str | None] = mapped_column(String(2))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PdmpCheck(Base):
    """A query of the state prescription-drug monitoring programme, as the prescriber recorded it."""

    __tablename__ = "rx_pdmp_checks"
    __table_args__ = (Index("ix_rx_pdmp_checks_patient_on", "patient_id", "checked_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    checked_on: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(2))
    findings: Mapped[str] = mapped_column(String(20))  # none, concerning
    note: Mapped[str | None] = mapped_column(Text)
    checked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Prescription(Base):
    """A take-home ketamine prescription: a draft until signed, then never changed."""

    __tablename__ = "prescriptions"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("days_supply >= 1", name="days_supply"),
        CheckConstraint("refills >= 0 AND refills <= 5", name="refills"),
        CheckConstraint("strength_mg > 0", name="strength"),
        Index("ix_prescriptions_patient_issued", "patient_id", "issued_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    encounter_id: Mapped[int | None] = mapped_column(ForeignKey("rx_encounters.id"))
    product_key: Mapped[str] = mapped_column(String(60))
    product_name: Mapped[str] = mapped_column(String(200))
    drug: Mapped[str] = mapped_column(String(20))
    route: Mapped[str] = mapped_column(String(20))
    dosage_form: Mapped[str] = mapped_column(String(40))
    strength_mg: Mapped[float] = mapped_column(Float)  # per unit
    unit: Mapped[str] = mapped_column(String(20))
    compounded: Mapped[bool] = mapped_column(Boolean)
    quantity: Mapped[float] = mapped_column(Float)  # units
    days_supply: Mapped[int] = mapped_column(Integer)
    directions: Mapped[str] = mapped_column(Text)
    refills: Mapped[int] = mapped_column(Integer)
    issued_on: Mapped[dt.date] = mapped_column(Date)
    compounded_ack: Mapped[str | None] = mapped_column(Text)
    compounded_ack_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    compounded_ack_at: Mapped[dt.datetime | None] = mapped_column()
    mme_justification: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[dt.datetime | None] = mapped_column()
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    warnings_acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    checks_at_signing: Mapped[list[Any] | None] = mapped_column(JSON)
    content_sha256: Mapped[str | None] = mapped_column(String(64))


class PrescriptionCancellation(Base):
    """Cancelling a signed prescription adds this row; the prescription itself stays as signed."""

    __tablename__ = "prescription_cancellations"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescriptions.id"), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    cancelled_on: Mapped[dt.date] = mapped_column(Date)
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancelled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
