"""Schemathesis generates requests from the OpenAPI document and every answer must match it: no
input causes a server error, every status code, content type, header and body is the one the
document gives for that operation, and every error is an RFC 9457 problem (an OperationOutcome
under /fhir/).

The requests come from five callers (an admin, a prescriber and a nurse logged in with a cookie,
a patient, and a bearer token with every token scope) against a demo clinic, and half of them
name records that exist, so the successful answers are checked too, not only the 404s.

CI runs a few examples per operation (``KETACARE_FUZZ_EXAMPLES``, default 3: about 450 requests).
The long run sends more than 30,000 on PostgreSQL and commits them, so give it an empty database
of its own (see bench/api_fuzz.md)::

    KETACARE_FUZZ_EXAMPLES=255 KETACARE_FUZZ_REPORT=fuzz.json \\
    KETACARE_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/ketacare_fuzz \\
    .venv/bin/pytest tests/test_api_fuzz.py -q -s
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from ketacare import demo
from ketacare.app import create_app
from ketacare.auth import service as auth
from ketacare.auth.models import User
from ketacare.auth.permissions import token_scope_names
from tests.helpers import next_code

EXAMPLES = int(os.environ.get("KETACARE_FUZZ_EXAMPLES", "3"))
REPORT = os.environ.get("KETACARE_FUZZ_REPORT")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Path parameters that name a record: the table whose ids half of the requests use.
RECORD_TABLES = {
    "patient_id": ["patients"],
    "item_id": [
        "patient_measurements",
        "patient_conditions",
        "patient_medications",
        "patient_allergies",
        "care_plan_items",
    ],
    "plan_id": ["treatment_plans"],
    "plan_session_id": ["plan_sessions"],
    "session_id": ["treatment_sessions"],
    "shift_id": ["staff_duty_shifts"],
    "ae_id": ["adverse_events"],
    "alarm_id": ["session_alarms"],
    "product_id": ["ledger_products"],
    "lot_id": ["ledger_lots"],
    "investigation_id": ["ledger_investigations"],
    "report_id": ["ledger_loss_reports"],
    "user_id": ["users"],
    "credential_id": ["rx_state_licences", "rx_dea_registrations", "rx_board_certifications"],
    "rule_id": ["rx_scope_rules"],
    "rx_id": ["prescriptions"],
    "hold_id": ["safety_holds"],
    "task_id": ["safety_tasks"],
    "agreement_id": ["research_data_use_agreements"],
}
FIXED_VALUES: dict[str, list[Any]] = {
    "number": [1, 2, 3, 6],
    "section": ["measurements", "conditions", "medications", "allergies"],
    "resource_type": ["Patient", "Observation", "MedicationAdministration", "Condition", "Encounter"],
}


@dataclass
class Tally:
    requests: int = 0
    operations: set[str] = field(default_factory=set)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    server_errors: int = 0
    by_caller: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)


def _pools(db: Session) -> dict[str, list[Any]]:
    pools: dict[str, list[Any]] = {name: list(values) for name, values in FIXED_VALUES.items()}
    for name, tables in RECORD_TABLES.items():
        ids: list[Any] = []
        for table in tables:
            ids += db.execute(text(f"SELECT id FROM {table} ORDER BY id LIMIT 40")).scalars().all()
        if ids:
            pools[name] = sorted(set(ids))
    pools["logical_id"] = [str(i) for i in pools.get("patient_id", [])[:10]]
    pools["slug"] = list(db.execute(text("SELECT slug FROM clinics")).scalars())
    return pools


def _callers(app: FastAPI, browser, db: Session) -> list[tuple[str, dict[str, str], dict[str, str]]]:  # type: ignore[no-untyped-def]
    """(name, headers, cookies) for each caller."""
    callers = []
    for username in ("admin.", "dr.", "nurse.", "patienta."):
        user = db.query(User).filter(User.username.startswith(username)).order_by(User.id).first()
        assert user is not None
        person = browser()
        person.client.cookies.clear()
        person.refresh_csrf("/login")
        done = person.client.post(
            "/login",
            data={"username": user.username, "password": demo.DEMO_PASSWORD, "csrf_token": person.csrf},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        person.refresh_csrf_from_cookie()
        if done.headers["location"].startswith("/login/mfa"):
            mfa = person.post(
                "/login/mfa", data={"code": next_code(user), "next": "/"}, follow_redirects=False
            )
            assert mfa.status_code == 303, mfa.text
            person.refresh_csrf_from_cookie()
        cookies = dict(person.client.cookies.items())
        callers.append((username.rstrip("."), {"X-CSRF-Token": person.csrf}, cookies))
    admin = db.query(User).filter(User.username.startswith("admin.")).order_by(User.id).first()
    actor = auth.principal_for(admin, None, "127.0.0.1")
    _, secret = auth.create_api_token(db, actor, "fuzzer", token_scope_names())
    db.commit()
    callers.append(("token", {"Authorization": f"Bearer {secret}"}, {}))
    return callers


def _strategy(operation):  # type: ignore[no-untyped-def]
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    # An operation with nothing to make invalid has no negative cases.
    with contextlib.suppress(Exception):
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


def _problem_slug(response) -> str:  # type: ignore[no-untyped-def]
    try:
        return str(response.json().get("type", "")).rsplit("/", 1)[-1]
    except (ValueError, AttributeError):
        return ""


# A date and time without a UTC offset: which instant it names depends on the reader's zone.
NAIVE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


def _naive_times(value: Any, where: str = "") -> Iterator[str]:
    """Every time in an answer names an instant (RFC 3339 with an offset), also in the answers
    documented only as an object, which no schema check reaches."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _naive_times(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _naive_times(inner, f"{where}[{index}]")
    elif isinstance(value, str) and NAIVE_DATETIME.match(value):
        yield f"{where or '.'} = {value}"


def _error_media(case) -> str:  # type: ignore[no-untyped-def]
    return "application/fhir+json" if case.path.startswith("/fhir/") else "application/problem+json"


@dataclass
class Fuzzer:
    app: FastAPI
    callers: list[tuple[str, dict[str, str], dict[str, str]]]
    pools: dict[str, list[Any]]
    tally: Tally

    def run(self, operation) -> None:  # type: ignore[no-untyped-def]
        """Sends EXAMPLES generated requests to one operation and tallies what comes back."""
        label = f"{operation.method.upper()} {operation.path}"
        # A caller whose role the operation refuses (403 "forbidden") is not sent again, so the
        # examples go to callers whose requests reach the route's own checks.
        refused: set[str] = set()
        turn = itertools.count()

        @given(case=_strategy(operation), data=st.data())
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case, data) -> None:  # type: ignore[no-untyped-def]
            allowed = [c for c in self.callers if c[0] not in refused] or self.callers
            who, headers, cookies = allowed[next(turn) % len(allowed)]
            if case.path_parameters and data.draw(st.booleans()):
                for name in list(case.path_parameters):
                    if self.pools.get(name):
                        case.path_parameters[name] = data.draw(st.sampled_from(self.pools[name]))
            answer = self.send(label, case, headers, cookies)
            if answer is not None:
                self.tally.by_caller[f"{who} {answer.status_code}"] += 1
                if answer.status_code == 403 and _problem_slug(answer) == "forbidden":
                    refused.add(who)  # the role; sudo mode or a safety hold may pass another time

        check()

    def send(self, label: str, case, headers: dict[str, str], cookies: dict[str, str]):  # type: ignore[no-untyped-def]
        """One request and every check on its answer; the answer, or None for an unhandled error."""
        tally = self.tally
        tally.requests += 1
        tally.operations.add(label)
        try:
            response = case.call(app=self.app, headers=headers, cookies=cookies)
        except Exception as exc:  # the test client re-raises what the app did not handle
            tally.server_errors += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            key = (label, f"unhandled {type(exc).__name__} at {where.filename}:{where.lineno}")
            sample = f"500 {exc!s:.600} {case.path_parameters} {case.query} {case.body!r:.300}"
            tally.failures.setdefault(key, sample)
            return None
        tally.statuses[response.status_code] += 1
        tally.server_errors += response.status_code >= 500
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (label, f"{type(failure).__name__}: {failure.title}")
                tally.failures.setdefault(key, f"{response.status_code} {failure.message[:600]}")
        content_type = (response.headers.get("content-type") or [""])[0]
        if "json" in content_type:
            for naive in _naive_times(response.json()):
                key = (label, f"a time without a UTC offset at {naive.split(' = ')[0]}")
                tally.failures.setdefault(key, f"{response.status_code} {naive}")
        if response.status_code >= 400 and not content_type.startswith(_error_media(case)):
            key = (label, f"error content type {content_type}")
            tally.failures.setdefault(key, f"{response.status_code} {response.text[:300]}")
        return response


LONG_RUN = EXAMPLES > 20


@pytest.fixture
def target(request, settings, engine):  # type: ignore[no-untyped-def]
    """(app, browser factory, session). CI: the usual app in the test's rolled-back transaction.
    The long run commits for real into the (empty, dedicated) test database instead: tens of
    thousands of savepoints in one PostgreSQL transaction slow every query down (it fell from 40 to
    3 requests a second)."""
    if not LONG_RUN:
        return (
            request.getfixturevalue("app"),
            request.getfixturevalue("browser"),
            request.getfixturevalue("db"),
        )
    application = create_app(settings, engine=engine, check_migrations=False)
    browser_type = type(request.getfixturevalue("browser")())
    clients: list[TestClient] = []

    def browser():  # type: ignore[no-untyped-def]
        clients.append(TestClient(application, base_url="http://testserver"))
        return browser_type(clients[-1])

    session = sessionmaker(bind=engine, expire_on_commit=False)()
    request.addfinalizer(session.close)
    request.addfinalizer(lambda: [client.close() for client in clients])
    return application, browser, session


def test_api_answers_match_the_openapi_document(target) -> None:  # type: ignore[no-untyped-def]
    app, browser, db = target
    demo.seed(db, patients_per_clinic=12)  # refuses a database that has clinics already
    db.commit()
    schema = schemathesis.openapi.from_dict(app.openapi())  # once: no HTTP round trip under load
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 100
    tally = Tally()
    fuzzer = Fuzzer(app, _callers(app, browser, db), _pools(db), tally)
    started = time.monotonic()
    for number, operation in enumerate(operations, 1):
        fuzzer.run(operation)
        if LONG_RUN:  # the long run says how far it is
            print(
                f"{number}/{len(operations)} {operation.method.upper()} {operation.path}: "
                f"{tally.requests} requests, {tally.server_errors} 5xx, {len(tally.failures)} violations, "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            )

    summary = {
        "requests": tally.requests,
        "operations_covered": len(tally.operations),
        "operations_in_document": len(operations),
        "server_errors": tally.server_errors,
        "violations": len(tally.failures),
        "statuses": dict(sorted(tally.statuses.items())),
        "by_caller": dict(sorted(tally.by_caller.items())),
        "seconds": round(time.monotonic() - started, 1),
        "examples_per_operation": EXAMPLES,
        "failures": [
            {"operation": op, "check": what, "sample": s} for (op, what), s in tally.failures.items()
        ],
    }
    if REPORT:
        with open(REPORT, "w", encoding="utf-8") as out:
            json.dump(summary, out, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}))
    assert len(tally.operations) == len(operations)
    assert not tally.failures, json.dumps(summary["failures"], indent=1)


def test_every_success_names_its_media_type_and_json_has_a_schema(app) -> None:  # type: ignore[no-untyped-def]
    """A route that sends a file says so (its media type), not FastAPI's default empty JSON."""
    vague = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                for media, content in response.get("content", {}).items():
                    json = media == "application/json" or media.endswith("+json")
                    if code.startswith("2") and json and not content.get("schema"):
                        vague.append(f"{method.upper()} {path} {code} {media}")
    assert not vague, vague
