"""Adverse events: recording, the prescriber's review, and coding "other" events to a catalogue term.
Each function runs in the caller's transaction and never commits; people's actions are audited."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.errors import Conflict, InvalidInput, NotFound, PendingAudit
from ketacare.knowledge.sessions import session_rules
from ketacare.patients import service as patients
from ketacare.sessions.common import _notify, _now, _prescribers_to_notify, _session
from ketacare.sessions.models import AdverseEvent
from ketacare.sessions.schemas import AdverseEventIn, AeCodeIn, ReasonIn


def record_adverse_event(
    db: Session, actor: Principal, session_id: int, data: AdverseEventIn, now: dt.datetime | None = None
) -> AdverseEvent:
    at = _now(now)
    row = _session(db, actor, session_id, "session.adverse_event")
    knowledge = session_rules()
    errors: dict[str, str] = {}
    term = knowledge.ae_term(data.term_key)
    if data.term_key == "other":
        if not data.other_term:
            errors["other_term"] = "Name the event."
    elif term is None:
        errors["term_key"] = "Choose a term from the catalogue, or 'other'."
    bad = [a for a in data.actions if a not in knowledge.ae_actions]
    if bad:
        errors["actions"] = f"Unknown action(s): {', '.join(bad)}."
    if data.outcome not in knowledge.ae_outcomes:
        errors["outcome"] = f"Choose one of {', '.join(knowledge.ae_outcomes)}."
    if data.grade == 5 and data.outcome != "fatal":
        errors["outcome"] = "Grade 5 means death related to the event: the outcome is fatal."
    if "medication_given" in data.actions and not data.medication_given:
        errors["medication_given"] = "Name the medication given."
    onset = data.onset_at or at
    if onset > at + dt.timedelta(minutes=1):
        errors["onset_at"] = "The onset cannot be in the future."
    if errors:
        raise InvalidInput(errors=errors)
    needs_review = data.grade >= knowledge.review_at_grade or data.serious
    intervention = any(a not in ("none", "observed") for a in data.actions) or data.grade >= 3
    ae = AdverseEvent(
        clinic_id=row.clinic_id,
        patient_id=row.patient_id,
        session_id=row.id,
        term_key=data.term_key,
        term=term.term if term is not None else str(data.other_term),
        onset_at=onset,
        grade=data.grade,
        serious=data.serious,
        needed_intervention=intervention,
        actions=list(data.actions),
        medication_given=data.medication_given,
        outcome=data.outcome,
        description=data.description,
        recorded_by_id=actor.user_id,
        recorded_at=at,
        needs_review=needs_review,
    )
    db.add(ae)
    db.flush()
    if needs_review:
        _notify(
            db,
            row,
            _prescribers_to_notify(db, row),
            "ae_review",
            f"Review needed: {ae.term}, grade {ae.grade}"
            f"{', serious' if ae.serious else ''} — session {row.id}",
            at,
        )
    audit.record(
        db,
        actor,
        "session.adverse_event",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=f"{ae.term} grade {ae.grade}{' serious' if ae.serious else ''}",
    )
    return ae


def review_adverse_event(
    db: Session, actor: Principal, ae_id: int, data: ReasonIn, now: dt.datetime | None = None
) -> AdverseEvent:
    ae = db.get(AdverseEvent, ae_id)
    if ae is None or ae.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such adverse event in your clinic.",
            audit=[PendingAudit("session.ae.review", "adverse_event", str(ae_id), None, "denied")],
        )
    patients.visible_patient(db, actor, ae.patient_id, "session.ae.review")
    if ae.reviewed_at is not None:
        raise Conflict("This adverse event has been reviewed.")
    ae.reviewed_by_id, ae.reviewed_at, ae.review_note = actor.user_id, _now(now), data.reason
    audit.record(
        db,
        actor,
        "session.ae.review",
        "adverse_event",
        resource_id=ae.id,
        patient_id=ae.patient_id,
        detail=data.reason,
    )
    return ae


def review_queue(db: Session, actor: Principal) -> list[AdverseEvent]:
    return list(
        db.execute(
            select(AdverseEvent)
            .where(
                AdverseEvent.clinic_id == actor.clinic_id,
                AdverseEvent.needs_review.is_(True),
                AdverseEvent.reviewed_at.is_(None),
            )
            .order_by(AdverseEvent.onset_at)
        ).scalars()
    )


def uncoded_adverse_events(db: Session, actor: Principal) -> list[AdverseEvent]:
    """The clinic's adverse events recorded as "other" (their name typed as free text): staff
    map each to a catalogue term where one fits, so that it counts under that term in the
    registry (an uncoded one counts only as "other (not coded)", its text never shown there)."""
    return list(
        db.execute(
            select(AdverseEvent)
            .where(AdverseEvent.clinic_id == actor.clinic_id, AdverseEvent.term_key == "other")
            .order_by(AdverseEvent.onset_at)
        ).scalars()
    )


def code_adverse_event(db: Session, actor: Principal, ae_id: int, data: AeCodeIn) -> AdverseEvent:
    """Map an "other" adverse event to a catalogue term. The text as recorded is kept."""
    ae = db.get(AdverseEvent, ae_id)
    if ae is None or ae.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such adverse event in your clinic.",
            audit=[PendingAudit("session.ae.code", "adverse_event", str(ae_id), None, "denied")],
        )
    patients.visible_patient(db, actor, ae.patient_id, "session.ae.code")
    if ae.term_key != "other":
        raise Conflict("This adverse event already has a catalogue term.")
    term = session_rules().ae_term(data.term_key)
    if term is None or data.term_key == "other":
        raise InvalidInput(errors={"term_key": "Choose a term from the catalogue."})
    ae.term_key = data.term_key
    audit.record(
        db, actor, "session.ae.code", "adverse_event", resource_id=ae.id, patient_id=ae.patient_id,
        detail=f"other -> {data.term_key}",
    )  # fmt: skip
    return ae
