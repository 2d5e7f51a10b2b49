"""The ketamine a patient has had: the doses given in sessions and the signed take-home
prescriptions as supplies. Never commits."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.prescribing import rules
from ketacare.prescribing.common import _today
from ketacare.prescribing.models import (
    Prescription,
    PrescriptionCancellation,
)
from ketacare.sessions import administration as session_administration


@dataclass(frozen=True)
class SessionDose:
    session_id: int
    plan_id: int
    on: dt.date
    route: str
    drug: str
    mg: float


@dataclass(frozen=True)
class SupplyDose:
    prescription_id: int
    product_name: str
    route: str
    issued_on: dt.date
    end: dt.date
    mg_per_day: float
    mg_to_date: float
    cancelled: bool


def session_doses(
    db: Session, actor: Principal, patient_id: int, since: dt.date | None = None
) -> list[SessionDose]:
    """Ketamine (and esketamine) given in each started session, from the session record."""
    zone = zoneinfo.ZoneInfo(auth.clinic(db, actor.clinic_id).time_zone)
    found = []
    for given in session_administration.ketamine_given(db, actor, patient_id):
        on = given.started_at.astimezone(zone).date()
        if since is not None and on < since:
            continue
        if given.total_mg > 0:
            found.append(
                SessionDose(given.session_id, given.plan_id, on, given.route, given.drug, given.total_mg)
            )
    return sorted(found, key=lambda d: (d.on, d.session_id))


def _cancellations(db: Session, ids: Sequence[int]) -> dict[int, PrescriptionCancellation]:
    if not ids:
        return {}
    rows = db.execute(
        select(PrescriptionCancellation).where(PrescriptionCancellation.prescription_id.in_(ids))
    )
    return {c.prescription_id: c for c in rows.scalars()}


def _signed(db: Session, clinic_id: int, patient_id: int) -> list[Prescription]:
    return list(
        db.execute(
            select(Prescription)
            .where(
                Prescription.clinic_id == clinic_id,
                Prescription.patient_id == patient_id,
                Prescription.signed_at.is_not(None),
            )
            .order_by(Prescription.issued_on, Prescription.id)
        ).scalars()
    )


def _supply(rx: Prescription, cancellation: PrescriptionCancellation | None) -> rules.Supply:
    return rules.Supply(
        id=rx.id,
        product_key=rx.product_key,
        route=rx.route,
        issued_on=rx.issued_on,
        days_supply=rx.days_supply,
        refills=rx.refills,
        mg_per_day=round(rx.quantity * rx.strength_mg / rx.days_supply, 2),
        ended_on=cancellation.cancelled_on if cancellation else None,
    )


def supplies(db: Session, clinic_id: int, patient_id: int, exclude: int | None = None) -> list[rules.Supply]:
    signed = [rx for rx in _signed(db, clinic_id, patient_id) if rx.id != exclude]
    cancelled = _cancellations(db, [rx.id for rx in signed])
    return [_supply(rx, cancelled.get(rx.id)) for rx in signed]


def supply_doses(
    db: Session, actor: Principal, patient_id: int, today: dt.date | None = None
) -> list[SupplyDose]:
    """Each signed take-home prescription as a supply, and what was taken of it up to today at its
    prescribed mg/day (an estimate: KetaCare does not see the pharmacy's fills)."""
    on = _today(db, actor, today)
    signed = _signed(db, actor.clinic_id, patient_id)
    cancelled = _cancellations(db, [rx.id for rx in signed])
    found = []
    for rx in signed:
        s = _supply(rx, cancelled.get(rx.id))
        taken = rules.supply_mg_between(s, s.issued_on, on + dt.timedelta(days=1))
        found.append(
            SupplyDose(
                rx.id,
                rx.product_name,
                rx.route,
                rx.issued_on,
                s.end,
                s.mg_per_day,
                round(taken, 1),
                rx.id in cancelled,
            )
        )
    return found


def patients_with_supplies(db: Session, actor: Principal, since: dt.date) -> list[int]:
    """Patients of the clinic with a signed prescription whose supply may reach ``since`` or later."""
    rows = db.execute(
        select(
            Prescription.patient_id, Prescription.issued_on, Prescription.days_supply, Prescription.refills
        ).where(Prescription.clinic_id == actor.clinic_id, Prescription.signed_at.is_not(None))
    ).all()
    return sorted(
        {
            pid
            for pid, issued, days, refills in rows
            if issued + dt.timedelta(days=days * (1 + refills)) >= since
        }
    )
