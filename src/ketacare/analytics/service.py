"""Registry use-cases: the clinic's report (identified data stays inside the clinic, only
aggregates leave the database) and the research report across clinics (de-identified,
small cells suppressed), and the de-identified export. Each read is audited."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.analytics import deid, extract, registry
from ketacare.analytics.models import DataUseAgreement
from ketacare.analytics.schemas import AgreementIn
from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput, NotFound


def clinic_report(db: Session, actor: Principal, as_of: dt.date) -> registry.Report:
    report = registry.build(extract.columns(db, actor.clinic_id), as_of, research=False)
    audit.record(db, actor, "registry.read", "clinic", resource_id=actor.clinic_id)
    return report


def dose_overrides(db: Session, clinic_id: int) -> tuple[int, int]:
    """How many of the clinic's plans and sessions went above a protocol's range or a plan's dose
    on a prescriber's written override (counts only: no free text leaves the clinic's records)."""
    from ketacare.planning import plans
    from ketacare.sessions import administration as session_administration

    return plans.dose_overridden_plans(db, clinic_id), session_administration.dose_overridden_sessions(
        db, clinic_id
    )


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
    db: Session,
    actor: Principal | None,
    method: str = "safe_harbor",
    agreement_id: int | None = None,
    today: dt.date | None = None,
    clinic_id: int | None = None,
    as_of: dt.date | None = None,
) -> deid.Dataset:
    """An actor's own clinic; with no actor (the server operator's command line) ``clinic_id``,
    or every clinic. ``method``: ``safe_harbor``, or ``limited`` (a limited data set) under the
    active data use agreement ``agreement_id``, refused without one. Each export has a random
    key of its own, discarded afterwards (``deid.new_export_key``). ``as_of``: the report day
    the export reproduces (default ``today``, else today in UTC)."""
    if method not in deid.METHODS:
        raise InvalidInput(errors={"method": f"Choose one of {', '.join(deid.METHODS)}."})
    scope = actor.clinic_id if actor is not None else clinic_id
    named = None
    if method == "limited":
        dua = active_agreement(db, scope, agreement_id, today or dt.datetime.now(dt.UTC).date())
        named = (
            f"#{dua.id} with {dua.recipient} ({dua.starts_on} to {dua.ends_on}), "
            f"approved by {dua.approved_by}"
        )
    day = today or dt.datetime.now(dt.UTC).date()
    data = deid.deidentify(extract.extract(db, scope), None, method, named, as_of or day)
    audit.record(
        db,
        actor,
        "registry.export",
        "registry",
        resource_id=agreement_id,
        detail=f"{method} export: {data.rows()} rows" + (f"; data use agreement {named}" if named else ""),
        username=None if actor else "cli",
        clinic_id=scope if actor is None else None,
    )
    return data


# --- data use agreements ---------------------------------------------------------------------


def agreements(db: Session, clinic_id: int | None) -> list[DataUseAgreement]:
    query = select(DataUseAgreement).order_by(DataUseAgreement.id.desc())
    if clinic_id is not None:
        query = query.where(DataUseAgreement.clinic_id == clinic_id)
    return list(db.scalars(query))


def active_agreement(
    db: Session, clinic_id: int | None, agreement_id: int | None, today: dt.date
) -> DataUseAgreement:
    """The agreement a limited data set is released under: the clinic's, not revoked, and
    running today; else a clear refusal (nothing is exported)."""
    if agreement_id is None:
        raise InvalidInput(
            errors={"agreement": "A limited data set needs an active data use agreement: name it."}
        )
    dua = db.get(DataUseAgreement, agreement_id)
    if dua is None or (clinic_id is not None and dua.clinic_id != clinic_id):
        raise InvalidInput(errors={"agreement": "No such data use agreement for this clinic."})
    if dua.revoked_at is not None:
        raise InvalidInput(errors={"agreement": "This data use agreement was revoked."})
    if not dua.starts_on <= today <= dua.ends_on:
        raise InvalidInput(
            errors={
                "agreement": f"This data use agreement runs from {dua.starts_on} to {dua.ends_on}: not today."
            }
        )
    return dua


def record_agreement(
    db: Session, actor: Principal | None, clinic_id: int, data: AgreementIn
) -> DataUseAgreement:
    if data.ends_on < data.starts_on:
        raise InvalidInput(errors={"ends_on": "The agreement cannot end before it starts."})
    dua = DataUseAgreement(
        clinic_id=clinic_id,
        recipient=data.recipient.strip(),
        purpose=data.purpose.strip(),
        starts_on=data.starts_on,
        ends_on=data.ends_on,
        approved_by=data.approved_by.strip(),
        recorded_by_id=actor.user_id if actor else None,
    )
    db.add(dua)
    db.flush()
    audit.record(
        db,
        actor,
        "registry.agreement",
        "data_use_agreement",
        resource_id=dua.id,
        detail=f"{dua.recipient}, {dua.starts_on} to {dua.ends_on}, approved by {dua.approved_by}",
        username=None if actor else "cli",
        clinic_id=clinic_id if actor is None else None,
    )
    return dua


def revoke_agreement(db: Session, actor: Principal, agreement_id: int) -> DataUseAgreement:
    dua = db.get(DataUseAgreement, agreement_id)
    if dua is None or dua.clinic_id != actor.clinic_id:
        raise NotFound("No such data use agreement.")
    if dua.revoked_at is None:
        dua.revoked_at = dt.datetime.now(dt.UTC)
        audit.record(db, actor, "registry.agreement_revoked", "data_use_agreement", resource_id=dua.id)
    return dua
