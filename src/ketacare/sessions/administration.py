"""The administration record: doses and infusion entries with the dose gate, their draws on the
controlled-substance ledger, waste, ending dosing and aborting a session; and the ketamine a
patient was given per session.
Each function runs in the caller's transaction and never commits; people's actions are audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import Conflict, InvalidInput
from ketacare.ledger import common as ledger_common
from ketacare.ledger import lots as ledger_lots
from ketacare.ledger import movements as ledger_movements
from ketacare.ledger import rules as ledger_rules
from ketacare.patients import service as patients
from ketacare.planning import plans
from ketacare.planning import setup as plan_setup
from ketacare.planning.dosing import MIN_OVERRIDE_REASON_CHARS
from ketacare.sessions import rules
from ketacare.sessions.common import _aware, _notify, _now, _session, _transition
from ketacare.sessions.models import Administration, TreatmentSession
from ketacare.sessions.monitoring import _close_alarm, _open_alarms
from ketacare.sessions.schemas import AbortIn, AdministrationIn, NoteIn, SessionWasteIn


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
    lot_choice: ledger_lots.LotChoice | None = None
    route = data.route or (row.route if ketamine else "iv")
    if ketamine and route != row.route:
        errors["route"] = f"This session's plan gives {row.drug} by {row.route}."
    if kind in ("start", "bolus", "dose") and ketamine:
        # The right product for the route: only a lot whose drug and dosage form fit the
        # session is offered or accepted (knowledge: products).
        in_stock = {c.lot_id: c for c in ledger_lots.available_lots(db, actor)}
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
        ledger_movements.record_administration(
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
    clinic = plan_setup.clinical_defaults(db, row.clinic_id)
    ctx = rules.DoseContext(
        route=row.route,
        drug=row.drug,
        weight_kg=row.weight_kg,
        age_years=patients.age_years(date_of_birth, given_at.date()),
        planned_duration_min=row.planned_duration_min,
        allowance=plans.session_allowance(db, actor, row.plan_id),
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
        ledger_movements.record_administration(
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
    if problem := ledger_lots.lot_fit_problem(db, actor, data.lot_id, row.drug, row.route):
        raise InvalidInput(errors={"lot_id": problem})
    ledger_movements.record_waste(
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
    ledger_common.record_refusal(db, actor, exc)


@dataclass(frozen=True)
class LotChoices:
    """What the session's lot picker offers: only the lots that fit its drug and route, and how
    many lots in stock were left out because they do not."""

    fitting: list[ledger_lots.LotChoice]
    left_out: int


def lot_choices(db: Session, actor: Principal, session_id: int) -> LotChoices:
    row = _session(db, actor, session_id, "session.view")
    every = ledger_lots.available_lots(db, actor)
    fitting = [c for c in every if c.fit_problem(row.drug, row.route) is None]
    return LotChoices(fitting, len(every) - len(fitting))


def waste_witnesses(db: Session, actor: Principal) -> list[tuple[str, str]]:
    return [
        (str(w.user_id), w.name)
        for w in ledger_movements.witness_options(db, actor, roles=ledger_rules.WASTE_WITNESS_ROLES)
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
