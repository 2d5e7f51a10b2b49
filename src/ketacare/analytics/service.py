"""Registry use-cases: the clinic's report (identified data stays inside the clinic, only
aggregates leave the database) and the research report across clinics (de-identified,
small cells suppressed), and the de-identified export. Each read is audited."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ketacare.analytics import deid, extract, registry
from ketacare.audit import service as audit
from ketacare.auth.principal import Principal


def clinic_report(db: Session, actor: Principal, as_of: dt.date) -> registry.Report:
    report = registry.build(extract.columns(db, actor.clinic_id), as_of, research=False)
    audit.record(db, actor, "registry.read", "clinic", resource_id=actor.clinic_id)
    return report


def research_report(db: Session, actor: Principal, as_of: dt.date) -> registry.Report:
    """The researcher's own clinic, de-identified with small cells suppressed. (Researchers are
    members of a clinic; pooling clinics needs a server-level role that does not exist yet.)"""
    report = registry.build(extract.columns(db, actor.clinic_id), as_of, research=True)
    audit.record(db, actor, "registry.research", "registry", detail="de-identified, small cells suppressed")
    return report


def operator_report(db: Session, clinic_id: int | None, as_of: dt.date) -> registry.Report:
    """For the command line (the operator of the server): one clinic's report, or with no clinic
    every clinic's, de-identified with small cells suppressed."""
    report = registry.build(extract.columns(db, clinic_id), as_of, research=clinic_id is None)
    audit.record(
        db, None, "registry.research" if clinic_id is None else "registry.read", "registry",
        resource_id=clinic_id, username="cli", clinic_id=clinic_id,
    )  # fmt: skip
    return report


def deidentified(
    db: Session, actor: Principal | None, secret_key: str, as_of: dt.date | None = None
) -> deid.Dataset:
    """An actor's own clinic; with no actor (the server operator's command line) every clinic.
    ``as_of``: the report day the export reproduces (default today, UTC)."""
    clinic_id = actor.clinic_id if actor is not None else None
    data = deid.deidentify(extract.extract(db, clinic_id), secret_key, as_of)
    audit.record(
        db,
        actor,
        "registry.export",
        "registry",
        detail=f"de-identified export: {data.rows()} rows",
        username=None if actor else "cli",
    )
    return data
