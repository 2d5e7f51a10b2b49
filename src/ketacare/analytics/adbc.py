"""Columnar reads through ADBC (Arrow Database Connectivity): each table straight into Arrow.

Kept apart from ``extract`` so that the SQLite child process (``sqlite_reader``) starts without
the application: ADBC's SQLite driver must not run inside the app's process (see
``extract._sqlite_read_in_child``); on PostgreSQL it runs in process.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
from sqlalchemy import URL

# Tables read at once, each on an ADBC connection of its own (the drivers release the GIL while
# they read; on PostgreSQL the server works for each connection in a process of its own). Each
# read was already a statement of its own (autocommit), so this reads no less consistently.
READ_THREADS = 3
# largest first
READ_ORDER = ("sessions", "scores", "follow_ups", "mme", "series", "adverse_events", "settings")
SQLITE_BUSY_TIMEOUT_MS = 5_000


def read(url: URL, sql: dict[str, str]) -> dict[str, pa.Table]:
    """The queries through ADBC, the largest tables first, READ_THREADS at a time. The
    connections are opened one after another before any read and closed after the last: on a
    SQLite file in WAL mode a connection that opens while the last other one closes (and
    checkpoints) would find the database locked."""
    names = sorted(sql, key=READ_ORDER.index)
    conns: list[Any] = []
    try:
        for _ in range(min(READ_THREADS, len(names))):
            conns.append(_connect(url))
        free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for conn in conns:
            free.put(conn)

        def read(name: str) -> pa.Table:
            conn = free.get()
            try:
                return _query(conn, sql[name])
            finally:
                free.put(conn)

        with ThreadPoolExecutor(max_workers=len(conns), thread_name_prefix="registry-read") as pool:
            futures = {name: pool.submit(read, name) for name in names}
            return {name: futures[name].result() for name in sql}
    finally:
        for conn in conns:
            conn.close()


def _query(conn: Any, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        table: pa.Table = cur.fetch_arrow_table()
        return table


def _connect(url: URL) -> Any:
    if url.get_backend_name() == "sqlite":
        import adbc_driver_sqlite.dbapi

        # read-only, as a URI (the path quoted: it may hold "?" or "#"); the first read opens
        # the file (and its WAL index) here, before the threads start
        conn = adbc_driver_sqlite.dbapi.connect(f"file:{quote(str(url.database))}?mode=ro")
        try:
            with conn.cursor() as cur:
                cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                cur.execute("SELECT count(*) FROM sqlite_schema")
                cur.fetchall()
        except BaseException:
            conn.close()
            raise
        return conn
    import adbc_driver_postgresql.dbapi  # type: ignore[import-untyped]

    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return adbc_driver_postgresql.dbapi.connect(uri)


def write_tables(database: str, queries: dict[str, str], out_dir: Path) -> None:
    """The child's side: the queries through ADBC, each table written as an Arrow IPC file."""
    tables = read(URL.create("sqlite", database=database), queries)
    for name, table in tables.items():
        with (
            pa.OSFile(str(out_dir / f"{name}.arrow"), "wb") as sink,
            pa.ipc.new_file(sink, table.schema) as writer,
        ):
            writer.write_table(table)
