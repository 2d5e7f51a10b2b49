"""The registry extract: one read-only pass over the tables the registry needs, into pandas
frames. This is the one place that reads across features' tables (read-only, through the shared
metadata, never their model classes): a warehouse extract whose frames are also what the
de-identified Parquet export writes, so that DuckDB can run the same aggregates over it."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import URL, Engine, Table, select, text
from sqlalchemy.orm import Session

from ketacare import models
from ketacare.analytics import adbc

log = logging.getLogger("ketacare")
FRAMES = ("patients", "series", "sessions", "adverse_events", "scores", "follow_ups", "mme", "diary")


@dataclass
class Extract:
    patients: pd.DataFrame
    series: pd.DataFrame
    sessions: pd.DataFrame
    adverse_events: pd.DataFrame
    scores: pd.DataFrame
    follow_ups: pd.DataFrame
    mme: pd.DataFrame
    diary: pd.DataFrame
    # each clinic's baseline look-back (not exported: the series carry it)
    settings: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["clinic_id", "baseline_lookback_days"])
    )

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in FRAMES}


def _t(name: str) -> Table:
    return models.metadata.tables[name]


def _frame(db: Session, query: object, columns: list[str]) -> pd.DataFrame:
    rows = db.execute(query).all()  # type: ignore[call-overload]
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def extract(db: Session, clinic_id: int | None) -> Extract:
    """Everything the registry reads, for one clinic (``None``: every clinic)."""

    def scoped(table: Table, query: object) -> object:
        return query if clinic_id is None else query.where(table.c.clinic_id == clinic_id)  # type: ignore[attr-defined]

    p, tp, ts = _t("patients"), _t("treatment_plans"), _t("treatment_sessions")
    ae, sc, fu = _t("adverse_events"), _t("outcome_scores"), _t("outcome_follow_ups")
    mm, di, st = _t("outcome_mme"), _t("outcome_diary"), _t("outcome_settings")
    patients = _frame(
        db,
        scoped(p, select(p.c.id, p.c.clinic_id, p.c.date_of_birth, p.c.sex, p.c.postal_code, p.c.state)),
        ["patient_id", "clinic_id", "date_of_birth", "sex", "postal_code", "state"],
    )
    series = _frame(
        db,
        scoped(
            tp,
            select(
                tp.c.id,
                tp.c.clinic_id,
                tp.c.patient_id,
                tp.c.purpose,
                tp.c.status,
                tp.c.protocol_key,
                tp.c.route,
                tp.c.indication,
                tp.c.sessions,
                tp.c.start_date,
            ),
        ),
        [
            "plan_id",
            "clinic_id",
            "patient_id",
            "purpose",
            "plan_status",
            "protocol",
            "route",
            "condition",
            "planned_sessions",
            "planned_start",
        ],
    )
    sessions = _frame(
        db,
        scoped(
            ts, select(ts.c.id, ts.c.clinic_id, ts.c.patient_id, ts.c.plan_id, ts.c.status, ts.c.started_at)
        ),
        ["session_id", "clinic_id", "patient_id", "plan_id", "status", "started_at"],
    )
    adverse = _frame(
        db,
        scoped(
            ae,
            select(
                ae.c.id,
                ae.c.clinic_id,
                ae.c.patient_id,
                ae.c.session_id,
                ae.c.term_key,
                ae.c.term,
                ae.c.grade,
                ae.c.serious,
                ae.c.needed_intervention,
                ae.c.onset_at,
            ),
        ),
        [
            "ae_id",
            "clinic_id",
            "patient_id",
            "session_id",
            "term_key",
            "term",
            "grade",
            "serious",
            "needed_intervention",
            "onset_at",
        ],
    )
    scores = _frame(
        db,
        scoped(
            sc,
            select(
                sc.c.id,
                sc.c.clinic_id,
                sc.c.patient_id,
                sc.c.follow_up_id,
                sc.c.instrument,
                sc.c.timepoint,
                sc.c.score,
                sc.c.answered_at,
                fu.c.series_end_on,
                fu.c.days_after_series,
                fu.c.plan_id,
            ).join(fu, fu.c.id == sc.c.follow_up_id),
        ),
        [
            "score_id",
            "clinic_id",
            "patient_id",
            "follow_up_id",
            "instrument",
            "timepoint",
            "score",
            "answered_at",
            "series_end_on",
            "days_after_series",
            "plan_id",
        ],
    )
    follow_ups = _frame(
        db,
        scoped(
            fu,
            select(
                fu.c.id,
                fu.c.clinic_id,
                fu.c.patient_id,
                fu.c.plan_id,
                fu.c.timepoint,
                fu.c.days_after_series,
                fu.c.series_end_on,
                fu.c.due_on,
                fu.c.status,
                fu.c.completed_at,
            ),
        ),
        [
            "follow_up_id",
            "clinic_id",
            "patient_id",
            "plan_id",
            "timepoint",
            "days_after_series",
            "series_end_on",
            "due_on",
            "status",
            "completed_at",
        ],
    )
    mme = _frame(
        db,
        scoped(mm, select(mm.c.id, mm.c.clinic_id, mm.c.patient_id, mm.c.measured_on, mm.c.mme_per_day)),
        ["mme_id", "clinic_id", "patient_id", "measured_on", "mme_per_day"],
    )
    diary = _frame(
        db,
        scoped(di, select(di.c.id, di.c.clinic_id, di.c.patient_id, di.c.nrs, di.c.flare, di.c.recorded_at)),
        ["diary_id", "clinic_id", "patient_id", "nrs", "flare", "recorded_at"],
    )
    settings = _frame(
        db,
        scoped(st, select(st.c.clinic_id, st.c.baseline_lookback_days)),
        ["clinic_id", "baseline_lookback_days"],
    )
    return Extract(patients, series, sessions, adverse, scores, follow_ups, mme, diary, settings)


# --- the columnar extract the registry report runs on ----------------------------------------
#
# The registry needs a few columns of six tables (about 4 million rows at the 100,000
# patients). They are read straight into Arrow tables, filtered and with dates computed in the
# database, and the report runs its joins and aggregates in DuckDB over them (registry.py).
# Two readers: ADBC (Arrow Database Connectivity: the driver fills Arrow buffers in C, four to
# five times faster than a Python cursor, bench/registry.md) on a connection of its own, and the
# session's own connection (a DB-API cursor on SQLite, COPY on PostgreSQL) where a second
# connection would not see what the session sees.

DATE = "date"


@dataclass(frozen=True)
class Source:
    """One table's extract: the columns as (name, Arrow type, SQL expression), FROM ... [WHERE]."""

    columns: tuple[tuple[str, pa.DataType, str], ...]
    body: str
    where: str = ""

    def sql(self, dialect: str, clinic_id: int | None, clinic_column: str) -> str:
        exprs = ", ".join(_expr(expr, typ, dialect) for _, typ, expr in self.columns)
        scope = "" if clinic_id is None else f"{clinic_column} = {int(clinic_id)}"
        conds = " AND ".join(c for c in (self.where, scope) if c)
        # every part is a constant of this module or an int
        return f"SELECT {exprs} FROM {self.body}" + (f" WHERE {conds}" if conds else "")  # noqa: S608

    def schema(self) -> pa.Schema:
        return pa.schema([(name, typ) for name, typ, _ in self.columns])


def _expr(expr: str, typ: pa.DataType, dialect: str) -> str:
    """A date column as the UTC day: SQLite stores UTC text (its first ten characters), PostgreSQL
    timestamptz (``AT TIME ZONE 'UTC'``; a date column stays as it is)."""
    if not expr.startswith(DATE + ":"):
        return expr
    column, stamp = expr.split(":")[1], expr.endswith(":stamp")
    if dialect == "sqlite":
        return f"substr({column}, 1, 10)"
    return f"({column} AT TIME ZONE 'UTC')::date" if stamp else column


I64, F64, STR, BOOL, DAY = pa.int64(), pa.float64(), pa.string(), pa.bool_(), pa.date32()

SOURCES: dict[str, tuple[Source, str]] = {
    # name: (source, the column that scopes it to a clinic)
    "series": (
        Source(
            (
                ("plan_id", I64, "id"),
                ("clinic_id", I64, "clinic_id"),
                ("patient_id", I64, "patient_id"),
                ("condition", STR, "indication"),
                ("route", STR, "route"),
                ("protocol", STR, "protocol_key"),
            ),
            "treatment_plans",
        ),
        "clinic_id",
    ),
    "sessions": (
        Source(
            (
                ("session_id", I64, "id"),
                ("plan_id", I64, "plan_id"),
                ("status", STR, "status"),
                ("started_on", DAY, "date:started_at:stamp"),
            ),
            "treatment_sessions",
        ),
        "clinic_id",
    ),
    "adverse_events": (
        Source(
            (
                ("session_id", I64, "session_id"),
                ("patient_id", I64, "patient_id"),
                ("term_key", STR, "term_key"),  # the catalogue key, never the free text
                ("grade", I64, "grade"),
                ("needed_intervention", BOOL, "needed_intervention"),
            ),
            "adverse_events",
            "session_id IS NOT NULL",
        ),
        "clinic_id",
    ),
    # NRS (not the end-of-session score, taken in recovery: neither a baseline nor a follow-up)
    # and PGIC, of questionnaires that exist, with the series a follow-up belongs to
    "scores": (
        Source(
            (
                ("patient_id", I64, "sc.patient_id"),
                ("plan_id", I64, "fu.plan_id"),
                ("follow_up_id", I64, "sc.follow_up_id"),
                ("timepoint", STR, "sc.timepoint"),
                ("instrument", STR, "sc.instrument"),
                ("on_day", DAY, "date:sc.answered_at:stamp"),
                ("score", F64, "sc.score"),
            ),
            "outcome_scores sc JOIN outcome_follow_ups fu ON fu.id = sc.follow_up_id",
            "((sc.instrument = 'nrs' AND sc.timepoint <> 'end_of_session') OR sc.instrument = 'pgic')",
        ),
        "sc.clinic_id",
    ),
    # the follow-ups after a series, each with its series (baseline and end-of-session
    # questionnaires are not follow-ups)
    "follow_ups": (
        Source(
            (
                ("patient_id", I64, "patient_id"),
                ("plan_id", I64, "plan_id"),
                ("days_after_series", I64, "days_after_series"),
                ("due_on", DAY, "date:due_on"),
                ("completed", BOOL, "status = 'completed'"),
            ),
            "outcome_follow_ups",
            "status <> 'cancelled' AND plan_id IS NOT NULL AND days_after_series IS NOT NULL",
        ),
        "clinic_id",
    ),
    "mme": (
        Source(
            (
                ("patient_id", I64, "patient_id"),
                ("measured_on", DAY, "date:measured_on"),
                ("mme_per_day", F64, "mme_per_day"),
            ),
            "outcome_mme",
            "mme_per_day IS NOT NULL",
        ),
        "clinic_id",
    ),
    "settings": (
        Source(
            (("clinic_id", I64, "clinic_id"), ("baseline_lookback_days", I64, "baseline_lookback_days")),
            "outcome_settings",
        ),
        "clinic_id",
    ),
}


@dataclass
class Columns:
    """What the registry report reads, as Arrow tables (schemas: ``SOURCES``)."""

    series: pa.Table
    sessions: pa.Table
    adverse_events: pa.Table
    scores: pa.Table
    follow_ups: pa.Table
    mme: pa.Table
    settings: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        return {name: getattr(self, name) for name in SOURCES}


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Name and type the columns as ``schema`` says (drivers differ: int32 or int64, text dates)."""
    arrays = []
    for array, target in zip(table.columns, schema, strict=True):
        if array.null_count == len(array):  # SQLite's driver types an all-NULL column as int64
            array = pa.chunked_array([pa.nulls(len(array), target.type)])
        elif array.type != target.type:
            if target.type == BOOL and pa.types.is_integer(array.type):
                array = pc.not_equal(array, 0)
            else:
                array = array.cast(target.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def columns(db: Session, clinic_id: int | None) -> Columns:
    """The registry's columns for one clinic (``None``: every clinic).

    Through ADBC when a connection of its own sees the same rows: the session runs its own
    transaction on the engine and has written nothing in it (PostgreSQL says so exactly; on
    SQLite the caller must not have flushed writes, which the registry's read-only use-cases
    never do). Otherwise, as in a caller's transaction that is rolled back later, through the
    session's own connection.
    """
    bind = db.get_bind()
    dialect = bind.dialect.name
    sql = {name: src.sql(dialect, clinic_id, col) for name, (src, col) in SOURCES.items()}
    if _second_connection_sees_all(db):
        url = bind.engine.url
        raw = adbc.read(url, sql) if dialect == "postgresql" else _sqlite_read_in_child(db, url, sql)
    else:
        raw = {name: _session_read(db, q, SOURCES[name][0].schema()) for name, q in sql.items()}
    return Columns(**{name: _conform(t, SOURCES[name][0].schema()) for name, t in raw.items()})


def _second_connection_sees_all(db: Session) -> bool:
    bind = db.get_bind()
    if not isinstance(bind, Engine) or db.new or db.dirty or db.deleted:
        return False
    if bind.dialect.name == "postgresql":
        # no transaction id yet: this transaction has written nothing
        return bool(db.execute(text("SELECT pg_current_xact_id_if_assigned() IS NULL")).scalar())
    return bind.dialect.name == "sqlite" and bind.url.database not in (None, "", ":memory:")


def _sqlite_read_in_child(db: Session, url: URL, sql: dict[str, str]) -> dict[str, pa.Table]:
    """ADBC's SQLite driver links a SQLite library of its own. Two SQLite libraries in one process
    break each other's POSIX file locks on the same database (sqlite.org, "How To Corrupt An
    SQLite Database File", 2.2.1: closing a file in one releases the other's locks), and the app's
    own writes were seen to go missing. So the fast columnar read runs in a child process, which
    holds locks of its own like any other reader, and hands the tables back as Arrow IPC files.
    Should the child fail, the tables are read through the session's own connection instead."""
    with tempfile.TemporaryDirectory(prefix="ketacare-registry-") as out_dir:
        request = json.dumps({"database": str(url.database), "queries": sql, "out_dir": out_dir})
        child = subprocess.run(
            [sys.executable, "-m", "ketacare.analytics.sqlite_reader"],
            input=request,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if child.returncode == 0:
            tables = {}
            for name in sql:
                with pa.OSFile(str(Path(out_dir) / f"{name}.arrow")) as source:
                    tables[name] = pa.ipc.open_file(source).read_all()
            return tables
    log.warning("registry: the columnar reader failed (%s); reading in process", child.stderr[-500:])
    return {name: _session_read(db, q, SOURCES[name][0].schema()) for name, q in sql.items()}


CHILD_TIMEOUT_S = 600
BATCH_ROWS = 100_000


def _session_read(db: Session, sql: str, schema: pa.Schema) -> pa.Table:
    """Through the session's connection: SQLite in batches of rows turned into Arrow arrays (no
    row objects kept), PostgreSQL as CSV from ``COPY`` parsed by Arrow."""
    dbapi = db.connection().connection
    if db.get_bind().dialect.name == "postgresql":
        buffer = io.BytesIO()
        with dbapi.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:  # type: ignore[attr-defined]
            for block in copy:
                buffer.write(block)
        if not buffer.tell():
            return schema.empty_table()
        buffer.seek(0)
        return pacsv.read_csv(
            buffer,
            read_options=pacsv.ReadOptions(column_names=schema.names),
            convert_options=pacsv.ConvertOptions(
                column_types=schema,
                true_values=["t"],
                false_values=["f"],
                strings_can_be_null=True,  # NULL is unquoted and empty, an empty text quoted
                quoted_strings_can_be_null=False,
            ),
        )
    cur = dbapi.cursor()
    batches = []
    try:
        cur.execute(sql)
        while rows := cur.fetchmany(BATCH_ROWS):
            batches.append(
                pa.record_batch(
                    [
                        pa.array(col, _wire(f.type))
                        for col, f in zip(zip(*rows, strict=True), schema, strict=True)
                    ],
                    names=schema.names,
                )
            )
    finally:
        cur.close()
    if not batches:
        return pa.Table.from_arrays([pa.array([], _wire(f.type)) for f in schema], names=schema.names)
    return pa.Table.from_batches(batches)


def _wire(typ: pa.DataType) -> pa.DataType:
    """How SQLite hands a column over: dates as text, booleans as integers."""
    return STR if typ == DAY else I64 if typ == BOOL else typ


def columnar(ex: Extract) -> Columns:
    """An in-memory ``Extract`` (pandas) as the registry's columns, filtered as ``SOURCES`` says."""
    ae, sc, fu, mm = ex.adverse_events, ex.scores, ex.follow_ups, ex.mme
    nrs = (sc["instrument"] == "nrs") & (sc["timepoint"] != "end_of_session")
    sc = sc[nrs | (sc["instrument"] == "pgic")]
    frames = {
        "series": (ex.series, ["plan_id", "clinic_id", "patient_id", "condition", "route", "protocol"]),
        "sessions": (ex.sessions, ["session_id", "plan_id", "status", "started_at"]),
        "adverse_events": (
            ae[ae["session_id"].notna()],
            ["session_id", "patient_id", "term_key", "grade", "needed_intervention"],
        ),
        "scores": (
            sc,
            ["patient_id", "plan_id", "follow_up_id", "timepoint", "instrument", "answered_at", "score"],
        ),
        "follow_ups": (
            fu[(fu["status"] != "cancelled") & fu["plan_id"].notna() & fu["days_after_series"].notna()],
            ["patient_id", "plan_id", "days_after_series", "due_on", "status"],
        ),
        "mme": (mm[mm["mme_per_day"].notna()], ["patient_id", "measured_on", "mme_per_day"]),
        "settings": (ex.settings, ["clinic_id", "baseline_lookback_days"]),
    }
    tables = {}
    for name, (frame, names) in frames.items():
        schema = SOURCES[name][0].schema()
        arrays = [_array(frame[col].tolist(), f.type) for col, f in zip(names, schema, strict=True)]
        if name == "follow_ups":  # the status as "completed"
            arrays[-1] = pa.array((frame["status"] == "completed").tolist(), BOOL)
        tables[name] = pa.Table.from_arrays(arrays, schema=schema)
    return Columns(**tables)


def _array(values: list[Any], typ: pa.DataType) -> pa.Array:
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and v != v)  # NaN

    if typ == DAY:
        return pa.array([None if missing(v) else _day(v) for v in values], DAY)
    if typ == BOOL:
        return pa.array([None if missing(v) else bool(v) for v in values], BOOL)
    if typ == I64:
        return pa.array([None if missing(v) else int(v) for v in values], I64)
    return pa.array([None if missing(v) else v for v in values], typ)


def _day(value: Any) -> dt.date:
    """A timestamp's UTC day, or a date."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    if isinstance(value, dt.date):
        return value
    day: dt.date = pd.Timestamp(value).date()
    return day
