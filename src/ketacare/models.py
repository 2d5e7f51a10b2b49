"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from ketacare.audit.models import AuditEntry, AuditHead
from ketacare.auth.models import ApiToken, Clinic, LoginAttempt, LoginSession, User
from ketacare.db import Base
from ketacare.patients.models import Allergy, Condition, Measurement, Medication, Patient

metadata = Base.metadata

__all__ = [
    "Allergy",
    "ApiToken",
    "AuditEntry",
    "AuditHead",
    "Clinic",
    "Condition",
    "LoginAttempt",
    "LoginSession",
    "Measurement",
    "Medication",
    "Patient",
    "User",
    "metadata",
]
