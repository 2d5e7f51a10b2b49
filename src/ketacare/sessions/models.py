"""Treatment sessions: the visit itself (state, pre-checks, what was given, vital signs, scores,
alarms, adverse events, discharge, signatures) and the clinic's alarm thresholds.

A ``TreatmentSession`` row is created when a booked plan session (``plan_sessions``) is checked
in; before that the booked session is the "scheduled" state. Records of what happened are
append-only: a correction is a new row."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
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


class TreatmentSession(Base):
    __tablename__ = "treatment_sessions"
    __table_args__ = (
        CheckConstraint("weight_kg IS NULL OR weight_kg > 0", name="weight"),
        Index("ix_treatment_sessions_clinic_status", "clinic_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("treatment_plans.id"), index=True)
    plan_session_id: Mapped[int] = mapped_column(ForeignKey("plan_sessions.id"), unique=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24))
    route: Mapped[str] = mapped_column(String(30))
    drug: Mapped[str] = mapped_column(String(20))  # ketamine or esketamine
    planned_dose_mg: Mapped[float | None] = mapped_column(Float)
    planned_duration_min: Mapped[int] = mapped_column(Integer)
    concentration_mg_per_ml: Mapped[float] = mapped_column(Float)
    chair_id: Mapped[int | None] = mapped_column(ForeignKey("clinic_chairs.id"))
    weight_kg: Mapped[float | None] = mapped_column(Float)
    nurse_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    prescriber_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    baseline: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # vital kind -> value
    bp_decision_reason: Mapped[str | None] = mapped_column(Text)
    bp_decision_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    bp_decision_at: Mapped[dt.datetime | None] = mapped_column()
    checked_in_at: Mapped[dt.datetime | None] = mapped_column()
    prechecks_at: Mapped[dt.datetime | None] = mapped_column()
    started_at: Mapped[dt.datetime | None] = mapped_column()
    recovery_at: Mapped[dt.datetime | None] = mapped_column()
    ready_at: Mapped[dt.datetime | None] = mapped_column()
    discharged_at: Mapped[dt.datetime | None] = mapped_column()
    discharged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    discharge_checks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    discharge_override_reason: Mapped[str | None] = mapped_column(Text)
    discharge_override_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    aborted_at: Mapped[dt.datetime | None] = mapped_column()
    abort_reason: Mapped[str | None] = mapped_column(Text)
    nurse_signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    nurse_signed_at: Mapped[dt.datetime | None] = mapped_column()
    prescriber_signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    prescriber_signed_at: Mapped[dt.datetime | None] = mapped_column()
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class SessionTransition(Base):
    """Every change of state, with who, when and why."""

    __tablename__ = "session_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    from_status: Mapped[str] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(Text)


class PreCheck(Base):
    """The completed pre-check list (saved once, when every gate passes)."""

    __tablename__ = "session_prechecks"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"), unique=True)
    weight_kg: Mapped[float] = mapped_column(Float)
    consent_on_file: Mapped[bool] = mapped_column(Boolean)
    ecg_required: Mapped[bool] = mapped_column(Boolean)
    ecg_on_file: Mapped[bool] = mapped_column(Boolean)
    lft_required: Mapped[bool] = mapped_column(Boolean)
    lft_on_file: Mapped[bool] = mapped_column(Boolean)
    pregnancy_test: Mapped[str] = mapped_column(String(20))  # negative, not_applicable
    escort_name: Mapped[str] = mapped_column(String(120))
    escort_phone: Mapped[str] = mapped_column(String(40))
    oximeter_connected: Mapped[bool] = mapped_column(Boolean)
    prescriber_on_site_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    completed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Administration(Base):
    """One timed, signed entry of the administration record.

    ``kind``: start, rate_change, stop (a ketamine infusion), bolus, dose (a non-IV route or an
    esketamine device), premedication, rescue."""

    __tablename__ = "session_administrations"
    __table_args__ = (
        CheckConstraint("rate_mg_per_h IS NULL OR rate_mg_per_h >= 0", name="rate"),
        CheckConstraint("dose_mg IS NULL OR dose_mg > 0", name="dose"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    drug: Mapped[str] = mapped_column(String(60))
    route: Mapped[str] = mapped_column(String(30))
    product: Mapped[str | None] = mapped_column(String(120))
    lot: Mapped[str | None] = mapped_column(String(60))
    # The controlled-substance ledger's lot the dose came from (None before the clinic keeps its
    # stock in KetaCare's ledger, and for non-controlled drugs).
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_lots.id"))
    concentration_mg_per_ml: Mapped[float | None] = mapped_column(Float)
    rate_mg_per_h: Mapped[float | None] = mapped_column(Float)
    dose_mg: Mapped[float | None] = mapped_column(Float)
    # A prescriber's written reason to go past a judgement-call limit (above the plan's rate or
    # dose for this session); hard limits and ceilings have no override.
    override_reason: Mapped[str | None] = mapped_column(Text)
    override_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    given_at: Mapped[dt.datetime] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VitalSign(Base):
    __tablename__ = "session_vitals"
    __table_args__ = (Index("ix_session_vitals_session_time", "session_id", "observed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"))
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[float] = mapped_column(Float)
    observed_at: Mapped[dt.datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(10))  # manual, hl7, rest
    device_id: Mapped[str | None] = mapped_column(String(120))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeviceMessage(Base):
    """A device message taken in, by its control id: a resent duplicate is acknowledged and ignored."""

    __tablename__ = "session_device_messages"
    __table_args__ = (UniqueConstraint("clinic_id", "device_id", "control_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    device_id: Mapped[str] = mapped_column(String(120))
    control_id: Mapped[str] = mapped_column(String(120))
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    source: Mapped[str] = mapped_column(String(10))
    observations: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ScoreRecord(Base):
    """A scale administered: each item stored, the total computed."""

    __tablename__ = "session_scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    scale: Mapped[str] = mapped_column(String(20))  # cadss6, moaas, rass, nrs
    phase: Mapped[str] = mapped_column(String(10))  # before, during, after
    items: Mapped[list[int]] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer)
    observed_at: Mapped[dt.datetime] = mapped_column()
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AlarmSetting(Base):
    """A clinic's own value for one alarm rule (or ``escalation_s``); absent = the default."""

    __tablename__ = "clinic_alarm_settings"
    __table_args__ = (UniqueConstraint("clinic_id", "rule_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    rule_key: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Alarm(Base):
    """raised -> acknowledged -> resolved. ``open_rule`` holds the rule key while the alarm is
    not resolved (NULL after), so the database allows one open alarm per rule per session."""

    __tablename__ = "session_alarms"
    __table_args__ = (
        UniqueConstraint("session_id", "open_rule"),
        Index("ix_session_alarms_clinic_status", "clinic_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    rule_key: Mapped[str] = mapped_column(String(40))
    open_rule: Mapped[str | None] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(String(300))
    vital: Mapped[str] = mapped_column(String(10))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(15))
    observed_at: Mapped[dt.datetime] = mapped_column()
    raised_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledge_note: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolve_note: Mapped[str | None] = mapped_column(Text)
    escalated_at: Mapped[dt.datetime | None] = mapped_column()


class Notice(Base):
    """A message to one member of staff (the prescriber): alarm escalations, AE reviews."""

    __tablename__ = "staff_notices"
    __table_args__ = (Index("ix_staff_notices_user_read", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_sessions.id"))
    kind: Mapped[str] = mapped_column(String(20))  # alarm, escalation, ae_review
    message: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column()


class AdverseEvent(Base):
    __tablename__ = "adverse_events"
    __table_args__ = (
        CheckConstraint("grade >= 1 AND grade <= 5", name="grade"),
        Index("ix_adverse_events_clinic", "clinic_id", "onset_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    term_key: Mapped[str] = mapped_column(String(40))
    term: Mapped[str] = mapped_column(String(200))
    onset_at: Mapped[dt.datetime] = mapped_column()
    grade: Mapped[int] = mapped_column(Integer)
    serious: Mapped[bool] = mapped_column(Boolean)
    needed_intervention: Mapped[bool] = mapped_column(Boolean)
    actions: Mapped[list[str]] = mapped_column(JSON)
    medication_given: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(30))
    description: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    needs_review: Mapped[bool] = mapped_column(Boolean)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column()
    review_note: Mapped[str | None] = mapped_column(Text)


class RemsForm(Base):
    """What the Spravato REMS Patient Monitoring Form needs, for an esketamine session."""

    __tablename__ = "session_rems_forms"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_sessions.id"), unique=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
