"""Inputs that must never cost a 500 or be read whole: a body-size limit on every route, clinic
clock times without a UTC offset, a constraint the database enforces answered as a problem, and
405 with the Allow header (issue 15, item 7)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ketacare.app import create_app
from ketacare.auth import service as auth
from ketacare.auth.models import Clinic
from ketacare.validation import reasonable_date
from ketacare.web.deps import DbSession, public
from tests.helpers import count, is_problem

MIB = 1024 * 1024


@pytest.fixture
def small_limit_app(settings, engine, session_factory) -> FastAPI:  # type: ignore[no-untyped-def]
    limited = settings.model_copy(update={"max_request_body_bytes": 4096, "max_import_body_bytes": 16_384})
    application = create_app(limited, engine=engine, check_migrations=False)
    application.state.sessionmaker = session_factory
    return application


def _chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


# (path, method, content type, limit in the app above); a body one byte over is refused.
LIMITED = [
    ("/api/v1/patients", "POST", "application/json", 4096),
    ("/login", "POST", "application/x-www-form-urlencoded", 4096),
    ("/api/v1/clinic-hours", "PUT", "application/json", 4096),
    ("/fhir/R4/$import?source=lab", "POST", "application/fhir+ndjson", 16_384),
]


@pytest.mark.parametrize(("path", "method", "ctype", "limit"), LIMITED)
def test_a_declared_length_over_the_limit_is_refused_unread(
    small_limit_app, world, path, method, ctype, limit
) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(small_limit_app, raise_server_exceptions=False)
    response = client.request(
        method,
        path,
        content=b"x" * (limit + 1),
        headers={"Content-Type": ctype, "Accept": "application/json"},
    )
    assert response.status_code == 413, response.text
    expected = "application/fhir+json" if path.startswith("/fhir/") else "application/problem+json"
    assert response.headers["content-type"].startswith(expected)
    assert response.headers["x-content-type-options"] == "nosniff"  # the security headers still apply


@pytest.mark.parametrize(("path", "method", "ctype", "limit"), LIMITED)
def test_a_streamed_body_is_refused_once_it_passes_the_limit(
    small_limit_app, world, db, path, method, ctype, limit
) -> None:  # type: ignore[no-untyped-def]
    # The import reads its body after checking the client (the others parse it first): log in.
    actor = auth.principal_for(world.users["admin"], None, "127.0.0.1")
    _, secret = auth.create_api_token(db, actor, "streamer", ["system/*.write", "patient:write"])
    db.commit()
    client = TestClient(small_limit_app, raise_server_exceptions=False)
    response = client.request(
        method,
        path,
        content=_chunks(limit + 1),
        headers={"Content-Type": ctype, "Accept": "application/json", "Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 413, response.text
    assert "larger than" in response.text


def test_the_default_limit_refuses_a_40_mib_anonymous_json_body(app) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(app, raise_server_exceptions=False)
    body = b'{"given_name": "' + b"x" * (40 * MIB) + b'"}'
    response = client.post("/api/v1/patients", content=body, headers={"Content-Type": "application/json"})
    assert is_problem(response, 413)
    assert response.json()["detail"].startswith("The request body is larger than 1 MB")


def test_a_body_under_the_limit_is_read_as_before(small_limit_app, world) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(small_limit_app, raise_server_exceptions=False)
    response = client.post("/api/v1/patients", json={"given_name": "x" * 100})
    assert response.status_code in (401, 403) and "larger than" not in response.text  # reached the route


def test_the_page_error_is_a_page(small_limit_app) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(small_limit_app, raise_server_exceptions=False)
    response = client.post(
        "/login",
        content=b"x" * 5000,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"},
    )
    assert response.status_code == 413 and response.headers["content-type"].startswith("text/html")
    assert "The request is too large" in response.text


# --- clinic clock times ------------------------------------------------------------------------

OFFSET_HOURS = [
    # opens_at, closes_at: a UTC offset on either is refused (it would be dropped, or crash a comparison)
    ("08:00+05:00", "18:00"),
    ("08:00", "18:00Z"),
    ("08:00+05:00", "18:00+05:00"),
]


@pytest.mark.parametrize(("opens", "closes"), OFFSET_HOURS)
def test_clinic_hours_with_an_offset_are_refused(as_role, world, db, opens, closes) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    before = admin.api("GET", "/api/v1/clinic-hours").json()
    response = admin.api(
        "PUT", "/api/v1/clinic-hours", json={"opens_at": opens, "closes_at": closes, "slot_min": 30}
    )
    assert is_problem(response, 422), response.text
    assert "without a UTC offset" in response.text
    assert admin.api("GET", "/api/v1/clinic-hours").json() == before


def test_clinic_hours_local_times_are_kept(as_role, world) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    saved = admin.api(
        "PUT", "/api/v1/clinic-hours", json={"opens_at": "07:30", "closes_at": "19:00", "slot_min": 15}
    )
    assert saved.status_code == 200
    assert saved.json() == {"opens_at": "07:30:00", "closes_at": "19:00:00", "slot_min": 15}


def test_shift_times_with_an_offset_are_refused(as_role, world) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    body = {
        "user_id": world.users["nurse"].id,
        "on_date": "2030-01-07",
        "start_time": "08:00+01:00",
        "end_time": "12:00",
    }
    assert is_problem(admin.api("POST", "/api/v1/duty", json=body), 422)


# --- a constraint the database enforces ---------------------------------------------------------


def test_an_integrity_error_is_a_409_problem_and_nothing_is_written(app, world, db) -> None:  # type: ignore[no-untyped-def]
    @app.get("/api/v1/test-duplicate-clinic", include_in_schema=False, dependencies=[public()])
    def duplicate(session: DbSession) -> dict[str, str]:
        session.add(Clinic(name="Fresh", slug="fresh-dup", record_prefix="FRD", time_zone="UTC"))
        session.flush()
        session.add(Clinic(name="Again", slug="test", record_prefix="AGN", time_zone="UTC"))  # slug taken
        session.flush()
        return {"ok": "never"}

    response = TestClient(app, raise_server_exceptions=False).get("/api/v1/test-duplicate-clinic")
    assert is_problem(response, 409), response.text
    assert "nothing was saved" in response.json()["detail"]
    assert count(db, Clinic, Clinic.slug == "fresh-dup") == 0


# --- 405 ---------------------------------------------------------------------------------------


def test_405_names_the_allowed_methods(as_role, world) -> None:  # type: ignore[no-untyped-def]
    response = as_role("admin").api("DELETE", "/api/v1/clinic-hours")
    assert is_problem(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "PUT"}
    page = as_role("admin").client.delete("/login", headers={"Accept": "text/html"})
    assert page.status_code == 405 and "allow" in page.headers


def _leaf_routes(routes):  # type: ignore[no-untyped-def]
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def _params(dependant):  # type: ignore[no-untyped-def]
    yield from dependant.path_params + dependant.query_params
    for inner in dependant.dependencies:
        yield from _params(inner)


def test_every_number_and_date_in_a_path_or_query_has_bounds(app) -> None:  # type: ignore[no-untyped-def]
    """A number past what the database holds (an id over 2**31 - 1 on PostgreSQL, over 2**63 on
    SQLite), or a date where day arithmetic overflows (0001-01-01 minus a day), must be a 422 from
    the route's declaration, never a driver or OverflowError (500)."""
    from fastapi.routing import APIRoute

    unbounded = []
    for route in _leaf_routes(app.routes):
        if not isinstance(route, APIRoute):
            continue
        for param in _params(route.dependant):
            if param.field_info.annotation in (dt.date, dt.date | None, dt.datetime, dt.datetime | None):
                if reasonable_date not in {getattr(m, "func", None) for m in param.field_info.metadata}:
                    unbounded.append(
                        f"{sorted(route.methods)} {route.path} {param.name} (not a ReasonableDate)"
                    )
                continue
            if param.field_info.annotation not in (int, int | None):
                continue
            kinds = {type(m).__name__ for m in param.field_info.metadata}
            if not ({"Le", "Lt"} & kinds and {"Ge", "Gt"} & kinds):
                unbounded.append(f"{sorted(route.methods)} {route.path} {param.name}")
    assert not unbounded, unbounded


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("nurse", "/api/v1/patients/2764154587893549498368/eligibility"),
        ("nurse", "/api/v1/plans/16376182591134009344"),
        ("auditor", "/api/v1/audit?page=99999999999999999999999"),
        ("researcher", "/api/v1/research/export?method=limited&agreement=99999999999999999999"),
        ("nurse", "/api/v1/calendar?start=0001-01-01"),
        ("nurse", "/api/v1/duty?start=9999-12-31"),
    ],
)
def test_an_id_too_large_for_the_database_is_a_422(as_role, world, role, path) -> None:  # type: ignore[no-untyped-def]
    response = as_role(role).api("GET", path)
    assert is_problem(response, 422), response.text
