"""Treatment-session use-cases: check-in, pre-checks, the administration record, vital signs
(manual and device), scores, alarms and their escalation, adverse events, discharge and
signatures. Each function runs in the caller's transaction and never commits; people's actions
are audited (device messages are logged in ``session_device_messages`` instead)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import Conflict, Forbidden, InvalidInput, KetaCareError, NotFound, PendingAudit
from ketacare.knowledge.sessions import (
    AlarmRule,
    ClinicSettingSpec,
    SessionRules,
    clinic_setting_specs,
    session_rules,
)
from ketacare.ledger import rules as ledger_rules
from ketacare.ledger import service as ledger
from ketacare.outcomes import service as outcomes
from ketacare.patients import service as patients
from ketacare.pharmacology import Patient as PkPatient
from ketacare.pharmacology import PharmacologyInputError, simulate
from ketacare.planning import service as planning
from ketacare.planning.dosing import MIN_OVERRIDE_REASON_CHARS
from ketacare.safety import holds_service as safety_holds
from ketacare.sessions import rules
from ketacare.sessions.device import VITAL_UNITS, DeviceBatch, DeviceObservation, DeviceRejected, IngestResult
from ketacare.sessions.models import (
    Administration,
    AdverseEvent,
    Alarm,
    AlarmSetting,
    DeviceMessage,
    Notice,
    PreCheck,
    RemsForm,
    ScoreRecord,
    SessionTransition,
    TreatmentSession,
    VitalSign,
)
from ketacare.sessions.schemas import (
    AbortIn,
    AdministrationIn,
    AdverseEventIn,
    AeCodeIn,
    AlarmSettingsIn,
    BpDecisionIn,
    DeviceBatchIn,
    DischargeChecksIn,
    DischargeIn,
    NoteIn,
    PrecheckIn,
    ReasonIn,
    ScoreIn,
    SessionWasteIn,
    VitalIn,
)

SCORE_VITALS = {"moaas": "moaas", "rass": "rass"}  # scores that alarm rules watch
TREND_MIN = 30  # the board's trend window (issue 6)
DEVICE_CLOCK_SKEW = dt.timedelta(minutes=5)  # (design) how far ahead a device clock may run
PREDICTION_STEP_MIN = 1.0


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else utcnow()


_aware = clinic_time.as_utc


# --- reading ----------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class DayEntry:
    booked: planning.BookedSession
    patient_name: str
    record_number: str
    session: TreatmentSession | None
    holds: tuple[safety_holds.HoldNotice, ...] = ()


def day_list(db: Session, actor: Principal, day: dt.date) -> list[DayEntry]:
    """The clinic's booked sessions on a clinic-local day, with their treatment session if any."""
    tz = clinic_time.zone(db, actor.clinic_id)
    begin = dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    booked = planning.booked_sessions_between(db, actor, begin, begin + dt.timedelta(days=1))
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


# --- alarm settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmRuleInForce:
    rule: AlarmRule
    default: AlarmRule
    enabled: bool
    own: bool  # the clinic changed it


def alarm_rules_in_force(db: Session, clinic_id: int) -> tuple[list[AlarmRuleInForce], int]:
    knowledge = session_rules()
    own = {
        s.rule_key: s
        for s in db.execute(select(AlarmSetting).where(AlarmSetting.clinic_id == clinic_id)).scalars()
    }
    out = []
    for default in knowledge.alarms:
        s = own.get(default.key)
        rule = dataclasses.replace(default, value=s.value) if s is not None else default
        out.append(AlarmRuleInForce(rule, default, s.enabled if s is not None else True, s is not None))
    esc = own.get("escalation_s")
    return out, int(esc.value) if esc is not None else knowledge.escalation_s


@dataclass(frozen=True)
class ClinicSettingInForce:
    spec: ClinicSettingSpec
    value: float
    own: bool  # the clinic set it


def clinic_settings_in_force(db: Session, clinic_id: int) -> list[ClinicSettingInForce]:
    """The discharge rule and the alarm-sound mute as the clinic set them (else the defaults)."""
    specs = clinic_setting_specs()
    own = {
        s.rule_key: s.value
        for s in db.execute(
            select(AlarmSetting).where(
                AlarmSetting.clinic_id == clinic_id, AlarmSetting.rule_key.in_([s.key for s in specs])
            )
        ).scalars()
    }
    return [ClinicSettingInForce(s, own.get(s.key, s.default), s.key in own) for s in specs]


def clinic_session_values(db: Session, clinic_id: int) -> dict[str, float]:
    return {c.spec.key: c.value for c in clinic_settings_in_force(db, clinic_id)}


def rules_for_clinic(db: Session, clinic_id: int) -> SessionRules:
    """The session rules with the clinic's own discharge values in place of the defaults."""
    knowledge = session_rules()
    values = clinic_session_values(db, clinic_id)
    discharge = {**knowledge.discharge, **{k: v for k, v in values.items() if k in knowledge.discharge}}
    return dataclasses.replace(knowledge, discharge=discharge, alarm_mute_s=int(values["mute_s"]))


def _active_rules(db: Session, clinic_id: int) -> tuple[list[AlarmRule], int]:
    in_force, escalation_s = alarm_rules_in_force(db, clinic_id)
    return [r.rule for r in in_force if r.enabled], escalation_s


def save_alarm_settings(db: Session, actor: Principal, data: AlarmSettingsIn) -> None:
    knowledge = session_rules()
    keys = {a.key: a for a in knowledge.alarms}
    errors: dict[str, str] = {}
    for s in data.settings:
        rule = keys.get(s.rule_key)
        if rule is None:
            errors[s.rule_key] = "No such alarm rule."
            continue
        low, high = _setting_range(rule)
        if not low <= s.value <= high:
            errors[s.rule_key] = f"Choose a value between {low:g} and {high:g}."
    extra: list[tuple[str, float, bool]] = []
    for spec in clinic_setting_specs():
        value = getattr(data, spec.key)
        if value is None:
            continue
        if not spec.low <= value <= spec.high or (spec.integer and value != int(value)):
            whole = "whole " if spec.integer else ""
            errors[spec.key] = f"Choose a {whole}value between {spec.low:g} and {spec.high:g} {spec.unit}."
        else:
            extra.append((spec.key, float(value), True))
    if errors:
        raise InvalidInput(errors=errors)
    own = {
        s.rule_key: s
        for s in db.execute(select(AlarmSetting).where(AlarmSetting.clinic_id == actor.clinic_id)).scalars()
    }
    changes = []
    now = utcnow()
    items = [(s.rule_key, s.value, s.enabled) for s in data.settings]
    if data.escalation_s is not None:
        items.append(("escalation_s", float(data.escalation_s), True))
    items += extra
    for key, value, enabled in items:
        row = own.get(key)
        if row is None:
            row = AlarmSetting(clinic_id=actor.clinic_id, rule_key=key, value=value, enabled=enabled)
            db.add(row)
        elif row.value == value and row.enabled == enabled:
            continue
        row.value, row.enabled, row.updated_by_id, row.updated_at = value, enabled, actor.user_id, now
        changes.append(f"{key}={value:g}{'' if enabled else ' (off)'}")
    if changes:
        audit.record(
            db,
            actor,
            "session.alarm_settings",
            "clinic",
            resource_id=actor.clinic_id,
            detail="; ".join(changes),
        )


def _setting_range(rule: AlarmRule) -> tuple[float, float]:
    if rule.kind == "rise_pct":
        return 5.0, 100.0
    if rule.vital in ("moaas", "rass"):
        return (0.0, 5.0) if rule.vital == "moaas" else (-5.0, 4.0)
    return session_rules().plausible.get(rule.vital, (0.0, 400.0))


# --- check-in and pre-checks ------------------------------------------------------------------


def check_in(
    db: Session, actor: Principal, plan_session_id: int, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    booked = planning.booked_session(db, actor, plan_session_id)
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
        consent_on_file=planning.consent_signed(db, row.plan_id),
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


# --- administration ---------------------------------------------------------------------------


def _given(db: Session, session_id: int) -> list[Administration]:
    return list(
        db.execute(
            select(Administration)
            .where(Administration.session_id == session_id)
            .order_by(Administration.given_at, Administration.id)
        ).scalars()
    )


def _as_given(rows: Sequence[Administration]) -> list[rules.Given]:
    return [
        rules.Given(r.kind, r.drug, r.route, _aware(r.given_at), r.rate_mg_per_h, r.dose_mg) for r in rows
    ]


def record_administration(
    db: Session, actor: Principal, session_id: int, data: AdministrationIn, now: dt.datetime | None = None
) -> Administration:
    at = _now(now)
    row = _session(db, actor, session_id, "session.administration")
    given_at = data.given_at or at
    if given_at > at + dt.timedelta(minutes=1):
        raise InvalidInput(errors={"given_at": "A dose cannot be recorded in the future."})
    kind = data.kind.value
    drug = data.drug.strip().lower()
    ketamine = drug in rules.KETAMINE_DRUGS
    errors: dict[str, str] = {}
    if ketamine and drug != row.drug:
        errors["drug"] = f"This session's plan gives {row.drug}."
    if kind in ("start", "rate_change", "stop", "bolus", "dose") and not ketamine:
        errors["drug"] = "Starts, rate changes, stops, boluses and doses are for the session's ketamine."
    if kind in ("premedication", "rescue") and ketamine:
        errors["drug"] = "Premedication and rescue entries are for other drugs (midazolam, ondansetron...)."
    if kind in ("start", "rate_change") and data.rate_mg_per_h is None:
        errors["rate_mg_per_h"] = "Give the rate in mg/h."
    if kind in ("bolus", "dose", "premedication", "rescue") and data.dose_mg is None:
        errors["dose_mg"] = "Give the dose in mg."
    if kind == "rate_change" and not data.reason:
        errors["reason"] = "Say why the rate changed."
    lot_choice: ledger.LotChoice | None = None
    route = data.route or (row.route if ketamine else "iv")
    if ketamine and route != row.route:
        errors["route"] = f"This session's plan gives {row.drug} by {row.route}."
    if kind in ("start", "bolus", "dose") and ketamine:
        # The right product for the route: only a lot whose drug and dosage form fit the
        # session is offered or accepted (knowledge: products).
        in_stock = {c.lot_id: c for c in ledger.available_lots(db, actor)}
        if data.lot_id is not None:
            lot_choice = in_stock.get(data.lot_id)
            if lot_choice is None:
                errors["lot_id"] = "Choose a lot of the clinic's ledger that is in stock and not expired."
            elif problem := lot_choice.fit_problem(row.drug, row.route):
                errors["lot_id"] = problem
                lot_choice = None
        elif any(c.fit_problem(row.drug, row.route) is None for c in in_stock.values()):
            errors["lot_id"] = "Choose the lot from the controlled-substance ledger."
        elif in_stock:
            errors["lot_id"] = (
                f"No lot in stock fits {row.drug} by {row.route}: receive a fitting product into the "
                "ledger (or have an admin code the product) first."
            )
        elif not data.lot:
            errors["lot"] = "Record the lot of the product used."
    existing = _given(db, row.id)
    segs = rules.infusion_segments(_as_given(existing))
    running = bool(segs) and segs[-1].end is None
    if kind == "start" and running:
        errors["kind"] = "The infusion is already running: record a rate change instead."
    if kind in ("rate_change", "stop") and not running:
        errors["kind"] = "No infusion is running."
    if kind in ("start", "rate_change", "bolus") and row.route not in ("iv_infusion", "iv_bolus"):
        errors["kind"] = f"This session's route is {row.route}: record each dose as 'dose'."
    if segs and given_at < segs[-1].start:
        errors["given_at"] = "Infusion entries must be in time order."
    if errors:
        raise InvalidInput(errors=errors)
    allowed = rules.administration_states(kind)
    if row.status not in allowed:
        why = " (the pre-checks come first)" if row.status == rules.CHECKED_IN else ""
        raise Conflict(
            f"Cannot record a {kind.replace('_', ' ')} while the session is "
            f"{rules.STATE_LABELS[row.status].lower()}{why}."
        )
    override_reason = _dose_gate(db, actor, row, existing, data, kind, given_at) if ketamine else None
    # Stock leaves the ledger's lot first: a refusal there (not enough left, say) writes nothing.
    if lot_choice is not None and kind in ("bolus", "dose") and data.dose_mg is not None:
        ledger.record_administration(
            db,
            actor,
            lot_id=lot_choice.lot_id,
            amount_mg=data.dose_mg,
            patient_id=row.patient_id,
            session_id=row.id,
            given_at=given_at,
            drug=row.drug,
            route=row.route,
        )
    if kind == "stop":
        _draw_infusion(db, actor, row, existing, given_at)
    entry = Administration(
        session_id=row.id,
        kind=kind,
        drug=drug,
        route=route,
        product=lot_choice.product_name if lot_choice is not None else data.product,
        lot=lot_choice.lot_number if lot_choice is not None else data.lot,
        lot_id=lot_choice.lot_id if lot_choice is not None else None,
        concentration_mg_per_ml=(lot_choice.strength_mg_per_ml if lot_choice is not None else None)
        or data.concentration_mg_per_ml
        or (row.concentration_mg_per_ml if ketamine else None),
        rate_mg_per_h=data.rate_mg_per_h if kind in ("start", "rate_change") else None,
        dose_mg=data.dose_mg if kind not in ("start", "rate_change", "stop") else None,
        given_at=given_at,
        reason=data.reason,
        override_reason=override_reason,
        override_by_id=actor.user_id if override_reason else None,
        recorded_by_id=actor.user_id,
        recorded_at=at,
    )
    db.add(entry)
    if ketamine and row.status == rules.PRECHECKS_DONE and kind in ("start", "bolus", "dose"):
        _transition(db, actor, row, rules.RUNNING, given_at)
    detail = {
        "start": f"{data.rate_mg_per_h:g} mg/h" if data.rate_mg_per_h is not None else "",
        "rate_change": f"{data.rate_mg_per_h:g} mg/h: {data.reason}"
        if data.rate_mg_per_h is not None
        else "",
    }.get(kind, f"{drug} {data.dose_mg:g} mg" if data.dose_mg else drug)
    audit.record(
        db,
        actor,
        f"session.administration.{kind}",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=detail,
    )
    if override_reason:
        audit.record(
            db,
            actor,
            "session.dose_override",
            "session",
            resource_id=row.id,
            patient_id=row.patient_id,
            detail=f"{kind}: {override_reason}",
        )
    db.flush()
    return entry


def dose_overridden_sessions(db: Session, clinic_id: int) -> int:
    """How many of the clinic's sessions have a dose entry given on a prescriber's override."""
    query = (
        select(func.count(func.distinct(Administration.session_id)))
        .join(TreatmentSession, TreatmentSession.id == Administration.session_id)
        .where(TreatmentSession.clinic_id == clinic_id, Administration.override_reason.is_not(None))
    )
    return int(db.execute(query).scalar_one())


def _other_sessions_today_mg(db: Session, row: TreatmentSession, at: dt.datetime) -> float:
    """Ketamine given to the patient in other sessions on the same clinic-local day as ``at``."""
    zone = clinic_time.zone(db, row.clinic_id)
    local = at.astimezone(zone).date()
    start = dt.datetime.combine(local, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(local + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    others = db.execute(
        select(Administration)
        .join(TreatmentSession, TreatmentSession.id == Administration.session_id)
        .where(
            TreatmentSession.patient_id == row.patient_id,
            TreatmentSession.id != row.id,
            Administration.given_at < end,
        )
        .order_by(Administration.session_id, Administration.given_at, Administration.id)
    ).scalars()
    by_session: dict[int, list[Administration]] = {}
    for a in others:
        by_session.setdefault(a.session_id, []).append(a)
    upto = min(end, at)
    return round(sum(rules.mg_between(_as_given(g), start, upto) for g in by_session.values()), 2)


def _dose_gate(
    db: Session,
    actor: Principal,
    row: TreatmentSession,
    existing: Sequence[Administration],
    data: AdministrationIn,
    kind: str,
    given_at: dt.datetime,
) -> str | None:
    """Refuse a ketamine entry past a hard limit or a ceiling (no override), or past the plan's
    allowance without a prescriber's written reason. Returns the override reason to record."""
    if kind not in ("start", "rate_change", "bolus", "dose"):
        return None
    date_of_birth, _ = patients.demographics(db, row.patient_id)
    clinic = planning.clinical_defaults(db, row.clinic_id)
    ctx = rules.DoseContext(
        route=row.route,
        drug=row.drug,
        weight_kg=row.weight_kg,
        age_years=patients.age_years(date_of_birth, given_at.date()),
        planned_duration_min=row.planned_duration_min,
        allowance=planning.session_allowance(db, actor, row.plan_id),
        other_sessions_today_mg=_other_sessions_today_mg(db, row, given_at),
        clinic=clinic,
        tolerance_mg_per_h=clinic.pump_increment_ml_per_h * row.concentration_mg_per_ml / 2,
        tolerance_mg=clinic.syringe_increment_ml * row.concentration_mg_per_ml / 2,
    )
    entry = rules.DoseEntry(kind, given_at, data.rate_mg_per_h, data.dose_mg)
    check = rules.check_dose_entry(entry, _as_given(existing), ctx)
    if check.refused:
        raise InvalidInput(errors=check.refused)
    if not check.needs_override:
        return None
    why = " ".join(check.needs_override)
    reason = (data.override_reason or "").strip()
    if actor.role != Role.prescriber:
        raise InvalidInput(
            errors={
                "override_reason": f"{why} Only a prescriber can go above the plan, with a written reason: "
                "ask the prescriber on site to record this entry."
            }
        )
    if len(reason) < MIN_OVERRIDE_REASON_CHARS:
        raise InvalidInput(
            errors={
                "override_reason": f"{why} Write the clinical reason to go ahead "
                f"(at least {MIN_OVERRIDE_REASON_CHARS} characters)."
            }
        )
    return reason


def _draw_infusion(
    db: Session,
    actor: Principal,
    row: TreatmentSession,
    existing: Sequence[Administration],
    stop_at: dt.datetime,
) -> None:
    """When an infusion stops, what it delivered since its start leaves the start's ledger lot.
    Stopping can never be refused: if the ledger cannot take it (the lot ran short), the clinic's
    admins get a notice to investigate and the refusal is audited."""
    starts = [e for e in existing if e.kind == "start" and e.drug in rules.KETAMINE_DRUGS]
    if not starts or starts[-1].lot_id is None:
        return
    start = starts[-1]
    lot_id = starts[-1].lot_id
    run = [
        e
        for e in existing
        if _aware(e.given_at) >= _aware(start.given_at)
        and e.drug == start.drug
        and e.kind in ("start", "rate_change")  # boluses left their lot when they were given
    ]
    run.append(Administration(kind="stop", drug=start.drug, route=start.route, given_at=stop_at))
    mg = rules.totals(_as_given(run), None, stop_at).total_mg
    if mg <= 0:
        return
    try:
        ledger.record_administration(
            db,
            actor,
            lot_id=lot_id,
            amount_mg=mg,
            patient_id=row.patient_id,
            session_id=row.id,
            given_at=stop_at,
            drug=start.drug,
            route=start.route,
        )
    except InvalidInput as exc:
        why = "; ".join(exc.errors.values()) or str(exc)
        _notify(
            db,
            row,
            auth.active_user_ids(db, row.clinic_id, Role.clinic_admin.value),
            "ledger",
            f"Ledger discrepancy, session {row.id}: {mg:g} mg infused from lot "
            f"{start.lot} could not be taken from the ledger ({why}).",
            utcnow(),
        )
        audit.record(
            db,
            actor,
            "session.ledger_refused",
            "session",
            resource_id=row.id,
            patient_id=row.patient_id,
            outcome="failure",
            detail=why,
        )


def waste(db: Session, actor: Principal, session_id: int, data: SessionWasteIn) -> None:
    """The unused remainder of a container, wasted with a witness: a ledger waste entry."""
    row = _session(db, actor, session_id, "session.waste")
    if row.status in (rules.SCHEDULED, rules.CHECKED_IN):
        raise Conflict("Nothing has been drawn up for this session yet.")
    if problem := ledger.lot_fit_problem(db, actor, data.lot_id, row.drug, row.route):
        raise InvalidInput(errors={"lot_id": problem})
    ledger.record_waste(
        db,
        actor,
        lot_id=data.lot_id,
        amount_mg=data.amount_mg,
        reason=data.reason,
        witness_user_id=data.witness_user_id,
        witness_password=data.witness_password,
        session_id=row.id,
    )


def record_refusal(db: Session, actor: Principal, exc: InvalidInput) -> None:
    ledger.record_refusal(db, actor, exc)


@dataclass(frozen=True)
class LotChoices:
    """What the session's lot picker offers: only the lots that fit its drug and route, and how
    many lots in stock were left out because they do not."""

    fitting: list[ledger.LotChoice]
    left_out: int


def lot_choices(db: Session, actor: Principal, session_id: int) -> LotChoices:
    row = _session(db, actor, session_id, "session.view")
    every = ledger.available_lots(db, actor)
    fitting = [c for c in every if c.fit_problem(row.drug, row.route) is None]
    return LotChoices(fitting, len(every) - len(fitting))


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


def alarm_session_id(db: Session, actor: Principal, alarm_id: int) -> int:
    return _alarm(db, actor, alarm_id, "session.alarm").session_id


def waste_witnesses(db: Session, actor: Principal) -> list[tuple[str, str]]:
    return [
        (str(w.user_id), w.name)
        for w in ledger.witness_options(db, actor, roles=ledger_rules.WASTE_WITNESS_ROLES)
    ]


def end_dosing(
    db: Session, actor: Principal, session_id: int, data: NoteIn, now: dt.datetime | None = None
) -> TreatmentSession:
    """RUNNING -> RECOVERY. A running infusion is stopped first (recorded as a stop)."""
    at = _now(now)
    row = _session(db, actor, session_id, "session.end_dosing")
    if row.status != rules.RUNNING:
        raise Conflict("Dosing can end only while the session is running.")
    segs = rules.infusion_segments(_as_given(_given(db, row.id)))
    if segs and segs[-1].end is None:
        record_administration(
            db, actor, session_id, AdministrationIn(kind="stop", drug=row.drug, reason=data.note), now=at
        )
    _transition(db, actor, row, rules.RECOVERY, at, data.note)
    audit.record(db, actor, "session.recovery", "session", resource_id=row.id, patient_id=row.patient_id)
    return row


def abort(
    db: Session, actor: Principal, session_id: int, data: AbortIn, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    row = _session(db, actor, session_id, "session.abort")
    if row.status == rules.RUNNING:
        segs = rules.infusion_segments(_as_given(_given(db, row.id)))
        if segs and segs[-1].end is None:
            record_administration(
                db,
                actor,
                session_id,
                AdministrationIn(kind="stop", drug=row.drug, reason=data.reason),
                now=at,
            )
    _transition(db, actor, row, rules.ABORTED, at, data.reason)
    row.abort_reason = data.reason
    for alarm in _open_alarms(db, row.id):
        _close_alarm(alarm, actor, at, f"Session aborted: {data.reason}")
    audit.record(
        db,
        actor,
        "session.abort",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=data.reason,
    )
    return row


# --- vital signs and alarms -------------------------------------------------------------------


def _plausibility_errors(readings: Sequence[tuple[str, float]]) -> dict[str, str]:
    plausible = session_rules().plausible
    errors: dict[str, str] = {}
    for i, (kind, value) in enumerate(readings):
        if kind not in VITAL_UNITS:
            errors[f"readings.{i}.kind"] = f"Unknown vital sign {kind!r}."
            continue
        if not np.isfinite(value):
            errors[f"readings.{i}.value"] = "Not a number."
            continue
        low, high = plausible[kind]
        if not low <= value <= high:
            errors[f"readings.{i}.value"] = (
                f"{VITAL_UNITS[kind]} {value:g} for {kind} is outside the plausible range {low:g}-{high:g}: "
                "a sensor fault or a typo; nothing was stored."
            )
    return errors


def _store_readings(
    db: Session,
    row: TreatmentSession,
    readings: Sequence[rules.Reading],
    *,
    source: str,
    device_id: str | None,
    user_id: int | None,
    now: dt.datetime,
) -> list[Alarm]:
    db.execute(
        VitalSign.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                "session_id": row.id,
                "kind": r.kind,
                "value": r.value,
                "observed_at": r.at,
                "source": source,
                "device_id": device_id,
                "recorded_by_id": user_id,
                "received_at": now,
            }
            for r in readings
        ],
    )
    return _evaluate(db, row, readings, now)


def _evaluate(
    db: Session, row: TreatmentSession, readings: Sequence[rules.Reading], now: dt.datetime
) -> list[Alarm]:
    active, _ = _active_rules(db, row.clinic_id)
    watched = {r.kind for r in readings}
    relevant = [r for r in active if r.vital in watched]
    if not relevant:
        return []
    history: list[rules.Reading] = []
    window = rules.sustained_window_s(relevant)
    sustained = {r.vital for r in relevant if r.kind == "sustained_below"}
    if window and sustained:
        since = min(r.at for r in readings) - dt.timedelta(seconds=window * 3)
        history = [
            rules.Reading(k, v, _aware(t))
            for k, v, t in db.execute(
                select(VitalSign.kind, VitalSign.value, VitalSign.observed_at).where(
                    VitalSign.session_id == row.id,
                    VitalSign.kind.in_(sustained),
                    VitalSign.observed_at >= since,
                )
            ).all()
        ]
        fresh = {(r.kind, r.at) for r in readings}
        history = [h for h in history if (h.kind, h.at) not in fresh]
    baseline = {k: float(v) for k, v in (row.baseline or {}).items()}
    raised = []
    for trig in rules.alarm_triggers(relevant, readings, history, baseline):
        alarm = _raise(db, row, trig, now)
        if alarm is not None:
            raised.append(alarm)
    return raised


def _raise(db: Session, row: TreatmentSession, trig: rules.Trigger, now: dt.datetime) -> Alarm | None:
    open_same = db.execute(
        select(Alarm.id).where(Alarm.session_id == row.id, Alarm.open_rule == trig.rule.key)
    ).first()
    if open_same is not None:
        return None
    alarm = Alarm(
        session_id=row.id,
        clinic_id=row.clinic_id,
        rule_key=trig.rule.key,
        open_rule=trig.rule.key,
        severity=trig.rule.severity,
        message=trig.message,
        vital=trig.rule.vital,
        value=trig.value,
        threshold=trig.rule.value,
        status="raised",
        observed_at=trig.at,
        raised_at=now,
    )
    try:
        with db.begin_nested():  # two feeds for one patient at once: the database keeps one open alarm
            db.add(alarm)
            db.flush()
    except IntegrityError:
        return None
    _notify(
        db,
        row,
        _prescribers_to_notify(db, row),
        "alarm",
        f"Alarm in session {row.id}: {trig.message} — {trig.value:g}",
        now,
    )
    return alarm


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


def _open_alarms(db: Session, session_id: int) -> list[Alarm]:
    return list(
        db.execute(
            select(Alarm).where(Alarm.session_id == session_id, Alarm.status != "resolved").order_by(Alarm.id)
        ).scalars()
    )


def record_vitals(
    db: Session, actor: Principal, session_id: int, data: Sequence[VitalIn], now: dt.datetime | None = None
) -> list[Alarm]:
    """Manual entry by a nurse: the whole batch is stored, or none of it."""
    at = _now(now)
    row = _session(db, actor, session_id, "session.vitals")
    if row.status not in rules.ACTIVE:
        raise Conflict("Vital signs are recorded while the patient is in the session.")
    errors = _plausibility_errors([(v.kind, v.value) for v in data])
    for i, v in enumerate(data):
        if v.observed_at is not None and v.observed_at > at + dt.timedelta(minutes=1):
            errors[f"readings.{i}.observed_at"] = "A reading cannot be in the future."
    if errors:
        raise InvalidInput(errors=errors)
    readings = [rules.Reading(v.kind, float(v.value), v.observed_at or at) for v in data]
    alarms = _store_readings(
        db, row, readings, source="manual", device_id=None, user_id=actor.user_id, now=at
    )
    audit.record(
        db,
        actor,
        "session.vitals",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=", ".join(f"{r.kind} {r.value:g}" for r in readings),
    )
    return alarms


def ingest_device_batch(db: Session, batch: DeviceBatch, *, now: dt.datetime | None = None) -> IngestResult:
    """Store a device's observations for the patient's active session; raise alarms.

    Does not commit: the caller acknowledges only after its commit. A control id seen before
    from the same device is a duplicate: nothing is stored and the result says so."""
    at = _now(now)
    try:
        clinic = auth.clinic_by_slug(db, batch.clinic_slug)
    except NotFound as exc:
        raise DeviceRejected("unknown_clinic", f"No clinic {batch.clinic_slug!r}.") from exc
    if batch.control_id is not None:
        seen = db.execute(
            select(DeviceMessage.session_id).where(
                DeviceMessage.clinic_id == clinic.id,
                DeviceMessage.device_id == batch.device_id,
                DeviceMessage.control_id == batch.control_id,
            )
        ).scalar_one_or_none()
        if seen is not None:
            return IngestResult(seen, 0, True, ())
    patient_id = patients.id_in_clinic(db, clinic.id, batch.record_number)
    if patient_id is None:
        raise DeviceRejected(
            "unknown_patient", f"No patient {batch.record_number!r} in clinic {batch.clinic_slug!r}."
        )
    row = db.execute(
        select(TreatmentSession)
        .where(TreatmentSession.patient_id == patient_id, TreatmentSession.status.in_(rules.ACTIVE))
        .order_by(TreatmentSession.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None:
        raise DeviceRejected(
            "no_active_session", f"Patient {batch.record_number!r} has no session in progress."
        )
    if not batch.observations:
        raise DeviceRejected("invalid", "The message holds no vital sign KetaCare records.")
    errors = _plausibility_errors([(o.kind, o.value) for o in batch.observations])
    if errors:
        raise DeviceRejected("implausible", "; ".join(errors.values()))
    ahead = max(o.observed_at for o in batch.observations) - at
    if ahead > DEVICE_CLOCK_SKEW:
        raise DeviceRejected(
            "invalid",
            f"An observation is timed {ahead.total_seconds():.0f} s in the future: check the device clock.",
        )
    if batch.control_id is not None:
        db.add(
            DeviceMessage(
                clinic_id=clinic.id,
                device_id=batch.device_id,
                control_id=batch.control_id,
                session_id=row.id,
                source=batch.source,
                observations=len(batch.observations),
                received_at=at,
            )
        )
        try:
            db.flush()
        except IntegrityError as exc:  # the same message on two connections at once
            raise DeviceRejected(
                "duplicate_race", "The same message is being stored by another connection."
            ) from exc
    readings = [
        rules.Reading(o.kind, float(o.value), o.observed_at.astimezone(dt.UTC)) for o in batch.observations
    ]
    alarms = _store_readings(
        db, row, readings, source=batch.source, device_id=batch.device_id, user_id=None, now=at
    )
    return IngestResult(row.id, len(readings), False, tuple(a.id for a in alarms))


def device_batch(
    db: Session, actor: Principal, data: DeviceBatchIn, now: dt.datetime | None = None
) -> IngestResult:
    """The REST endpoint for devices: the token's clinic, the body's device and patient."""
    at = _now(now)
    clinic = auth.clinic(db, actor.clinic_id)
    for i, o in enumerate(data.observations):
        if o.observed_at is None:
            raise InvalidInput(
                errors={f"observations.{i}.observed_at": "Devices must time every observation."}
            )
    batch = DeviceBatch(
        clinic_slug=clinic.slug,
        record_number=data.record_number,
        device_id=data.device_id,
        source="rest",
        control_id=data.batch_id,
        observations=tuple(
            DeviceObservation(o.kind, float(o.value), o.observed_at or at) for o in data.observations
        ),
    )
    try:
        result = ingest_device_batch(db, batch, now=at)
    except DeviceRejected as exc:
        if exc.code in ("unknown_patient",):
            raise NotFound(exc.message) from exc
        if exc.code in ("no_active_session", "duplicate_race"):
            raise Conflict(exc.message) from exc
        raise InvalidInput(errors={"observations": exc.message}) from exc
    if not result.duplicate:
        audit.record(
            db,
            actor,
            "session.device_batch",
            "session",
            resource_id=result.session_id,
            detail=f"{data.device_id}: {result.stored} observations",
        )
    return result


def acknowledge_alarm(
    db: Session, actor: Principal, alarm_id: int, data: NoteIn, now: dt.datetime | None = None
) -> Alarm:
    at = _now(now)
    alarm = _alarm(db, actor, alarm_id, "session.alarm.acknowledge")
    if alarm.status != "raised":
        raise Conflict(f"This alarm is already {alarm.status}.")
    alarm.status = "acknowledged"
    alarm.acknowledged_at, alarm.acknowledged_by_id, alarm.acknowledge_note = at, actor.user_id, data.note
    row = db.get(TreatmentSession, alarm.session_id)
    assert row is not None
    audit.record(
        db,
        actor,
        "session.alarm.acknowledge",
        "session",
        resource_id=alarm.session_id,
        patient_id=row.patient_id,
        detail=f"{alarm.rule_key} {data.note or ''}".strip(),
    )
    return alarm


def _close_alarm(alarm: Alarm, actor: Principal, at: dt.datetime, note: str | None) -> None:
    if alarm.status == "raised":
        alarm.acknowledged_at, alarm.acknowledged_by_id = at, actor.user_id
    alarm.status = "resolved"
    alarm.open_rule = None
    alarm.resolved_at, alarm.resolved_by_id, alarm.resolve_note = at, actor.user_id, note


def resolve_alarm(
    db: Session, actor: Principal, alarm_id: int, data: NoteIn, now: dt.datetime | None = None
) -> Alarm:
    at = _now(now)
    alarm = _alarm(db, actor, alarm_id, "session.alarm.resolve")
    if alarm.status == "resolved":
        raise Conflict("This alarm is already resolved.")
    if alarm.status == "raised":
        raise Conflict("Acknowledge the alarm first.")
    _close_alarm(alarm, actor, at, data.note)
    row = db.get(TreatmentSession, alarm.session_id)
    assert row is not None
    audit.record(
        db,
        actor,
        "session.alarm.resolve",
        "session",
        resource_id=alarm.session_id,
        patient_id=row.patient_id,
        detail=f"{alarm.rule_key} {data.note or ''}".strip(),
    )
    return alarm


def _alarm(db: Session, actor: Principal, alarm_id: int, action: str) -> Alarm:
    alarm = db.get(Alarm, alarm_id)
    if alarm is None or alarm.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such alarm in your clinic.",
            audit=[PendingAudit(action, "alarm", str(alarm_id), None, "denied", "not found")],
        )
    _session(db, actor, alarm.session_id, action)
    return alarm


def sweep_escalations(db: Session, clinic_id: int | None = None, now: dt.datetime | None = None) -> int:
    """Escalate alarms left unacknowledged past the clinic's time: a notice to the prescriber(s).
    Idempotent; called by the live board's refresh and by the HL7 listener's timer."""
    at = _now(now)
    query = select(Alarm).where(Alarm.status == "raised", Alarm.escalated_at.is_(None))
    if clinic_id is not None:
        query = query.where(Alarm.clinic_id == clinic_id)
    count = 0
    limits: dict[int, int] = {}
    for alarm in db.execute(query).scalars():
        if alarm.clinic_id not in limits:
            limits[alarm.clinic_id] = _active_rules(db, alarm.clinic_id)[1]
        if (at - _aware(alarm.raised_at)).total_seconds() < limits[alarm.clinic_id]:
            continue
        won = db.execute(
            update(Alarm).where(Alarm.id == alarm.id, Alarm.escalated_at.is_(None)).values(escalated_at=at)
        ).rowcount  # type: ignore[attr-defined]
        if not won:
            continue
        row = db.get(TreatmentSession, alarm.session_id)
        assert row is not None
        _notify(
            db,
            row,
            _prescribers_to_notify(db, row),
            "escalation",
            f"ESCALATED: not acknowledged in {limits[alarm.clinic_id]} s — session {row.id}: "
            f"{alarm.message} ({alarm.value:g})",
            at,
        )
        audit.record(
            db,
            None,
            "session.alarm.escalate",
            "session",
            resource_id=row.id,
            patient_id=row.patient_id,
            detail=alarm.rule_key,
            username="system",
            clinic_id=row.clinic_id,
        )
        count += 1
    return count


def notices(db: Session, actor: Principal, unread_only: bool = True, limit: int = 50) -> list[Notice]:
    query = select(Notice).where(Notice.user_id == actor.user_id, Notice.clinic_id == actor.clinic_id)
    if unread_only:
        query = query.where(Notice.read_at.is_(None))
    return list(db.execute(query.order_by(Notice.id.desc()).limit(limit)).scalars())


def mark_notices_read(db: Session, actor: Principal, now: dt.datetime | None = None) -> int:
    return int(
        db.execute(
            update(Notice)
            .where(Notice.user_id == actor.user_id, Notice.read_at.is_(None))
            .values(read_at=_now(now))
        ).rowcount  # type: ignore[attr-defined]
    )


# --- scores -----------------------------------------------------------------------------------


def record_score(
    db: Session, actor: Principal, session_id: int, data: ScoreIn, now: dt.datetime | None = None
) -> ScoreRecord:
    at = _now(now)
    row = _session(db, actor, session_id, "session.score")
    if row.status not in rules.ACTIVE:
        raise Conflict("Scores are recorded while the patient is in the session.")
    scale = session_rules().scales[data.scale.value]
    try:
        total = rules.score_total(scale, data.items)
    except ValueError as exc:
        raise InvalidInput(errors={"items": str(exc)}) from exc
    observed = data.observed_at or at
    record = ScoreRecord(
        session_id=row.id,
        scale=scale.key,
        phase=data.phase.value,
        items=list(data.items),
        total=total,
        observed_at=observed,
        recorded_by_id=actor.user_id,
        recorded_at=at,
    )
    db.add(record)
    if scale.key in SCORE_VITALS:
        _evaluate(db, row, [rules.Reading(scale.key, float(total), observed)], at)
    audit.record(
        db,
        actor,
        "session.score",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=f"{scale.key} {total}",
    )
    db.flush()
    return record


# --- adverse events ---------------------------------------------------------------------------


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


# --- discharge --------------------------------------------------------------------------------


def record_discharge_checks(
    db: Session, actor: Principal, session_id: int, data: DischargeChecksIn, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    row = _session(db, actor, session_id, "session.discharge_checks")
    if row.status not in (rules.RECOVERY, rules.READY):
        raise Conflict("Discharge checks are done in recovery.")
    row.discharge_checks = {**data.model_dump(), "by_id": actor.user_id, "at": at.isoformat()}
    audit.record(
        db,
        actor,
        "session.discharge_checks",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=json.dumps(data.model_dump()),
    )
    _update_readiness(db, actor, row, at)
    return row


def _update_readiness(db: Session, actor: Principal | None, row: TreatmentSession, at: dt.datetime) -> None:
    green = all(c.ok for c in checklist(db, row, at))
    if row.status == rules.RECOVERY and green:
        _transition(db, actor, row, rules.READY, at, "discharge checklist green")
    elif row.status == rules.READY and not green:
        _transition(db, actor, row, rules.RECOVERY, at, "discharge checklist no longer green")


def checklist(db: Session, row: TreatmentSession, at: dt.datetime) -> list[rules.Check]:
    given = _as_given(_given(db, row.id))
    tot = rules.totals(given, row.weight_kg, at)
    latest = _latest_vitals(db, row.id)
    moaas = db.execute(
        select(ScoreRecord.total)
        .where(ScoreRecord.session_id == row.id, ScoreRecord.scale == "moaas")
        .order_by(ScoreRecord.observed_at.desc(), ScoreRecord.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    checks = row.discharge_checks or {}
    first = min((g.at for g in given if g.drug in rules.KETAMINE_DRUGS), default=None)
    in_force = rules_for_clinic(db, row.clinic_id)
    vitals_pct = float(in_force.discharge["vitals_within_pct"])
    return rules.discharge_checklist(
        rules.DischargeInput(
            drug=row.drug,
            last_dose_at=tot.last_dose_at,
            monitoring_started_at=first,
            baseline={k: float(v) for k, v in (row.baseline or {}).items()},
            latest={k: v for k, (v, _) in latest.items()},
            latest_moaas=moaas,
            alert_and_oriented=bool(checks.get("alert_and_oriented")),
            escort_present=bool(checks.get("escort_present")),
            instructions_given=bool(checks.get("instructions_given")),
            open_alarms=len(_open_alarms(db, row.id)),
            vitals_within_pct=vitals_pct,
        ),
        in_force,
        at,
    )


def discharge(
    db: Session, actor: Principal, session_id: int, data: DischargeIn, now: dt.datetime | None = None
) -> TreatmentSession:
    at = _now(now)
    row = _session(db, actor, session_id, "session.discharge")
    if row.status not in (rules.RECOVERY, rules.READY):
        raise Conflict("A patient is discharged from recovery.")
    failing = [c for c in checklist(db, row, at) if not c.ok]
    if failing:
        if not data.override_reason:
            raise InvalidInput(
                errors={
                    "override_reason": "Not yet: "
                    + "; ".join(f"{c.label} ({c.detail})" for c in failing)
                    + ". A prescriber may discharge anyway with a documented reason."
                }
            )
        if actor.role != Role.prescriber:
            raise Forbidden("Only a prescriber may discharge before the checklist is green.")
        row.discharge_override_reason = data.override_reason
        row.discharge_override_by_id = actor.user_id
        for alarm in _open_alarms(db, row.id):
            _close_alarm(alarm, actor, at, f"Discharged by prescriber override: {data.override_reason}")
    if row.status == rules.RECOVERY:
        _transition(db, actor, row, rules.READY, at, data.override_reason or "discharge checklist green")
    _transition(db, actor, row, rules.DISCHARGED, at, data.override_reason)
    row.discharged_by_id = actor.user_id
    audit.record(
        db,
        actor,
        "session.discharge",
        "session",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=f"override: {data.override_reason}" if data.override_reason else "checklist green",
    )
    _follow_up(db, actor, row, at)
    return row


def _follow_up(db: Session, actor: Principal, row: TreatmentSession, at: dt.datetime) -> None:
    """At discharge (in the same transaction): the end-of-session questionnaire, and when the
    session is the last of its plan's series, the follow-ups after the series (the outcomes
    feature's schedule: day 1, weeks 1, 2, 4, 8, 12, then monthly). Days are the clinic's."""
    day = at.astimezone(clinic_time.zone(db, row.clinic_id)).date()
    outcomes.end_of_session(db, actor, row.patient_id, day)
    plan = next((p for p in planning.patient_plans(db, actor, row.patient_id) if p.id == row.plan_id), None)
    if plan is not None and row.number >= plan.sessions:
        outcomes.schedule_after_series(db, actor, row.patient_id, day, row.plan_id)


# --- the session view and the board -----------------------------------------------------------


def _latest_vitals(db: Session, session_id: int) -> dict[str, tuple[float, dt.datetime]]:
    sub = (
        select(VitalSign.kind, func.max(VitalSign.observed_at).label("at"))
        .where(VitalSign.session_id == session_id)
        .group_by(VitalSign.kind)
        .subquery()
    )
    rows = db.execute(
        select(VitalSign.kind, VitalSign.value, VitalSign.observed_at)
        .join(sub, (VitalSign.kind == sub.c.kind) & (VitalSign.observed_at == sub.c.at))
        .where(VitalSign.session_id == session_id)
    ).all()
    return {k: (v, _aware(t)) for k, v, t in rows}


@dataclass(frozen=True)
class Prediction:
    available: bool
    reason: str
    now_ng_per_ml: float | None
    t: list[dt.datetime]
    cp_ng_per_ml: list[float]


def predict(
    db: Session,
    row: TreatmentSession,
    at: dt.datetime,
    given: Sequence[rules.Given] | None = None,
    tail_min: float = 0.0,
) -> Prediction:
    """The plasma concentration predicted from what was actually given (population-typical
    parameters for this patient's weight, age and sex), from the first dose to ``at`` (+ tail)."""
    if row.drug != "ketamine":
        return Prediction(False, "Esketamine is not simulated: the engine has no model for it.", None, [], [])
    given = list(given) if given is not None else _as_given(_given(db, row.id))
    first = min((g.at for g in given if g.drug == "ketamine" and g.kind in rules.STUDY_KINDS), default=None)
    if first is None or row.weight_kg is None:
        return Prediction(False, "No ketamine given yet.", None, [], [])
    doses = rules.pk_doses(given, first, at, row.route)
    if not doses:
        return Prediction(False, "No ketamine given yet.", None, [], [])
    date_of_birth, sex_recorded = patients.demographics(db, row.patient_id)
    age = patients.age_years(date_of_birth, at.date())
    sex: Literal["male", "female"] = "female" if sex_recorded == "female" else "male"
    span = max(1.0, (at - first).total_seconds() / 60.0) + tail_min
    step = max(PREDICTION_STEP_MIN, span / 400.0)
    grid = np.arange(0.0, span + 1e-9, step)
    now_min = (at - first).total_seconds() / 60.0
    if now_min not in grid:
        grid = np.sort(np.append(grid, now_min))
    try:
        sim = simulate(
            PkPatient(weight_kg=row.weight_kg, age_y=float(age), sex=sex),
            doses,
            t_min=grid,
            norketamine=False,
        )
    except PharmacologyInputError as exc:
        return Prediction(False, f"Not simulated: {exc}", None, [], [])
    cp = [float(c) for c in sim.cp_ng_per_ml]
    idx = int(np.searchsorted(grid, now_min))
    return Prediction(
        True,
        "Typical parameters for this patient's weight, age and sex; not a measured level.",
        round(cp[min(idx, len(cp) - 1)], 1),
        [first + dt.timedelta(minutes=float(m)) for m in grid],
        cp,
    )


@dataclass(frozen=True)
class Due:
    what: str
    due_at: dt.datetime
    overdue: bool


def due_observations(
    row: TreatmentSession,
    last_vitals_at: dt.datetime | None,
    last_score_at: dt.datetime | None,
    at: dt.datetime,
) -> list[Due]:
    if row.status not in (rules.RUNNING, rules.RECOVERY, rules.READY) or row.started_at is None:
        return []
    knowledge = session_rules()
    start = _aware(row.started_at)
    out = []
    for what, schedule, last in (
        ("Vital signs (BP, HR, SpO2, RR)", knowledge.observation_vitals, last_vitals_at),
        ("Sedation and dissociation scores", knowledge.observation_scores, last_score_at),
    ):
        due = rules.next_due(schedule, start, last)
        out.append(Due(what, due, due <= at))
    return out


@dataclass(frozen=True)
class SessionView:
    session: TreatmentSession
    patient_name: str
    record_number: str
    patient_id: int
    booked: planning.BookedSession
    precheck: PreCheck | None
    given: list[Administration]
    totals: rules.Totals
    vitals: list[VitalSign]
    latest: dict[str, tuple[float, dt.datetime]]
    scores: list[ScoreRecord]
    alarms: list[Alarm]
    adverse_events: list[AdverseEvent]
    transitions: list[SessionTransition]
    prediction: Prediction
    due: list[Due]
    checklist: list[rules.Check]
    billing: list[tuple[str, int]]
    staff: dict[int, str]
    rems: RemsForm | None
    zone: str
    now: dt.datetime
    holds: tuple[safety_holds.HoldNotice, ...] = ()  # active long-term safety holds


@dataclass(frozen=True)
class AlarmPanel:
    """The session page's alarm list, polled by the page so that a new alarm sounds there too."""

    session: TreatmentSession
    alarms: list[Alarm]
    staff: dict[int, str]
    zone: str


def alarm_panel(db: Session, actor: Principal, session_id: int) -> AlarmPanel:
    """Polled every few seconds by an open session page: not audited (the page load was)."""
    row = _session(db, actor, session_id, "session.read")
    alarms = list(db.execute(select(Alarm).where(Alarm.session_id == row.id).order_by(Alarm.id)).scalars())
    staff = {u.id: u.full_name for u in auth.staff_directory(db, actor.clinic_id)}
    return AlarmPanel(row, alarms, staff, clinic_time.zone_name(db, row.clinic_id))


def view(
    db: Session, actor: Principal, session_id: int, now: dt.datetime | None = None, *, audit_read: bool = True
) -> SessionView:
    at = _now(now)
    row = _session(db, actor, session_id, "session.read")
    booked = planning.booked_session(db, actor, row.plan_session_id)
    p = patients.visible_patient(db, actor, row.patient_id, "session.read")
    given = _given(db, row.id)
    as_given = _as_given(given)
    end = (
        _aware(row.discharged_at or row.aborted_at or at)
        if row.status in (rules.DISCHARGED, rules.ABORTED)
        else at
    )
    tot = rules.totals(as_given, row.weight_kg, end)
    vitals = list(
        db.execute(
            select(VitalSign)
            .where(VitalSign.session_id == row.id)
            .order_by(VitalSign.observed_at, VitalSign.id)
        ).scalars()
    )
    scores = list(
        db.execute(
            select(ScoreRecord)
            .where(ScoreRecord.session_id == row.id)
            .order_by(ScoreRecord.observed_at, ScoreRecord.id)
        ).scalars()
    )
    alarms = list(db.execute(select(Alarm).where(Alarm.session_id == row.id).order_by(Alarm.id)).scalars())
    aes = list(
        db.execute(
            select(AdverseEvent).where(AdverseEvent.session_id == row.id).order_by(AdverseEvent.onset_at)
        ).scalars()
    )
    transitions = list(
        db.execute(
            select(SessionTransition)
            .where(SessionTransition.session_id == row.id)
            .order_by(SessionTransition.id)
        ).scalars()
    )
    latest = _latest_vitals(db, row.id)
    last_v = max((t for _, t in latest.values()), default=None)
    last_s = max(
        (_aware(s.observed_at) for s in scores if s.scale in ("moaas", "rass", "cadss6")), default=None
    )
    prediction = predict(db, row, end, as_given, tail_min=0.0)
    staff = {u.id: u.full_name for u in auth.staff_directory(db, actor.clinic_id)}
    precheck = db.execute(select(PreCheck).where(PreCheck.session_id == row.id)).scalar_one_or_none()
    rems = db.execute(select(RemsForm).where(RemsForm.session_id == row.id)).scalar_one_or_none()
    if audit_read:
        audit.record(db, actor, "session.read", "session", resource_id=row.id, patient_id=row.patient_id)
    return SessionView(
        session=row,
        patient_name=f"{p.family_name}, {p.given_name}",
        record_number=p.record_number,
        patient_id=p.id,
        booked=booked,
        precheck=precheck,
        given=given,
        totals=tot,
        vitals=vitals,
        latest=latest,
        scores=scores,
        alarms=alarms,
        adverse_events=aes,
        transitions=transitions,
        prediction=prediction,
        due=due_observations(row, last_v, last_s, at),
        checklist=checklist(db, row, end)
        if row.status in (rules.RECOVERY, rules.READY, rules.DISCHARGED)
        else [],
        billing=rules.billing_units(row.route, tot.infusion_min, tot.total_mg) if tot.first_dose_at else [],
        staff=staff,
        rems=rems,
        zone=clinic_time.zone_name(db, row.clinic_id),
        now=at,
        holds=safety_holds.notices(db, row.clinic_id, row.patient_id),
    )


@dataclass(frozen=True)
class BoardRow:
    session: TreatmentSession
    patient_name: str
    record_number: str
    chair_name: str
    latest: dict[str, tuple[float, dt.datetime]]
    trend: dict[str, list[tuple[dt.datetime, float]]]
    alarms: list[Alarm]
    predicted_ng_per_ml: float | None
    rate_mg_per_h: float | None
    total_mg: float
    moaas: int | None
    cadss6: int | None
    due: list[Due]


def board(
    db: Session, actor: Principal, now: dt.datetime | None = None, *, audit_view: bool = True
) -> list[BoardRow]:
    """Every session in progress in the clinic, with what the nurse needs at a glance."""
    at = _now(now)
    sweep_escalations(db, actor.clinic_id, at)
    rows = list(
        db.execute(
            select(TreatmentSession)
            .where(TreatmentSession.clinic_id == actor.clinic_id, TreatmentSession.status.in_(rules.ACTIVE))
            .order_by(TreatmentSession.checked_in_at, TreatmentSession.id)
        ).scalars()
    )
    if not rows:
        return []
    ids = [r.id for r in rows]
    since = at - dt.timedelta(minutes=TREND_MIN)
    trend: dict[int, dict[str, list[tuple[dt.datetime, float]]]] = {i: {} for i in ids}
    for sid, kind, value, t in db.execute(
        select(VitalSign.session_id, VitalSign.kind, VitalSign.value, VitalSign.observed_at)
        .where(VitalSign.session_id.in_(ids), VitalSign.observed_at >= since)
        .order_by(VitalSign.observed_at)
    ).all():
        trend[sid].setdefault(kind, []).append((_aware(t), value))
    alarms: dict[int, list[Alarm]] = {i: [] for i in ids}
    for a in db.execute(
        select(Alarm).where(Alarm.session_id.in_(ids), Alarm.status != "resolved").order_by(Alarm.id)
    ).scalars():
        alarms[a.session_id].append(a)
    scores: dict[int, dict[str, tuple[int, dt.datetime]]] = {i: {} for i in ids}
    for s in db.execute(
        select(ScoreRecord)
        .where(ScoreRecord.session_id.in_(ids))
        .order_by(ScoreRecord.observed_at, ScoreRecord.id)
    ).scalars():
        scores[s.session_id][s.scale] = (s.total, _aware(s.observed_at))
    chair_names = {c.id: f"{c.room} · {c.name}" for c in planning.chairs(db, actor.clinic_id)}
    out = []
    for r in rows:
        p = patients.visible_patient(db, actor, r.patient_id, "session.board")
        given = _as_given(_given(db, r.id))
        tot = rules.totals(given, r.weight_kg, at)
        latest = _latest_vitals(db, r.id)
        last_v = max((t for _, t in latest.values()), default=None)
        last_s = max((t for k, (_, t) in scores[r.id].items() if k != "nrs"), default=None)
        pred = predict(db, r, at, given) if tot.first_dose_at is not None else None
        out.append(
            BoardRow(
                session=r,
                patient_name=f"{p.family_name}, {p.given_name}",
                record_number=p.record_number,
                chair_name=chair_names.get(r.chair_id or 0, "?"),
                latest=latest,
                trend=trend[r.id],
                alarms=alarms[r.id],
                predicted_ng_per_ml=pred.now_ng_per_ml if pred is not None else None,
                rate_mg_per_h=tot.current_rate_mg_per_h,
                total_mg=tot.total_mg,
                moaas=scores[r.id].get("moaas", (None, None))[0],
                cadss6=scores[r.id].get("cadss6", (None, None))[0],
                due=due_observations(r, last_v, last_s, at),
            )
        )
    if audit_view:
        audit.record_many(
            db,
            actor,
            [audit.AuditEvent("session.board", "session", r.id, r.patient_id, "success", "") for r in rows],
        )
    return out


# --- signatures -------------------------------------------------------------------------------


def report_digest(v: SessionView) -> str:
    """A hash over what the report states: signing fixes it; a later change shows."""
    s = v.session
    content = {
        "session": s.id,
        "patient": v.record_number,
        "status": s.status,
        "given": [
            (g.kind, g.drug, g.rate_mg_per_h, g.dose_mg, _aware(g.given_at).isoformat(), g.lot)
            for g in v.given
        ],
        "vitals": len(v.vitals),
        "alarms": [(a.rule_key, a.status) for a in v.alarms],
        "aes": [(a.term, a.grade, a.serious) for a in v.adverse_events],
        "scores": [(x.scale, x.total) for x in v.scores],
        "total_mg": v.totals.total_mg,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def sign(db: Session, actor: Principal, session_id: int, now: dt.datetime | None = None) -> TreatmentSession:
    at = _now(now)
    v = view(db, actor, session_id, at, audit_read=False)
    row = v.session
    if row.status not in (rules.DISCHARGED, rules.ABORTED):
        raise Conflict("The session report is signed after discharge (or abort).")
    digest = report_digest(v)
    if row.report_sha256 is not None and row.report_sha256 != digest:
        raise Conflict("The record changed since the first signature; review the report again.")
    if actor.role == Role.prescriber:
        if row.prescriber_signed_at is not None:
            raise Conflict("A prescriber has already signed this report.")
        row.prescriber_signed_by_id, row.prescriber_signed_at = actor.user_id, at
    elif actor.role == Role.nurse:
        if row.nurse_signed_at is not None:
            raise Conflict("A nurse has already signed this report.")
        row.nurse_signed_by_id, row.nurse_signed_at = actor.user_id, at
    else:
        raise Forbidden("Session reports are signed by the nurse and the prescriber.")
    row.report_sha256 = digest
    audit.record(
        db, actor, "session.sign", "session", resource_id=row.id, patient_id=row.patient_id, detail=digest
    )
    return row


def patient_sessions(db: Session, actor: Principal, patient_id: int) -> list[TreatmentSession]:
    patients.visible_patient(db, actor, patient_id, "session.list")
    return list(
        db.execute(
            select(TreatmentSession)
            .where(TreatmentSession.patient_id == patient_id)
            .order_by(TreatmentSession.id.desc())
        ).scalars()
    )


def session_for_booking(db: Session, actor: Principal, plan_session_id: int) -> int | None:
    return db.execute(
        select(TreatmentSession.id).where(
            TreatmentSession.plan_session_id == plan_session_id, TreatmentSession.clinic_id == actor.clinic_id
        )
    ).scalar_one_or_none()


def knowledge() -> SessionRules:
    return session_rules()


# --- what the public directory may say about a clinic ----------------------------------------


@dataclass(frozen=True)
class ClinicSafetyRecord:
    """Counts only, never a patient: the directory's vetting signals read them."""

    sessions_delivered: int  # discharged sessions
    adverse_events_recorded: int


def clinic_safety_record(db: Session, clinic_id: int) -> ClinicSafetyRecord:
    delivered = db.execute(
        select(func.count(TreatmentSession.id)).where(
            TreatmentSession.clinic_id == clinic_id, TreatmentSession.status == rules.DISCHARGED
        )
    ).scalar_one()
    events = db.execute(
        select(func.count(AdverseEvent.id)).where(
            AdverseEvent.clinic_id == clinic_id, AdverseEvent.session_id.is_not(None)
        )
    ).scalar_one()
    return ClinicSafetyRecord(int(delivered), int(events))


def had_session(db: Session, clinic_id: int, patient_id: int) -> bool:
    """Whether the patient completed (was discharged from) a session at the clinic."""
    return (
        db.execute(
            select(TreatmentSession.id)
            .where(
                TreatmentSession.clinic_id == clinic_id,
                TreatmentSession.patient_id == patient_id,
                TreatmentSession.status == rules.DISCHARGED,
            )
            .limit(1)
        ).first()
        is not None
    )


@dataclass(frozen=True)
class KetamineGiven:
    session_id: int
    plan_id: int
    started_at: dt.datetime
    route: str
    drug: str
    total_mg: float


def ketamine_given(db: Session, actor: Principal, patient_id: int) -> list[KetamineGiven]:
    """Ketamine (or esketamine) given in each started session of a patient, from the
    administration record (no prediction run): for cumulative-exposure checks."""
    patients.visible_patient(db, actor, patient_id, "session.list")
    rows = list(
        db.execute(
            select(TreatmentSession).where(
                TreatmentSession.patient_id == patient_id, TreatmentSession.started_at.is_not(None)
            )
        ).scalars()
    )
    if not rows:
        return []
    by_session: dict[int, list[Administration]] = {r.id: [] for r in rows}
    for entry in db.execute(
        select(Administration)
        .where(Administration.session_id.in_(list(by_session)))
        .order_by(Administration.given_at, Administration.id)
    ).scalars():
        by_session[entry.session_id].append(entry)
    out = []
    for r in rows:
        end = r.discharged_at or r.aborted_at or r.recovery_at or utcnow()
        tot = rules.totals(_as_given(by_session[r.id]), r.weight_kg, _aware(end))
        assert r.started_at is not None
        out.append(KetamineGiven(r.id, r.plan_id, _aware(r.started_at), r.route, r.drug, tot.total_mg))
    return out
