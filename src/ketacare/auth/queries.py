"""Reads of the auth feature's tables that other features and the shared mechanics may use (the
one way they read clinics and users without importing the tables)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.auth.models import Clinic


def clinic_time_zone(db: Session, clinic_id: int) -> str | None:
    """The clinic's IANA time zone, or None when there is no such clinic."""
    return db.execute(select(Clinic.time_zone).where(Clinic.id == clinic_id)).scalar_one_or_none()
