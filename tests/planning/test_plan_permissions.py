"""Every screening and planning route by role: who may read, write, override, sign, set prices."""

from __future__ import annotations

import pytest

from tests.planning.conftest import crps_plan, make_ready

READ = [
    ("GET", "/patients/{a}/screening"),
    ("GET", "/patients/{a}/eligibility"),
    ("GET", "/patients/{a}/plans"),
    ("GET", "/api/v1/patients/{a}/eligibility"),
    ("GET", "/plans/{p}"),
    ("GET", "/api/v1/plans/{p}"),
    ("GET", "/plans/{p}/consent"),
    ("GET", "/planning/calendar"),
    ("GET", "/planning/protocols"),
    ("GET", "/api/v1/protocols"),
    ("GET", "/planning/duty"),
    ("GET", "/api/v1/duty?start=2030-01-01"),
]
WRITE_PLAN = [("GET", "/patients/{a}/plans/new")]
ADMIN = [("GET", "/planning/prices"), ("GET", "/api/v1/prices"), ("GET", "/api/v1/clinic-hours")]
SIGNER = [("GET", "/my/plans"), ("GET", "/my/plans/{p}/consent"), ("GET", "/api/v1/me/plans/{p}/consent")]
EXPECT = {
    # role: (read, plan write, admin, patient-own)
    "prescriber": (200, 200, 403, 403),
    "nurse": (200, 403, 403, 403),
    "admin": (200, 403, 200, 403),
    "researcher": (403, 403, 403, 403),
    "auditor": (403, 403, 403, 403),
    "patient_a": (403, 403, 403, 200),
    "patient_b": (403, 403, 403, 403),
}


@pytest.mark.parametrize("role", sorted(EXPECT))
def test_routes_by_role(as_role, world, db, role) -> None:
    dr = as_role("prescriber")
    make_ready(dr, world.patient_a.id)
    plan = dr.api("POST", f"/api/v1/patients/{world.patient_a.id}/plans", json=crps_plan()).json()
    client = dr if role == "prescriber" else as_role(role)
    for group, expected in zip((READ, WRITE_PLAN, ADMIN, SIGNER), EXPECT[role], strict=True):
        for method, template in group:
            url = template.format(a=world.patient_a.id, p=plan["id"])
            response = client.api(method, url) if url.startswith("/api/") else client.get(url)
            want = 200 if role == "patient_b" and url == "/my/plans" else expected  # own empty list
            assert response.status_code == want, (role, url, response.status_code)
