"""The registry's DuckDB stage (``registry.aggregate``) on its own: the same result whether its
tables are the Arrow tables the report registers or views over Parquet files (the benchmark's
same-aggregates baseline), and the statistics give the same figures from NumPy arrays as from
lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from ketacare.analytics import extract, registry, stats
from tests.analytics.random_cohort import fill

AS_OF = dt.date(2026, 11, 1)


def _plain(agg: registry.Aggregates) -> dict[str, Any]:
    groups = {
        key: {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in g.items()}
        for key, g in agg.groups.items()
    }
    return {
        "dimensions": agg.dimensions,
        "groups": groups,
        "cells": {k: sorted(v) for k, v in agg.cells.items()},
    }


def test_the_stage_over_parquet_views_is_the_stage_over_arrow(db: Session, tmp_path: Path) -> None:
    fill(db.connection(), 5)
    cols = extract.columnar(extract.extract(db, None))
    arrow = duckdb.connect()
    for name, table in cols.tables().items():
        arrow.register(name, table)
        pq.write_table(table, tmp_path / f"{name}.parquet")
    parquet = duckdb.connect()
    for name in extract.SOURCES:
        parquet.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{tmp_path / name}.parquet')")
    ours, theirs = registry.aggregate(arrow, AS_OF), registry.aggregate(parquet, AS_OF)
    assert ours.groups and ("all", "all") in ours.groups
    assert all(isinstance(g["mme_patient_changes"], np.ndarray) for g in ours.groups.values())
    assert _plain(ours) == _plain(theirs)


def test_the_statistics_from_arrays_are_the_statistics_from_lists() -> None:
    before, after = [60.0, 90.0, 30.0, 45.0, 0.0], [40.0, 90.0, 20.0, 30.0, 15.0]
    from_lists = stats.paired(before, after)
    from_arrays = stats.paired(np.array(before), np.array(after))
    assert from_lists == from_arrays
    assert stats.mean_ci(np.array(after)) == stats.mean_ci(after)
    empty = stats.paired(np.array([]), np.array([]))
    assert empty.n == 0 and empty.mean_change.value is None and empty.t_p is None
