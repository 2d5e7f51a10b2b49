"""Session rules as pure functions: the state machine, pre-check gates, alarm conditions,
the observation schedule, what was given (totals and the pharmacology doses), scores,
discharge criteria and billing units. No database, no clock: callers pass ``now``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ketacare.knowledge.sessions import AlarmRule, Scale, SessionRules
from ketacare.pharmacology import Dose
from ketacare.planning.costing import session_codes

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
    return sbp > float(rules.precheck["predose_sbp_max"]) or dbp > float(rules.precheck["predose_dbp_max"])


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
    if (
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
