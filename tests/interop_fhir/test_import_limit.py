"""One setting, KETACARE_MAX_IMPORT_BODY_BYTES, limits the FHIR NDJSON import: the API, the upload
page, and the body limit in front of both. A body over a small configured limit is a 413
OperationOutcome (an error page on the upload page) and imports nothing; the page names the size."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ketacare.app import create_app
from ketacare.patients.models import Patient
from tests.helpers import count
from tests.interop_fhir.conftest import validate
from tests.interop_fhir.test_import_good import BASE, NDJSON, PATIENT, ndjson

LIMIT = 2048  # the smallest the setting allows is 1024
PAGE = "/fhir-exchange/imports"


@pytest.fixture
def app(settings, engine, session_factory) -> FastAPI:  # type: ignore[no-untyped-def]
    """This module's app (and so its ``browser``, ``as_role``) has a 2 kB import limit."""
    limited = settings.model_copy(update={"max_import_body_bytes": LIMIT})
    application = create_app(limited, engine=engine, check_migrations=False)
    application.state.sessionmaker = session_factory
    return application


def _big_file() -> bytes:
    body = ndjson(*[{**PATIENT, "id": f"src-{n}"} for n in range(1, 40)])
    assert len(body) > LIMIT
    return body


def _pieces(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 256):
        yield body[start : start + 256]


@pytest.mark.parametrize("streamed", [False, True], ids=["declared length", "streamed"])
def test_a_body_over_the_configured_limit_is_a_413_and_imports_nothing(app, token_for, db, streamed) -> None:  # type: ignore[no-untyped-def]
    writer = token_for("system/*.write", "system/*.read")
    before = count(db, Patient)
    body = _big_file()
    client = TestClient(app, raise_server_exceptions=False)
    response = client.post(
        f"{BASE}/$import",
        content=_pieces(body) if streamed else body,
        params={"source": "old-ehr"},
        headers={**writer, "Content-Type": NDJSON},
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    validate(outcome)
    issue = outcome["issue"][0]
    assert issue["code"] == "too-long"
    assert "larger than 2 kB" in issue["diagnostics"] and "nothing was" in issue["diagnostics"]
    assert count(db, Patient) == before


def test_a_body_under_the_configured_limit_is_imported(app, token_for, db) -> None:  # type: ignore[no-untyped-def]
    writer = token_for("system/*.write", "system/*.read")
    before = count(db, Patient)
    client = TestClient(app, raise_server_exceptions=False)
    body = ndjson(PATIENT)
    assert len(body) < LIMIT
    response = client.post(
        f"{BASE}/$import",
        content=body,
        params={"source": "old-ehr"},
        headers={**writer, "Content-Type": NDJSON},
    )
    assert response.status_code == 200, response.text
    assert count(db, Patient) == before + 1


def test_the_upload_page_names_the_configured_limit_and_refuses_a_larger_upload(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    page = admin.client.get(PAGE)
    assert page.status_code == 200
    assert "Up to 2 kB per upload" in page.text
    before = count(db, Patient)
    response = admin.client.post(
        PAGE,
        data={"csrf_token": admin.csrf, "source": "old-ehr"},
        files=[("files", ("big.ndjson", _big_file(), NDJSON))],
    )
    assert response.status_code == 413
    assert "text/html" in response.headers["content-type"]
    assert "larger than 2 kB" in response.text
    assert count(db, Patient) == before
