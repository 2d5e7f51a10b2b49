"""Disclosure control, before and after: how many cells of 1 to 10 a reader of the research
report can see or work out exactly, with the former rule (groups of under 11 patients and AE
cells of under 11 patients blanked) and with ``analytics/disclosure.py``, on the same data.

Run from the repository root:

    .venv/bin/python bench/disclosure.py                      # a fresh demo database (150 a clinic)
    .venv/bin/python bench/disclosure.py --synthetic 2000     # the registry benchmark's generator
    .venv/bin/python bench/disclosure.py --database data/demo/ketacare.sqlite3

The reader is ``tests/analytics/attack.py``: it parses the report's CSVs, recovers counts from
percentages and rates beside their denominators, and subtracts along rows, columns and totals.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ketacare import demo, migrations
from ketacare.analytics import disclosure, extract, registry
from tests.analytics.attack import read_csv, small_cells_found, true_counts

LABELS = ("dimension", "group", "term", "grade", "suppressed")


def former_rule(report: registry.Report) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The research rows as the former rule made them from the unsuppressed report."""
    small = {(r["dimension"], r["group"]) for r in report.table("summary").rows if r["patients"] < 11}
    summary = [
        {k: (v if k in LABELS or (r["dimension"], r["group"]) not in small else None) for k, v in r.items()}
        for r in report.table("summary").rows
    ]
    adverse = [
        {k: (v if k in LABELS or r["patients"] >= 11 else None) for k, v in r.items()}
        for r in report.table("adverse_events").rows
        if (r["dimension"], r["group"]) not in small
    ]
    return summary, adverse


def as_csv(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import pandas as pd

    return read_csv(pd.DataFrame(rows).to_csv(index=False)) if rows else []


def measure(url: str) -> None:
    engine = create_engine(url)
    with Session(engine) as db:
        cols = extract.columns(db, None)
    as_of = dt.datetime.now(dt.UTC).date()
    truth_report = registry.build(disclosure.coded_columns(cols), as_of, research=False)
    truth = true_counts(truth_report.table("summary").rows, truth_report.table("adverse_events").rows)
    small = sum(1 for v in truth.values() if 0 < v < 11)
    before = small_cells_found(tuple(as_csv(t) for t in former_rule(truth_report)), truth)  # type: ignore[arg-type]
    research = registry.build(cols, as_of, research=True)
    after = small_cells_found(
        (as_csv(research.table("summary").rows), as_csv(research.table("adverse_events").rows)), truth
    )
    print(f"cells (counts the report rests on): {len(truth)}; of them 1-10: {small}")
    print(f"former rule: {len(before)} cells of 1-10 shown or derivable")
    print(f"disclosure control: {len(after)} cells of 1-10 shown or derivable")
    print(f"groups wholly suppressed: {research.suppressed_groups}")
    stars = sum(v == disclosure.HIDDEN for t in ("summary", "adverse_events") for r in research.table(t).rows
                for v in r.values())  # fmt: skip
    shown = sum(
        v not in (None, disclosure.HIDDEN) and k not in LABELS
        for t in ("summary", "adverse_events")
        for r in research.table(t).rows
        for k, v in r.items()
    )
    print(f"research report values: {shown} shown, {stars} withheld (*)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", type=Path, help="a KetaCare SQLite database (default: a fresh demo)")
    parser.add_argument("--patients", type=int, default=150, help="demo patients per clinic")
    parser.add_argument("--synthetic", type=int, help="patients from bench/registry.py's generator")
    args = parser.parse_args()
    if args.database:
        measure(f"sqlite:///{args.database}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/demo.sqlite3"
        engine = create_engine(url)
        migrations.upgrade(engine)
        if args.synthetic:
            from bench.registry import generate

            generate(engine, args.synthetic, 10, 50, 7)
        else:
            with Session(engine) as db:
                demo.seed(db, patients_per_clinic=args.patients)
                db.commit()
        engine.dispose()
        measure(url)


if __name__ == "__main__":
    main()
