"""The registry report, computed from the registry's columns (``extract.Columns``): for each
condition, route, protocol and period, how many patients and sessions, completion, IMMPACT
responder rates with Wilson intervals, mean NRS change, Kaplan-Meier duration of relief, adverse
events per patient and per session (by term and grade, and those that needed medical
intervention), the change in opioid MME with a paired test, and dropout. Outcome definitions
come from ``outcomes.rules``.

Definitions used here (design, documented in docs/registry.md):
- a *series* is a treatment plan with at least one discharged session; it ends on the day of its
  last discharged session;
- *baseline* NRS is the patient's last NRS (24 h average) answered on or before the series start;
- the *primary follow-up* is the NRS at week 4 (the follow-up 28 days after the series), else the
  answered follow-up nearest day 28 between days 14 and 56;
- *dropout*: the week-12 follow-up is due but nothing was answered from week 8 on;
- *MME change*: the last reading on or before the series start against the last reading from
  day 28 after the series until the next series.

How: DuckDB runs the joins and aggregates over the Arrow tables (one row of facts per series:
dates, baseline, primary follow-up, PGIC, relief, dropout, MME before and after; and the counts
per group that need distinct patients), and Python computes only the per-group statistics on
those facts (Wilson, t, Poisson, lifelines Kaplan-Meier, SciPy paired tests).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from ketacare.analytics import disclosure, stats
from ketacare.analytics.extract import Columns, Extract, columnar
from ketacare.knowledge.outcomes import OutcomeRules, outcome_rules

DIMENSIONS = ("all", "condition", "route", "protocol", "period")
PRIMARY_DAY, PRIMARY_WINDOW = 28, (14, 56)
DROPOUT_DUE_DAY, DROPOUT_FROM_DAY = 84, 56


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


# One row per series. The NRS points of a series are the patient's NRS after its end and before
# the next series; "max/min of a struct" takes the latest/nearest point, ties broken as
# ``outcomes.rules`` breaks them (by day, then value). The relief rule as windows: after a
# response, a run of non-responding points (k counts the responses so far) loses the response
# at the first run of ``losses`` points, on the run's first day.
FACTS_SQL = """
CREATE TEMP TABLE ser AS
SELECT p.plan_id, p.patient_id,
       CASE WHEN p.condition IS NULL OR p.condition = '' THEN 'unspecified' ELSE p.condition END
         AS condition,
       p.route, p.protocol, 'clinic ' || CAST(p.clinic_id AS VARCHAR) AS clinic,
       CAST(year(d.start_on) AS VARCHAR) || '-Q' || CAST(quarter(d.start_on) AS VARCHAR) AS period,
       d.start_on, d.end_on, d.discharged, d.aborted
FROM series p JOIN (
  SELECT plan_id,
         min(started_on) FILTER (WHERE status = 'discharged') AS start_on,
         max(started_on) FILTER (WHERE status = 'discharged') AS end_on,
         count(*) FILTER (WHERE status = 'discharged') AS discharged,
         count(*) FILTER (WHERE status = 'aborted') AS aborted
  FROM sessions WHERE started_on IS NOT NULL AND status IN ('discharged', 'aborted')
  GROUP BY plan_id) d USING (plan_id)
WHERE d.discharged > 0;

CREATE TEMP TABLE ser_next AS
SELECT s.*, n.start_on AS next_start
FROM ser s ASOF LEFT JOIN (SELECT patient_id, start_on FROM ser) n
  ON n.patient_id = s.patient_id AND n.start_on > s.end_on;

CREATE TEMP TABLE nrs AS SELECT patient_id, on_day, score FROM scores WHERE instrument = 'nrs';

CREATE TEMP TABLE pts AS
SELECT s.plan_id, n.on_day AS d, n.score AS v, date_diff('day', s.end_on, n.on_day) AS days
FROM ser_next s JOIN nrs n ON n.patient_id = s.patient_id AND n.on_day > s.end_on
 AND (s.next_start IS NULL OR n.on_day < s.next_start);

CREATE TEMP TABLE facts AS
WITH base AS (
  SELECT s.plan_id, struct_extract(max({'d': n.on_day, 'v': n.score}), 'v') AS baseline
  FROM ser_next s JOIN nrs n ON n.patient_id = s.patient_id AND n.on_day <= s.start_on
  GROUP BY s.plan_id),
prim AS (
  SELECT plan_id, min({'k': abs(days - $primary_day), 'd': d, 'v': v}) AS m
  FROM pts WHERE days BETWEEN $window_low AND $window_high GROUP BY plan_id),
pg AS (
  SELECT s.plan_id, min(sc.score) AS pgic
  FROM ser_next s JOIN prim USING (plan_id)
  JOIN scores sc ON sc.patient_id = s.patient_id AND sc.instrument = 'pgic'
   AND sc.on_day = struct_extract(prim.m, 'd')
  GROUP BY s.plan_id),
flag AS (
  SELECT pts.*, CASE WHEN b.baseline > 0 THEN (b.baseline - v) / b.baseline * 100.0 >= $moderate_pct
                ELSE false END AS resp
  FROM pts JOIN base b USING (plan_id)),
runs AS (
  SELECT *, sum(CAST(resp AS INTEGER)) OVER (
    PARTITION BY plan_id ORDER BY d, v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS k
  FROM flag),
loss AS (
  SELECT plan_id, min(run_start) AS loss_day FROM (
    SELECT plan_id, k, min(d) AS run_start, count(*) AS n FROM runs WHERE NOT resp AND k > 0
    GROUP BY plan_id, k)
  WHERE n >= $losses GROUP BY plan_id),
early AS (
  SELECT plan_id, bool_or(resp AND days <= $response_window) AS responded, max(d) AS last_day
  FROM flag GROUP BY plan_id),
late AS (SELECT plan_id, bool_or(days >= $dropout_from) AS answered_late FROM pts GROUP BY plan_id),
week12 AS (
  SELECT DISTINCT patient_id, series_end_on FROM follow_ups
  WHERE days_after_series >= $dropout_due AND due_on <= $as_of),
mb AS (
  SELECT s.plan_id, struct_extract(max({'d': m.measured_on, 'v': m.mme_per_day}), 'v') AS before
  FROM ser_next s JOIN mme m ON m.patient_id = s.patient_id AND m.measured_on <= s.start_on
  GROUP BY s.plan_id),
ma AS (
  SELECT s.plan_id, struct_extract(max({'d': m.measured_on, 'v': m.mme_per_day}), 'v') AS after
  FROM ser_next s JOIN mme m ON m.patient_id = s.patient_id
   AND date_diff('day', s.end_on, m.measured_on) >= $primary_day
   AND (s.next_start IS NULL OR m.measured_on < s.next_start)
  GROUP BY s.plan_id)
SELECT s.plan_id, s.patient_id, 'all' AS "all", s.condition, s.route, s.protocol, s.period, s.clinic,
       s.discharged, s.aborted, base.baseline, struct_extract(prim.m, 'v') AS primary_nrs, pg.pgic,
       CASE WHEN base.baseline IS NULL OR NOT coalesce(early.responded, false) THEN NULL
            WHEN loss.loss_day IS NOT NULL THEN date_diff('day', s.end_on, loss.loss_day)
            ELSE date_diff('day', s.end_on, coalesce(s.next_start, early.last_day, s.end_on))
       END AS relief_days,
       loss.loss_day IS NOT NULL AS relief_lost,
       CASE WHEN week12.patient_id IS NOT NULL THEN NOT coalesce(late.answered_late, false) END
         AS dropout,
       mb.before AS mme_before, ma.after AS mme_after
FROM ser_next s
LEFT JOIN base USING (plan_id) LEFT JOIN prim USING (plan_id) LEFT JOIN pg USING (plan_id)
LEFT JOIN loss USING (plan_id) LEFT JOIN early USING (plan_id) LEFT JOIN late USING (plan_id)
LEFT JOIN week12 ON week12.patient_id = s.patient_id AND week12.series_end_on = s.end_on
LEFT JOIN mb USING (plan_id) LEFT JOIN ma USING (plan_id)
ORDER BY s.plan_id;
"""

# Every series in each of its groups; the counts that need distinct patients per group.
MEMBER_SQL = """
CREATE TEMP TABLE member AS
SELECT dim, grp, plan_id, patient_id FROM facts
UNPIVOT (grp FOR dim IN ({dims}));

CREATE TEMP TABLE group_patients AS SELECT DISTINCT dim, grp, patient_id FROM member;

CREATE TEMP TABLE ev AS
SELECT a.patient_id, a.term_key AS term, a.grade, a.needed_intervention, s.plan_id
FROM adverse_events a JOIN sessions s USING (session_id);
"""
# Per group: counts over series (responders as outcomes.rules.response says), over distinct
# patients (adverse events, follow-ups due), the values the t-tests need (in plan order), and the
# (days, lost) pairs of the relief rule with their multiplicity for Kaplan-Meier.
GROUP_SQL = """
WITH f AS (
  SELECT m.dim, m.grp, facts.*,
         baseline IS NOT NULL AND primary_nrs IS NOT NULL AS evaluable,
         CASE WHEN baseline > 0 THEN (baseline - primary_nrs) / baseline * 100.0 END AS pct
  FROM member m JOIN facts USING (plan_id)),
series AS (
  SELECT dim, grp, count(*) AS series, sum(discharged) AS sessions, sum(aborted) AS aborted,
         count(*) FILTER (WHERE evaluable) AS evaluable,
         count(*) FILTER (WHERE evaluable AND pct >= $moderate_pct) AS r30,
         count(*) FILTER (WHERE evaluable AND pct >= $substantial_pct) AS r50,
         count(*) FILTER (WHERE evaluable AND baseline - primary_nrs >= $moderate_points) AS r2,
         count(pgic) AS pgic_n,
         count(*) FILTER (WHERE list_contains($pgic_improved, CAST(trunc(pgic) AS BIGINT))) AS pgic_yes,
         list(primary_nrs - baseline ORDER BY plan_id) FILTER (WHERE evaluable) AS changes,
         list(mme_before ORDER BY plan_id) FILTER (WHERE mme_before IS NOT NULL AND mme_after IS NOT NULL)
           AS mme_before,
         list(mme_after ORDER BY plan_id) FILTER (WHERE mme_before IS NOT NULL AND mme_after IS NOT NULL)
           AS mme_after,
         count(dropout) AS dropout_n, count(*) FILTER (WHERE dropout) AS dropouts
  FROM f GROUP BY dim, grp),
relief AS (
  SELECT dim, grp, list(days ORDER BY days, lost) AS days, list(lost ORDER BY days, lost) AS lost,
         list(n ORDER BY days, lost) AS n
  FROM (SELECT dim, grp, relief_days AS days, relief_lost AS lost, count(*) AS n FROM f
        WHERE relief_days IS NOT NULL GROUP BY dim, grp, relief_days, relief_lost)
  GROUP BY dim, grp),
pat AS (SELECT dim, grp, count(*) AS patients FROM group_patients GROUP BY dim, grp),
ae AS (
  SELECT m.dim, m.grp, count(*) AS events,
         count(DISTINCT ev.patient_id) FILTER (WHERE gp.patient_id IS NOT NULL) AS with_ae,
         count(DISTINCT ev.patient_id) FILTER (WHERE gp.patient_id IS NOT NULL AND ev.needed_intervention)
           AS needed
  FROM member m JOIN ev USING (plan_id)
  LEFT JOIN group_patients gp ON gp.dim = m.dim AND gp.grp = m.grp AND gp.patient_id = ev.patient_id
  GROUP BY m.dim, m.grp),
fu AS (
  SELECT patient_id, count(*) AS due, count(*) FILTER (WHERE completed) AS answered
  FROM follow_ups WHERE due_on <= $as_of GROUP BY patient_id),
due AS (
  SELECT gp.dim, gp.grp, sum(fu.due) AS due, sum(fu.answered) AS answered
  FROM group_patients gp JOIN fu USING (patient_id) GROUP BY gp.dim, gp.grp)
SELECT series.*, pat.patients, coalesce(ae.events, 0) AS events, coalesce(ae.with_ae, 0) AS with_ae,
       coalesce(ae.needed, 0) AS needed, coalesce(due.due, 0) AS follow_ups_due,
       coalesce(due.answered, 0) AS follow_ups_answered,
       coalesce(relief.days, []) AS relief_days, coalesce(relief.lost, []) AS relief_lost,
       coalesce(relief.n, []) AS relief_weight
FROM series JOIN pat USING (dim, grp) LEFT JOIN ae USING (dim, grp) LEFT JOIN due USING (dim, grp)
LEFT JOIN relief USING (dim, grp)
"""
AE_SQL = """
SELECT m.dim, m.grp, ev.term, ev.grade, count(*) AS events, count(DISTINCT ev.patient_id) AS patients,
       sum(CAST(ev.needed_intervention AS INTEGER)) AS needed
FROM member m JOIN ev USING (plan_id)
GROUP BY m.dim, m.grp, ev.term, ev.grade
"""


def _facts(con: duckdb.DuckDBPyConnection, as_of: dt.date, r: OutcomeRules) -> None:
    _run(
        con,
        FACTS_SQL,
        {
            "primary_day": PRIMARY_DAY,
            "window_low": PRIMARY_WINDOW[0],
            "window_high": PRIMARY_WINDOW[1],
            "moderate_pct": r.moderate_pct,
            "losses": r.consecutive_losses,
            "response_window": r.response_window_days,
            "dropout_from": DROPOUT_FROM_DAY,
            "dropout_due": DROPOUT_DUE_DAY,
            "as_of": as_of,
        },
    )


def _run(con: duckdb.DuckDBPyConnection, script: str, params: dict[str, Any]) -> None:
    """Statement by statement, each with the parameters it names (DuckDB binds one at a time)."""
    for statement in script.split(";\n"):
        if statement.strip():
            con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})


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
    dim: str, g: dict[str, Any], r: OutcomeRules
) -> tuple[dict[str, Any], stats.Survival | None]:
    """One group's figures from its row of GROUP_SQL (follow-ups: those due by the report date)."""
    conf = r.confidence
    patients, discharged = int(g["patients"]), int(g["sessions"])
    row: dict[str, Any] = {"dimension": dim, "group": g["grp"], "patients": patients, "series": g["series"]}
    row["sessions"] = discharged
    _put(row, "completion", stats.wilson(discharged, discharged + int(g["aborted"]), conf))
    n = row["evaluable"] = int(g["evaluable"])
    _put(row, "responder30", stats.wilson(int(g["r30"]), n, conf))
    _put(row, "responder50", stats.wilson(int(g["r50"]), n, conf))
    _put(row, "responder2pt", stats.wilson(int(g["r2"]), n, conf))
    _put(row, "pgic_improved", stats.wilson(int(g["pgic_yes"]), int(g["pgic_n"]), conf))
    row["pgic_n"] = int(g["pgic_n"])
    _put(row, "nrs_change", stats.mean_ci(g["changes"], conf), 1.0)
    km = stats.kaplan_meier(g["relief_days"], g["relief_lost"], conf, weights=g["relief_weight"])
    row["relief_n"] = sum(g["relief_weight"])
    row["relief_events"] = sum(
        w for w, lost in zip(g["relief_weight"], g["relief_lost"], strict=True) if lost
    )
    row["relief_median_days"] = km.median if km else None
    row["relief_median_low"] = km.median_low if km else None
    row["relief_median_high"] = km.median_high if km else None
    _put(row, "patients_with_ae", stats.wilson(int(g["with_ae"]), patients, conf))
    v = _estimate(stats.poisson_rate(int(g["events"]), discharged, conf), 100.0, 2)
    row["ae_per_100_sessions"], row["ae_per_100_low"] = v["value"], v["low"]
    row["ae_per_100_high"] = v["high"]
    _put(row, "needed_intervention", stats.wilson(int(g["needed"]), patients, conf))
    before, after = g["mme_before"], g["mme_after"]
    row["mme_n"] = len(before)
    if len(before):
        test = stats.paired(before, after, conf)
        _put(row, "mme_change", test.mean_change, 1.0)
        row["mme_t_p"] = None if test.t_p is None else round(test.t_p, 4)
        row["mme_wilcoxon_p"] = None if test.wilcoxon_p is None else round(test.wilcoxon_p, 4)
    due, answered = int(g["follow_ups_due"]), int(g["follow_ups_answered"])
    row["follow_ups_due"], row["follow_ups_answered"] = due, answered
    _put(row, "answered", stats.wilson(answered, due, conf))
    row["dropout_n"] = int(g["dropout_n"])
    _put(row, "dropout", stats.wilson(int(g["dropouts"]), int(g["dropout_n"]), conf))
    row["suppressed"] = False
    return row, km


def _ae_row(
    dim: str, group: str, cell: tuple[Any, ...], patients: int, sessions: int, conf: float
) -> dict[str, Any]:
    term, grade, events, n_pat, needed = cell
    row: dict[str, Any] = {
        "dimension": dim,
        "group": group,
        "term": term,
        "grade": int(grade),
        "events": int(events),
        "patients": int(n_pat),
        "needed_intervention": int(needed),
        "suppressed": False,
    }
    v = _estimate(stats.wilson(int(n_pat), patients, conf), 100.0)
    row["patients_pct"], row["patients_low"], row["patients_high"] = v["value"], v["low"], v["high"]
    v = _estimate(stats.poisson_rate(int(events), sessions, conf), 100.0, 2)
    row["per_100_sessions"], row["per_100_low"], row["per_100_high"] = v["value"], v["low"], v["high"]
    return row


# the counts of GROUP_SQL that disclosure control protects beside those the summary shows
COUNT_KEYS = (
    "patients", "series", "sessions", "aborted", "evaluable", "r30", "r50", "r2", "pgic_n",
    "pgic_yes", "with_ae", "events", "needed", "follow_ups_due", "follow_ups_answered",
    "dropout_n", "dropouts",
)  # fmt: skip


@dataclass
class Aggregates:
    """What the DuckDB stage hands to the statistics: the dimensions reported, one row of
    GROUP_SQL per (dimension, group) (the t-test values as NumPy arrays, the rest as Python
    values) and the AE cells (term, grade, events, patients, needed) per group."""

    dimensions: tuple[str, ...]
    groups: dict[tuple[str, str], dict[str, Any]]
    cells: dict[tuple[str, str], list[tuple[Any, ...]]]


# GROUP_SQL's value lists for the paired tests and the t interval: handed over as NumPy arrays
ARRAY_COLUMNS = ("changes", "mme_before", "mme_after")


def aggregate(con: duckdb.DuckDBPyConnection, as_of: dt.date, r: OutcomeRules | None = None) -> Aggregates:
    """The report's DuckDB stage (joins, per-series facts, per-group aggregates) on ``con``,
    which holds tables or views named as ``extract.SOURCES`` with its columns: the Arrow tables
    ``build`` registers, or (the benchmark's baseline) views over Parquet files."""
    r = r or outcome_rules()
    _facts(con, as_of, r)
    clinics = con.execute("SELECT count(DISTINCT clinic) FROM facts").fetchone()
    # across clinics (the research report), also by clinic
    dimensions = DIMENSIONS + (("clinic",) if clinics and clinics[0] > 1 else ())
    _run(con, MEMBER_SQL.format(dims=", ".join(f'"{d}"' for d in dimensions)), {})
    result = con.sql(
        GROUP_SQL,
        params={
            "moderate_pct": r.moderate_pct,
            "substantial_pct": r.substantial_pct,
            "moderate_points": r.moderate_points,
            "pgic_improved": list(r.pgic_improved),
            "as_of": as_of,
        },
    ).to_arrow_table()
    rows = result.drop_columns(list(ARRAY_COLUMNS)).to_pylist()
    for name in ARRAY_COLUMNS:
        for row, values in zip(rows, _arrays(result.column(name)), strict=True):
            row[name] = values
    groups = {(g["dim"], g["grp"]): g for g in rows}
    cells: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for dim, grp, *term_grade_counts in con.execute(AE_SQL).fetchall():
        cells.setdefault((dim, grp), []).append(tuple(term_grade_counts))
    return Aggregates(dimensions, groups, cells)


def _arrays(column: pa.ChunkedArray) -> list[npt.NDArray[np.float64]]:
    """A column of lists of doubles (NULL: an empty list) as one NumPy array per row, views of
    one buffer (no Python float per value)."""
    lists = column.combine_chunks()
    # ``values`` and ``offsets`` (not ``flatten``, which drops what NULL entries point at)
    values = lists.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    offsets = lists.offsets.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(lists))]


def build(data: Columns | Extract, as_of: dt.date, *, research: bool) -> Report:
    """The report; ``research``: labels that are not catalogue codes grouped as "other", and
    disclosure control (``disclosure``: no count of 1 to 10 shown or derivable)."""
    r = outcome_rules()
    cols = columnar(data) if isinstance(data, Extract) else data
    if research:
        cols = disclosure.coded_columns(cols)
    con = duckdb.connect()
    try:
        for name, table in cols.tables().items():
            con.register(name, table)
        agg = aggregate(con, as_of, r)
    finally:
        con.close()
    dimensions, groups, cells = agg.dimensions, agg.groups, agg.cells
    summary = Table("summary", "Outcomes and safety by group", SUMMARY_COLUMNS)
    adverse = Table("adverse_events", "Adverse events by term and grade", AE_COLUMNS)
    curves: dict[str, stats.Survival] = {}
    counts: dict[tuple[str, str], dict[str, int]] = {}
    kms: dict[tuple[str, str], stats.Survival] = {}
    at_risk: dict[tuple[str, str], list[int]] = {}
    for dim in dimensions:
        for group in sorted(grp for d, grp in groups if d == dim):
            g = groups[(dim, group)]
            row, km = _summary_row(dim, g, r)
            counts[(dim, group)] = {name: int(g[name]) for name in COUNT_KEYS} | {
                "relief_n": int(row["relief_n"]),
                "relief_events": int(row["relief_events"]),
                "mme_n": int(row["mme_n"]),
            }
            summary.rows.append(row)
            if km is not None and dim in ("all", "condition"):
                kms[(dim, group)] = km
                at_risk[(dim, group)] = [
                    sum(w for d, w in zip(g["relief_days"], g["relief_weight"], strict=True) if d >= t)
                    for t in km.timeline
                ]
            for cell in sorted(cells.get((dim, group), []), key=lambda c: (c[0], c[1])):
                ae_row = _ae_row(dim, group, cell, row["patients"], row["sessions"], r.confidence)
                ae_row["term"] = disclosure.ae_label(str(ae_row["term"]))
                adverse.rows.append(ae_row)
    cuts = {key: len(km.timeline) for key, km in kms.items()}
    suppressed = 0
    if research:
        safe = disclosure.protect(
            summary.rows,
            counts,
            adverse.rows,
            {key: (km.timeline, at_risk[key], km.median) for key, km in kms.items()},
            r.small_cell,
        )
        summary.rows, adverse.rows, cuts, suppressed = (
            safe.summary,
            safe.adverse,
            safe.curve_points,
            safe.small_groups,
        )
    for (dim, group), km in kms.items():
        cut = cuts.get((dim, group), 0)
        if cut:
            curves[f"{dim}: {group}"] = dataclasses.replace(
                km,
                timeline=km.timeline[:cut],
                survival=km.survival[:cut],
                low=km.low[:cut],
                high=km.high[:cut],
            )
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
