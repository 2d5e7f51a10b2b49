"""Reading safety holds, kept apart from ``safety.service`` so that prescribing can ask whether a
patient is on hold without importing the safety service (which reads prescriptions). Never
commits; the caller audits the read it is part of."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.safety.models import SafetyHold


def active_holds(db: Session, clinic_id: int, patient_id: int) -> list[SafetyHold]:
    return list(
        db.execute(
            select(SafetyHold)
            .where(
                SafetyHold.clinic_id == clinic_id,
                SafetyHold.patient_id == patient_id,
                SafetyHold.released_at.is_(None),
            )
            .order_by(SafetyHold.placed_at, SafetyHold.id)
        ).scalars()
    )


def hold_reasons(db: Session, clinic_id: int, patient_id: int) -> list[str]:
    """One line per active hold, for the prescription check."""
    return [f"{h.kind}: {h.reason}" for h in active_holds(db, clinic_id, patient_id)]


@dataclass(frozen=True)
class HoldNotice:
    """What a page shows of an active hold, wherever work on the patient starts."""

    kind: str
    reason: str
    source: str
    tag: str


def notices(db: Session, clinic_id: int, patient_id: int) -> tuple[HoldNotice, ...]:
    return tuple(
        HoldNotice(h.kind, h.reason, h.source, h.tag) for h in active_holds(db, clinic_id, patient_id)
    )


def holds_by_patient(
    db: Session, clinic_id: int, patient_ids: Iterable[int]
) -> dict[int, tuple[HoldNotice, ...]]:
    """The active holds of several patients at once (the day list, the calendar): a patient with
    none is absent from the answer."""
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    out: dict[int, tuple[HoldNotice, ...]] = {}
    for hold in db.execute(
        select(SafetyHold)
        .where(
            SafetyHold.clinic_id == clinic_id,
            SafetyHold.patient_id.in_(ids),
            SafetyHold.released_at.is_(None),
        )
        .order_by(SafetyHold.placed_at, SafetyHold.id)
    ).scalars():
        notice = HoldNotice(hold.kind, hold.reason, hold.source, hold.tag)
        out[hold.patient_id] = (*out.get(hold.patient_id, ()), notice)
    return out
