"""The feature packages, in journey order: the one list the app, the schema and the templates read.

A feature package may hold ``models.py`` (tables), ``routes.py`` (with a ``router``) and
``templates/``; adding a feature is adding its name here (a dotted name is a sub-package:
``interop.fhir`` lives in ``interop/fhir/``).
"""

from __future__ import annotations

FEATURES: tuple[str, ...] = (
    "web",
    "auth",
    "audit",
    "patients",
    "screening",
    "planning",
    "sessions",
    "ledger",
    "prescribing",
    "safety",
    "outcomes",
    "analytics",
    "interop.fhir",
    "directory",
)
