"""A login session left idle longer than the timeout ends: the next page is the log-in page, saying why."""

from __future__ import annotations

import datetime as dt
import re

import pytest

pytestmark = pytest.mark.browser

USERNAME = "auditor.north"
# SQLAlchemy's SQLite DateTime stores naive UTC text like "2026-11-22 03:55:00.123456".
SQLITE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?$")
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
OPEN_SESSIONS = (
    "FROM login_sessions WHERE ended_at IS NULL AND user_id = (SELECT id FROM users WHERE username = ?)"
)


def test_idle_session_ends_and_login_page_says_why(page, server, login) -> None:
    login(page, USERNAME)
    page.goto("/account")
    assert page.url == f"{server.url}/account"

    with server.sql() as conn:
        rows = conn.execute(f"SELECT id, last_seen_at {OPEN_SESSIONS}", (USERNAME,)).fetchall()
        assert len(rows) == 1, rows
        session_id, last_seen = rows[0]
        assert SQLITE_DATETIME.match(last_seen), f"unexpected timestamp format {last_seen!r}"
        stored = dt.datetime.fromisoformat(last_seen).replace(tzinfo=dt.UTC)
        assert abs(dt.datetime.now(dt.UTC) - stored) < dt.timedelta(minutes=2), "not stored as UTC?"
        aged = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)).strftime(SQLITE_DATETIME_FORMAT)
        conn.execute("UPDATE login_sessions SET last_seen_at = ? WHERE id = ?", (aged, session_id))

    page.goto("/account")
    assert re.search(r"/login\?next=(/|%2F)account&reason=idle$", page.url), page.url
    assert page.get_by_role("heading", name="Log in to KetaCare").is_visible()
    assert page.get_by_role("status").inner_text() == "You were logged out after a period without activity."
    # The dashboard and every other page stay closed with the old cookie.
    page.goto("/")
    assert re.search(r"/login\?next=(/|%2F)&reason=idle$", page.url), page.url
    idle_audits = server.scalar(
        "SELECT count(*) FROM audit_entries WHERE action = 'auth.idle_logout' AND detail = ?", USERNAME
    )
    assert idle_audits >= 1
