"""After five wrong passwords for one user, even the right password is refused for a while."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

USERNAME = "researcher.bay"
WRONG_TRIES = 5  # Settings.login_max_failures_per_user


def _submit(page, username: str, password: str) -> int:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    return int(posted.value.status)


def test_five_wrong_passwords_then_right_one_is_throttled(page, server, browser_context) -> None:
    from ketacare.demo import DEMO_PASSWORD

    page.goto("/login")
    for attempt in range(WRONG_TRIES):
        assert _submit(page, USERNAME, f"not-the-password-{attempt}") == 401
        alert = page.get_by_role("alert")
        assert alert.inner_text() == "The username or password is not right."
        assert page.get_by_label("Username").input_value() == USERNAME, "username should be kept"
        assert page.get_by_label("Password").input_value() == "", "a password is never echoed back"

    assert _submit(page, USERNAME, DEMO_PASSWORD) == 429
    assert page.get_by_role("heading", level=1).inner_text() == "Too many attempts"
    body = page.locator("main").inner_text()
    # A delay that grows with each failure (NIST SP 800-63B), never a lock-out.
    assert "Too many failed attempts for this account" in body
    assert "Wait 30 seconds" in body

    # Not logged in: no session cookie, no session row, and the dashboard sends to the log-in page.
    assert "ketacare_session" not in {c["name"] for c in browser_context.cookies()}
    sessions = server.scalar(
        "SELECT count(*) FROM login_sessions WHERE user_id = (SELECT id FROM users WHERE username = ?)",
        USERNAME,
    )
    assert sessions == 0
    page.goto("/")
    assert "/login" in page.url
    assert page.get_by_role("heading", name="Log in to KetaCare").is_visible()
