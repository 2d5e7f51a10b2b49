"""The day list, check-in, and the pre-checks (with the pre-dose blood-pressure decision).
Each function runs in the caller's transaction and never commits; people's actions are audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import Conflict, InvalidInput
from ketacare.knowledge.sessions import session_rules
from ketacare.patients import service as patients
from ketacare.planning import bookings as plan_bookings
from ketacare.planning import consent as plan_consent
from ketacare.safety import holds_service as safety_holds
from ketacare.sessions import rules
from ketacare.sessions.common import _now, _session, _transition
from ketacare.sessions.models import PreCheck, TreatmentSession, VitalSign
from ketacare.sessions.schemas import BpDecisionIn, PrecheckIn


@dataclass(frozen=True)
class DayEntry:
    booked: plan_bookings.BookedSession
    patient_name: str
    record_number: str
    session: TreatmentSession | None
    holds: tuple[safety_holds.HoldNotice, ...] = ()


def day_list(db: Session, actor: Principal, day: dt.date) -> list[DayEntry]:
    """The clinic's booked sessions on a clinic-local day, with their treatment session if any."""
    tz = clinic_time.zone(db, actor.clinic_id)
    begin = dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    booked = plan_bookings.booked_sessions_between(db, actor, begin, begin + dt.timedelta(days=1))
    ids = [b.plan_session_id for b in booked]
    sessions = (
        {
            s.plan_session_id: s
            for s in db.execute(
                select(TreatmentSession).where(TreatmentSession.plan_session_id.in_(ids))
            ).scalars()
        }
        if ids
        else {}
    )
    holds = safety_holds.holds_by_patient(db, actor.clinic_id, (b.patient_id for b in booked))
    out = []
    for b in booked:
        p = patients.visible_patient(db, actor, b.patient_id, "session.day")
        out.append(
            DayEntry(
                b,
                f"{p.family_name}, {p.given_name}",
                p.record_number,
                sessions.get(b.plan_session_id),
                holds.get(b.patient_id, ()),
            )
        )
    audit.record(db, actor, "session.day", "clinic", resource_id=actor.clinic_id, detail=day.isoformat())
    return out


def check_in(
    db: Session, actor: Principal, plan_session_id: int, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    booked = plan_bookings.booked_session(db, actor, plan_session_id)
    if booked.status != "booked" or booked.plan_status == "cancelled":
        raise Conflict("This session was cancelled; it cannot be checked in.")
    existing = db.execute(
        select(TreatmentSession.id).where(TreatmentSession.plan_session_id == plan_session_id)
    ).scalar_one_or_none()
    if existing is not None:
        raise Conflict("This session is already checked in.")
    active = db.execute(
        select(TreatmentSession.id).where(
            TreatmentSession.patient_id == booked.patient_id, TreatmentSession.status.in_(rules.ACTIVE)
        )
    ).first()
    if active is not None:
        raise Conflict("This patient already has a session in progress; finish or abort it first.")
    row = TreatmentSession(
        clinic_id=actor.clinic_id,
        patient_id=booked.patient_id,
        plan_id=booked.plan_id,
        plan_session_id=plan_session_id,
        number=booked.number,
        status=rules.SCHEDULED,
        route=booked.route,
        drug="esketamine" if booked.route == "esketamine_nasal" else "ketamine",
        planned_dose_mg=booked.dose_mg,
        planned_duration_min=booked.duration_min,
        concentration_mg_per_ml=booked.concentration_mg_per_ml,
        chair_id=booked.chair_id,
        nurse_id=actor.user_id,
        baseline={},
        discharge_checks={},
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError as exc:  # two nurses at once: the unique plan_session_id decides
        raise Conflict("This session is already checked in.") from exc
    _transition(db, actor, row, rules.CHECKED_IN, at)
    audit.record(db, actor, "session.check_in", "session", resource_id=row.id, patient_id=row.patient_id)
    return row


@dataclass(frozen=True)
class PrecheckForm:
    """What the pre-check form shows before it is filled: requirements and suggestions."""

    ecg_required: bool
    ecg_on_file: bool
    lft_required: bool
    lft_on_file: bool
    pregnancy_applies: bool
    consent_on_file: bool
    prescribers: list[tuple[int, str]]
    last_weight_kg: float | None
    bp_decision: str | None


def _screening_tests(db: Session, actor: Principal, patient_id: int) -> tuple[bool, bool, bool, bool]:
    from ketacare.screening import service as screening

    decision = screening.eligibility(db, actor, patient_id).decision
    by_key = {r.code: r for r in decision.reasons}
    ecg, lft = by_key.get("ecg"), by_key.get("lft")
    return (
        ecg is not None,
        ecg is not None and ecg.kind == "test",
        lft is not None,
        lft is not None and lft.kind == "test",
    )


def _prescribers(db: Session, actor: Principal) -> list[tuple[int, str]]:
    return [
        (u.id, u.full_name)
        for u in auth.staff_directory(db, actor.clinic_id)
        if u.role == Role.prescriber.value and u.is_active
    ]


def precheck_form(db: Session, actor: Principal, session_id: int) -> PrecheckForm:
    row = _session(db, actor, session_id, "session.read")
    record = patients.record(db, actor, row.patient_id)
    ecg_req, ecg_on, lft_req, lft_on = _screening_tests(db, actor, row.patient_id)
    weight = record.latest_weight
    return PrecheckForm(
        ecg_required=ecg_req,
        ecg_on_file=ecg_on,
        lft_required=lft_req,
        lft_on_file=lft_on,
        pregnancy_applies=record.patient.sex == "female",
        consent_on_file=plan_consent.consent_signed(db, row.plan_id),
        prescribers=_prescribers(db, actor),
        last_weight_kg=weight.weight_kg if weight is not None else None,
        bp_decision=row.bp_decision_reason,
    )


def document_bp_decision(
    db: Session, actor: Principal, session_id: int, data: BpDecisionIn
) -> TreatmentSession:
    row = _session(db, actor, session_id, "session.bp_decision")
    if row.status not in (rules.CHECKED_IN, rules.PRECHECKS_DONE):
        raise Conflict("The pre-dose blood-pressure decision is taken before the session starts.")
    row.bp_decision_reason = data.reason
    row.bp_decision_by_id = actor.user_id
    row.bp_decision_at = utcnow()
    audit.record(
        db,
        actor,
        "session.bp_decision",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=data.reason,
    )
    return row


def complete_prechecks(
    db: Session, actor: Principal, session_id: int, data: PrecheckIn, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    row = _session(db, actor, session_id, "session.prechecks")
    if row.status != rules.CHECKED_IN:
        raise Conflict(
            "Pre-checks are done once, after check-in "
            f"(the session is {rules.STATE_LABELS[row.status].lower()})."
        )
    form = precheck_form(db, actor, session_id)
    knowledge = session_rules()
    inp = rules.PrecheckInput(
        **data.model_dump(exclude={"pregnancy_test"}), pregnancy_test=data.pregnancy_test.value
    )
    ctx = rules.PrecheckContext(
        ecg_required=form.ecg_required,
        lft_required=form.lft_required,
        pregnancy_test_required=False,
        bp_decision_documented=row.bp_decision_reason is not None,
        prescribers_on_duty=frozenset(pid for pid, _ in form.prescribers),
        plausible=knowledge.plausible,
    )
    errors = rules.precheck_problems(inp, ctx, knowledge)
    if form.pregnancy_applies and data.pregnancy_test == "not_done":
        errors["pregnancy_test"] = (
            "Record the pregnancy test result, or 'not applicable' with the reason in notes."
        )
    if not form.consent_on_file:
        errors["consent_on_file"] = (
            "The plan's consent is not signed in KetaCare: have the patient sign it first."
        )
    holds = safety_holds.hold_reasons(db, row.clinic_id, row.patient_id)
    if holds:
        errors["safety_hold"] = (
            "Long-term safety hold: " + "; ".join(holds) + " (a prescriber releases it on the safety page)."
        )
    if errors:
        raise InvalidInput(errors=errors)
    assert data.prescriber_on_site_id is not None
    db.add(
        PreCheck(
            session_id=row.id,
            weight_kg=data.weight_kg,
            consent_on_file=True,
            ecg_required=form.ecg_required,
            ecg_on_file=data.ecg_on_file,
            lft_required=form.lft_required,
            lft_on_file=data.lft_on_file,
            pregnancy_test=data.pregnancy_test.value,
            escort_name=data.escort_name,
            escort_phone=data.escort_phone,
            oximeter_connected=True,
            prescriber_on_site_id=data.prescriber_on_site_id,
            answers=data.model_dump(mode="json"),
            completed_by_id=actor.user_id,
            completed_at=at,
        )
    )
    row.weight_kg = data.weight_kg
    row.prescriber_id = data.prescriber_on_site_id
    row.baseline = {k: v for k in ("sbp", "dbp", "hr", "spo2", "rr") if (v := getattr(data, k)) is not None}
    for kind, value in row.baseline.items():
        db.add(
            VitalSign(
                session_id=row.id,
                kind=kind,
                value=float(value),
                observed_at=at,
                source="manual",
                recorded_by_id=actor.user_id,
            )
        )
    _transition(db, actor, row, rules.PRECHECKS_DONE, at)
    audit.record(db, actor, "session.prechecks", "session", resource_id=row.id, patient_id=row.patient_id)
    return row


def session_for_booking(db: Session, actor: Principal, plan_session_id: int) -> int | None:
    return db.execute(
        select(TreatmentSession.id).where(
            TreatmentSession.plan_session_id == plan_session_id, TreatmentSession.clinic_id == actor.clinic_id
        )
    ).scalar_one_or_none()
