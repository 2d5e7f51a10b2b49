"""The public front door's tables: clinic profiles (1:1 with a clinic), consultation slots and
requests, reviews, and the hits that rate-limit the public forms."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ketacare.db import Base, utcnow


class ClinicProfile(Base):
    """A clinic's public profile; one row per clinic, edited by its clinic admin."""

    __tablename__ = "directory_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), unique=True)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    street: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(2))
    zip: Mapped[str] = mapped_column(String(5))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    public_phone: Mapped[str] = mapped_column(String(40), default="")
    routes: Mapped[list[Any]] = mapped_column(JSON)
    setting: Mapped[str] = mapped_column(String(20))
    room_type: Mapped[str] = mapped_column(String(20))
    physicians: Mapped[int] = mapped_column(Integer, default=0)
    crnas: Mapped[int] = mapped_column(Integer, default=0)
    nurse_practitioners: Mapped[int] = mapped_column(Integer, default=0)
    acls_certified: Mapped[bool] = mapped_column(Boolean, default=False)
    board_certified: Mapped[bool] = mapped_column(Boolean, default=False)
    years_experience: Mapped[int] = mapped_column(Integer, default=0)
    equipment: Mapped[list[Any]] = mapped_column(JSON)
    insurance_policy: Mapped[str] = mapped_column(Text, default="")
    offers_superbill: Mapped[bool] = mapped_column(Boolean, default=False)
    # (design) clinic-editable: the facts give no number of maintenance boosters a year.
    boosters_per_year_min: Mapped[int] = mapped_column(Integer, default=4)
    boosters_per_year_max: Mapped[int] = mapped_column(Integer, default=12)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ConsultationSlot(Base):
    """A consultation time a clinic offers. ``status`` moves open -> booked with a conditional
    UPDATE, so two requests can never take the same slot."""

    __tablename__ = "directory_slots"
    __table_args__ = (UniqueConstraint("clinic_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    starts_at: Mapped[dt.datetime] = mapped_column()
    minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open, booked, withdrawn
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ConsultationRequest(Base):
    """A booked consultation. ``slot_id`` is UNIQUE while the request holds the slot and is
    cleared on cancellation (``starts_at`` keeps the time); ``answers`` is the self-assessment,
    kept only with the person's consent."""

    __tablename__ = "directory_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    slot_id: Mapped[int | None] = mapped_column(ForeignKey("directory_slots.id"), unique=True)
    starts_at: Mapped[dt.datetime] = mapped_column()
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(40), default="")
    route_wanted: Mapped[str] = mapped_column(String(30), default="")
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outcome: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="requested")  # requested, seen, cancelled
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column()


class ClinicReview(Base):
    """One review per patient per clinic; moderated by the clinic admin, hidden with a public
    reason, never deleted."""

    __tablename__ = "directory_reviews"
    __table_args__ = (UniqueConstraint("clinic_id", "patient_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    rating: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending, published, hidden
    moderation_reason: Mapped[str] = mapped_column(Text, default="")
    moderated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    moderated_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FormHit(Base):
    """One submission of a public form, keyed by an HMAC of the address (never the address):
    kept in the database so the limits hold across workers and restarts."""

    __tablename__ = "directory_form_hits"
    __table_args__ = (Index("ix_directory_form_hits_form_addr_at", "form", "addr_hash", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    form: Mapped[str] = mapped_column(String(20))
    addr_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
