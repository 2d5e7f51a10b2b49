"""The registry's columnar reader for SQLite, run as a child process by
``extract._sqlite_read_in_child`` (ADBC's SQLite library must not share a process with the
app's). Reads a JSON request on standard input: the database path, the queries by table name
and the directory to write ``<name>.arrow`` files into."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ketacare.analytics.adbc import write_tables


def main() -> int:
    request = json.load(sys.stdin)
    write_tables(request["database"], request["queries"], Path(request["out_dir"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
