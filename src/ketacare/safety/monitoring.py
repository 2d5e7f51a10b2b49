"""Long-term safety rules with repeated ketamine exposure: judge a liver panel, judge a bladder
(LUTS) screen, and say which check is due when. Pure: no database, no clock (``today`` comes in);
each finding and each due check carries its source and tag (``knowledge/data/safety.toml``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ketacare.knowledge.safety import safety_rules

NORMAL, RAISED, HOLD = "normal", "raised", "hold"
LFT, BLADDER = "lft", "bladder"
SESSION, PRESCRIPTION = "session", "prescription"


@dataclass(frozen=True)
class Finding:
    key: str
    message: str
    source: str
    tag: str
    hold: bool = False


@dataclass(frozen=True)
class LiverPanel:
    alt_u_per_l: float
    alt_uln_u_per_l: float
    ast_u_per_l: float
    ast_uln_u_per_l: float
    alp_u_per_l: float | None = None
    alp_uln_u_per_l: float | None = None
    ggt_u_per_l: float | None = None
    ggt_uln_u_per_l: float | None = None
    liver_symptoms: bool = False


@dataclass(frozen=True)
class Judgement:
    outcome: str  # normal, raised, hold
    findings: tuple[Finding, ...]

    @property
    def holds(self) -> list[Finding]:
        return [f for f in self.findings if f.hold]


def judge_liver(panel: LiverPanel) -> Judgement:
    """ALT or AST at or above 3 x the lab's upper limit (Noppers 2011 defined hepatotoxicity as
    >= 3 x ULN), or new jaundice, RUQ pain or dark urine: hold. Any other value above the upper
    limit is shown as raised."""
    r = safety_rules()
    multiple = r.lft_hold_multiple
    findings: list[Finding] = []
    for name, value, uln, may_hold in (
        ("ALT", panel.alt_u_per_l, panel.alt_uln_u_per_l, True),
        ("AST", panel.ast_u_per_l, panel.ast_uln_u_per_l, True),
        ("ALP", panel.alp_u_per_l, panel.alp_uln_u_per_l, False),
        ("GGT", panel.ggt_u_per_l, panel.ggt_uln_u_per_l, False),
    ):
        if value is None or uln is None or uln <= 0:
            continue
        ratio = value / uln
        if ratio <= 1.0:
            continue
        hold = may_hold and ratio >= multiple
        what = f"{name} {value:g} U/L is {ratio:.1f} x the upper limit ({uln:g} U/L)" + (
            f": at or above {multiple:g} x ULN, hold ketamine." if hold else "."
        )
        findings.append(Finding(name.lower(), what, r.lft_hold.source, r.lft_hold.tag, hold))
    if panel.liver_symptoms:
        s = r.liver_symptoms_sourced
        findings.append(Finding("symptoms", f"{r.liver_symptoms}: hold ketamine.", s.source, s.tag, True))
    if any(f.hold for f in findings):
        outcome = HOLD
    elif findings:
        outcome = RAISED
    else:
        outcome = NORMAL
    return Judgement(outcome, tuple(findings))


def judge_bladder(answers: Mapping[str, str]) -> Judgement:
    """Any lower-urinary-tract symptom answered yes: a positive screen, hold and urinalysis."""
    r = safety_rules()
    labels = dict(r.bladder_items)
    yes = [key for key, _ in r.bladder_items if answers.get(key) == "yes"]
    if not yes:
        return Judgement(NORMAL, ())
    what = (
        "Positive LUTS screen: " + ", ".join(labels[k].lower() for k in yes) + ". Hold ketamine; urinalysis."
    )
    s = r.bladder_positive
    return Judgement(HOLD, (Finding("luts", what, s.source, s.tag, True),))


def unanswered(answers: Mapping[str, str]) -> list[str]:
    return [key for key, _ in safety_rules().bladder_items if answers.get(key) not in ("yes", "no")]


# --- exposure and what is due ------------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """One session (a day) or one take-home prescription (a supply from ``on`` to ``until``)."""

    kind: str  # session or prescription
    on: dt.date
    route: str
    mg: float  # given in the session, or taken from the supply up to today
    until: dt.date | None = None  # prescriptions: the day after the last covered day
    series: int | None = None  # sessions: the plan (series) they belong to

    @property
    def systemic(self) -> bool:
        return self.route != "topical"

    @property
    def last_day(self) -> dt.date:
        return (self.until - dt.timedelta(days=1)) if self.until else self.on


@dataclass(frozen=True)
class Intervals:
    lft_days: int
    bladder_days: int
    repeated_sessions: int
    own: frozenset[str] = field(default_factory=frozenset)

    def note(self, key: str) -> str:
        return "clinic's own setting" if key in self.own else "design default, clinic-editable"


@dataclass(frozen=True)
class Due:
    kind: str  # lft or bladder
    label: str
    due_on: dt.date
    overdue: bool
    reason: str
    source: str
    tag: str


@dataclass(frozen=True)
class Cumulative:
    sessions: int
    session_mg: float
    prescriptions: int
    prescription_mg: float  # systemic take-home, taken up to today at the prescribed mg/day
    topical_prescriptions: int

    @property
    def total_mg(self) -> float:
        return round(self.session_mg + self.prescription_mg, 1)


def cumulative(exposures: Sequence[Exposure]) -> Cumulative:
    sessions = [e for e in exposures if e.kind == SESSION and e.systemic]
    rx = [e for e in exposures if e.kind == PRESCRIPTION and e.systemic]
    topical = [e for e in exposures if e.kind == PRESCRIPTION and not e.systemic]
    return Cumulative(
        sessions=len(sessions),
        session_mg=round(sum(e.mg for e in sessions), 1),
        prescriptions=len(rx),
        prescription_mg=round(sum(e.mg for e in rx), 1),
        topical_prescriptions=len(topical),
    )


def repeated_since(exposures: Sequence[Exposure], intervals: Intervals) -> dt.date | None:
    """The day exposure became repeated: the n-th session, or the first systemic take-home
    prescription, whichever came first (None: not repeated)."""
    systemic = [e for e in exposures if e.systemic]
    session_days = sorted(e.on for e in systemic if e.kind == SESSION)
    candidates = [e.on for e in systemic if e.kind == PRESCRIPTION]
    if len(session_days) >= intervals.repeated_sessions:
        candidates.append(session_days[intervals.repeated_sessions - 1])
    return min(candidates) if candidates else None


def _lft_due(
    systemic: Sequence[Exposure], since: dt.date, last: dt.date | None, intervals: Intervals, today: dt.date
) -> Due | None:
    r = safety_rules()
    options: list[tuple[dt.date, str, str, str]] = []
    if last is None:
        options.append(
            (since, "Baseline liver tests with repeated exposure.", r.lft_baseline.source, r.lft_baseline.tag)
        )
    else:
        series_start: dict[int, dt.date] = {}
        for e in systemic:
            if e.kind == SESSION and e.series is not None:
                series_start[e.series] = min(series_start.get(e.series, e.on), e.on)
        new_series = sorted(d for d in series_start.values() if d > last)
        if new_series:
            options.append(
                (new_series[0], "Liver tests before a new series.", r.lft_series.source, r.lft_series.tag)
            )
        periodic = last + dt.timedelta(days=intervals.lft_days)
        if max(e.last_day for e in systemic) >= periodic:
            options.append(
                (
                    periodic,
                    f"Liver tests every {intervals.lft_days} days while exposure continues "
                    f"({intervals.note('lft_days')}).",
                    r.lft_interval.source,
                    r.lft_interval.tag,
                )
            )
    if not options:
        return None
    due_on, reason, source, tag = min(options, key=lambda o: o[0])
    return Due(LFT, "Liver tests (ALT, AST)", due_on, due_on < today, reason, source, tag)


def _bladder_due(
    systemic: Sequence[Exposure], since: dt.date, last: dt.date | None, intervals: Intervals, today: dt.date
) -> Due | None:
    r = safety_rules()
    options: list[tuple[dt.date, str, str, str]] = []
    if last is None:
        options.append(
            (
                since,
                "Bladder (LUTS) screen with repeated exposure.",
                r.bladder_each_session.source,
                r.bladder_each_session.tag,
            )
        )
    else:
        later_sessions = sorted(e.on for e in systemic if e.kind == SESSION and e.on > last)
        if later_sessions:
            options.append(
                (
                    later_sessions[0],
                    "Bladder (LUTS) screen at each session with repeated exposure.",
                    r.bladder_each_session.source,
                    r.bladder_each_session.tag,
                )
            )
        periodic = last + dt.timedelta(days=intervals.bladder_days)
        if max(e.last_day for e in systemic) >= periodic:
            options.append(
                (
                    periodic,
                    f"Bladder (LUTS) screen every {intervals.bladder_days} days while exposure continues "
                    f"({intervals.note('bladder_days')}).",
                    r.bladder_interval.source,
                    r.bladder_interval.tag,
                )
            )
    if not options:
        return None
    due_on, reason, source, tag = min(options, key=lambda o: o[0])
    return Due(BLADDER, "Bladder (LUTS) screen", due_on, due_on < today, reason, source, tag)


def due_checks(
    exposures: Sequence[Exposure],
    last_lft_on: dt.date | None,
    last_bladder_on: dt.date | None,
    intervals: Intervals,
    today: dt.date,
) -> list[Due]:
    """The next liver test and bladder screen, when exposure is repeated; overdue ones first."""
    systemic = [e for e in exposures if e.systemic and e.on <= today]
    since = repeated_since(systemic, intervals)
    if since is None:
        return []
    found = [
        d
        for d in (
            _lft_due(systemic, since, last_lft_on, intervals, today),
            _bladder_due(systemic, since, last_bladder_on, intervals, today),
        )
        if d is not None
    ]
    return sorted(found, key=lambda d: (not d.overdue, d.due_on))


# --- the clinic-editable intervals -------------------------------------------------------------


@dataclass(frozen=True)
class IntervalSpec:
    key: str  # column of safety_settings
    field: str  # attribute of Intervals
    label: str
    unit: str
    minimum: int
    maximum: int
    default: int
    source: str
    tag: str


def interval_specs() -> tuple[IntervalSpec, ...]:
    r = safety_rules()
    return (
        IntervalSpec(
            "lft_interval_days",
            "lft_days",
            "Repeat liver tests every",
            "days",
            7,
            365,
            r.lft_interval_days,
            r.lft_interval.source,
            r.lft_interval.tag,
        ),
        IntervalSpec(
            "bladder_interval_days",
            "bladder_days",
            "Repeat the bladder screen every",
            "days",
            7,
            180,
            r.bladder_interval_days,
            r.bladder_interval.source,
            r.bladder_interval.tag,
        ),
        IntervalSpec(
            "repeated_sessions",
            "repeated_sessions",
            "Exposure counts as repeated from session",
            "",
            2,
            20,
            r.repeated_sessions,
            r.repeated.source,
            r.repeated.tag,
        ),
    )


def resolve_intervals(overrides: Mapping[str, int | None]) -> Intervals:
    values: dict[str, int] = {}
    own: set[str] = set()
    for spec in interval_specs():
        value = overrides.get(spec.key)
        values[spec.field] = spec.default if value is None else int(value)
        if value is not None:
            own.add(spec.field)
    return Intervals(values["lft_days"], values["bladder_days"], values["repeated_sessions"], frozenset(own))
