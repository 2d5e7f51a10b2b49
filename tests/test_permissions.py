"""Every route declares its permission; every patient route is tried by every role."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from ketacare.auth.permissions import PUBLIC_ROUTES
from ketacare.web.deps import PERMISSION_MARKER


def _markers(dependant) -> list[str]:  # type: ignore[no-untyped-def]
    found = []
    for dep in dependant.dependencies:
        marker = getattr(dep.call, PERMISSION_MARKER, None)
        if marker:
            found.append(marker)
        found.extend(_markers(dep))
    return found


def all_routes(routes):  # type: ignore[no-untyped-def]
    """Every route, through included routers (FastAPI keeps them nested; none adds a prefix)."""
    for route in routes:
        if hasattr(route, "original_router"):
            assert not route.include_context.prefix
            yield from all_routes(route.original_router.routes)
        else:
            yield route


def test_every_route_declares_a_permission(app) -> None:
    missing, public_without_listing = [], []
    routes = list(all_routes(app.routes))
    assert sum(isinstance(r, APIRoute) for r in routes) >= 40
    for route in routes:
        if isinstance(route, APIRoute):
            markers = _markers(route.dependant)
            if not markers:
                missing.append(f"{sorted(route.methods)} {route.path}")
            if "public" in markers and route.path not in PUBLIC_ROUTES:
                public_without_listing.append(route.path)
        elif isinstance(route, Mount | Route):
            assert route.path in PUBLIC_ROUTES, f"{route.path} is neither declared nor listed public"
    assert not missing, f"routes without a declared permission: {missing}"
    assert not public_without_listing, f"public routes not in PUBLIC_ROUTES: {public_without_listing}"


STAFF = {"admin", "prescriber", "nurse"}
OTHERS = {"researcher", "auditor", "patient_a", "patient_b"}


def _patient_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    found = []
    for route in all_routes(app.routes):
        # Routes of the patient record itself; screening and planning routes, whose
        # permissions differ by role, are walked in tests/planning/test_plan_permissions.py.
        if (
            isinstance(route, APIRoute)
            and "{patient_id}" in route.path
            and {m.split(" ")[0] for m in _markers(route.dependant)} & {"patient:read", "patient:write"}
        ):
            found.extend((method, route.path) for method in sorted(route.methods - {"HEAD"}))
    return found


# A valid body for each kind of write, so that only permissions decide the outcome.
VALID = {
    "measurements": {"weight_kg": "70", "measured_on": "2026-01-02"},
    "conditions": {"icd10_code": "M79.7"},
    "medications": {"name": "Gabapentin", "drug_class": "anticonvulsant"},
    "allergies": {"substance": "Latex", "severity": "mild"},
    "edit": {"given_name": "Ada", "family_name": "Lovelace", "date_of_birth": "1980-05-17", "sex": "female"},
    "{patient_id}": {"phone": "555-0100"},
}


def _call(client, method: str, template: str, patient_id: int):  # type: ignore[no-untyped-def]
    url = template.format(patient_id=patient_id, section="allergies", item_id=999999)
    last = template.rstrip("/").split("/")[-1]
    body = VALID.get("allergies" if last == "{section}" else last, {})
    if url.startswith("/api/"):
        return client.api(method, url, json=body if method in ("POST", "PATCH", "PUT") else None)
    if method == "GET":
        return client.get(url, follow_redirects=False)
    return client.post(url, body, follow_redirects=False)


@pytest.mark.parametrize("role", sorted(STAFF | OTHERS | {"outsider", "outsider_nurse"}))
def test_every_patient_route_as_every_role(app, as_role, world, role) -> None:
    """Walks every route that takes a patient id: staff get through, other roles of the
    clinic are refused, and for a user of another clinic the patient does not exist."""
    client = as_role(role)
    routes = _patient_routes(app)
    assert len(routes) >= 10
    for method, template in routes:
        status = _call(client, method, template, world.patient_a.id).status_code
        if role in STAFF:
            expected = (404,) if "{item_id}" in template else (200, 201, 204, 303)
            assert status in expected, (role, method, template, status)
        elif role in OTHERS:
            assert status == 403, (role, method, template, status)
        else:
            assert status == 404, (role, method, template, status)


# A few patient routes in detail: every role's exact outcome.
PATIENT_ROUTES = [
    ("GET", "/patients/{a}"),
    ("GET", "/api/v1/patients/{a}"),
    ("GET", "/api/v1/patients"),
    ("PATCH", "/api/v1/patients/{a}"),
    ("POST", "/api/v1/patients/{a}/allergies"),
]
BODIES = {"PATCH": {"phone": "555-0100"}, "POST": {"substance": "Latex", "severity": "mild"}}
EXPECTED = {
    # role: status for reads, status for writes
    "admin": (200, (200, 201)),
    "prescriber": (200, (200, 201)),
    "nurse": (200, (200, 201)),
    "researcher": (403, (403,)),
    "auditor": (403, (403,)),
    "patient_a": (403, (403,)),
    "patient_b": (403, (403,)),
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_patient_routes_by_role(as_role, world, role) -> None:
    client = as_role(role)
    read_status, write_statuses = EXPECTED[role]
    for method, template in PATIENT_ROUTES:
        url = template.format(a=world.patient_a.id)
        if method == "GET":
            response = client.get(url) if not url.startswith("/api") else client.api("GET", url)
            assert response.status_code == read_status, (role, url)
        else:
            response = client.api(method, url, json=BODIES[method])
            assert response.status_code in write_statuses, (role, method, url, response.text)


@pytest.mark.parametrize("role", ["outsider", "outsider_nurse"])
def test_other_clinic_sees_nothing(as_role, world, db, role) -> None:
    from tests.helpers import audit_entries

    client = as_role(role)
    pid = world.patient_a.id
    assert client.get(f"/patients/{pid}").status_code == 404
    assert client.api("GET", f"/api/v1/patients/{pid}").status_code == 404
    assert client.api("PATCH", f"/api/v1/patients/{pid}", json={"phone": "1"}).status_code == 404
    listing = client.api("GET", "/api/v1/patients", params={"q": "Lovelace"}).json()
    assert listing["total"] == 0
    denied = audit_entries(db, "patient.read", outcome="denied", patient_id=pid)
    assert denied and denied[0].detail == "patient of another clinic"


def test_patient_sees_only_own_record(as_role, world) -> None:
    patient_a = as_role("patient_a")
    own = patient_a.api("GET", "/api/v1/me")
    assert own.status_code == 200 and own.json()["id"] == world.patient_a.id
    assert patient_a.get("/me").status_code == 200
    assert patient_a.get(f"/patients/{world.patient_b.id}").status_code == 403
    assert as_role("nurse").api("GET", "/api/v1/me").status_code == 403


def test_unauthenticated_api_gets_401_problem(browser, world) -> None:
    response = browser().client.get(f"/api/v1/patients/{world.patient_a.id}")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
