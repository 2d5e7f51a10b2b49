"""Devices and other systems use scoped, revocable tokens; tokens never manage users or the audit."""

from __future__ import annotations

import re

from ketacare.auth.models import ApiToken
from tests.helpers import audit_entries, count, is_problem

SECRET = re.compile(r'<code class="secret">(kc_[^<]+)</code>')


def _create(admin, name: str, scopes: list[str]) -> str:  # type: ignore[no-untyped-def]
    page = admin.client.post("/admin/tokens", data={"csrf_token": admin.csrf, "name": name, "scopes": scopes})
    assert page.status_code == 200, page.text
    match = SECRET.search(page.text)
    assert match
    return match.group(1)


def test_token_reads_patients_of_its_clinic_only(as_role, browser, world, db) -> None:
    secret = _create(as_role("admin"), "Monitor bay 3", ["patient:read"])
    client = browser().client
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get(f"/api/v1/patients/{world.patient_a.id}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/patients/{world.other_patient.id}", headers=headers).status_code == 404
    write = client.post("/api/v1/patients", json={}, headers=headers)
    assert is_problem(write, 403) or write.status_code == 422
    denied = client.post(
        "/api/v1/patients",
        json={"given_name": "A", "family_name": "B", "date_of_birth": "1990-01-01", "sex": "male"},
        headers=headers,
    )
    assert is_problem(denied, 403)
    assert client.get("/api/v1/users", headers=headers).status_code == 403
    assert client.get("/api/v1/audit", headers=headers).status_code == 403
    reads = audit_entries(db, "patient.read", patient_id=world.patient_a.id)
    assert reads[-1].username == "token:Monitor bay 3" and reads[-1].role == "api_token"


def test_only_the_hash_is_stored_and_revocation_works(as_role, browser, db) -> None:
    admin = as_role("admin")
    secret = _create(admin, "EHR bridge", ["patient:read", "patient:write"])
    token = db.query(ApiToken).one()
    assert secret not in token.token_sha256
    revoke = admin.post(f"/admin/tokens/{token.id}/revoke")
    assert revoke.status_code == 200
    client = browser().client
    assert is_problem(client.get("/api/v1/patients", headers={"Authorization": f"Bearer {secret}"}), 401)
    assert audit_entries(db, "token.revoke")


def test_bad_token_requests_change_nothing(as_role, db) -> None:
    admin = as_role("admin")
    page = admin.client.post(
        "/admin/tokens", data={"csrf_token": admin.csrf, "name": "", "scopes": ["audit:read"]}
    )
    assert page.status_code == 422
    assert "Choose scopes from" in page.text
    assert count(db, ApiToken) == 0


def test_nurse_cannot_create_tokens(as_role) -> None:
    assert as_role("nurse").get("/admin/tokens").status_code == 403
