"""The registry report, computed from the registry's columns (``extract.Columns``): for each
condition, route, protocol and period, how many patients and sessions, completion, IMMPACT
responder rates, mean NRS change, duration of relief, adverse events per patient and per session
(by term and grade, and those that needed medical intervention), the change in opioid MME among
opioid users, and dropout. Outcome definitions come from ``outcomes.rules``; the registry's own
definitions (look-backs and windows, design defaults) from ``knowledge.outcomes.registry_definitions``.

Definitions (docs/registry.md explains each in words, with its source):
- a *series* is a treatment plan with at least one discharged session; it starts on the day of
  its first and ends on the day of its last discharged session (UTC days); its *sessions* for
  adverse-event rates are its discharged and aborted sessions (both counted, in numerator and
  denominator alike);
- a series' *follow-ups* are the questionnaires attached to it (``outcome_follow_ups.plan_id``);
  baseline and end-of-session questionnaires are not follow-ups; its *points* are the NRS of its
  own follow-ups answered after its end and before the patient's next series starts;
- *baseline* NRS: the last NRS of a baseline questionnaire answered on or before the series
  start and at most the clinic's look-back before it (never a follow-up of an earlier series);
- the *primary follow-up*: the point nearest day 28 between days 14 and 56; responders are
  shown complete-case (series with a baseline and a primary follow-up) and with missing counted
  as non-response (denominator: the evaluable series and those whose primary window has closed);
- *duration of relief*: from the series end to the loss of response (the first of two
  consecutive points below 30% after a response within 28 days), known only to lie between the
  point before and that point (interval-censored); censored at the last contact (the last point),
  never at the next series; each patient's first responding series in a group;
- *dropout*: the series' own week-12 follow-up is due and none of its own follow-ups from
  week 8 on was answered;
- *MME change*: among opioid users (MME/day > 0 in the look-back before the series), the last
  reading in the look-back against the last reading 28 to 90 days after the series (before the
  next one); patients on no opioid before the series are counted apart.

How: DuckDB runs the joins and aggregates over the Arrow tables (one row of facts per series, and
per group the counts, the per-patient sums the cluster-robust variances need, and the relief
intervals with their multiplicity), and Python computes only the per-group statistics on those
aggregates (``stats``).
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
from ketacare.knowledge.outcomes import Definitions, OutcomeRules, outcome_rules, registry_definitions

DIMENSIONS = ("all", "condition", "route", "protocol", "period")
INFINITY = float("inf")


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


# One row per series. "max/min of a struct" takes the latest/nearest point, ties broken as
# ``outcomes.rules`` breaks them (by day, then value). The relief rule as windows: after a
# response, a run of non-responding points (k counts the responses so far) loses the response
# at the first run of ``losses`` points, on the run's first day; the point before it is the last
# known in response.
FACTS_SQL = """
CREATE TEMP TABLE ser AS
SELECT p.plan_id, p.patient_id,
       CASE WHEN p.condition IS NULL OR p.condition = '' THEN 'unspecified' ELSE p.condition END
         AS condition,
       p.route, p.protocol, 'clinic ' || CAST(p.clinic_id AS VARCHAR) AS clinic,
       CAST(year(d.start_on) AS VARCHAR) || '-Q' || CAST(quarter(d.start_on) AS VARCHAR) AS period,
       d.start_on, d.end_on, d.discharged, d.aborted,
       coalesce(st.baseline_lookback_days, $lookback) AS lookback
FROM series p JOIN (
  SELECT plan_id,
         min(started_on) FILTER (WHERE status = 'discharged') AS start_on,
         max(started_on) FILTER (WHERE status = 'discharged') AS end_on,
         count(*) FILTER (WHERE status = 'discharged') AS discharged,
         count(*) FILTER (WHERE status = 'aborted') AS aborted
  FROM sessions WHERE started_on IS NOT NULL AND status IN ('discharged', 'aborted')
  GROUP BY plan_id) d USING (plan_id)
LEFT JOIN (SELECT clinic_id, max(baseline_lookback_days) AS baseline_lookback_days FROM settings
           GROUP BY clinic_id) st ON st.clinic_id = p.clinic_id
WHERE d.discharged > 0;

CREATE TEMP TABLE ser_next AS
SELECT s.*, n.start_on AS next_start
FROM ser s ASOF LEFT JOIN (SELECT patient_id, start_on FROM ser) n
  ON n.patient_id = s.patient_id AND n.start_on > s.end_on;

CREATE TEMP TABLE ev AS
SELECT a.patient_id, a.term_key AS term, a.grade, a.needed_intervention, s.plan_id
FROM adverse_events a JOIN sessions s USING (session_id)
WHERE s.status IN ('discharged', 'aborted') AND s.started_on IS NOT NULL;

CREATE TEMP TABLE nrs AS
SELECT patient_id, plan_id, follow_up_id, timepoint, on_day, score FROM scores WHERE instrument = 'nrs';

CREATE TEMP TABLE pts AS
SELECT s.plan_id, n.follow_up_id AS f, n.on_day AS d, n.score AS v,
       date_diff('day', s.end_on, n.on_day) AS days
FROM ser_next s JOIN nrs n ON n.plan_id = s.plan_id AND n.on_day > s.end_on
 AND (s.next_start IS NULL OR n.on_day < s.next_start);

CREATE TEMP TABLE facts AS
WITH base AS (
  SELECT s.plan_id, struct_extract(max({'d': n.on_day, 'v': n.score}), 'v') AS baseline
  FROM ser_next s JOIN nrs n ON n.patient_id = s.patient_id AND n.timepoint = 'baseline'
   AND n.on_day <= s.start_on AND date_diff('day', n.on_day, s.start_on) <= s.lookback
  GROUP BY s.plan_id),
prim AS (
  SELECT plan_id, min({'k': abs(days - $primary_day), 'd': d, 'v': v, 'f': f}) AS m
  FROM pts WHERE days BETWEEN $window_low AND $window_high GROUP BY plan_id),
pg AS (
  SELECT prim.plan_id, min(sc.score) AS pgic
  FROM prim JOIN scores sc ON sc.follow_up_id = struct_extract(prim.m, 'f') AND sc.instrument = 'pgic'
  GROUP BY prim.plan_id),
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
before_loss AS (
  SELECT loss.plan_id, max(flag.d) AS known_day
  FROM loss JOIN flag ON flag.plan_id = loss.plan_id AND flag.d < loss.loss_day GROUP BY loss.plan_id),
early AS (
  SELECT plan_id, bool_or(resp AND days <= $response_window) AS responded, max(d) AS last_day
  FROM flag GROUP BY plan_id),
own AS (
  SELECT plan_id,
         bool_or(days_after_series >= $dropout_due AND due_on <= $as_of) AS week12_due,
         bool_or(completed AND days_after_series >= $dropout_from) AS answered_late,
         count(*) FILTER (WHERE due_on <= $as_of) AS due,
         count(*) FILTER (WHERE due_on <= $as_of AND completed) AS answered
  FROM follow_ups GROUP BY plan_id),
evn AS (SELECT plan_id, count(*) AS events FROM ev GROUP BY plan_id),
mb AS (
  SELECT s.plan_id, struct_extract(max({'d': m.measured_on, 'v': m.mme_per_day}), 'v') AS before
  FROM ser_next s JOIN mme m ON m.patient_id = s.patient_id AND m.measured_on <= s.start_on
   AND date_diff('day', m.measured_on, s.start_on) <= $mme_lookback
  GROUP BY s.plan_id),
ma AS (
  SELECT s.plan_id, struct_extract(max({'d': m.measured_on, 'v': m.mme_per_day}), 'v') AS after
  FROM ser_next s JOIN mme m ON m.patient_id = s.patient_id
   AND date_diff('day', s.end_on, m.measured_on) BETWEEN $mme_low AND $mme_high
   AND (s.next_start IS NULL OR m.measured_on < s.next_start)
  GROUP BY s.plan_id),
rel AS (
  SELECT s.plan_id,
         CASE WHEN loss.loss_day IS NOT NULL THEN date_diff('day', s.end_on, loss.loss_day)
              ELSE date_diff('day', s.end_on, early.last_day) END AS relief_days,
         CASE WHEN loss.loss_day IS NOT NULL
              THEN date_diff('day', s.end_on, coalesce(before_loss.known_day, s.end_on))
              ELSE date_diff('day', s.end_on, early.last_day) END AS relief_low,
         loss.loss_day IS NOT NULL AS relief_lost,
         CASE WHEN loss.loss_day IS NULL AND s.next_start IS NOT NULL
              THEN date_diff('day', s.end_on, s.next_start) END AS relief_next_days
  FROM ser_next s JOIN base USING (plan_id) JOIN early USING (plan_id)
  LEFT JOIN loss USING (plan_id) LEFT JOIN before_loss USING (plan_id)
  WHERE early.responded)
SELECT s.plan_id, s.patient_id, 'all' AS "all", s.condition, s.route, s.protocol, s.period, s.clinic,
       s.start_on, s.discharged, s.aborted, coalesce(evn.events, 0) AS events,
       base.baseline, struct_extract(prim.m, 'v') AS primary_nrs, pg.pgic,
       date_diff('day', s.end_on, $as_of) >= $window_high AS window_closed,
       rel.relief_days, rel.relief_low, coalesce(rel.relief_lost, false) AS relief_lost,
       rel.relief_next_days,
       CASE WHEN own.week12_due THEN NOT coalesce(own.answered_late, false) END AS dropout,
       coalesce(own.due, 0) AS due, coalesce(own.answered, 0) AS answered,
       mb.before AS mme_before, ma.after AS mme_after
FROM ser_next s
LEFT JOIN base USING (plan_id) LEFT JOIN prim USING (plan_id) LEFT JOIN pg USING (plan_id)
LEFT JOIN rel USING (plan_id) LEFT JOIN own USING (plan_id) LEFT JOIN evn USING (plan_id)
LEFT JOIN mb USING (plan_id) LEFT JOIN ma USING (plan_id)
ORDER BY s.plan_id;
"""

# Every series in each of its groups; the counts that need distinct patients per group.
MEMBER_SQL = """
CREATE TEMP TABLE member AS
SELECT dim, grp, plan_id, patient_id FROM facts
UNPIVOT (grp FOR dim IN ({dims}));

CREATE TEMP TABLE group_patients AS SELECT DISTINCT dim, grp, patient_id FROM member;

CREATE TEMP TABLE f AS
SELECT m.dim, m.grp, facts.*,
       baseline IS NOT NULL AND primary_nrs IS NOT NULL AS evaluable,
       CASE WHEN baseline > 0 THEN (baseline - primary_nrs) / baseline * 100.0 END AS pct,
       mme_before > 0 AND mme_after IS NOT NULL AS mme_user
FROM member m JOIN facts USING (plan_id);
"""

# The ratios whose intervals account for patients with several series: per series a numerator y
# and a denominator n (SQL over ``f``), summed per patient, then the sums the sandwich variance
# needs (``stats.ClusterSums``).
RESP30 = "evaluable AND pct >= $moderate_pct"
RESP50 = "evaluable AND pct >= $substantial_pct"
RESP2 = "evaluable AND baseline - primary_nrs >= $moderate_points"
PRIMARY_DUE = "evaluable OR window_closed"
RATIOS: dict[str, tuple[str, str]] = {
    "completion": ("discharged", "discharged + aborted"),
    "r30": (RESP30, "evaluable"),
    "r50": (RESP50, "evaluable"),
    "r2": (RESP2, "evaluable"),
    "r30_mnr": (RESP30, PRIMARY_DUE),
    "r50_mnr": (RESP50, PRIMARY_DUE),
    "r2_mnr": (RESP2, PRIMARY_DUE),
    "pgic": ("list_contains($pgic_improved, CAST(trunc(pgic) AS BIGINT))", "pgic IS NOT NULL"),
    "change": ("CASE WHEN evaluable THEN primary_nrs - baseline ELSE 0 END", "evaluable"),
    "ae_rate": ("events", "discharged + aborted"),
    "answered": ("answered", "due"),
    "dropout": ("coalesce(dropout, false)", "dropout IS NOT NULL"),
    "mme": ("CASE WHEN mme_user THEN mme_after - mme_before ELSE 0 END", "mme_user"),
}


def _ratio_sql() -> tuple[str, str]:
    """The per-patient sums (``pp``) and per-group sums (``cl``) of every ratio."""
    per_patient = ", ".join(
        f"sum(coalesce(CAST(({y}) AS DOUBLE), 0)) AS {k}_y, sum(coalesce(CAST(({n}) AS DOUBLE), 0)) AS {k}_n"
        for k, (y, n) in RATIOS.items()
    )
    per_group = ", ".join(
        f"sum({k}_y) AS {k}_sy, sum({k}_n) AS {k}_sn, sum({k}_y * {k}_y) AS {k}_yy, "
        f"sum({k}_y * {k}_n) AS {k}_yn, sum({k}_n * {k}_n) AS {k}_nn, "
        f"count(*) FILTER (WHERE {k}_n > 0) AS {k}_g"
        for k in RATIOS
    )
    return per_patient, per_group


# Per group: counts over series (responders as outcomes.rules.response says), over distinct
# patients (adverse events), the ratio sums, each patient's mean MME change (for the signed-rank
# test, one value per patient), and the relief intervals of each patient's first responding
# series with their multiplicity.
GROUP_SQL = """
WITH pp AS (SELECT dim, grp, patient_id, {per_patient} FROM f GROUP BY dim, grp, patient_id),
cl AS (SELECT dim, grp, {per_group} FROM pp GROUP BY dim, grp),
series AS (
  SELECT dim, grp, count(*) AS series, sum(discharged) AS sessions, sum(aborted) AS aborted,
         count(*) FILTER (WHERE evaluable) AS evaluable,
         count(*) FILTER (WHERE {r30}) AS r30,
         count(*) FILTER (WHERE {r50}) AS r50,
         count(*) FILTER (WHERE {r2}) AS r2,
         count(*) FILTER (WHERE {primary_due}) AS primary_due,
         count(pgic) AS pgic_n,
         count(*) FILTER (WHERE list_contains($pgic_improved, CAST(trunc(pgic) AS BIGINT))) AS pgic_yes,
         count(*) FILTER (WHERE mme_user) AS mme_n,
         count(*) FILTER (WHERE mme_before = 0 AND mme_after IS NOT NULL) AS mme_nonusers,
         count(*) FILTER (WHERE mme_before = 0 AND mme_after > 0) AS mme_nonusers_started,
         count(dropout) AS dropout_n, count(*) FILTER (WHERE dropout) AS dropouts,
         sum(due) AS follow_ups_due, sum(answered) AS follow_ups_answered
  FROM f GROUP BY dim, grp),
first_relief AS (
  SELECT * FROM f WHERE relief_days IS NOT NULL
  QUALIFY row_number() OVER (PARTITION BY dim, grp, patient_id ORDER BY start_on, plan_id) = 1),
relief AS (
  SELECT dim, grp, list(days ORDER BY days, lost, low, next) AS days,
         list(lost ORDER BY days, lost, low, next) AS lost, list(low ORDER BY days, lost, low, next) AS low,
         list(next ORDER BY days, lost, low, next) AS next, list(n ORDER BY days, lost, low, next) AS n
  FROM (SELECT dim, grp, relief_days AS days, relief_lost AS lost, relief_low AS low,
               coalesce(relief_next_days, -1) AS next, count(*) AS n
        FROM first_relief GROUP BY dim, grp, relief_days, relief_lost, relief_low, relief_next_days)
  GROUP BY dim, grp),
mp AS (
  SELECT dim, grp, list(c ORDER BY patient_id) AS mme_patient_changes FROM (
    SELECT dim, grp, patient_id, avg(mme_after - mme_before) AS c FROM f WHERE mme_user
    GROUP BY dim, grp, patient_id)
  GROUP BY dim, grp),
pat AS (SELECT dim, grp, count(*) AS patients FROM group_patients GROUP BY dim, grp),
ae AS (
  SELECT m.dim, m.grp, count(DISTINCT ev.patient_id) AS with_ae,
         count(DISTINCT ev.patient_id) FILTER (WHERE ev.needed_intervention) AS needed
  FROM member m JOIN ev USING (plan_id) GROUP BY m.dim, m.grp)
SELECT series.*, series.aborted + series.sessions AS sessions_exposed, cl.ae_rate_sy AS events,
       pat.patients, coalesce(ae.with_ae, 0) AS with_ae, coalesce(ae.needed, 0) AS needed,
       coalesce(relief.days, []) AS relief_days, coalesce(relief.lost, []) AS relief_lost,
       coalesce(relief.low, []) AS relief_low, coalesce(relief.next, []) AS relief_next,
       coalesce(relief.n, []) AS relief_weight, mp.mme_patient_changes, cl.*
FROM series JOIN pat USING (dim, grp) JOIN cl USING (dim, grp) LEFT JOIN ae USING (dim, grp)
LEFT JOIN relief USING (dim, grp) LEFT JOIN mp USING (dim, grp)
"""
# Per group, term and grade: events, patients, and the per-patient sums of the rate's variance
# (each patient's events of the cell against their sessions in the group).
AE_SQL = """
WITH pe AS (
  SELECT dim, grp, patient_id, sum(discharged + aborted) AS n FROM f GROUP BY dim, grp, patient_id),
te AS (
  SELECT m.dim, m.grp, ev.term, ev.grade, ev.patient_id, count(*) AS e,
         sum(CAST(ev.needed_intervention AS INTEGER)) AS needed
  FROM member m JOIN ev USING (plan_id) GROUP BY m.dim, m.grp, ev.term, ev.grade, ev.patient_id)
SELECT te.dim, te.grp, te.term, te.grade, sum(te.e) AS events, count(*) AS patients,
       sum(te.needed) AS needed, sum(te.e * te.e) AS ee, sum(te.e * pe.n) AS en
FROM te JOIN pe USING (dim, grp, patient_id)
GROUP BY te.dim, te.grp, te.term, te.grade
"""


def _facts(con: duckdb.DuckDBPyConnection, as_of: dt.date, r: OutcomeRules, d: Definitions) -> None:
    _run(
        con,
        FACTS_SQL,
        {
            "lookback": d.baseline_lookback_days,
            "primary_day": d.primary_day,
            "window_low": d.primary_window[0],
            "window_high": d.primary_window[1],
            "moderate_pct": r.moderate_pct,
            "losses": r.consecutive_losses,
            "response_window": r.response_window_days,
            "dropout_from": d.dropout_from_day,
            "dropout_due": d.dropout_due_day,
            "mme_lookback": d.mme_before_lookback_days,
            "mme_low": d.mme_after_window[0],
            "mme_high": d.mme_after_window[1],
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
    "sessions_exposed",
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
    "primary_due",
    "responder30_mnr_pct",
    "responder30_mnr_low",
    "responder30_mnr_high",
    "responder50_mnr_pct",
    "responder50_mnr_low",
    "responder50_mnr_high",
    "responder2pt_mnr_pct",
    "responder2pt_mnr_low",
    "responder2pt_mnr_high",
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
    "relief_interval_median_days",
    "relief_booster_events",
    "relief_booster_median_days",
    "patients_with_ae_pct",
    "patients_with_ae_low",
    "patients_with_ae_high",
    "ae_events",
    "ae_per_100_sessions",
    "ae_per_100_low",
    "ae_per_100_high",
    "needed_intervention_pct",
    "needed_intervention_low",
    "needed_intervention_high",
    "mme_n",
    "mme_patients",
    "mme_change_mean",
    "mme_change_low",
    "mme_change_high",
    "mme_t_p",
    "mme_t_p_bh",
    "mme_wilcoxon_p",
    "mme_wilcoxon_p_bh",
    "mme_nonusers",
    "mme_nonusers_started",
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


def cluster_sums(g: dict[str, Any], key: str) -> stats.ClusterSums:
    """The ``RATIOS`` entry ``key`` of a GROUP_SQL row."""

    def f(name: str) -> float:
        v = g[f"{key}_{name}"]
        return 0.0 if v is None else float(v)

    return stats.ClusterSums(f("sy"), f("sn"), f("yy"), f("yn"), f("nn"), int(f("g")))


def _p(p: float | None) -> float | None:
    return None if p is None else round(p, 4)


def relief_estimates(
    days: list[float], lost: list[bool], low: list[float], nxt: list[float], weight: list[int], conf: float
) -> tuple[stats.Survival | None, float | None, float | None, int]:
    """Kaplan-Meier on the day each loss was found (the later end of its interval) with its band;
    the Turnbull median of the intervals (lifelines); the Turnbull median counting a return for a
    new series as a loss of relief (sensitivity to informative censoring), and how many did."""
    km = stats.kaplan_meier(days, lost, conf, weights=weight)
    upper = [d if is_lost else INFINITY for d, is_lost in zip(days, lost, strict=True)]
    booster = [
        d if is_lost else (x if x >= 0 else INFINITY) for d, is_lost, x in zip(days, lost, nxt, strict=True)
    ]
    returned = sum(w for w, is_lost, x in zip(weight, lost, nxt, strict=True) if not is_lost and x >= 0)
    return (
        km,
        stats.interval_median(low, upper, weight),
        stats.interval_median(low, booster, weight),
        returned,
    )


def _summary_row(
    dim: str, g: dict[str, Any], r: OutcomeRules
) -> tuple[dict[str, Any], stats.Survival | None]:
    """One group's figures from its row of GROUP_SQL (follow-ups: those due by the report date).
    Proportions and means over series are cluster-robust by patient; the p-values'
    false-discovery-rate adjustment across the report is added by ``build``."""
    conf = r.confidence
    patients, discharged = int(g["patients"]), int(g["sessions"])
    row: dict[str, Any] = {"dimension": dim, "group": g["grp"], "patients": patients, "series": g["series"]}
    row["sessions"] = discharged
    row["sessions_exposed"] = int(g["sessions_exposed"])
    _put(row, "completion", stats.cluster_wilson(cluster_sums(g, "completion"), conf))
    row["evaluable"] = int(g["evaluable"])
    row["primary_due"] = int(g["primary_due"])
    for name, key in (("responder30", "r30"), ("responder50", "r50"), ("responder2pt", "r2")):
        _put(row, name, stats.cluster_wilson(cluster_sums(g, key), conf))
        _put(row, f"{name}_mnr", stats.cluster_wilson(cluster_sums(g, f"{key}_mnr"), conf))
    _put(row, "pgic_improved", stats.cluster_wilson(cluster_sums(g, "pgic"), conf))
    row["pgic_n"] = int(g["pgic_n"])
    _put(row, "nrs_change", stats.cluster_mean(cluster_sums(g, "change"), conf), 1.0)
    km, interval_median, booster_median, returned = relief_estimates(
        g["relief_days"], g["relief_lost"], g["relief_low"], g["relief_next"], g["relief_weight"], conf
    )
    row["relief_n"] = sum(g["relief_weight"])
    row["relief_events"] = sum(
        w for w, lost in zip(g["relief_weight"], g["relief_lost"], strict=True) if lost
    )
    row["relief_median_days"] = km.median if km else None
    row["relief_median_low"] = km.median_low if km else None
    row["relief_median_high"] = km.median_high if km else None
    row["relief_interval_median_days"] = interval_median
    row["relief_booster_events"] = row["relief_events"] + returned
    row["relief_booster_median_days"] = booster_median
    _put(row, "patients_with_ae", stats.wilson(int(g["with_ae"]), patients, conf))
    row["ae_events"] = int(g["events"] or 0)
    v = _estimate(stats.cluster_poisson_rate(cluster_sums(g, "ae_rate"), conf), 100.0, 2)
    row["ae_per_100_sessions"], row["ae_per_100_low"] = v["value"], v["low"]
    row["ae_per_100_high"] = v["high"]
    _put(row, "needed_intervention", stats.wilson(int(g["needed"]), patients, conf))
    mme = cluster_sums(g, "mme")
    row["mme_n"], row["mme_patients"] = int(g["mme_n"]), mme.clusters
    row["mme_nonusers"], row["mme_nonusers_started"] = int(g["mme_nonusers"]), int(g["mme_nonusers_started"])
    if row["mme_n"]:
        _put(row, "mme_change", stats.cluster_mean(mme, conf), 1.0)
        row["mme_t_p"] = _p(stats.cluster_t_p(mme))
        row["mme_wilcoxon_p"] = _p(stats.wilcoxon_p(g["mme_patient_changes"]))
    due, answered = int(g["follow_ups_due"]), int(g["follow_ups_answered"])
    row["follow_ups_due"], row["follow_ups_answered"] = due, answered
    _put(row, "answered", stats.cluster_wilson(cluster_sums(g, "answered"), conf))
    row["dropout_n"] = int(g["dropout_n"])
    _put(row, "dropout", stats.cluster_wilson(cluster_sums(g, "dropout"), conf))
    row["suppressed"] = False
    return row, km


def _ae_row(
    dim: str, group: str, cell: tuple[Any, ...], patients: int, exposure: stats.ClusterSums, conf: float
) -> dict[str, Any]:
    """One term and grade; ``exposure``: the group's sessions per patient (``ae_rate`` sums), for
    the cell's cluster-robust rate."""
    term, grade, events, n_pat, needed, ee, en = cell
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
    sums = stats.ClusterSums(float(events), exposure.n, float(ee), float(en), exposure.nn, exposure.clusters)
    v = _estimate(stats.cluster_poisson_rate(sums, conf), 100.0, 2)
    row["per_100_sessions"], row["per_100_low"], row["per_100_high"] = v["value"], v["low"], v["high"]
    return row


# the counts of GROUP_SQL that disclosure control protects beside those the summary shows
COUNT_KEYS = (
    "patients", "series", "sessions", "aborted", "evaluable", "r30", "r50", "r2", "pgic_n",
    "pgic_yes", "with_ae", "events", "needed", "follow_ups_due", "follow_ups_answered",
    "dropout_n", "dropouts", "primary_due", "mme_nonusers", "mme_nonusers_started",
)  # fmt: skip


def adjust_p_values(rows: list[dict[str, Any]]) -> None:
    """The MME p-values adjusted for the false discovery rate (Benjamini-Hochberg) across every
    group shown (overlapping groups, many tests: the unadjusted ones are exploratory). The family
    is the p-values the report shows: in a research report, those disclosure control left."""
    for column in ("mme_t_p", "mme_wilcoxon_p"):
        values = [row.get(column) for row in rows]
        adjusted = stats.fdr_adjusted([v if isinstance(v, float) else None for v in values])
        for row, value, q in zip(rows, values, adjusted, strict=True):
            # a p-value disclosure control withheld keeps its adjusted value withheld too
            row[f"{column}_bh"] = disclosure.HIDDEN if value == disclosure.HIDDEN else _p(q)


@dataclass
class Aggregates:
    """What the DuckDB stage hands to the statistics: the dimensions reported, one row of
    GROUP_SQL per (dimension, group) (the signed-rank values as NumPy arrays, the rest as Python
    values) and the AE cells (term, grade, events, patients, needed, sums) per group."""

    dimensions: tuple[str, ...]
    groups: dict[tuple[str, str], dict[str, Any]]
    cells: dict[tuple[str, str], list[tuple[Any, ...]]]


# GROUP_SQL's value lists for the signed-rank test: handed over as NumPy arrays
ARRAY_COLUMNS = ("mme_patient_changes",)


def aggregate(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    r: OutcomeRules | None = None,
    d: Definitions | None = None,
) -> Aggregates:
    """The report's DuckDB stage (joins, per-series facts, per-group aggregates) on ``con``,
    which holds tables or views named as ``extract.SOURCES`` with its columns: the Arrow tables
    ``build`` registers, or (the benchmark's baseline) views over Parquet files."""
    r = r or outcome_rules()
    d = d or registry_definitions()
    _facts(con, as_of, r, d)
    clinics = con.execute("SELECT count(DISTINCT clinic) FROM facts").fetchone()
    # across clinics (the research report), also by clinic
    dimensions = DIMENSIONS + (("clinic",) if clinics and clinics[0] > 1 else ())
    _run(con, MEMBER_SQL.format(dims=", ".join(f'"{d}"' for d in dimensions)), {})
    per_patient, per_group = _ratio_sql()
    params = {
        "moderate_pct": r.moderate_pct,
        "substantial_pct": r.substantial_pct,
        "moderate_points": r.moderate_points,
        "pgic_improved": list(r.pgic_improved),
    }
    sql = GROUP_SQL.format(
        per_patient=per_patient,
        per_group=per_group,
        r30=RESP30,
        r50=RESP50,
        r2=RESP2,
        primary_due=PRIMARY_DUE,
    )
    result = con.sql(sql, params={k: v for k, v in params.items() if f"${k}" in sql}).to_arrow_table()
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
            counts[(dim, group)] = {name: int(g[name] or 0) for name in COUNT_KEYS} | {
                "relief_n": int(row["relief_n"]),
                "relief_events": int(row["relief_events"]),
                "relief_booster_events": int(row["relief_booster_events"]),
                "mme_n": int(row["mme_n"]),
                "mme_patients": int(row["mme_patients"]),
            }
            summary.rows.append(row)
            if km is not None and dim in ("all", "condition"):
                kms[(dim, group)] = km
                at_risk[(dim, group)] = [
                    sum(w for d, w in zip(g["relief_days"], g["relief_weight"], strict=True) if d >= t)
                    for t in km.timeline
                ]
            exposure = cluster_sums(g, "ae_rate")
            for cell in sorted(cells.get((dim, group), []), key=lambda c: (c[0], c[1])):
                ae_row = _ae_row(dim, group, cell, row["patients"], exposure, r.confidence)
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
    # the false-discovery-rate family: the p-values the report shows
    adjust_p_values(summary.rows)
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
