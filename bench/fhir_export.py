"""FHIR Bulk Data export benchmark: the real export job (kick-off, worker, NDJSON per type, one
audit entry per patient) over the synthetic registry, against a baseline that serialises the
same source rows to JSON lines with the standard library ``json``, in the same run.

Run from the repository root:

    .venv/bin/python bench/fhir_export.py                 # 5,000 patients on SQLite
    .venv/bin/python bench/fhir_export.py --full          # the issue's size: 100,000 patients
    .venv/bin/python bench/fhir_export.py --patients 20000 --backends sqlite,postgresql

The database is filled (in a child process, so its memory stays out of the figures) by the
registry benchmark's generator (``bench/registry.py``: patients, treatment plans, sessions,
adverse events, follow-up questionnaires answered item by item, MME readings), with fast
multi-row inserts. Then, timed:

1. the export: ``bulk.kick_off`` (system level, every type) and ``bulk.run_pending`` (the worker's
   pass: claim, read every mapper in one snapshot, write NDJSON, per-patient audit entries);
2. the baseline: every row of the same source tables selected with SQLAlchemy Core and written
   as one ``json.dumps`` line each.

Printed: resources/s, rows/s, the time ratio export / baseline, peak RSS after each step
(``resource.getrusage``). It measures; it never asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from registry import generate, on_each_backend  # noqa: E402
from sqlalchemy import Engine, func, select  # noqa: E402

from ketacare import migrations, models  # noqa: E402
from ketacare.auth.principal import Principal  # noqa: E402
from ketacare.auth.roles import Role  # noqa: E402
from ketacare.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from ketacare.interop.fhir import bulk  # noqa: E402

SKIP_TABLES = {"alembic_version", "audit_entries", "audit_heads", "fhir_export_jobs", "fhir_export_files"}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fill(url: str, patients: int, seed: int) -> tuple[int, float]:
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        t0 = time.perf_counter()
        rows = generate(engine, patients, 10, 50, seed)
        return rows, time.perf_counter() - t0
    finally:
        engine.dispose()


def _source_tables(engine: Engine) -> list[str]:
    names = []
    with engine.connect() as conn:
        for name, table in models.metadata.tables.items():
            if name in SKIP_TABLES:
                continue
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                names.append(name)
    return names


def export(engine: Engine, out: Path) -> tuple[dict[str, int], float]:
    factory = make_sessionmaker(engine)
    actor = Principal(1, "bench", Role.nurse, 1)
    t0 = time.perf_counter()
    with transaction(factory) as db:
        job = bulk.kick_off(db, actor, bulk.ExportParams(level="system", request_url="bench"))
        job_id = job.id
    reader_engine = bulk.snapshot_engine(engine)
    try:
        ran = bulk.run_pending(
            factory,
            bulk.RunOptions(export_dir=out, heartbeat_seconds=5.0),
            reader=make_sessionmaker(reader_engine),
        )
    finally:
        if reader_engine is not engine and engine.dialect.name == "sqlite":
            reader_engine.dispose()
    elapsed = time.perf_counter() - t0
    assert (job_id, "done") in ran, ran
    with factory() as db:
        found = db.get(bulk.FhirExportJob, job_id)
        assert found is not None
        return dict(found.counts), elapsed


def baseline(engine: Engine, tables: list[str], out: Path) -> tuple[int, float]:
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    t0 = time.perf_counter()
    with engine.connect() as conn:
        for name in tables:
            table = models.metadata.tables[name]
            with open(out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
                result = conn.execute(select(table).execution_options(yield_per=1000))
                for row in result.mappings():
                    handle.write(json.dumps(dict(row), default=str, separators=(",", ":")))
                    handle.write("\n")
                    rows += 1
    return rows, time.perf_counter() - t0


def run(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        written, fill_s = pool.apply(_fill, (url, args.patients, args.seed))
    print(f"[{name}] filled {written:,} rows in {fill_s:.1f} s", flush=True)
    engine = make_engine(url)
    try:
        tables = _source_tables(engine)
        with tempfile.TemporaryDirectory() as tmp:
            counts, export_s = export(engine, Path(tmp) / "fhir")
            export_rss = _rss_mib()
            rows, base_s = baseline(engine, tables, Path(tmp) / "jsonl")
            base_rss = _rss_mib()
            ndjson_mib = sum(p.stat().st_size for p in (Path(tmp) / "fhir").rglob("*.ndjson")) / 2**20
    finally:
        engine.dispose()
    resources = sum(counts.values())
    figures = {
        "backend": name,
        "patients": args.patients,
        "resources": resources,
        "per_type": counts,
        "export_s": round(export_s, 2),
        "export_resources_per_s": round(resources / export_s),
        "baseline_rows": rows,
        "baseline_tables": len(tables),
        "baseline_s": round(base_s, 2),
        "baseline_rows_per_s": round(rows / base_s),
        "time_ratio_export_over_baseline": round(export_s / base_s, 2),
        "rate_ratio": round((resources / export_s) / (rows / base_s), 2),
        "ndjson_mib": round(ndjson_mib, 1),
        "peak_rss_mib_after_export": round(export_rss),
        "peak_rss_mib_after_baseline": round(base_rss),
    }
    print(f"[{name}] " + json.dumps(figures), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="100,000 patients (the issue's size)")
    parser.add_argument("--patients", type=int, default=5_000)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.full:
        args.patients = 100_000
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {args.patients:,} patients", flush=True)
    on_each_backend(args.backends, run, args)


if __name__ == "__main__":
    main()
