"""Registry benchmark: the full registry report on SQLite and PostgreSQL against DuckDB running
the same aggregates over a Parquet export of the same data, in the same run; and the
de-identified export rate.

Run from the repository root:

    .venv/bin/python bench/registry.py                # scaled down: 2,000 patients
    .venv/bin/python bench/registry.py --full         # the issue's size: 100,000 patients,
                                                      # 1,000,000 sessions, 5,000,000 answers
    .venv/bin/python bench/registry.py --patients 10000 --backends sqlite

Each backend gets a scratch database (a temporary SQLite file; a new PostgreSQL database on
127.0.0.1:5432 as user postgres, dropped afterwards), migrated to head and filled, in a child
process and 2,000 patients at a time through the driver (``executemany`` in one transaction on
SQLite, ``COPY`` on PostgreSQL), with synthetic series (5 sessions each, 10 sessions per
patient), adverse events, follow-up questionnaires (NRS + PEG, item by item, 6 answers each,
about 50 answers per patient) and MME readings. Then, per backend:

1. KetaCare, timed: ``analytics.extract.columns`` (the columns the registry reads, through ADBC)
   + ``analytics.registry.build`` (DuckDB over those Arrow tables; all groupings, Wilson,
   Kaplan-Meier, paired tests): the report the web page, the API and ``ketacare report
   registry`` run;
2. the same columns written as Parquet (untimed), then two DuckDB baselines, each timed on a
   fresh connection: (a) **same aggregates**, the issue's baseline: the report's own DuckDB stage
   (``registry.aggregate``: the same SQL and parameters, and the same hand-over of its result to
   Python) with its tables as views over the Parquet files; checked identical to the report's
   stage over the Arrow tables; (b) **core subset**, the earlier baseline kept for comparison: a
   hand-written subset of the definitions (per series sessions, baseline and week-4 NRS,
   responders, AE counts by term and grade, MME before/after, by condition, route, protocol and
   quarter: no relief rule, no dropout, no PGIC, no follow-ups due);
3. in a child process, ``analytics.deid`` over the pandas extract and its Parquet write: rows/s
   (without the extract), and that process's peak RSS (``--no-export`` skips it).

The figure is the ratio KetaCare / DuckDB (same aggregates) (the issue's target: within 3x);
the ratio to the core subset is printed beside it. The report's peak RSS
is this process's (the generator and the export run in children; the issue's limit: 4 GiB). It
measures; it never asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from sqlalchemy import Engine, create_engine, make_url, text  # noqa: E402

from ketacare import migrations, models  # noqa: E402
from ketacare.analytics import deid, extract, registry  # noqa: E402
from ketacare.db import make_engine, make_sessionmaker  # noqa: E402

PATIENT_CHUNK = 2_000
CONDITIONS = (
    "Complex regional pain syndrome type I",
    "Fibromyalgia",
    "Migraine / headache",
    "Neuropathic pain",
)
ROUTES = ("iv_infusion", "intranasal", "oral")
PROTOCOLS = ("cleveland_5day", "outpatient_series", "booster")
TERMS = (("nausea", "Nausea"), ("dizziness", "Dizziness / vertigo"), ("hypertension", "Hypertension"))


class Writer:
    """Bulk rows into the scratch database through the driver, not the ORM: one ``executemany``
    per chunk on SQLite (one transaction, no sync until the end), ``COPY ... FROM STDIN`` on
    PostgreSQL. Values are passed as the tables store them (SQLite: UTC text, JSON text)."""

    def __init__(self, engine: Engine) -> None:
        self.sqlite = engine.dialect.name == "sqlite"
        self.raw = engine.raw_connection()
        self.written = 0
        self.stamps: dict[dt.datetime, str] = {}
        if self.sqlite:
            # the pooled connection autocommits (db.py leaves BEGIN to SQLAlchemy): one explicit
            # transaction for the whole fill
            sqlite = self.raw.driver_connection
            sqlite.execute("PRAGMA synchronous=OFF")  # type: ignore[union-attr]
            sqlite.execute("BEGIN")  # type: ignore[union-attr]

    def _sqlite_value(self, v: object) -> object:
        if isinstance(v, dt.datetime):
            text = self.stamps.get(v)
            if text is None:
                text = self.stamps[v] = v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            return text
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, dict | list):
            return json.dumps(v)
        return v

    def write(self, table: str, rows: list[dict[str, object]]) -> None:
        if not rows:
            return
        rows = _with_defaults(table, rows)
        cols = list(rows[0])
        names = ", ".join(cols)
        cur = self.raw.cursor()
        if self.sqlite:
            conv = self._sqlite_value
            cur.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})",  # noqa: S608
                [tuple(conv(r[c]) for c in cols) for r in rows],
            )
        else:
            with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for r in rows:
                    copy.write_row(
                        tuple(json.dumps(v) if isinstance(v, dict | list) else v for v in r.values())
                    )
        cur.close()
        self.written += len(rows)

    def commit(self) -> None:
        self.raw.commit()

    def close(self) -> None:
        if self.sqlite:
            self.raw.driver_connection.execute("PRAGMA synchronous=NORMAL")  # type: ignore[union-attr]
        self.raw.close()


def _with_defaults(table: str, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The models' Python-side defaults for columns the rows leave out (the ORM would add them)."""
    missing = {}
    for col in models.metadata.tables[table].columns:
        if col.name not in rows[0] and col.default is not None:
            d = col.default
            missing[col.name] = d.arg if d.is_scalar else d.arg(None)  # type: ignore[attr-defined,operator]
    return [{**r, **missing} for r in rows] if missing else rows


def _fixed_rows(now: dt.datetime) -> list[tuple[str, list[dict[str, object]]]]:
    return [
        (
            "clinics",
            [
                {
                    "id": 1,
                    "name": "Bench",
                    "slug": "bench",
                    "record_prefix": "BEN",
                    "time_zone": "UTC",
                    "next_record_number": 1,
                    "created_at": now,
                }
            ],
        ),
        (
            "users",
            [
                {
                    "id": 1,
                    "clinic_id": 1,
                    "username": "bench",
                    "full_name": "Bench",
                    "role": "nurse",
                    "password_hash": "x",
                    "totp_enrolled": False,
                }
            ],
        ),
        ("clinic_chairs", [{"id": 1, "clinic_id": 1, "room": "R", "name": "C", "active": True}]),
    ]


TABLES = (
    "patients",
    "treatment_plans",
    "plan_sessions",
    "treatment_sessions",
    "adverse_events",
    "outcome_follow_ups",
    "outcome_scores",
    "outcome_answers",
    "outcome_mme",
)


def generate(
    engine: Engine, patients: int, sessions_per_patient: int, answers_per_patient: int, seed: int
) -> int:
    """Fill the database, PATIENT_CHUNK patients at a time (memory stays flat); returns the
    number of rows written."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    writer = Writer(engine)
    try:
        for table, rows in _fixed_rows(now):
            writer.write(table, rows)
        ids = {"plan": 0, "session": 0, "fu": 0, "ae": 0, "score": 0, "answer": 0, "mme": 0}
        for first in range(1, patients + 1, PATIENT_CHUNK):
            chunk = _chunk(rng, now, ids, first, min(patients + 1, first + PATIENT_CHUNK),
                           sessions_per_patient, answers_per_patient)  # fmt: skip
            for table in TABLES:
                writer.write(table, chunk[table])
        writer.commit()
        return writer.written
    finally:
        writer.close()


def _chunk(
    rng: random.Random,
    now: dt.datetime,
    ids: dict[str, int],
    first: int,
    stop: int,
    sessions_per_patient: int,
    answers_per_patient: int,
) -> dict[str, list[dict[str, object]]]:
    series_per_patient = max(1, sessions_per_patient // 5)
    follow_ups_per_series = max(1, answers_per_patient // (6 * series_per_patient) - 1)
    out: dict[str, list[dict[str, object]]] = {t: [] for t in TABLES}
    pats, plans, booked, sess = (
        out["patients"],
        out["treatment_plans"],
        out["plan_sessions"],
        out["treatment_sessions"],
    )
    aes, fus, scores, answers, mme = (
        out["adverse_events"],
        out["outcome_follow_ups"],
        out["outcome_scores"],
        out["outcome_answers"],
        out["outcome_mme"],
    )
    for pid in range(first, stop):
        pats.append(
            {
                "id": pid,
                "clinic_id": 1,
                "record_number": f"BEN-{pid:07d}",
                "given_name": "G",
                "family_name": "F",
                "date_of_birth": dt.date(1950 + pid % 50, 1 + pid % 12, 1 + pid % 28),
                "sex": "female",
                "postal_code": f"{rng.randint(1000, 99999):05d}",
                "created_at": now,
                "updated_at": now,
            }
        )
        kind = rng.random()
        for k in range(series_per_patient):
            ids["plan"] += 1
            plan_id = ids["plan"]
            start = now - dt.timedelta(days=400 - 150 * k + rng.randint(0, 30))
            plans.append(
                {
                    "id": plan_id,
                    "clinic_id": 1,
                    "patient_id": pid,
                    "purpose": "series",
                    "status": "scheduled",
                    "protocol_key": rng.choice(PROTOCOLS),
                    "protocol_version": 1,
                    "protocol_snapshot": {},
                    "indication": rng.choice(CONDITIONS),
                    "eligibility_status": "eligible",
                    "route": rng.choice(ROUTES),
                    "dose": 0.35,
                    "dose_unit": "mg/kg/h",
                    "session_duration_min": 60,
                    "sessions": 5,
                    "interval_days": 1,
                    "start_date": start.date(),
                    "end_date": start.date(),
                    "preferred_time": "09:00",
                    "concentration_mg_per_ml": 1.0,
                    "premedication": [],
                    "weight_kg": 70,
                    "weight_measured_on": start.date(),
                    "session_doses": [],
                    "findings": [],
                    "created_at": now,
                }
            )
            for n in range(5):
                ids["session"] += 1
                session_id = ids["session"]
                at = start + dt.timedelta(days=n)
                booked.append(
                    {
                        "id": session_id,
                        "plan_id": plan_id,
                        "clinic_id": 1,
                        "number": n + 1,
                        "starts_at": at,
                        "ends_at": at + dt.timedelta(hours=1),
                        "chair_id": 1,
                        "staff_id": 1,
                        "status": "done",
                    }
                )
                status = "aborted" if rng.random() < 0.03 else "discharged"
                sess.append(
                    {
                        "id": session_id,
                        "clinic_id": 1,
                        "patient_id": pid,
                        "plan_id": plan_id,
                        "plan_session_id": session_id,
                        "number": n + 1,
                        "status": status,
                        "route": "iv_infusion",
                        "drug": "ketamine",
                        "planned_duration_min": 60,
                        "concentration_mg_per_ml": 1.0,
                        "baseline": {},
                        "discharge_checks": {},
                        "started_at": at,
                        "version": 1,
                    }
                )
                if rng.random() < 0.1:
                    key, term = rng.choice(TERMS)
                    ids["ae"] += 1
                    aes.append(
                        {
                            "id": ids["ae"],
                            "clinic_id": 1,
                            "patient_id": pid,
                            "session_id": session_id,
                            "term_key": key,
                            "term": term,
                            "onset_at": at,
                            "grade": rng.choice((1, 1, 2, 3)),
                            "serious": False,
                            "needed_intervention": rng.random() < 0.3,
                            "actions": [],
                            "outcome": "resolved",
                            "needs_review": False,
                            "recorded_at": at,
                        }
                    )
            end = start + dt.timedelta(days=4)
            baseline = rng.randint(5, 9)
            days = [-7, *(1, 7, 14, 28, 56, 84, 120, 150)[:follow_ups_per_series]]
            for day in days:
                ids["fu"] += 1
                fu_id = ids["fu"]
                on = end + dt.timedelta(days=day)
                if kind < 0.4:
                    nrs = baseline * (0.4 if day < 60 else 0.8)
                elif kind < 0.8:
                    nrs = baseline * 0.9
                else:
                    nrs = baseline * 0.5
                value = baseline if day < 0 else max(0, min(10, round(nrs + rng.uniform(-1, 1))))
                timepoint = "baseline" if day < 0 else f"day_{day}"
                fus.append(
                    {
                        "id": fu_id,
                        "clinic_id": 1,
                        "patient_id": pid,
                        "plan_id": None if day < 0 else plan_id,
                        "timepoint": timepoint,
                        "days_after_series": None if day < 0 else day,
                        "series_end_on": None if day < 0 else end.date(),
                        "due_on": on.date(),
                        "instruments": ["nrs", "peg"],
                        "status": "completed",
                        "draft": {},
                        "completed_at": on,
                        "completed_via": "link",
                        "created_at": now,
                    }
                )
                for instrument in ("nrs", "peg"):
                    ids["score"] += 1
                    scores.append(
                        {
                            "id": ids["score"],
                            "follow_up_id": fu_id,
                            "clinic_id": 1,
                            "patient_id": pid,
                            "instrument": instrument,
                            "timepoint": timepoint,
                            "score": float(value),
                            "answered_at": on,
                        }
                    )
                    for item in ("a", "b", "c"):
                        ids["answer"] += 1
                        answers.append(
                            {
                                "id": ids["answer"],
                                "follow_up_id": fu_id,
                                "patient_id": pid,
                                "instrument": instrument,
                                "item": item,
                                "value": value,
                                "answered_at": on,
                            }
                        )
            before = rng.choice((0.0, 30.0, 60.0, 90.0))
            for measured_on, mme_per_day in (
                ((start - dt.timedelta(days=3)).date(), before),
                ((end + dt.timedelta(days=40)).date(), before * rng.choice((0.5, 1.0))),
            ):
                ids["mme"] += 1
                mme.append(
                    {
                        "id": ids["mme"],
                        "clinic_id": 1,
                        "patient_id": pid,
                        "measured_on": measured_on,
                        "mme_per_day": mme_per_day,
                        "unconverted": [],
                        "benzodiazepine": False,
                        "recorded_at": now,
                    }
                )
    return out


DUCK_SQL = """
WITH s AS (
  SELECT plan_id, min(started_on) AS start_on, max(started_on) AS end_on,
         count(*) FILTER (WHERE status = 'discharged') AS discharged,
         count(*) FILTER (WHERE status = 'aborted') AS aborted
  FROM read_parquet('{d}/sessions.parquet') WHERE started_on IS NOT NULL GROUP BY plan_id),
ser AS (
  SELECT p.plan_id, p.patient_id, p.condition, p.route, p.protocol,
         strftime(s.start_on, '%Y') || '-Q' || CAST(quarter(s.start_on) AS VARCHAR) AS period,
         s.start_on, s.end_on, s.discharged, s.aborted
  FROM read_parquet('{d}/series.parquet') p JOIN s USING (plan_id) WHERE s.discharged > 0),
nrs AS (SELECT patient_id, on_day, score FROM read_parquet('{d}/scores.parquet') WHERE instrument = 'nrs'),
base AS (
  SELECT ser.plan_id, arg_max(nrs.score, nrs.on_day) AS baseline
  FROM ser JOIN nrs ON nrs.patient_id = ser.patient_id AND nrs.on_day <= ser.start_on GROUP BY ser.plan_id),
prim AS (
  SELECT ser.plan_id, arg_min(nrs.score, abs(date_diff('day', ser.end_on, nrs.on_day) - 28)) AS primary_nrs
  FROM ser JOIN nrs ON nrs.patient_id = ser.patient_id
   AND date_diff('day', ser.end_on, nrs.on_day) BETWEEN 14 AND 56 GROUP BY ser.plan_id),
mme AS (SELECT patient_id, measured_on, mme_per_day FROM read_parquet('{d}/mme.parquet')),
mb AS (SELECT ser.plan_id, arg_max(mme.mme_per_day, mme.measured_on) AS before
       FROM ser JOIN mme ON mme.patient_id = ser.patient_id AND mme.measured_on <= ser.start_on
       GROUP BY ser.plan_id),
ma AS (SELECT ser.plan_id, arg_max(mme.mme_per_day, mme.measured_on) AS after
       FROM ser JOIN mme ON mme.patient_id = ser.patient_id
        AND date_diff('day', ser.end_on, mme.measured_on) >= 28
       GROUP BY ser.plan_id),
f AS (
  SELECT ser.*, base.baseline, prim.primary_nrs, mb.before, ma.after,
         (base.baseline - prim.primary_nrs) / nullif(base.baseline, 0) >= 0.3 AS r30,
         (base.baseline - prim.primary_nrs) / nullif(base.baseline, 0) >= 0.5 AS r50,
         base.baseline - prim.primary_nrs >= 2 AS r2
  FROM ser LEFT JOIN base USING (plan_id) LEFT JOIN prim USING (plan_id) LEFT JOIN mb USING (plan_id)
  LEFT JOIN ma USING (plan_id))
SELECT condition, route, protocol, period, count(DISTINCT patient_id) AS patients, count(*) AS series,
       sum(discharged) AS sessions, sum(discharged) / sum(discharged + aborted) AS completion,
       count(primary_nrs) AS evaluable, avg(CAST(r30 AS INT)) AS r30, avg(CAST(r50 AS INT)) AS r50,
       avg(CAST(r2 AS INT)) AS r2, avg(primary_nrs - baseline) AS nrs_change,
       stddev(primary_nrs - baseline) AS sd,
       avg(after - before) AS mme_change, count(after - before) AS mme_n
FROM f GROUP BY GROUPING SETS ((), (condition), (route), (protocol), (period))
"""
DUCK_AE_SQL = """
SELECT p.condition, ae.term_key, ae.grade, count(*) AS events, count(DISTINCT ae.patient_id) AS patients,
       sum(CAST(ae.needed_intervention AS INT)) AS needed
FROM read_parquet('{d}/adverse_events.parquet') ae
JOIN read_parquet('{d}/sessions.parquet') s USING (session_id)
JOIN read_parquet('{d}/series.parquet') p ON p.plan_id = s.plan_id
GROUP BY GROUPING SETS ((ae.term_key, ae.grade), (p.condition, ae.term_key, ae.grade))
"""


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _in_child(target: Callable[..., Any], *args: Any) -> Any:
    """Run ``target`` in a forked process (its memory stays out of this process's peak RSS)."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        return pool.apply(target, args)


def _generate(url: str, args: argparse.Namespace) -> tuple[int, float]:
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        t0 = time.perf_counter()
        rows = generate(engine, args.patients, args.sessions_per_patient, args.answers_per_patient, args.seed)
        return rows, time.perf_counter() - t0
    finally:
        engine.dispose()


def _deidentified_export(url: str, out: str) -> tuple[int, float, float]:
    """The de-identified export from the pandas extract (rows, seconds without the extract, as
    the earlier figures were taken, and this process's peak RSS in MiB)."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as db:
            ex = extract.extract(db, None)
        t0 = time.perf_counter()
        data = deid.deidentify(ex, "bench-secret-" + "x" * 30)
        data.write(Path(out))
        return data.rows(), time.perf_counter() - t0, _rss_mib()
    finally:
        engine.dispose()


def _same_aggregates(con: duckdb.DuckDBPyConnection, d: Path, as_of: dt.date) -> registry.Aggregates:
    """The baseline: the report's own DuckDB stage (``registry.aggregate``: the same SQL, the same
    parameters, the same hand-over to Python) with the tables it reads as views over the Parquet
    files instead of the Arrow tables the report registers."""
    for table_name in extract.SOURCES:
        # names of this repository and a temporary directory of ours
        con.execute(f"CREATE VIEW {table_name} AS SELECT * FROM read_parquet('{d / table_name}.parquet')")  # noqa: S608
    return registry.aggregate(con, as_of)


def _identical(a: registry.Aggregates, b: registry.Aggregates) -> bool:
    """The same groups with the same values (arrays element by element) and the same AE cells
    (in any order: the report sorts them)."""
    cells_a, cells_b = ({k: sorted(v) for k, v in x.cells.items()} for x in (a, b))
    if a.dimensions != b.dimensions or a.groups.keys() != b.groups.keys() or cells_a != cells_b:
        return False
    for key, g in a.groups.items():
        h = b.groups[key]
        for column, v in g.items():
            w = h[column]
            if isinstance(v, np.ndarray) and not np.array_equal(v, w):
                return False
            if not isinstance(v, np.ndarray) and v != w:
                return False
    return True


def run(name: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    rows, gen_s = _in_child(_generate, url, args)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    today = dt.date.today()
    try:
        with factory() as db:
            t0 = time.perf_counter()
            cols = extract.columns(db, None)
            extract_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = registry.build(cols, today, research=False)
            build_s = time.perf_counter() - t0
    finally:
        engine.dispose()
    report_rss = _rss_mib()
    # where the report's time goes (not part of the figure): its DuckDB stage once more over the
    # same Arrow tables; the statistics are the rest of ``build``
    con = duckdb.connect()
    for table_name, table in cols.tables().items():
        con.register(table_name, table)
    t0 = time.perf_counter()
    ours_agg = registry.aggregate(con, today)
    stage_s = time.perf_counter() - t0
    con.close()
    with tempfile.TemporaryDirectory() as tmp:
        for table_name, table in cols.tables().items():
            pq.write_table(table, Path(tmp) / f"{table_name}.parquet")
        del cols
        # baseline 1, the issue's: the same aggregates (the report's own DuckDB SQL) over Parquet
        con = duckdb.connect()
        t0 = time.perf_counter()
        same = _same_aggregates(con, Path(tmp), today)
        same_s = time.perf_counter() - t0
        con.close()
        # baseline 2, the earlier one, kept for comparison: a hand-written subset of the
        # definitions ("core aggregates")
        con = duckdb.connect()
        t0 = time.perf_counter()
        duck = con.execute(DUCK_SQL.format(d=tmp)).fetchall()
        duck_ae = con.execute(DUCK_AE_SQL.format(d=tmp)).fetchall()
        duck_s = time.perf_counter() - t0
        con.close()
        deid_rows, deid_s, deid_rss = (0, 0.0, 0.0) if args.no_export else _in_child(
            _deidentified_export, url, str(Path(tmp) / "deid")
        )  # fmt: skip
    ours = extract_s + build_s
    overall = next(r for r in report.table("summary").rows if r["dimension"] == "all")
    export = (
        "de-identified export skipped"
        if args.no_export
        else f"de-identified export {deid_rows / deid_s:,.0f} rows/s (peak RSS {deid_rss:,.0f} MiB)"
    )
    print(
        f"{name:10s} rows {rows:>10,} (generated in {gen_s:6.1f} s)  extract {extract_s:6.2f} s  "
        f"report {build_s:6.2f} s (its DuckDB stage, run again: {stage_s:5.2f} s; statistics about "
        f"{max(0.0, build_s - stage_s):5.2f} s)  KetaCare {ours:6.2f} s",
        flush=True,
    )
    print(
        f"{'':10s} DuckDB, same aggregates over Parquet {same_s:6.3f} s: ratio {ours / same_s:5.1f}x   "
        f"DuckDB, core subset over Parquet {duck_s:6.3f} s ({len(duck)} groups, {len(duck_ae)} AE cells): "
        f"ratio {ours / duck_s:5.1f}x   report peak RSS {report_rss:,.0f} MiB  {export}"
    )
    duck_all = next(r for r in duck if r[0] is None and r[1] is None and r[2] is None and r[3] is None)
    same_all = same.groups[("all", "all")]
    print(
        f"{'':10s} same answer? same-aggregates baseline identical to the report's DuckDB stage: "
        f"{'yes' if _identical(ours_agg, same) else 'NO'} (patients {same_all['patients']}, evaluable "
        f"{same_all['evaluable']}); core subset: patients {overall['patients']} / {duck_all[4]}; "
        f"evaluable {overall['evaluable']} / {duck_all[8]}; responders 30% "
        f"{overall['responder30_pct']}% / {round(100 * duck_all[9], 1)}%"
    )
    print(
        f"{'':10s} overall: {overall['patients']} patients, responders 30% {overall['responder30_pct']}%, "
        f"relief median {overall['relief_median_days']} days",
        flush=True,
    )
    return {"ours": ours, "same": same_s, "duck": duck_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="100,000 patients (the issue's size)")
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--sessions-per-patient", type=int, default=10)
    parser.add_argument("--answers-per-patient", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-export", action="store_true", help="skip the de-identified export")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.full:
        args.patients = 100_000
    print(
        f"{args.patients:,} patients, {args.patients * args.sessions_per_patient:,} sessions, "
        f"~{args.patients * args.answers_per_patient:,} answers",
        flush=True,
    )
    on_each_backend(args.backends, run, args)


def on_each_backend(backends: str, run: Any, args: Any) -> None:
    """``run(label, url, args)`` on a scratch database of each backend named: a temporary SQLite
    file, or a new PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    for backend in backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                run("SQLite", f"sqlite:///{tmp}/bench.sqlite3", args)
        elif backend == "postgresql":
            name = f"ketacare_bench_{uuid.uuid4().hex[:8]}"
            url = make_url("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                run("PostgreSQL", url.set(database=name).render_as_string(hide_password=False), args)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
