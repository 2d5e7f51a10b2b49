"""What every session use-case shares: the clock default, finding a session the actor may see,
the state transition with its timestamp, notices to staff, and auditing a refusal a page shows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import Conflict, KetaCareError, NotFound, PendingAudit
from ketacare.patients import service as patients
from ketacare.sessions import rules
from ketacare.sessions.models import Notice, SessionTransition, TreatmentSession


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else utcnow()


_aware = clinic_time.as_utc


def _session(db: Session, actor: Principal, session_id: int, action: str) -> TreatmentSession:
    row = db.get(TreatmentSession, session_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such session in your clinic.",
            audit=[
                PendingAudit(
                    action,
                    "session",
                    str(session_id),
                    row.patient_id if row else None,
                    "denied",
                    "no such session" if row is None else "session of another clinic",
                )
            ],
        )
    patients.visible_patient(db, actor, row.patient_id, action)
    return row


def _transition(
    db: Session,
    actor: Principal | None,
    row: TreatmentSession,
    target: str,
    now: dt.datetime,
    reason: str | None = None,
) -> None:
    try:
        rules.check_transition(row.status, target)
    except rules.TransitionRefused as exc:
        raise Conflict(str(exc)) from exc
    db.add(
        SessionTransition(
            session_id=row.id,
            from_status=row.status,
            to_status=target,
            at=now,
            by_id=actor.user_id if actor else None,
            reason=reason,
        )
    )
    row.status = target
    stamp = {
        rules.CHECKED_IN: "checked_in_at",
        rules.PRECHECKS_DONE: "prechecks_at",
        rules.RUNNING: "started_at",
        rules.RECOVERY: "recovery_at",
        rules.READY: "ready_at",
        rules.DISCHARGED: "discharged_at",
        rules.ABORTED: "aborted_at",
    }[target]
    if getattr(row, stamp) is None or target in (rules.RECOVERY, rules.READY):
        setattr(row, stamp, now)


def record_conflict(db: Session, actor: Principal, exc: KetaCareError) -> None:
    """A page that shows a refusal commits its request: write the audit entries the refusal
    carries, as the error handler would after its rollback."""
    for item in exc.audit:
        audit.record(
            db,
            actor,
            item.action,
            item.resource_type,
            resource_id=item.resource_id,
            patient_id=item.patient_id,
            outcome=item.outcome,
            detail=item.detail,
        )


def _notify(
    db: Session, row: TreatmentSession, user_ids: Sequence[int], kind: str, message: str, at: dt.datetime
) -> None:
    """A notice about a session to each of ``user_ids`` (the prescriber, or the clinic's admins)."""
    for user_id in user_ids:
        db.add(
            Notice(
                clinic_id=row.clinic_id,
                user_id=user_id,
                session_id=row.id,
                kind=kind,
                message=message,
                created_at=at,
            )
        )


def _prescribers_to_notify(db: Session, row: TreatmentSession) -> list[int]:
    if row.prescriber_id is not None:
        return [row.prescriber_id]
    return list(auth.active_user_ids(db, row.clinic_id, Role.prescriber.value))
