"""The registry report, computed from an ``Extract``: for each condition, route, protocol and
period, how many patients and sessions, completion, IMMPACT responder rates with Wilson
intervals, mean NRS change, Kaplan-Meier duration of relief, adverse events per patient and per
session (by term and grade, and those that needed medical intervention), the change in opioid
MME with a paired test, and dropout. Outcome definitions come from ``outcomes.rules``.

Definitions used here (design, documented in docs/registry.md, the same as registry.py's):
- a *series* is a treatment plan with at least one discharged session; it ends on the day of its
  last discharged session; its sessions for AE rates are its discharged and aborted ones;
- its *points*: the NRS of its own follow-ups (``plan_id``) after its end, before the next series;
- *baseline* NRS: the last NRS of a baseline questionnaire within the clinic's look-back before
  the series start;
- the *primary follow-up*: the point nearest day 28 between days 14 and 56; responders
  complete-case and with missing as non-response (window closed by the report date);
- *relief*: ``outcomes.rules.duration_of_relief`` on the points; each patient's first responding
  series in a group;
- *dropout*: the series' own week-12 follow-up is due, none of its own from week 8 on answered;
- *MME change*: among users (> 0 in the 90 days before), against the last reading on days 28-90.

Patients with several series: per-patient totals (y_i, n_i) are computed here row by row and
handed to ``stats.ClusterSums.of``; the registry computes the same sums in DuckDB.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ketacare.analytics import disclosure, stats
from ketacare.analytics.extract import Extract
from ketacare.analytics.registry import AE_COLUMNS, SUMMARY_COLUMNS
from ketacare.knowledge.outcomes import outcome_rules, registry_definitions
from ketacare.outcomes import rules

DIMENSIONS = ("all", "condition", "route", "protocol", "period")
DEF = registry_definitions()
INF = float("inf")
SUPPRESSED = "suppressed (< {n} patients)"


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


@dataclass
class Report:
    scope: str  # clinic or research
    as_of: dt.date
    tables: dict[str, Table]
    relief_curves: dict[str, stats.Survival]
    suppressed_groups: int

    def table(self, name: str) -> Table:
        return self.tables[name]


@dataclass
class SeriesFacts:
    plan_id: int
    patient_id: int
    clinic_id: int
    groups: dict[str, str]
    start: dt.date
    end: dt.date
    discharged: int
    aborted: int
    baseline: float | None = None
    primary: float | None = None
    window_closed: bool = False
    pgic: int | None = None
    relief: rules.Relief | None = None
    next_start: dt.date | None = None
    dropout: bool | None = None
    due: int = 0
    answered: int = 0
    events: int = 0
    mme_before: float | None = None
    mme_after: float | None = None

    @property
    def evaluable(self) -> bool:
        return self.baseline is not None and self.primary is not None

    @property
    def mme_user(self) -> bool:
        return self.mme_before is not None and self.mme_before > 0 and self.mme_after is not None


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    day: dt.date = pd.Timestamp(value).date()
    return day


def _period(day: dt.date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def _series(ex: Extract) -> list[SeriesFacts]:
    done = ex.sessions[
        ex.sessions["status"].isin(["discharged", "aborted"]) & ex.sessions["started_at"].notna()
    ]
    by_plan: dict[int, list[tuple[dt.date, str]]] = defaultdict(list)
    for plan_id, status, started in zip(done["plan_id"], done["status"], done["started_at"], strict=True):
        by_plan[int(plan_id)].append((_date(started), str(status)))
    result = []
    for row in ex.series.itertuples(index=False):
        sessions = by_plan.get(int(row.plan_id), [])
        discharged = sorted(d for d, s in sessions if s == "discharged")
        if not discharged:
            continue
        groups = {
            "all": "all",
            "condition": str(row.condition or "unspecified"),
            "route": str(row.route),
            "protocol": str(row.protocol),
            "period": _period(discharged[0]),
            "clinic": f"clinic {int(row.clinic_id)}",
        }
        aborted = sum(1 for _, s in sessions if s == "aborted")
        result.append(
            SeriesFacts(
                int(row.plan_id),
                int(row.patient_id),
                int(row.clinic_id),
                groups,
                discharged[0],
                discharged[-1],
                len(discharged),
                aborted,
            )
        )
    return result


def _latest(points: list[tuple[dt.date, float]]) -> float | None:
    return max(points)[1] if points else None


def _measure(
    ex: Extract, all_series: list[SeriesFacts], as_of: dt.date, session_ids: dict[int, set[int]]
) -> None:
    r = outcome_rules()
    lookback = {
        int(c): int(v)
        for c, v in zip(ex.settings["clinic_id"], ex.settings["baseline_lookback_days"], strict=True)
        if v is not None and v == v
    }
    sc = ex.scores
    nrs = sc[(sc["instrument"] == "nrs") & (sc["timepoint"] != "end_of_session")]
    baselines: dict[int, list[tuple[dt.date, float]]] = defaultdict(list)
    own: dict[int, list[tuple[dt.date, float, int]]] = defaultdict(list)
    for pid, plan, fu, tp, at, v in zip(
        nrs["patient_id"],
        nrs["plan_id"],
        nrs["follow_up_id"],
        nrs["timepoint"],
        nrs["answered_at"],
        nrs["score"],
        strict=True,
    ):
        if tp == "baseline":
            baselines[int(pid)].append((_date(at), float(v)))
        if plan is not None and plan == plan:
            own[int(plan)].append((_date(at), float(v), int(fu)))
    pgic = sc[sc["instrument"] == "pgic"]
    pgic_of = {}
    for fu, v in zip(pgic["follow_up_id"], pgic["score"], strict=True):
        pgic_of[int(fu)] = min(float(v), pgic_of.get(int(fu), INF))
    mme = defaultdict(list)
    for pid, on, v in zip(ex.mme["patient_id"], ex.mme["measured_on"], ex.mme["mme_per_day"], strict=True):
        if v is not None and v == v:
            mme[int(pid)].append((_date(on), float(v)))
    fus = ex.follow_ups
    fus = fus[(fus["status"] != "cancelled") & fus["plan_id"].notna() & fus["days_after_series"].notna()]
    by_series: dict[int, list[tuple[int, dt.date, bool]]] = defaultdict(list)
    for plan, days, due_on, status in zip(
        fus["plan_id"], fus["days_after_series"], fus["due_on"], fus["status"], strict=True
    ):
        by_series[int(plan)].append((int(days), _date(due_on), status == "completed"))
    ae = ex.adverse_events
    events_by_session: dict[int, int] = defaultdict(int)
    for sid in ae["session_id"]:
        if sid is not None and sid == sid:
            events_by_session[int(sid)] += 1
    starts: dict[int, list[dt.date]] = defaultdict(list)
    for s in all_series:
        starts[s.patient_id].append(s.start)
    for s in all_series:
        later = sorted(d for d in starts[s.patient_id] if d > s.end)
        s.next_start = later[0] if later else None
        pts = [
            (d, v, f)
            for d, v, f in own.get(s.plan_id, [])
            if d > s.end and (s.next_start is None or d < s.next_start)
        ]
        days_back = lookback.get(s.clinic_id, DEF.baseline_lookback_days)
        s.baseline = _latest(
            [
                (d, v)
                for d, v in baselines.get(s.patient_id, [])
                if d <= s.start and (s.start - d).days <= days_back
            ]
        )
        window = [
            (abs((d - s.end).days - DEF.primary_day), d, v, f)
            for d, v, f in pts
            if DEF.primary_window[0] <= (d - s.end).days <= DEF.primary_window[1]
        ]
        if window:
            _, _, s.primary, fu = min(window)
            s.pgic = int(pgic_of[fu]) if fu in pgic_of else None
        s.window_closed = (as_of - s.end).days >= DEF.primary_window[1]
        if s.baseline is not None:
            s.relief = rules.duration_of_relief(
                s.end, s.baseline, [(d, v) for d, v, _ in pts], censor_on=s.next_start, rules=r
            )
        mine = by_series.get(s.plan_id, [])
        if any(days >= DEF.dropout_due_day and due <= as_of for days, due, _ in mine):
            s.dropout = not any(done and days >= DEF.dropout_from_day for days, _, done in mine)
        s.due = sum(1 for _, due, _ in mine if due <= as_of)
        s.answered = sum(1 for _, due, done in mine if due <= as_of and done)
        s.events = sum(events_by_session.get(sid, 0) for sid in session_ids.get(s.plan_id, set()))
        readings = mme.get(s.patient_id, [])
        s.mme_before = _latest(
            [
                (d, v)
                for d, v in readings
                if d <= s.start and (s.start - d).days <= DEF.mme_before_lookback_days
            ]
        )
        low, high = DEF.mme_after_window
        s.mme_after = _latest(
            [
                (d, v)
                for d, v in readings
                if low <= (d - s.end).days <= high and (s.next_start is None or d < s.next_start)
            ]
        )


def _estimate(e: stats.Estimate, scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x * scale, digits)

    return {"value": r(e.value), "low": r(e.low), "high": r(e.high)}


def _put(row: dict[str, Any], prefix: str, e: stats.Estimate, scale: float = 100.0) -> None:
    v = _estimate(e, scale)
    row[f"{prefix}_pct" if f"{prefix}_pct" in SUMMARY_COLUMNS else f"{prefix}_mean"] = v["value"]
    row[f"{prefix}_low"], row[f"{prefix}_high"] = v["low"], v["high"]


def _sums(series: list[SeriesFacts], y: Any, n: Any) -> stats.ClusterSums:
    """Per-patient totals of y(series) and n(series), as the cluster-robust ratio needs them."""
    totals: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for s in series:
        t = totals[s.patient_id]
        t[0] += float(y(s))
        t[1] += float(n(s))
    return stats.ClusterSums.of([(a, b) for a, b in totals.values()])


def _p(p: float | None) -> float | None:
    return None if p is None else round(p, 4)


def _summary_row(
    dim: str, group: str, series: list[SeriesFacts], ae: pd.DataFrame, session_ids: set[int]
) -> tuple[dict[str, Any], stats.Survival | None]:
    r = outcome_rules()
    conf = r.confidence
    patients = {s.patient_id for s in series}
    row: dict[str, Any] = {"dimension": dim, "group": group, "patients": len(patients), "series": len(series)}
    row["sessions"] = sum(s.discharged for s in series)
    row["sessions_exposed"] = sum(s.discharged + s.aborted for s in series)
    _put(
        row,
        "completion",
        stats.cluster_wilson(_sums(series, lambda s: s.discharged, lambda s: s.discharged + s.aborted), conf),
    )
    row["evaluable"] = sum(s.evaluable for s in series)
    row["primary_due"] = sum(s.evaluable or s.window_closed for s in series)

    def resp(s: SeriesFacts) -> rules.Response | None:
        return (
            rules.response(s.baseline, s.primary, r)
            if s.baseline is not None and s.primary is not None
            else None
        )

    for name, attr in (
        ("responder30", "responder_30"),
        ("responder50", "responder_50"),
        ("responder2pt", "responder_2pt"),
    ):

        def hit(s: SeriesFacts, attr: str = attr) -> bool:
            x = resp(s)
            return bool(x is not None and getattr(x, attr))

        _put(row, name, stats.cluster_wilson(_sums(series, hit, lambda s: s.evaluable), conf))
        _put(
            row,
            f"{name}_mnr",
            stats.cluster_wilson(_sums(series, hit, lambda s: s.evaluable or s.window_closed), conf),
        )
    pg = [s for s in series if s.pgic is not None]
    _put(
        row,
        "pgic_improved",
        stats.cluster_wilson(_sums(pg, lambda s: rules.pgic_improved(s.pgic, r), lambda s: 1), conf),
    )
    row["pgic_n"] = len(pg)
    ev = [s for s in series if s.evaluable]
    _put(
        row,
        "nrs_change",
        stats.cluster_mean(_sums(ev, lambda s: s.primary - s.baseline, lambda s: 1), conf),
        1.0,
    )
    first: dict[int, SeriesFacts] = {}
    for s in sorted(series, key=lambda s: (s.start, s.plan_id)):
        if s.relief is not None and s.patient_id not in first:
            first[s.patient_id] = s
    relief = [s.relief for s in first.values() if s.relief is not None]
    km = stats.kaplan_meier([x.days for x in relief], [x.lost for x in relief], conf)
    row["relief_n"], row["relief_events"] = len(relief), sum(x.lost for x in relief)
    row["relief_median_days"] = km.median if km else None
    row["relief_median_low"] = km.median_low if km else None
    row["relief_median_high"] = km.median_high if km else None
    lows = [x.interval[0] for x in relief]
    row["relief_interval_median_days"] = stats.interval_median(lows, [x.interval[1] for x in relief])
    booster = [
        s.relief.interval[1] if s.relief.lost or s.next_start is None else float((s.next_start - s.end).days)
        for s in first.values()
        if s.relief is not None
    ]
    row["relief_booster_events"] = row["relief_events"] + sum(
        1 for s in first.values() if s.relief is not None and not s.relief.lost and s.next_start is not None
    )
    row["relief_booster_median_days"] = stats.interval_median(lows, booster)
    events = ae[ae["session_id"].isin(session_ids)] if len(ae) else ae
    with_ae = set(events["patient_id"]) & patients if len(events) else set()
    _put(row, "patients_with_ae", stats.wilson(len(with_ae), len(patients), conf))
    row["ae_events"] = len(events)
    v = _estimate(
        stats.cluster_poisson_rate(
            _sums(series, lambda s: s.events, lambda s: s.discharged + s.aborted), conf
        ),
        100.0,
        2,
    )
    row["ae_per_100_sessions"], row["ae_per_100_low"], row["ae_per_100_high"] = (
        v["value"],
        v["low"],
        v["high"],
    )
    needed = (
        set(events[events["needed_intervention"].astype(bool)]["patient_id"]) & patients
        if len(events)
        else set()
    )
    _put(row, "needed_intervention", stats.wilson(len(needed), len(patients), conf))
    users = [s for s in series if s.mme_user]
    mme = _sums(users, lambda s: s.mme_after - s.mme_before, lambda s: 1)
    row["mme_n"], row["mme_patients"] = len(users), mme.clusters
    nonusers = [s for s in series if s.mme_before == 0 and s.mme_after is not None]
    row["mme_nonusers"] = len(nonusers)
    row["mme_nonusers_started"] = sum(1 for s in nonusers if s.mme_after and s.mme_after > 0)
    if users:
        _put(row, "mme_change", stats.cluster_mean(mme, conf), 1.0)
        row["mme_t_p"] = _p(stats.cluster_t_p(mme))
        per_patient: dict[int, list[float]] = defaultdict(list)
        for s in users:
            per_patient[s.patient_id].append(s.mme_after - s.mme_before)  # type: ignore[operator]
        row["mme_wilcoxon_p"] = _p(
            stats.wilcoxon_p([sum(v) / len(v) for _, v in sorted(per_patient.items())])
        )
    row["follow_ups_due"] = sum(s.due for s in series)
    row["follow_ups_answered"] = sum(s.answered for s in series)
    _put(row, "answered", stats.cluster_wilson(_sums(series, lambda s: s.answered, lambda s: s.due), conf))
    drop = [s for s in series if s.dropout is not None]
    row["dropout_n"] = len(drop)
    _put(row, "dropout", stats.cluster_wilson(_sums(drop, lambda s: bool(s.dropout), lambda s: 1), conf))
    row["suppressed"] = False
    return row, km


def _ae_rows(
    dim: str, group: str, series: list[SeriesFacts], ae: pd.DataFrame, session_ids: set[int]
) -> list[dict[str, Any]]:
    conf = outcome_rules().confidence
    patients = {s.patient_id for s in series}
    exposure: dict[int, float] = defaultdict(float)
    for s in series:
        exposure[s.patient_id] += s.discharged + s.aborted
    events = ae[ae["session_id"].isin(session_ids)] if len(ae) else ae
    rows: list[dict[str, Any]] = []
    if not len(events):
        return rows
    # by catalogue key (an uncoded "other" term's free text is never a row of its own)
    events = events.assign(term=[disclosure.ae_label(k) for k in events["term_key"]])
    for (term, grade), g in events.groupby(["term", "grade"], sort=True):
        n_pat = len(set(g["patient_id"]))
        row: dict[str, Any] = {
            "dimension": dim,
            "group": group,
            "term": term,
            "grade": int(grade),
            "events": len(g),
            "patients": n_pat,
            "needed_intervention": int(g["needed_intervention"].astype(bool).sum()),
            "suppressed": False,
        }
        v = _estimate(stats.wilson(n_pat, len(patients), conf), 100.0)
        row["patients_pct"], row["patients_low"], row["patients_high"] = v["value"], v["low"], v["high"]
        per_patient = g.groupby("patient_id").size().to_dict()
        sums = stats.ClusterSums.of([(float(per_patient.get(p, 0)), n) for p, n in exposure.items()])
        v = _estimate(stats.cluster_poisson_rate(sums, conf), 100.0, 2)
        row["per_100_sessions"], row["per_100_low"], row["per_100_high"] = v["value"], v["low"], v["high"]
        rows.append(row)
    return rows


def _suppress(row: dict[str, Any], keep: Iterable[str], n: int) -> dict[str, Any]:
    out = {k: (v if k in keep else None) for k, v in row.items()}
    out["suppressed"] = SUPPRESSED.format(n=n)
    return out


def build(ex: Extract, as_of: dt.date, *, research: bool) -> Report:
    """The report; ``research``: groups and AE cells under the small-cell threshold are suppressed."""
    r = outcome_rules()
    all_series = _series(ex)
    # the sessions of a series for AE rates: its discharged and aborted ones that started
    counted = ex.sessions[
        ex.sessions["status"].isin(["discharged", "aborted"]) & ex.sessions["started_at"].notna()
    ]
    sessions_by_plan: dict[int, set[int]] = defaultdict(set)
    for sid, pid in zip(counted["session_id"], counted["plan_id"], strict=True):
        sessions_by_plan[int(pid)].add(int(sid))
    _measure(ex, all_series, as_of, sessions_by_plan)
    summary = Table("summary", "Outcomes and safety by group", SUMMARY_COLUMNS)
    adverse = Table("adverse_events", "Adverse events by term and grade", AE_COLUMNS)
    curves: dict[str, stats.Survival] = {}
    suppressed = 0
    # across clinics (the research report), also by clinic
    dimensions = DIMENSIONS + (("clinic",) if len({s.groups["clinic"] for s in all_series}) > 1 else ())
    for dim in dimensions:
        groups: dict[str, list[SeriesFacts]] = defaultdict(list)
        for s in all_series:
            groups[s.groups[dim]].append(s)
        for group in sorted(groups):
            members = groups[group]
            session_ids = set().union(*(sessions_by_plan[s.plan_id] for s in members))
            row, km = _summary_row(dim, group, members, ex.adverse_events, session_ids)
            small = research and row["patients"] < r.small_cell
            if small:
                suppressed += 1
                summary.rows.append(_suppress(row, ("dimension", "group"), r.small_cell))
                continue
            summary.rows.append(row)
            if km is not None and dim in ("all", "condition"):
                curves[f"{dim}: {group}"] = km
            for ae_row in _ae_rows(dim, group, members, ex.adverse_events, session_ids):
                if research and 0 < ae_row["patients"] < r.small_cell:
                    ae_row = _suppress(ae_row, ("dimension", "group", "term", "grade"), r.small_cell)
                adverse.rows.append(ae_row)
    shown = [row for row in summary.rows if not row["suppressed"]]
    for column in ("mme_t_p", "mme_wilcoxon_p"):
        for row, q in zip(shown, stats.fdr_adjusted([row.get(column) for row in shown]), strict=True):
            row[f"{column}_bh"] = _p(q)
    relief = Table(
        "relief",
        "Kaplan-Meier duration of relief (days from series end)",
        ["curve", "day", "survival", "low", "high"],
    )
    for name, km in curves.items():
        for t, surv, lo, hi in zip(km.timeline, km.survival, km.low, km.high, strict=True):
            relief.rows.append(
                {
                    "curve": name,
                    "day": t,
                    "survival": round(surv, 4),
                    "low": round(lo, 4),
                    "high": round(hi, 4),
                }
            )
    return Report(
        "research" if research else "clinic",
        as_of,
        {"summary": summary, "adverse_events": adverse, "relief": relief},
        curves,
        suppressed,
    )
