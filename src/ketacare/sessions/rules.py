"""Session rules as pure functions: the state machine, pre-check gates, alarm conditions,
the observation schedule, what was given (totals and the pharmacology doses), scores,
discharge criteria and billing units. No database, no clock: callers pass ``now``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ketacare.knowledge.contraindications import BpFinding, blood_pressure_findings
from ketacare.knowledge.dose_limits import dose_limits
from ketacare.knowledge.sessions import AlarmRule, Scale, SessionRules
from ketacare.pharmacology import Dose
from ketacare.planning.clinical_defaults import ClinicalDefaults
from ketacare.planning.costing import session_codes
from ketacare.planning.dosing import (
    H_PER_DAY,
    MIN_PER_H,
    Allowance,
    adult_findings,
    ceiling_problems,
    ceilings_in_force,
    rate_cap,
)

# --- the state machine ----------------------------------------------------------------------

SCHEDULED = "scheduled"
CHECKED_IN = "checked_in"
PRECHECKS_DONE = "prechecks_done"
RUNNING = "running"
RECOVERY = "recovery"
READY = "ready_for_discharge"
DISCHARGED = "discharged"
ABORTED = "aborted"

STATES: tuple[str, ...] = (
    SCHEDULED,
    CHECKED_IN,
    PRECHECKS_DONE,
    RUNNING,
    RECOVERY,
    READY,
    DISCHARGED,
    ABORTED,
)
STATE_LABELS = {
    SCHEDULED: "Scheduled",
    CHECKED_IN: "Checked in",
    PRECHECKS_DONE: "Pre-checks done",
    RUNNING: "Running",
    RECOVERY: "Recovery",
    READY: "Ready for discharge",
    DISCHARGED: "Discharged",
    ABORTED: "Aborted",
}
TRANSITIONS: dict[str, frozenset[str]] = {
    SCHEDULED: frozenset({CHECKED_IN}),
    CHECKED_IN: frozenset({PRECHECKS_DONE, ABORTED}),
    PRECHECKS_DONE: frozenset({RUNNING, ABORTED}),
    RUNNING: frozenset({RECOVERY, ABORTED}),
    RECOVERY: frozenset({READY, ABORTED}),
    READY: frozenset({DISCHARGED, RECOVERY, ABORTED}),
    DISCHARGED: frozenset(),
    ABORTED: frozenset(),
}
# States in which a patient is in the chair: the live board shows them, devices may send vitals.
ACTIVE: tuple[str, ...] = (CHECKED_IN, PRECHECKS_DONE, RUNNING, RECOVERY, READY)
# A session stopped early for safety goes RUNNING -> RECOVERY with a reason and is discharged as
# usual; "aborted" is final, for a session that cannot go on at all (before or during dosing).


def administration_states(kind: str) -> tuple[str, ...]:
    """The states in which an administration entry of ``kind`` may be recorded. Nothing is given
    before the pre-checks are complete (consent, escort, oximeter, safety holds, prescriber on
    site: issue 14), premedication included; a rescue drug is recorded in any active state after
    the pre-checks, through recovery."""
    if kind == "rescue":
        return (PRECHECKS_DONE, RUNNING, RECOVERY, READY)
    if kind == "premedication":
        return (PRECHECKS_DONE, RUNNING)
    return (PRECHECKS_DONE, RUNNING)


class TransitionRefused(ValueError):
    pass


def check_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(STATE_LABELS[s] for s in sorted(TRANSITIONS.get(current, frozenset()))) or "none"
        raise TransitionRefused(
            f"A session that is {STATE_LABELS.get(current, current).lower()} cannot become "
            f"{STATE_LABELS.get(target, target).lower()} (allowed next: {allowed})."
        )


# --- pre-checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecheckInput:
    weight_kg: float
    sbp: float
    dbp: float
    hr: float
    spo2: float
    rr: float | None
    consent_on_file: bool
    ecg_on_file: bool
    lft_on_file: bool
    pregnancy_test: str  # negative, positive, not_done, not_applicable
    escort_name: str
    escort_phone: str
    escort_confirmed: bool
    oximeter_connected: bool
    prescriber_on_site_id: int | None


@dataclass(frozen=True)
class PrecheckContext:
    ecg_required: bool
    lft_required: bool
    pregnancy_test_required: bool
    bp_decision_documented: bool
    prescribers_on_duty: frozenset[int]
    plausible: dict[str, tuple[float, float]]


def predose_bp_high(sbp: float, dbp: float, rules: SessionRules) -> bool:
    """Above the decision line (or a hold): the one blood-pressure rule screening uses too."""
    return bool(blood_pressure_findings(sbp, dbp))


def predose_bp_holds(sbp: float, dbp: float) -> list[BpFinding]:
    """The holds (SBP < 90 or > 180 mmHg, DBP >= 110 mmHg): ketamine is not given, whatever
    decision was documented (knowledge: blood_pressure_findings, the rule screening uses)."""
    return [f for f in blood_pressure_findings(sbp, dbp) if f.level == "hold"]


def precheck_problems(data: PrecheckInput, ctx: PrecheckContext, rules: SessionRules) -> dict[str, str]:
    """Field -> why the session cannot start yet. Empty when every gate passes."""
    errors: dict[str, str] = {}
    for kind in ("sbp", "dbp", "hr", "spo2", "rr"):
        value = getattr(data, kind)
        if value is None:
            continue
        low, high = ctx.plausible[kind]
        if not low <= value <= high:
            errors[kind] = f"{value:g} is outside the plausible range {low:g}-{high:g}: re-measure."
    if not data.consent_on_file:
        errors["consent_on_file"] = "The signed consent for this plan must be on file."
    if ctx.ecg_required and not data.ecg_on_file:
        errors["ecg_on_file"] = (
            "This patient has cardiovascular risk: a baseline ECG must be on file (ASRA-2018, grade C)."
        )
    if ctx.lft_required and not data.lft_on_file:
        errors["lft_on_file"] = "Liver risk or frequent high doses: baseline liver tests must be on file."
    if data.pregnancy_test == "positive":
        errors["pregnancy_test"] = "A positive pregnancy test: ketamine is not given (a contraindication)."
    elif ctx.pregnancy_test_required and data.pregnancy_test not in ("negative",):
        errors["pregnancy_test"] = "A negative pregnancy test today is required for this patient."
    if not data.escort_confirmed or not data.escort_name.strip():
        errors["escort_confirmed"] = "A responsible adult escort must be confirmed, with a name."
    if not data.oximeter_connected:
        errors["oximeter_connected"] = "Connect the pulse oximeter before starting."
    if data.prescriber_on_site_id is None or data.prescriber_on_site_id not in ctx.prescribers_on_duty:
        errors["prescriber_on_site_id"] = "Name the prescriber on site (on the duty roster today)."
    holds = predose_bp_holds(data.sbp, data.dbp) if "sbp" not in errors and "dbp" not in errors else []
    if holds:
        field = "dbp" if all(f.code == "dbp_high" for f in holds) else "sbp"
        errors[field] = (
            " ".join(f"{f.message} ({f.sourced.source})" for f in holds)
            + " Hold: ketamine is not given at this pressure; re-measure after rest."
        )
    elif (
        "sbp" not in errors
        and "dbp" not in errors
        and predose_bp_high(data.sbp, data.dbp, rules)
        and not ctx.bp_decision_documented
    ):
        errors["sbp"] = (
            f"Pre-dose BP {data.sbp:g}/{data.dbp:g} is above "
            f"{rules.precheck['predose_sbp_max']:g}/{rules.precheck['predose_dbp_max']:g} mmHg: "
            "a prescriber must document the decision to go ahead first."
        )
    return errors


# --- alarms ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    kind: str
    value: float
    at: dt.datetime


@dataclass(frozen=True)
class Trigger:
    rule: AlarmRule
    value: float
    at: dt.datetime
    message: str


def _crosses(rule: AlarmRule, value: float, baseline: dict[str, float]) -> bool:
    if rule.kind == "above":
        return value >= rule.value
    if rule.kind == "below":
        return value < rule.value
    if rule.kind == "at_or_below":
        return value <= rule.value
    if rule.kind == "rise_pct":
        base = baseline.get(rule.vital)
        return base is not None and base > 0 and value > base * (1 + rule.value / 100.0)
    return False


def alarm_triggers(
    rules: Sequence[AlarmRule],
    new: Sequence[Reading],
    history: Sequence[Reading],
    baseline: dict[str, float],
) -> list[Trigger]:
    """The alarm conditions the new readings meet (at most one trigger per rule: the latest).

    ``history`` holds the session's earlier readings of the sustained rules' vitals (time
    order, at least the rule's window); a sustained rule fires when every reading in the last
    ``sustain_s`` seconds, and the one before them, are below the value."""
    found: dict[str, Trigger] = {}
    for rule in rules:
        mine = sorted((r for r in new if r.kind == rule.vital), key=lambda r: r.at)
        if not mine:
            continue
        if rule.kind == "sustained_below":
            series = sorted([*(r for r in history if r.kind == rule.vital), *mine], key=lambda r: r.at)
            latest = series[-1]
            if latest.value >= rule.value:
                continue
            # walk back while below; the condition holds since the earliest of that run
            start = latest.at
            for r in reversed(series):
                if r.value >= rule.value:
                    break
                start = r.at
            if (latest.at - start).total_seconds() >= rule.sustain_s:
                found[rule.key] = Trigger(rule, latest.value, latest.at, rule.describe())
            continue
        for r in mine:
            if _crosses(rule, r.value, baseline):
                found[rule.key] = Trigger(rule, r.value, r.at, rule.describe())
    return list(found.values())


def sustained_window_s(rules: Iterable[AlarmRule]) -> int:
    return max((r.sustain_s for r in rules if r.kind == "sustained_below"), default=0)


# --- observation schedule -------------------------------------------------------------------


def interval_min(schedule: Sequence[tuple[int, int]], elapsed_min: float) -> int:
    for until, every in schedule:
        if elapsed_min < until:
            return every
    return schedule[-1][1]


def next_due(
    schedule: Sequence[tuple[int, int]], started_at: dt.datetime, last_at: dt.datetime | None
) -> dt.datetime:
    """When the next observation is due: the interval that applies at the last one (or at the start)."""
    anchor = last_at if last_at is not None and last_at >= started_at else started_at
    elapsed = (anchor - started_at).total_seconds() / 60.0
    if last_at is None or last_at < started_at:
        return started_at
    return anchor + dt.timedelta(minutes=interval_min(schedule, elapsed))


# --- what was given -------------------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    kind: str
    drug: str
    route: str
    at: dt.datetime
    rate_mg_per_h: float | None = None
    dose_mg: float | None = None


@dataclass(frozen=True)
class Segment:
    start: dt.datetime
    end: dt.datetime | None  # None: still running
    rate_mg_per_h: float


@dataclass(frozen=True)
class Totals:
    total_mg: float
    mg_per_kg: float | None
    infusion_min: float  # first start to stop (or now)
    current_rate_mg_per_h: float | None  # None when no infusion is running
    first_dose_at: dt.datetime | None
    last_dose_at: dt.datetime | None  # the end of dosing: infusion stop, or the last bolus/dose
    infusion_running: bool


KETAMINE_DRUGS = ("ketamine", "esketamine")
STUDY_KINDS = ("start", "rate_change", "stop", "bolus", "dose")


def infusion_segments(given: Sequence[Given]) -> list[Segment]:
    """The ketamine infusion as constant-rate pieces (a rate of 0 is a pause)."""
    segs: list[Segment] = []
    current: tuple[dt.datetime, float] | None = None
    for g in sorted(given, key=lambda g: g.at):
        if g.drug not in KETAMINE_DRUGS or g.kind not in ("start", "rate_change", "stop"):
            continue
        if current is not None:
            segs.append(Segment(current[0], g.at, current[1]))
            current = None
        if g.kind in ("start", "rate_change"):
            current = (g.at, g.rate_mg_per_h or 0.0)
    if current is not None:
        segs.append(Segment(current[0], None, current[1]))
    return segs


def totals(given: Sequence[Given], weight_kg: float | None, now: dt.datetime) -> Totals:
    segs = infusion_segments(given)
    mg = 0.0
    for s in segs:
        end = s.end or now
        mg += s.rate_mg_per_h * max(0.0, (end - s.start).total_seconds()) / 3600.0
    singles = [g for g in given if g.drug in KETAMINE_DRUGS and g.kind in ("bolus", "dose")]
    mg += sum(g.dose_mg or 0.0 for g in singles)
    times = [s.start for s in segs] + [g.at for g in singles]
    first = min(times) if times else None
    running = bool(segs) and segs[-1].end is None
    ends = [s.end for s in segs if s.end is not None] + [g.at for g in singles]
    last = None if running else (max(ends) if ends else None)
    infusion_min = 0.0
    if segs:
        infusion_min = ((segs[-1].end or now) - segs[0].start).total_seconds() / 60.0
    return Totals(
        total_mg=round(mg, 2),
        mg_per_kg=round(mg / weight_kg, 3) if weight_kg else None,
        infusion_min=round(infusion_min, 1),
        current_rate_mg_per_h=segs[-1].rate_mg_per_h if running else None,
        first_dose_at=first,
        last_dose_at=last,
        infusion_running=running,
    )


def mg_between(given: Sequence[Given], start: dt.datetime, end: dt.datetime) -> float:
    """Ketamine delivered in [start, end): infusion pieces clipped to it, plus boluses and doses."""
    mg = 0.0
    for s in infusion_segments(given):
        lo, hi = max(s.start, start), min(s.end or end, end)
        mg += s.rate_mg_per_h * max(0.0, (hi - lo).total_seconds()) / 3600.0
    singles = [g for g in given if g.drug in KETAMINE_DRUGS and g.kind in ("bolus", "dose")]
    mg += sum(g.dose_mg or 0.0 for g in singles if start <= g.at < end)
    return round(mg, 2)


@dataclass(frozen=True)
class DoseEntry:
    kind: str  # start, rate_change, bolus, dose
    at: dt.datetime
    rate_mg_per_h: float | None
    dose_mg: float | None


@dataclass(frozen=True)
class DoseContext:
    """What the limits of one administration entry depend on."""

    route: str  # the session's route
    drug: str  # ketamine or esketamine
    weight_kg: float | None  # measured at pre-checks
    age_years: int
    planned_duration_min: int
    allowance: Allowance  # the plan's setting and what it allows without an override
    other_sessions_today_mg: float  # the patient's other sessions, the same clinic day
    clinic: ClinicalDefaults
    # Half a pump step (mL/h x mg/mL) and half a syringe step: what rounds to the plan's own
    # setting is not "above the plan".
    tolerance_mg_per_h: float = 0.0
    tolerance_mg: float = 0.0


@dataclass(frozen=True)
class EntryCheck:
    refused: dict[str, str]  # field -> message: hard limits and ceilings, never overridable
    needs_override: list[str]  # above the plan's allowance: a prescriber's written reason


def _r(value: float) -> float:
    return round(value, 2)


def check_dose_entry(entry: DoseEntry, given: Sequence[Given], ctx: DoseContext) -> EntryCheck:
    """The dose limits of one ketamine entry (start, rate change, bolus, dose), with the numbers.

    Hard (refused whatever anyone writes): the rate ceiling of the plan's setting (2 mg/kg/h, or 7
    in an ICU setting), the bolus limit (0.35 mg/kg IV or IM), the esketamine label maximum, the
    absolute ceilings per session and per day (across the patient's sessions that day), an age or
    weight outside the adult programme. A judgement call (needs a prescriber's reason): above the
    plan's own allowance (the protocol's maximum, or the plan's overridden dose)."""
    refused: dict[str, str] = {}
    override: list[str] = []
    w, a = ctx.weight_kg, ctx.allowance
    field = "rate_mg_per_h" if entry.kind in ("start", "rate_change") else "dose_mg"
    if not w:
        return EntryCheck({field: "No weight measured today: complete the pre-checks first."}, [])
    adult = adult_findings(ctx.age_years, w, ctx.clinic)
    if adult:
        return EntryCheck({field: " ".join(f"{f.message} ({f.source})" for f in adult)}, [])
    limits = dose_limits()
    so_far = totals(given, w, entry.at)
    first = so_far.first_dose_at or entry.at
    planned_end = first + dt.timedelta(minutes=ctx.planned_duration_min)
    remaining_h = max(0.0, (planned_end - entry.at).total_seconds() / 3600.0)
    messages: list[str] = []
    if entry.kind in ("start", "rate_change") and entry.rate_mg_per_h is not None:
        rate = entry.rate_mg_per_h
        per_kg = _r(rate / w)
        cap = rate_cap(a.setting)
        if per_kg > cap.value + 1e-9:
            where = "an ICU setting" if a.setting == "icu" else f"the plan's {a.setting} setting (not an ICU)"
            messages.append(
                f"{rate:g} mg/h at {w:g} kg is {per_kg:g} mg/kg/h: {cap.message.lower()} in {where} "
                f"({cap.sourced.source}). No override."
            )
        # The plan's mg/h was prescribed for the plan's weight: giving it to a patient who now
        # weighs a little less is not "above the plan" (the hard limit uses today's weight).
        basis = max(w, a.plan_weight_kg or w)
        if (
            a.rate_mg_per_kg_h is not None
            and rate > a.rate_mg_per_kg_h * basis + ctx.tolerance_mg_per_h + 1e-6
        ):
            override.append(
                f"{rate:g} mg/h ({per_kg:g} mg/kg/h at {w:g} kg) is above the plan's "
                f"{a.rate_mg_per_kg_h:g} mg/kg/h ({a.protocol_name})."
            )
        if a.rate_mg_per_h is not None and rate > a.rate_mg_per_h + ctx.tolerance_mg_per_h + 1e-6:
            override.append(
                f"{rate:g} mg/h is above the plan's {a.rate_mg_per_h:g} mg/h ({a.protocol_name})."
            )
        future_rate, added = rate, 0.0
        how = f"at {rate:g} mg/h until the planned end ({ctx.planned_duration_min} min)"
    else:
        dose = entry.dose_mg or 0.0
        per_kg = _r(dose / w)
        bolus = limits["bolus_max"]
        is_bolus = entry.kind == "bolus" or ctx.route in bolus.applies_to
        if is_bolus and per_kg > bolus.value + 1e-9:
            messages.append(
                f"{dose:g} mg at {w:g} kg is {per_kg:g} mg/kg: {bolus.message.lower()} "
                f"({bolus.sourced.source}). No override."
            )
        singles = sum(
            g.dose_mg or 0.0 for g in given if g.kind in ("bolus", "dose") and g.drug in KETAMINE_DRUGS
        )
        for limit in limits.values():
            mg_max = limit.unit == "mg" and limit.kind == "max" and ctx.route in limit.applies_to
            if mg_max and singles + dose > limit.value + 1e-9:
                messages.append(
                    f"{singles:g} mg given + {dose:g} mg = {singles + dose:g} mg: "
                    f"{limit.message.lower()} ({limit.sourced.source}). No override."
                )
        if entry.kind == "dose":
            top = a.session_mg
            if a.session_mg_per_kg is not None:
                top = a.session_mg_per_kg * max(w, a.plan_weight_kg or w)
            if top is not None and singles + dose > top + ctx.tolerance_mg + 1e-6:
                override.append(
                    f"{singles + dose:g} mg this session is above the plan's {_r(top):g} mg "
                    f"({a.protocol_name})."
                )
        future_rate = so_far.current_rate_mg_per_h or 0.0
        added = dose
        how = f"with {dose:g} mg more" + (
            f" and the infusion at {future_rate:g} mg/h until the planned end" if future_rate else ""
        )
    c = ceilings_in_force(a.setting, ctx.clinic)
    continuous = ctx.planned_duration_min > MIN_PER_H * H_PER_DAY
    if continuous:
        day_mg = _r(future_rate * H_PER_DAY + added)
        messages += ceiling_problems(
            f"At this rate, 24 hours ({how})", day_mg, w, c.day_max_mg, c.day_max_mg_per_kg, c.note
        )
    else:
        session_mg = _r(so_far.total_mg + added + future_rate * remaining_h)
        messages += ceiling_problems(
            f"This session ({so_far.total_mg:g} mg so far, {how})",
            session_mg,
            w,
            c.session_max_mg,
            c.session_max_mg_per_kg,
            c.note,
        )
        if ctx.other_sessions_today_mg > 0 or not messages:
            messages += ceiling_problems(
                f"Today, with {ctx.other_sessions_today_mg:g} mg in the patient's other sessions,",
                _r(session_mg + ctx.other_sessions_today_mg),
                w,
                c.day_max_mg,
                c.day_max_mg_per_kg,
                c.note,
            )
    if messages:
        refused[field] = "Refused: " + " ".join(messages)
    return EntryCheck(refused, override)


PK_ROUTES = {"iv_infusion", "iv_bolus", "im", "oral", "sublingual", "intranasal"}


def pk_doses(given: Sequence[Given], t0: dt.datetime, now: dt.datetime, session_route: str) -> list[Dose]:
    """What was actually given, as pharmacology-engine doses in minutes from ``t0``.

    Racemic ketamine only: the engine has no esketamine absorption model (pharmacology facts gap)."""
    doses: list[Dose] = []

    def minutes(at: dt.datetime) -> float:
        return max(0.0, (at - t0).total_seconds() / 60.0)

    for s in infusion_segments([g for g in given if g.drug == "ketamine"]):
        end = s.end or now
        duration = minutes(end) - minutes(s.start)
        if s.rate_mg_per_h > 0 and duration > 0:
            doses.append(Dose("iv_infusion", s.rate_mg_per_h * duration / 60.0, minutes(s.start), duration))
    for g in given:
        if g.drug != "ketamine" or g.kind not in ("bolus", "dose") or not g.dose_mg:
            continue
        route = "iv_bolus" if g.kind == "bolus" and g.route.startswith("iv") else g.route
        if route not in PK_ROUTES:
            continue
        doses.append(Dose(route, g.dose_mg, minutes(g.at), 1.0 if route == "iv_bolus" else 0.0))
    return doses


# --- scores ---------------------------------------------------------------------------------


def score_total(scale: Scale, items: Sequence[int]) -> int:
    if len(items) != len(scale.items):
        raise ValueError(f"{scale.name} has {len(scale.items)} item(s), got {len(items)}")
    for value in items:
        if not scale.item_min <= value <= scale.item_max:
            raise ValueError(f"{scale.name} items run {scale.item_min} to {scale.item_max}, got {value}")
    return sum(items)


# --- discharge ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    key: str
    label: str
    ok: bool
    detail: str
    source: str
    tag: str


@dataclass(frozen=True)
class DischargeInput:
    drug: str
    last_dose_at: dt.datetime | None
    monitoring_started_at: dt.datetime | None  # esketamine: the first device
    baseline: dict[str, float]
    latest: dict[str, float]
    latest_moaas: int | None
    alert_and_oriented: bool
    escort_present: bool
    instructions_given: bool
    open_alarms: int
    vitals_within_pct: float


def discharge_checklist(data: DischargeInput, rules: SessionRules, now: dt.datetime) -> list[Check]:
    d = rules.discharge
    checks: list[Check] = []
    if data.drug == "esketamine":
        need = int(d["esketamine_min_min"])
        since = data.monitoring_started_at
        src, tag = d["esketamine_source"], d["esketamine_tag"]
        label = f"At least {need} minutes of monitoring since the first device"
    else:
        need = int(d["min_after_last_dose_min"])
        since = data.last_dose_at
        src, tag = d["min_after_last_dose_source"], d["min_after_last_dose_tag"]
        label = f"At least {need} minutes since the last dose"
    if since is None:
        checks.append(Check("time", label, False, "No dose recorded as finished.", src, tag))
    else:
        waited = (now - since).total_seconds() / 60.0
        left = need - waited
        detail = f"{waited:.0f} min so far" + (f"; {left:.0f} min to go" if left > 0 else "")
        checks.append(Check("time", label, left <= 0, detail, src, tag))
    pct = data.vitals_within_pct
    off: list[str] = []
    missing: list[str] = []
    for kind in ("sbp", "dbp", "hr"):
        base, now_value = data.baseline.get(kind), data.latest.get(kind)
        if base is None:
            continue
        if now_value is None:
            missing.append(kind.upper())
        elif abs(now_value - base) > base * pct / 100.0:
            off.append(f"{kind.upper()} {now_value:g} vs baseline {base:g}")
    spo2 = data.latest.get("spo2")
    base_spo2 = data.baseline.get("spo2")
    spo2_needed = (
        min(base_spo2 - float(d["spo2_drop_points"]), float(d["spo2_floor_pct"]))
        if base_spo2 is not None
        else None
    )
    if spo2 is not None and spo2_needed is not None and spo2 < spo2_needed:
        off.append(f"SpO2 {spo2:g}% vs baseline {base_spo2:g}%")
    vital_detail = (
        "; ".join(off) if off else ("No reading yet: " + ", ".join(missing)) if missing else "Near baseline"
    )
    checks.append(
        Check(
            "vitals",
            f"Vital signs back within {pct:g}% of baseline",
            not off and not missing,
            vital_detail,
            d["vitals_source"],
            d["vitals_tag"],
        )
    )
    alert_level = int(d["alert_moaas"])  # MOAA/S "responds readily to name in normal tone"
    alert_ok = data.alert_and_oriented and (data.latest_moaas is None or data.latest_moaas >= alert_level)
    alert_detail = "Confirmed by the nurse" if data.alert_and_oriented else "Not yet confirmed"
    if data.latest_moaas is not None and data.latest_moaas < alert_level:
        alert_detail = f"Latest MOAA/S {data.latest_moaas} (needs {alert_level})"
    checks.append(
        Check(
            "alert",
            "Alert and oriented, back to pre-treatment speech and movement",
            alert_ok,
            alert_detail,
            d["alert_source"],
            d["alert_tag"],
        )
    )
    checks.append(
        Check(
            "escort",
            "Responsible adult escort present",
            data.escort_present,
            "Present" if data.escort_present else "Not yet",
            d["escort_source"],
            d["escort_tag"],
        )
    )
    checks.append(
        Check(
            "instructions",
            "Written instructions given (no driving until the next day)",
            data.instructions_given,
            "Given" if data.instructions_given else "Not yet",
            d["instructions_source"],
            d["instructions_tag"],
        )
    )
    checks.append(
        Check(
            "alarms",
            "No alarm left unresolved",
            data.open_alarms == 0,
            f"{data.open_alarms} open" if data.open_alarms else "None open",
            "Issue 6: every alarm resolved before discharge (design)",
            "design",
        )
    )
    return checks


# --- billing --------------------------------------------------------------------------------


def billing_units(route: str, infusion_min: float, total_mg: float | None) -> list[tuple[str, int]]:
    """Codes and units counted from the actual duration (96365/96366 for an IV infusion)."""
    return session_codes(route, round(infusion_min), total_mg)
