"""The registry report, computed from an ``Extract``: for each condition, route, protocol and
period, how many patients and sessions, completion, IMMPACT responder rates with Wilson
intervals, mean NRS change, Kaplan-Meier duration of relief, adverse events per patient and per
session (by term and grade, and those that needed medical intervention), the change in opioid
MME with a paired test, and dropout. Outcome definitions come from ``outcomes.rules``.

Definitions used here (design, documented in docs/registry.md):
- a *series* is a treatment plan with at least one discharged session; it ends on the day of its
  last discharged session;
- *baseline* NRS is the patient's last NRS (24 h average) answered on or before the series start;
- the *primary follow-up* is the NRS at week 4 (the follow-up 28 days after the series), else the
  answered follow-up nearest day 28 between days 14 and 56;
- *dropout*: the week-12 follow-up is due but nothing was answered from week 8 on;
- *MME change*: the last reading on or before the series start against the last reading from
  day 28 after the series until the next series.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ketacare.analytics import disclosure, stats
from ketacare.analytics.extract import Extract
from ketacare.knowledge.outcomes import outcome_rules
from ketacare.outcomes import rules

DIMENSIONS = ("all", "condition", "route", "protocol", "period")
PRIMARY_DAY, PRIMARY_WINDOW = 28, (14, 56)
DROPOUT_DUE_DAY, DROPOUT_FROM_DAY = 84, 56
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
    groups: dict[str, str]
    start: dt.date
    end: dt.date
    discharged: int
    aborted: int
    baseline: float | None = None
    primary: float | None = None
    pgic: int | None = None
    relief: rules.Relief | None = None
    dropout: bool | None = None
    mme_before: float | None = None
    mme_after: float | None = None


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
                groups,
                discharged[0],
                discharged[-1],
                len(discharged),
                aborted,
            )
        )
    return result


def _by_patient(frame: pd.DataFrame, date_col: str, value_col: str) -> dict[int, list[tuple[dt.date, float]]]:
    known = frame[frame[value_col].notna()]
    out: dict[int, list[tuple[dt.date, float]]] = defaultdict(list)
    days = [_date(d) for d in known[date_col].tolist()]
    for pid, day, value in zip(known["patient_id"].tolist(), days, known[value_col].tolist(), strict=True):
        out[int(pid)].append((day, float(value)))
    for pts in out.values():
        pts.sort()
    return out


def _last_on_or_before(points: list[tuple[dt.date, float]], day: dt.date) -> float | None:
    i = bisect.bisect_right(points, (day, float("inf")))
    return points[i - 1][1] if i else None


def _measure(ex: Extract, all_series: list[SeriesFacts], as_of: dt.date) -> None:
    # end-of-session scores are taken in recovery: neither a baseline nor a follow-up
    nrs_scores = ex.scores[(ex.scores["instrument"] == "nrs") & (ex.scores["timepoint"] != "end_of_session")]
    nrs = _by_patient(nrs_scores, "answered_at", "score")
    pgic = _by_patient(ex.scores[ex.scores["instrument"] == "pgic"], "answered_at", "score")
    mme = _by_patient(ex.mme, "measured_on", "mme_per_day")
    due = ex.follow_ups[(ex.follow_ups["status"] != "cancelled") & ex.follow_ups["days_after_series"].notna()]
    week12_due: set[tuple[int, dt.date]] = {
        (int(p), _date(s))
        for p, s, d, on in zip(
            due["patient_id"], due["series_end_on"], due["days_after_series"], due["due_on"], strict=True
        )
        if d >= DROPOUT_DUE_DAY and _date(on) <= as_of
    }
    starts: dict[int, list[dt.date]] = defaultdict(list)
    for s in all_series:
        starts[s.patient_id].append(s.start)
    for lst in starts.values():
        lst.sort()
    for s in all_series:
        later = [d for d in starts[s.patient_id] if d > s.end]
        next_start = later[0] if later else None
        pts = [
            (d, v)
            for d, v in nrs.get(s.patient_id, [])
            if d > s.end and (next_start is None or d < next_start)
        ]
        s.baseline = _last_on_or_before(nrs.get(s.patient_id, []), s.start)
        window = [
            (abs((d - s.end).days - PRIMARY_DAY), d, v)
            for d, v in pts
            if PRIMARY_WINDOW[0] <= (d - s.end).days <= PRIMARY_WINDOW[1]
        ]
        if window:
            _, primary_day, s.primary = min(window)
            pg = [v for d, v in pgic.get(s.patient_id, []) if d == primary_day]
            s.pgic = int(pg[0]) if pg else None
        if s.baseline is not None:
            s.relief = rules.duration_of_relief(s.end, s.baseline, pts, censor_on=next_start)
        if (s.patient_id, s.end) in week12_due:
            s.dropout = not any((d - s.end).days >= DROPOUT_FROM_DAY for d, _ in pts)
        readings = mme.get(s.patient_id, [])
        s.mme_before = _last_on_or_before(readings, s.start)
        after = [
            v
            for d, v in readings
            if (d - s.end).days >= PRIMARY_DAY and (next_start is None or d < next_start)
        ]
        s.mme_after = after[-1] if after else None


def _estimate(e: stats.Estimate, scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x * scale, digits)

    return {"value": r(e.value), "low": r(e.low), "high": r(e.high)}


SUMMARY_COLUMNS = [
    "dimension",
    "group",
    "patients",
    "series",
    "sessions",
    "completion_pct",
    "completion_low",
    "completion_high",
    "evaluable",
    "responder30_pct",
    "responder30_low",
    "responder30_high",
    "responder50_pct",
    "responder50_low",
    "responder50_high",
    "responder2pt_pct",
    "responder2pt_low",
    "responder2pt_high",
    "pgic_improved_pct",
    "pgic_improved_low",
    "pgic_improved_high",
    "pgic_n",
    "nrs_change_mean",
    "nrs_change_low",
    "nrs_change_high",
    "relief_n",
    "relief_events",
    "relief_median_days",
    "relief_median_low",
    "relief_median_high",
    "patients_with_ae_pct",
    "patients_with_ae_low",
    "patients_with_ae_high",
    "ae_per_100_sessions",
    "ae_per_100_low",
    "ae_per_100_high",
    "needed_intervention_pct",
    "needed_intervention_low",
    "needed_intervention_high",
    "mme_n",
    "mme_change_mean",
    "mme_change_low",
    "mme_change_high",
    "mme_t_p",
    "mme_wilcoxon_p",
    "follow_ups_due",
    "follow_ups_answered",
    "answered_pct",
    "answered_low",
    "answered_high",
    "dropout_n",
    "dropout_pct",
    "dropout_low",
    "dropout_high",
    "suppressed",
]
AE_COLUMNS = [
    "dimension",
    "group",
    "term",
    "grade",
    "events",
    "patients",
    "patients_pct",
    "patients_low",
    "patients_high",
    "per_100_sessions",
    "per_100_low",
    "per_100_high",
    "needed_intervention",
    "suppressed",
]


def _put(row: dict[str, Any], prefix: str, e: stats.Estimate, scale: float = 100.0) -> None:
    v = _estimate(e, scale)
    row[f"{prefix}_pct" if f"{prefix}_pct" in SUMMARY_COLUMNS else f"{prefix}_mean"] = v["value"]
    row[f"{prefix}_low"], row[f"{prefix}_high"] = v["low"], v["high"]


def _summary_row(
    dim: str,
    group: str,
    series: list[SeriesFacts],
    ae: pd.DataFrame,
    session_ids: set[int],
    follow_ups: pd.DataFrame,
) -> tuple[dict[str, Any], stats.Survival | None]:
    """One group's figures; ``follow_ups`` are those due by the report date (not cancelled)."""
    r = outcome_rules()
    conf = r.confidence
    patients = {s.patient_id for s in series}
    row: dict[str, Any] = {"dimension": dim, "group": group, "patients": len(patients), "series": len(series)}
    discharged = sum(s.discharged for s in series)
    row["sessions"] = discharged
    _put(row, "completion", stats.wilson(discharged, discharged + sum(s.aborted for s in series), conf))
    evaluable = [s for s in series if s.baseline is not None and s.primary is not None]
    row["evaluable"] = len(evaluable)
    resp = [
        rules.response(s.baseline, s.primary, r)
        for s in evaluable
        if s.baseline is not None and s.primary is not None
    ]
    _put(row, "responder30", stats.wilson(sum(x.responder_30 for x in resp), len(resp), conf))
    _put(row, "responder50", stats.wilson(sum(x.responder_50 for x in resp), len(resp), conf))
    _put(row, "responder2pt", stats.wilson(sum(x.responder_2pt for x in resp), len(resp), conf))
    pg = [s.pgic for s in series if s.pgic is not None]
    _put(row, "pgic_improved", stats.wilson(sum(rules.pgic_improved(v, r) for v in pg), len(pg), conf))
    row["pgic_n"] = len(pg)
    _put(row, "nrs_change", stats.mean_ci([x.change_points for x in resp], conf), 1.0)
    relief = [s.relief for s in series if s.relief is not None]
    km = stats.kaplan_meier([x.days for x in relief], [x.lost for x in relief], conf)
    row["relief_n"], row["relief_events"] = len(relief), sum(x.lost for x in relief)
    row["relief_median_days"] = km.median if km else None
    row["relief_median_low"] = km.median_low if km else None
    row["relief_median_high"] = km.median_high if km else None
    events = ae[ae["session_id"].isin(session_ids)] if len(ae) else ae
    with_ae = set(events["patient_id"]) & patients if len(events) else set()
    _put(row, "patients_with_ae", stats.wilson(len(with_ae), len(patients), conf))
    rate = stats.poisson_rate(len(events), discharged, conf)
    v = _estimate(rate, 100.0, 2)
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
    pairs = [
        (s.mme_before, s.mme_after) for s in series if s.mme_before is not None and s.mme_after is not None
    ]
    row["mme_n"] = len(pairs)
    if pairs:
        test = stats.paired(
            [b for b, _ in pairs if b is not None], [a for _, a in pairs if a is not None], conf
        )
        _put(row, "mme_change", test.mean_change, 1.0)
        row["mme_t_p"] = None if test.t_p is None else round(test.t_p, 4)
        row["mme_wilcoxon_p"] = None if test.wilcoxon_p is None else round(test.wilcoxon_p, 4)
    due = follow_ups[follow_ups["patient_id"].isin(patients)] if len(follow_ups) else follow_ups
    answered = int((due["status"] == "completed").sum()) if len(due) else 0
    row["follow_ups_due"], row["follow_ups_answered"] = len(due), answered
    _put(row, "answered", stats.wilson(answered, len(due), conf))
    drop = [s.dropout for s in series if s.dropout is not None]
    row["dropout_n"] = len(drop)
    _put(row, "dropout", stats.wilson(sum(bool(d) for d in drop), len(drop), conf))
    row["suppressed"] = False
    return row, km


def _ae_rows(
    dim: str, group: str, series: list[SeriesFacts], ae: pd.DataFrame, session_ids: set[int]
) -> list[dict[str, Any]]:
    conf = outcome_rules().confidence
    patients = {s.patient_id for s in series}
    sessions = sum(s.discharged for s in series)
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
        v = _estimate(stats.poisson_rate(len(g), sessions, conf), 100.0, 2)
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
    _measure(ex, all_series, as_of)
    sessions_by_plan: dict[int, set[int]] = defaultdict(set)
    for sid, pid in zip(ex.sessions["session_id"], ex.sessions["plan_id"], strict=True):
        sessions_by_plan[int(pid)].add(int(sid))
    fu = ex.follow_ups
    due_follow_ups = (
        fu[(fu["status"] != "cancelled") & fu["due_on"].map(lambda d: _date(d) <= as_of)] if len(fu) else fu
    )
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
            row, km = _summary_row(dim, group, members, ex.adverse_events, session_ids, due_follow_ups)
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
