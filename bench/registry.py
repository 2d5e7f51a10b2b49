"""Registry benchmark: the full registry report on SQLite and PostgreSQL against DuckDB running
the same core aggregates over a Parquet export of the same data, in the same run; and the
de-identified export rate.

Run from the repository root:

    .venv/bin/python bench/registry.py                # scaled down: 2,000 patients
    .venv/bin/python bench/registry.py --full         # the issue's size: 100,000 patients,
                                                      # 1,000,000 sessions, 5,000,000 answers
    .venv/bin/python bench/registry.py --patients 10000 --backends sqlite

Each backend gets a scratch database (a temporary SQLite file; a new PostgreSQL database on
127.0.0.1:5432 as user postgres, dropped afterwards), migrated to head and filled with synthetic
series (5 sessions each, 10 sessions per patient), adverse events, follow-up questionnaires
(NRS + PEG, item by item, 6 answers each, about 50 answers per patient) and MME readings.
Then, per backend:

1. KetaCare: ``analytics.extract`` + ``analytics.registry.build`` (all groupings, Wilson,
   Kaplan-Meier, paired tests), timed;
2. the extract written as Parquet (untimed), and DuckDB runs the core aggregates in SQL over it:
   per series sessions, baseline and week-4 NRS, responders, AE counts by term and grade,
   MME before/after, grouped by condition, route, protocol and quarter (timed);
3. ``analytics.deid`` over the same extract and its Parquet write: rows/s.

The figure is the ratio KetaCare / DuckDB (the issue's target: within 3x). Peak RSS is printed
(the issue's limit: 4 GiB). It measures; it never asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import duckdb  # noqa: E402
from sqlalchemy import Engine, create_engine, insert, make_url, text  # noqa: E402

from ketacare import migrations, models  # noqa: E402
from ketacare.analytics import deid, extract, registry  # noqa: E402
from ketacare.db import make_engine, make_sessionmaker  # noqa: E402

CHUNK = 20_000
CONDITIONS = (
    "Complex regional pain syndrome type I",
    "Fibromyalgia",
    "Migraine / headache",
    "Neuropathic pain",
)
ROUTES = ("iv_infusion", "intranasal", "oral")
PROTOCOLS = ("cleveland_5day", "outpatient_series", "booster")
TERMS = (("nausea", "Nausea"), ("dizziness", "Dizziness / vertigo"), ("hypertension", "Hypertension"))


def _insert(engine: Engine, table: str, rows: list[dict[str, object]]) -> None:
    t = models.metadata.tables[table]
    with engine.begin() as conn:
        for i in range(0, len(rows), CHUNK):
            conn.execute(insert(t), rows[i : i + CHUNK])


def generate(
    engine: Engine, patients: int, sessions_per_patient: int, answers_per_patient: int, seed: int
) -> int:
    """Fill the database; returns the number of rows written."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    written = 0
    with engine.begin() as conn:
        conn.execute(
            insert(models.metadata.tables["clinics"]),
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
        )
        conn.execute(
            insert(models.metadata.tables["users"]),
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
        )
        conn.execute(
            insert(models.metadata.tables["clinic_chairs"]),
            [{"id": 1, "clinic_id": 1, "room": "R", "name": "C", "active": True}],
        )
    series_per_patient = max(1, sessions_per_patient // 5)
    follow_ups_per_series = max(1, answers_per_patient // (6 * series_per_patient) - 1)
    pats, plans, booked, sess, aes, fus, scores, answers, mme = [], [], [], [], [], [], [], [], []
    plan_id = session_id = fu_id = 0
    for pid in range(1, patients + 1):
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
            plan_id += 1
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
                session_id += 1
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
                    aes.append(
                        {
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
            days = [-7] + [d for d in (1, 7, 14, 28, 56, 84, 120, 150)[:follow_ups_per_series]]
            for day in days:
                fu_id += 1
                on = end + dt.timedelta(days=day)
                if kind < 0.4:
                    nrs = baseline * (0.4 if day < 60 else 0.8)
                elif kind < 0.8:
                    nrs = baseline * 0.9
                else:
                    nrs = baseline * 0.5
                value = baseline if day < 0 else max(0, min(10, round(nrs + rng.uniform(-1, 1))))
                fus.append(
                    {
                        "id": fu_id,
                        "clinic_id": 1,
                        "patient_id": pid,
                        "timepoint": "baseline" if day < 0 else f"day_{day}",
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
                    scores.append(
                        {
                            "follow_up_id": fu_id,
                            "clinic_id": 1,
                            "patient_id": pid,
                            "instrument": instrument,
                            "timepoint": "baseline" if day < 0 else f"day_{day}",
                            "score": float(value),
                            "answered_at": on,
                        }
                    )
                    for item in ("a", "b", "c"):
                        answers.append(
                            {
                                "follow_up_id": fu_id,
                                "patient_id": pid,
                                "instrument": instrument,
                                "item": item,
                                "value": value,
                                "answered_at": on,
                            }
                        )
            before = rng.choice((0.0, 30.0, 60.0, 90.0))
            mme.append(
                {
                    "clinic_id": 1,
                    "patient_id": pid,
                    "measured_on": (start - dt.timedelta(days=3)).date(),
                    "mme_per_day": before,
                    "unconverted": [],
                    "benzodiazepine": False,
                    "recorded_at": now,
                }
            )
            mme.append(
                {
                    "clinic_id": 1,
                    "patient_id": pid,
                    "measured_on": (end + dt.timedelta(days=40)).date(),
                    "mme_per_day": before * rng.choice((0.5, 1.0)),
                    "unconverted": [],
                    "benzodiazepine": False,
                    "recorded_at": now,
                }
            )
    for table, rows in (
        ("patients", pats),
        ("treatment_plans", plans),
        ("plan_sessions", booked),
        ("treatment_sessions", sess),
        ("adverse_events", aes),
        ("outcome_follow_ups", fus),
        ("outcome_scores", scores),
        ("outcome_answers", answers),
        ("outcome_mme", mme),
    ):
        _insert(engine, table, rows)
        written += len(rows)
    return written


DUCK_SQL = """
WITH s AS (
  SELECT plan_id, min(CAST(started_at AS DATE)) AS start_on, max(CAST(started_at AS DATE)) AS end_on,
         count(*) FILTER (WHERE status = 'discharged') AS discharged,
         count(*) FILTER (WHERE status = 'aborted') AS aborted
  FROM read_parquet('{d}/sessions.parquet') WHERE started_at IS NOT NULL GROUP BY plan_id),
ser AS (
  SELECT p.plan_id, p.patient_id, p.condition, p.route, p.protocol,
         strftime(s.start_on, '%Y') || '-Q' || CAST(quarter(s.start_on) AS VARCHAR) AS period,
         s.start_on, s.end_on, s.discharged, s.aborted
  FROM read_parquet('{d}/series.parquet') p JOIN s USING (plan_id) WHERE s.discharged > 0),
nrs AS (SELECT patient_id, CAST(answered_at AS DATE) AS on_day, score
        FROM read_parquet('{d}/scores.parquet') WHERE instrument = 'nrs' AND timepoint <> 'end_of_session'),
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
ae AS (SELECT a.session_id, a.patient_id, a.term, a.grade, a.needed_intervention, ss.plan_id
       FROM read_parquet('{d}/adverse_events.parquet') a
       JOIN read_parquet('{d}/sessions.parquet') ss USING (session_id)),
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
SELECT p.condition, ae.term, ae.grade, count(*) AS events, count(DISTINCT ae.patient_id) AS patients,
       sum(CAST(ae.needed_intervention AS INT)) AS needed
FROM read_parquet('{d}/adverse_events.parquet') ae
JOIN read_parquet('{d}/sessions.parquet') s USING (session_id)
JOIN read_parquet('{d}/series.parquet') p ON p.plan_id = s.plan_id
GROUP BY GROUPING SETS ((ae.term, ae.grade), (p.condition, ae.term, ae.grade))
"""


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(name: str, engine: Engine, args: argparse.Namespace) -> dict[str, float]:
    migrations.upgrade(engine)
    t0 = time.perf_counter()
    rows = generate(engine, args.patients, args.sessions_per_patient, args.answers_per_patient, args.seed)
    gen_s = time.perf_counter() - t0
    factory = make_sessionmaker(engine)
    with factory() as db:
        t0 = time.perf_counter()
        ex = extract.extract(db, None)
        extract_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = registry.build(ex, dt.date.today(), research=False)
        build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        for frame_name, frame in ex.frames().items():
            frame.to_parquet(Path(tmp) / f"{frame_name}.parquet", index=False)
        con = duckdb.connect()
        t0 = time.perf_counter()
        duck = con.execute(DUCK_SQL.format(d=tmp)).fetchall()
        duck_ae = con.execute(DUCK_AE_SQL.format(d=tmp)).fetchall()
        duck_s = time.perf_counter() - t0
        con.close()
        t0 = time.perf_counter()
        data = deid.deidentify(ex, "bench-secret-" + "x" * 30)
        data.write(Path(tmp) / "deid")
        deid_s = time.perf_counter() - t0
    ours = extract_s + build_s
    overall = next(r for r in report.table("summary").rows if r["dimension"] == "all")
    print(
        f"{name:10s} rows {rows:>10,} (generated in {gen_s:6.1f} s)  extract {extract_s:6.2f} s  "
        f"report {build_s:6.2f} s  KetaCare {ours:6.2f} s  DuckDB {duck_s:6.3f} s ({len(duck)} groups, "
        f"{len(duck_ae)} AE cells)  ratio {ours / duck_s:6.1f}x  "
        f"de-identified export {data.rows() / deid_s:,.0f} rows/s  "
        f"peak RSS {_rss_mib():,.0f} MiB"
    )
    duck_all = next(r for r in duck if r[0] is None and r[1] is None and r[2] is None and r[3] is None)
    print(
        f"{'':10s} same answer? patients {overall['patients']} / DuckDB {duck_all[4]}; evaluable "
        f"{overall['evaluable']} / {duck_all[8]}; responders 30% {overall['responder30_pct']}% / "
        f"{round(100 * duck_all[9], 1)}%"
    )
    print(
        f"{'':10s} overall: {overall['patients']} patients, responders 30% {overall['responder30_pct']}%, "
        f"relief median {overall['relief_median_days']} days"
    )
    return {"ours": ours, "duck": duck_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="100,000 patients (the issue's size)")
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--sessions-per-patient", type=int, default=10)
    parser.add_argument("--answers-per-patient", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.full:
        args.patients = 100_000
    print(
        f"{args.patients:,} patients, {args.patients * args.sessions_per_patient:,} sessions, "
        f"~{args.patients * args.answers_per_patient:,} answers"
    )
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                engine = make_engine(f"sqlite:///{tmp}/bench.sqlite3")
                try:
                    run("SQLite", engine, args)
                finally:
                    engine.dispose()
        elif backend == "postgresql":
            name = f"ketacare_bench_{uuid.uuid4().hex[:8]}"
            url = make_url("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            engine = make_engine(url.set(database=name).render_as_string(hide_password=False))
            try:
                run("PostgreSQL", engine, args)
            finally:
                engine.dispose()
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
