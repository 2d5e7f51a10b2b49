from __future__ import annotations

from ketacare.auth import service as auth
from ketacare.auth.models import Role
from tests.helpers import PASSWORD, audit_entries, next_code


def _password_step(b, user) -> str:  # type: ignore[no-untyped-def]
    b.refresh_csrf()
    response = b.post("/login", {"username": user.username, "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 303
    b.refresh_csrf_from_cookie()
    return response.headers["location"]


def test_prescriber_needs_code_before_any_page(browser, world) -> None:
    b = browser()
    assert _password_step(b, world.users["prescriber"]).startswith("/login/mfa")
    blocked = b.get("/patients", follow_redirects=False)
    assert blocked.status_code == 303 and blocked.headers["location"].startswith("/login/mfa")
    api = b.api("GET", "/api/v1/patients")
    assert api.status_code == 401


def test_wrong_code_is_refused_and_audited(browser, world, db) -> None:
    b = browser()
    _password_step(b, world.users["prescriber"])
    wrong = b.post("/login/mfa", {"code": "000000"})
    assert wrong.status_code == 422
    assert "not right" in wrong.text
    assert audit_entries(db, "auth.mfa", outcome="failure")
    right = b.post("/login/mfa", {"code": next_code(world.users["prescriber"])})
    assert right.status_code == 200
    assert b.get("/patients").status_code == 200


def test_admin_without_totp_must_enrol(browser, world, db) -> None:
    admin = world.users["admin"]
    admin.totp_secret, admin.totp_enrolled = None, False
    db.commit()
    b = browser()
    _password_step(b, admin)
    page = b.get("/login/mfa")
    assert page.url.path == "/account/mfa/enroll"
    assert "<svg" in page.text  # QR code rendered locally, no external service
    db.refresh(admin)
    assert admin.totp_secret
    done = b.post("/account/mfa/enroll", {"code": next_code(admin), "next": "/"})
    assert done.status_code == 200
    db.refresh(admin)
    assert admin.totp_enrolled
    assert audit_entries(db, "auth.mfa_enrolled")


def test_promotion_to_prescriber_requires_enrolment(browser, world, db) -> None:
    nurse_browser = browser("nurse", world)
    auth.set_role(db, None, world.users["nurse"], Role.prescriber, auth.PrescriberKind.physician)
    db.commit()
    response = nurse_browser.get("/patients", follow_redirects=False)
    assert response.headers["location"].startswith("/login/mfa")
    assert audit_entries(db, "user.set_role")[0].detail == "nurse.t: nurse -> prescriber"


def test_a_code_works_only_once(browser, world, db) -> None:
    prescriber = world.users["prescriber"]
    first = browser()
    _password_step(first, prescriber)
    code = next_code(prescriber)
    assert first.post("/login/mfa", {"code": code}).status_code == 200
    second = browser()
    _password_step(second, prescriber)
    assert second.post("/login/mfa", {"code": code}).status_code == 422
