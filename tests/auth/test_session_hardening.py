"""Sessions (issue 15 item 6): a page's own polls are not activity, a poll after the login ended
shows "signed out" with a way back, the session id rotates at two-factor, CSRF tokens are bound
to the session, HSTS with secure cookies, and /api/docs under the same CSP as every page."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from ketacare.app import create_app
from ketacare.auth.models import LoginSession
from ketacare.db import utcnow
from tests.helpers import PASSWORD, next_code

POLL = {"HX-Request": "true", "X-KetaCare-Background": "poll", "Referer": "http://testserver/sessions-board"}


def _last_seen(db, minutes: int) -> None:  # type: ignore[no-untyped-def]
    db.execute(update(LoginSession).values(last_seen_at=utcnow() - dt.timedelta(minutes=minutes)))
    db.commit()


def test_board_polls_do_not_keep_a_login_alive(as_role, db) -> None:
    nurse = as_role("nurse")
    _last_seen(db, 10)
    assert nurse.get("/sessions-board/rows", headers=POLL).status_code == 200
    db.expire_all()
    seen = db.execute(select(LoginSession.last_seen_at)).scalar_one()
    assert utcnow() - seen > dt.timedelta(minutes=9)  # the poll did not count as activity
    nurse.get("/sessions-board")  # a person's own request does
    db.expire_all()
    assert utcnow() - db.execute(select(LoginSession.last_seen_at)).scalar_one() < dt.timedelta(minutes=1)


def test_a_poll_after_the_idle_timeout_shows_signed_out_with_a_link_and_stops(as_role, db) -> None:
    nurse = as_role("nurse")
    _last_seen(db, 16)
    fragment = nurse.get("/sessions-board/rows", headers=POLL)
    assert fragment.status_code == 286  # htmx swaps it in and stops polling
    assert "Signed out" in fragment.text and "sign in again" in fragment.text
    assert 'href="/login?next=/sessions-board&reason=idle"' in fragment.text


def test_two_factor_completion_rotates_the_session_token(browser, world) -> None:
    b = browser()
    b.refresh_csrf()
    response = b.client.post(
        "/login",
        data={"username": world.users["admin"].username, "password": PASSWORD, "csrf_token": b.csrf},
        follow_redirects=False,
    )
    assert response.headers["location"].startswith("/login/mfa")
    before = b.client.cookies.get("ketacare_session")
    b.refresh_csrf_from_cookie()
    done = b.post(
        "/login/mfa", {"code": next_code(world.users["admin"]), "next": "/"}, follow_redirects=False
    )
    assert done.status_code == 303
    after = b.client.cookies.get("ketacare_session")
    assert after and after != before
    # the pre-two-factor token no longer opens anything
    b.client.cookies.set("ketacare_session", before)
    assert b.get("/", follow_redirects=False).status_code == 303


def test_csrf_token_from_another_session_is_refused(as_role, world) -> None:
    nurse = as_role("nurse")
    stale = nurse.csrf
    nurse.refresh_csrf()  # same session: same token
    assert nurse.csrf == stale
    nurse.login(world.users["nurse"])  # a new session
    response = nurse.client.post("/logout", data={"csrf_token": stale})
    assert response.status_code == 403


def test_hsts_only_with_secure_cookies(browser, engine, session_factory, settings) -> None:
    assert "strict-transport-security" not in browser().client.get("/login").headers
    secure = create_app(
        settings.model_copy(update={"secure_cookies": True}), engine=engine, check_migrations=False
    )
    secure.state.sessionmaker = session_factory
    headers = TestClient(secure, base_url="https://testserver").get("/login").headers
    assert headers["strict-transport-security"].startswith("max-age=31536000")


def test_api_docs_carry_the_same_security_headers(browser) -> None:
    docs = browser().client.get("/api/docs")
    assert docs.status_code == 200
    assert "script-src 'self'" in docs.headers["content-security-policy"]
    assert docs.headers["x-frame-options"] == "DENY"
    assert "<script>" not in docs.text  # no inline script for the CSP to block
    assert "/static/swagger/swagger-init.js" in docs.text
