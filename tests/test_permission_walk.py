"""The permission walk (issue #16): every route the app has, walked from ``app.routes`` (never a
hand-written list), by every role of the demo clinic, an API token, anonymous callers, users of
the other clinic and another patient, against the demo data set, so that every path parameter is
a real object of the walking clinic and a role that should succeed is seen to succeed.

What each call must answer (the declared permission and ``ROLE_PERMISSIONS`` are the contract):

* anonymous: 401 (API, FHIR) or a 303 to the login page (pages); never 200, never data;
* a role (or the token) without the permission: exactly 403; a token never passes a sensitive
  route;
* a role with it, GET: 200 (202 for the FHIR bulk kick-offs), never 401/403/404/5xx; any other
  method with an empty body: the gate passed (422, a 303 back to the form, 409, ...), never
  401/403/404/5xx;
* a user of the other clinic holding the permission, on the walking clinic's ids: 404 (422 for a
  body refused before any lookup), and no body names the walking clinic's patient; on the routes
  that name no object (lists, boards, exports, FHIR searches), nothing of the walking clinic;
* another patient of the clinic, on patient A's plan: 403, and nothing of patient A;
* a sensitive route with a password confirmed a day ago: 401 reauthentication-required (API)
  or a 303 to /reauth (pages).

Every call runs in a savepoint that is rolled back, and each client's cookies are restored after
it, so no call sees another's effects (a POST that signs, deletes or logs out changes nothing
for the next). Sensitive routes are walked inside the recent-password window the log-in opens.

The walk's size (December 2026): 316 route paths, 369 route x method pairs (157 of them GET;
none excluded), walked by 8 callers (6 roles, an API token, anonymous): 2,952 calls, 735 of them
allowed; plus 367 other-clinic calls on objects, 242 other-clinic and other-patient calls on
lists, 68 stale-password calls and 4 other-patient calls on objects: 3,633 calls in all, on one
demo build (about 1.5 CPU minutes on SQLite). The counts are asserted from the app (so the walk
cannot shrink unnoticed) and printed in the failure messages.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from ketacare import demo, migrations
from ketacare.app import create_app
from ketacare.auth import service as auth
from ketacare.auth.models import ApiToken, Role, User
from ketacare.auth.permissions import ROLE_PERMISSIONS, Permission, token_scope_names
from ketacare.config import Environment, load_settings
from ketacare.db import make_engine, make_sessionmaker, transaction
from tests.test_permissions import _markers, all_routes

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CLINIC, OTHER = "north", "bay"
WALKED_FAMILY = "Quillfeather"  # the walked patient's family name: in no other text of the demo

# The demo's users of each role (demo.py STAFF and the linked patient logins).
USERS = {
    "admin": "admin",
    "prescriber": "dr",
    "nurse": "nurse",
    "researcher": "researcher",
    "auditor": "auditor",
    "patient": "patienta",
}
ROLES = {
    "admin": Role.clinic_admin,
    "prescriber": Role.prescriber,
    "nurse": Role.nurse,
    "researcher": Role.researcher,
    "auditor": Role.auditor,
    "patient": Role.patient,
}

# Markers that are not a permission: the log-in flow's own steps. They are walked too (no 5xx,
# nothing to an anonymous caller beyond the flow), but no role "holds" them.
FLOW_MARKERS = {"public", "mfa-stage"}

# Routes a walk cannot call, with the reason. Kept short on purpose.
# (None today: POST /logout is walked too, as each call is rolled back and the walker's cookies
# restored after it.)
EXCLUDED: dict[tuple[str, str], str] = {}

# Where a role's declared permission is narrowed by design inside the service, so the role is
# refused although it holds the permission: (method, path, role) -> reason. The narrowing must
# still answer 403 (never a 404 or 500).
_AUDITOR_FHIR = "auditors hold system/*.read for the FHIR AuditEvent only (permissions.py, fhir.may_read)"
NARROWED: dict[tuple[str, str, str], str] = {
    ("GET", "/fhir/R4/Patient/{patient_id}/$everything", "auditor"): _AUDITOR_FHIR,
    ("GET", "/fhir/R4/Patient/$export", "auditor"): _AUDITOR_FHIR,
    ("GET", "/fhir/R4/Group/{group_id}/$export", "auditor"): _AUDITOR_FHIR,
}


@dataclass
class Walker:
    role: str  # a key of ROLES, "anonymous" or "token"
    client: TestClient
    user: User | None
    permissions: frozenset[Permission] = frozenset()
    csrf: str = ""
    cookies: dict[str, str] = field(default_factory=dict)
    bearer: str = ""  # an API token's secret: no cookies, no CSRF, never sensitive routes


@dataclass
class Env:
    app: FastAPI
    connection: Connection
    walkers: dict[str, Walker]  # role -> walker of the walking clinic ("anonymous" too)
    outsiders: dict[str, Walker]  # role -> walker of the other clinic
    ids: dict[str, dict[str, Any]]  # role -> path parameter -> value (role-specific where needed)
    forbidden_text: list[str]  # what the other clinic must never see
    patient_a_text: list[str]  # what another patient of the clinic must never see


def _scratch_url(tmp: Path) -> tuple[str, Any]:
    """A fresh database of the backend under test, and how to drop it after."""
    url = os.environ.get("KETACARE_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'walk.sqlite3'}", lambda: None
    name = f"ketacare_walk_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def _one(db: Session, sql: str, **params: Any) -> Any:
    value = db.execute(text(sql), params).scalar()
    assert value is not None, f"the demo has no row for: {sql} {params}"
    return value


def _clinic_ids(db: Session, clinic_id: int) -> dict[str, Any]:
    """Each path parameter's value: an object of this clinic, found by a query. The walked
    patient is the demo's patient A (the one linked to the patient login), so the patient's own
    routes and the staff routes see the same person."""
    c = {"c": clinic_id}
    pid = _one(db, "SELECT patient_id FROM users WHERE clinic_id = :c AND username LIKE 'patienta.%'", **c)
    plan = _one(db, "SELECT min(id) FROM treatment_plans WHERE patient_id = :p", p=pid)
    care_plan, care_item = db.execute(
        text(
            "SELECT plan_id, id FROM care_plan_items WHERE plan_id IN "
            "(SELECT id FROM treatment_plans WHERE clinic_id = :c) ORDER BY id"
        ),
        c,
    ).first() or (None, None)
    assert care_item is not None, "the demo has no care-plan item"
    first = "SELECT min(id) FROM {} WHERE clinic_id = :c"
    # The demo gives ketamine only; the REMS form belongs to esketamine, so one finished session
    # of another patient becomes an intranasal esketamine one.
    rems_session = _one(
        db,
        "SELECT max(id) FROM treatment_sessions WHERE clinic_id = :c AND status = 'discharged' "
        "AND patient_id != :p",
        p=pid,
        **c,
    )
    db.execute(
        text("UPDATE treatment_sessions SET drug = 'esketamine', route = 'intranasal' WHERE id = :s"),
        {"s": rems_session},
    )
    ids: dict[str, Any] = {
        "patient_id": pid,
        "section": "conditions",
        "patient_item_id": _one(db, "SELECT min(id) FROM patient_conditions WHERE patient_id = :p", p=pid),
        "plan_id": plan,
        "number": _one(db, "SELECT min(number) FROM plan_sessions WHERE plan_id = :p", p=plan),
        "care_plan_id": care_plan,
        "care_item_id": care_item,
        "plan_session_id": _one(db, first.format("plan_sessions"), **c),
        "session_id": _one(
            db, "SELECT min(id) FROM treatment_sessions WHERE clinic_id = :c AND status = 'discharged'", **c
        ),
        "rems_session_id": rems_session,
        "alarm_id": _one(db, first.format("session_alarms"), **c),
        "ae_id": _one(db, first.format("adverse_events"), **c),
        "lot_id": _one(db, first.format("ledger_lots"), **c),
        "product_id": _one(db, first.format("ledger_products"), **c),
        "investigation_id": _one(db, first.format("ledger_investigations"), **c),
        "report_id": _one(db, first.format("ledger_loss_reports"), **c),
        "rx_id": _one(db, first.format("prescriptions"), **c),
        "user_id": _one(db, "SELECT id FROM users WHERE clinic_id = :c AND username LIKE 'dr.%'", **c),
        "token_id": _one(db, first.format("api_tokens"), **c),
        "kind": "licences",
        "credential_id": _one(db, first.format("rx_state_licences"), **c),
        "rule_id": _one(db, first.format("rx_scope_rules"), **c),
        "hold_id": _one(db, first.format("safety_holds"), **c),
        "task_id": _one(db, first.format("safety_tasks"), **c),
        "shift_id": _one(db, first.format("staff_duty_shifts"), **c),
        "slot_id": _one(db, first.format("directory_slots"), **c),
        "request_id": _one(db, first.format("directory_requests"), **c),
        "review_id": _one(db, first.format("directory_reviews"), **c),
        "follow_up_id": _one(db, first.format("outcome_follow_ups"), **c),
        "agreement_id": _one(db, first.format("research_data_use_agreements"), **c),
        "name": "balances",
        "table": "summary",
        "resource_type": "Patient",
        "logical_id": str(pid),
        "slug": CLINIC,
        "file_name": "Patient.ndjson",
        "token": "not-a-real-token",
    }
    return ids


def _add_missing_objects(db: Session) -> None:
    """Rows the demo does not make (an API token, a scope rule, a safety task, a data-use
    agreement, a loss report, FHIR export jobs), so that every route has an object to find."""
    today = dt.date.today()
    for clinic_id, slug in db.execute(text("SELECT id, slug FROM clinics")).all():
        admin_id = _one(db, "SELECT id FROM users WHERE username = :u", u=f"admin.{slug}")
        pid = _one(db, "SELECT patient_id FROM users WHERE username = :u", u=f"patienta.{slug}")
        db.add(
            ApiToken(
                clinic_id=clinic_id,
                name="walk device",
                token_sha256=uuid.uuid4().hex * 2,
                scopes="patient:read",
                created_by_id=admin_id,
            )
        )
        db.execute(
            text(
                "INSERT INTO rx_scope_rules (clinic_id, role, activity, state, allowed, recorded_by_id, "
                "recorded_at) VALUES (:c, 'nurse_practitioner', 'prescribe', 'NY', :t, :u, :now)"
            ),
            {"c": clinic_id, "u": admin_id, "t": True, "now": dt.datetime.now(dt.UTC)},
        )
        db.execute(
            text(
                "INSERT INTO safety_tasks (clinic_id, patient_id, kind, title, due_on, created_by_id, "
                "created_at) VALUES (:c, :p, 'urinalysis', 'Urinalysis', :d, :u, :now)"
            ),
            {"c": clinic_id, "p": pid, "d": today, "u": admin_id, "now": dt.datetime.now(dt.UTC)},
        )
        db.execute(
            text(
                "INSERT INTO research_data_use_agreements (clinic_id, recipient, purpose, starts_on, "
                "ends_on, approved_by, recorded_by_id, recorded_at) VALUES (:c, 'University', "
                "'Outcomes study', :s, :e, 'Board', :u, :now)"
            ),
            {
                "c": clinic_id,
                "s": today,
                "e": today + dt.timedelta(days=365),
                "u": admin_id,
                "now": dt.datetime.now(dt.UTC),
            },
        )
        entry = _one(db, "SELECT min(id) FROM ledger_entries WHERE clinic_id = :c", c=clinic_id)
        db.execute(
            text(
                "INSERT INTO ledger_loss_reports (clinic_id, entry_id, kind, discovered_at, reportable, "
                "notice_due_on, form106_due_on) VALUES (:c, :e, 'loss', :now, :t, :d, :d)"
            ),
            {"c": clinic_id, "e": entry, "now": dt.datetime.now(dt.UTC), "t": True, "d": today},
        )
    db.flush()


def _fhir_jobs(db: Session, export_dir: Path, users: dict[str, User]) -> dict[tuple[str, str], str]:
    """Finished export jobs (with their file) for each user who may export, as jobs are the
    requester's own: one to read, one to delete (deleting removes the files, which no savepoint
    brings back)."""
    jobs = {}
    for role, user in users.items():
        if Permission.fhir_read not in ROLE_PERMISSIONS[ROLES[role]]:
            continue
        for purpose in ("read", "delete"):
            jobs[(role, purpose)] = _fhir_job(db, export_dir, user)
    db.flush()
    return jobs


def _fhir_job(db: Session, export_dir: Path, user: User, token: ApiToken | None = None) -> str:
    """A finished export job of ``user`` (or of ``token``) with its one file, on disk too."""
    from ketacare.interop.fhir import bulk
    from ketacare.interop.fhir.models import FhirExportFile, FhirExportJob

    job_id = uuid.uuid4().hex
    db.add(
        FhirExportJob(
            id=job_id,
            clinic_id=user.clinic_id,
            requester_kind="token" if token else "user",
            requested_by_id=None if token else user.id,
            api_token_id=token.id if token else None,
            requester_name=f"token:{token.name}" if token else user.username,
            level="system",
            types=["Patient"],
            output_format="application/fhir+ndjson",
            request_url="http://testserver/fhir/R4/$export",
            status="done",
            transaction_time=dt.datetime.now(dt.UTC),
            output_attempt=1,
            finished_at=dt.datetime.now(dt.UTC),
        )
    )
    db.flush()
    db.add(FhirExportFile(job_id=job_id, resource_type="Patient", file_name="Patient.ndjson", count=1))
    folder = bulk.attempt_dir(export_dir, job_id, 1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "1"}\n')
    return job_id


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="http://testserver", raise_server_exceptions=False)


def _login(app: FastAPI, role: str, user: User | None) -> Walker:
    """Logs in through the real pages (password, then the TOTP code where enrolled)."""
    client = _client(app)
    held = ROLE_PERMISSIONS[ROLES[role]] if role in ROLES else frozenset()
    walker = Walker(role, client, user, held)
    page = client.get("/login")
    walker.csrf = CSRF_INPUT.search(page.text).group(1)  # type: ignore[union-attr]
    if user is not None:
        response = client.post(
            "/login",
            data={"username": user.username, "password": demo.DEMO_PASSWORD, "csrf_token": walker.csrf},
            follow_redirects=False,
        )
        assert response.status_code == 303, (user.username, response.text[:300])
        if response.headers["location"].startswith("/login/mfa"):
            csrf = CSRF_INPUT.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
            code = pyotp.TOTP(user.totp_secret).now()
            done = client.post(
                "/login/mfa", data={"code": code, "next": "/", "csrf_token": csrf}, follow_redirects=False
            )
            assert done.status_code == 303, (user.username, done.text[:300])
        walker.csrf = CSRF_INPUT.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
    walker.cookies = dict(client.cookies)
    return walker


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("walk")
    url, drop = _scratch_url(tmp)
    settings = load_settings(
        environment=Environment.test,
        data_dir=tmp,
        database_url=url,
        secret_key="walk-secret-key-" + "w" * 32,
        # The whole walk runs inside the password window of its log-in, and no login idles out
        # (each call's touch of the login is rolled back with the call): on a slow machine too.
        reauth_window_minutes=60,
        idle_timeout_minutes=120,
    )
    engine = make_engine(url)
    migrations.upgrade(engine)
    with transaction(make_sessionmaker(engine)) as db:
        demo.seed(db, patients_per_clinic=12)
    connection = engine.connect()
    outer = connection.begin()
    factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    app = create_app(settings, engine=engine, check_migrations=False)
    app.state.sessionmaker = factory
    db = factory()
    export_dir = settings.resolved_fhir_export_dir
    _add_missing_objects(db)
    db.execute(
        text(
            "UPDATE patients SET family_name = :f "
            "WHERE id IN (SELECT patient_id FROM users WHERE username = :u)"
        ),
        {"f": WALKED_FAMILY, "u": f"patienta.{CLINIC}"},
    )

    def users_of(slug: str) -> dict[str, User]:
        found = {}
        for role, short in USERS.items():
            user = db.execute(
                text("SELECT id FROM users WHERE username = :u"), {"u": f"{short}.{slug}"}
            ).scalar_one()
            found[role] = db.get(User, user)
        return found

    home, away = users_of(CLINIC), users_of(OTHER)
    clinic_id = home["admin"].clinic_id
    base = _clinic_ids(db, clinic_id)
    jobs = _fhir_jobs(db, export_dir, home)
    forbidden = [WALKED_FAMILY, demo.CLINICS[0][2] + "-"]  # the family name, the record prefix
    record = _one(db, "SELECT record_number FROM patients WHERE id = :p", p=base["patient_id"])
    db.commit()
    ids = {}
    for role in [*USERS, "anonymous"]:
        ids[role] = {
            **base,
            "job_id": jobs.get((role, "read"), jobs["admin", "read"]),
            "delete_job_id": jobs.get((role, "delete"), jobs["admin", "delete"]),
        }
    ids["auditor"]["resource_type"] = "AuditEvent"  # the one FHIR type an auditor reads
    ids["auditor"]["logical_id"] = str(
        db.execute(text("SELECT min(seq) FROM audit_entries WHERE clinic_id = :c"), {"c": clinic_id}).scalar()
    )
    walkers = {role: _login(app, role, user) for role, user in home.items()}
    walkers["anonymous"] = _login(app, "anonymous", None)
    # A FHIR Group is one per protocol of the clinic: its id as the clinic's own search lists it.
    groups = _send_get(walkers["admin"], "/fhir/R4/Group").json()
    for role in ids:
        ids[role]["group_id"] = groups["entry"][0]["resource"]["id"]
    outsiders = {role: _login(app, role, user) for role, user in away.items()}
    patient_b = db.execute(text("SELECT id FROM users WHERE username = :u"), {"u": f"patientb.{CLINIC}"})
    walkers["patient_b"] = _login(app, "patient", db.get(User, patient_b.scalar_one()))
    # An API token of the walking clinic with every scope a token may have.
    admin = auth.principal_for(home["admin"], None, "testclient")
    token, secret = auth.create_api_token(db, admin, "walk token", token_scope_names())
    principal = auth.resolve_api_token(db, secret, None)
    walkers["token"] = Walker("token", _client(app), None, auth.permissions_of(principal), bearer=secret)
    ids["token"] = {
        **ids["admin"],
        "job_id": _fhir_job(db, export_dir, home["admin"], token),
        "delete_job_id": _fhir_job(db, export_dir, home["admin"], token),
    }
    db.commit()
    db.close()
    try:
        yield Env(app, connection, walkers, outsiders, ids, forbidden, [WALKED_FAMILY, record])
    finally:
        for walker in [*walkers.values(), *outsiders.values()]:
            walker.client.close()
        outer.rollback()
        connection.close()
        engine.dispose()
        drop()


def _send_get(walker: Walker, url: str) -> Any:
    response = walker.client.get(url, headers={"Accept": "application/json"})
    assert response.status_code == 200, (url, response.text[:300])
    return response


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    marker: str  # the declared permission (``prescription:write``) or a flow marker
    sensitive: bool
    has_body: bool
    query: tuple[str, ...]  # required query parameters

    @property
    def api(self) -> bool:
        return self.path.startswith(("/api/", "/fhir/"))

    @property
    def permission(self) -> Permission | None:
        return None if self.marker in FLOW_MARKERS else Permission(self.marker)

    def allowed(self, walker: Walker) -> bool:
        """The walker holds the permission (and, on a sensitive route, is a person)."""
        permission = self.permission
        if permission is None or permission not in walker.permissions:
            return False
        return not (self.sensitive and walker.bearer)


def walk(app: FastAPI) -> list[Call]:
    """Every route x method of the app, with its declared permission."""
    calls = []
    for route in all_routes(app.routes):
        if not isinstance(route, APIRoute):
            continue
        markers = _markers(route.dependant)
        assert len(set(markers)) == 1, f"{route.path}: one declared permission expected, got {markers}"
        marker = markers[0]
        sensitive = marker.endswith(" (sensitive)")
        query: list[str] = []
        for dependant in [route.dependant, *route.dependant.dependencies]:
            query += [q.name for q in dependant.query_params if q.field_info.is_required()]
        for method in sorted(route.methods):
            if (method, route.path) in EXCLUDED:
                continue
            calls.append(
                Call(
                    method,
                    route.path,
                    marker.removesuffix(" (sensitive)"),
                    sensitive,
                    route.body_field is not None,
                    tuple(query),
                )
            )
    return calls


# A GET with the permission answers 200, but for these documented answers.
GET_SUCCESS = {
    # FHIR Bulk Data kick-off: 202 Accepted and a Content-Location to poll
    "/fhir/R4/$export": 202,
    "/fhir/R4/Patient/$export": 202,
    "/fhir/R4/Group/{group_id}/$export": 202,
}

QUERY_VALUES = {"start": dt.date.today().isoformat(), "protocol": "standard"}


def _url(call: Call, ids: dict[str, Any]) -> str:
    values = dict(ids)
    if "/plans/" in call.path and "{item_id}" in call.path:
        values["plan_id"], values["item_id"] = ids["care_plan_id"], ids["care_item_id"]
    else:
        values["item_id"] = ids["patient_item_id"]
    if "/rems" in call.path:
        values["session_id"] = ids["rems_session_id"]
    if "{job_id}" in call.path and (call.method == "DELETE" or call.path.endswith("/delete")):
        values["job_id"] = ids["delete_job_id"]
    names = re.findall(r"\{(\w+)\}", call.path)
    missing = [n for n in names if n not in values]
    assert not missing, f"{call.path}: no value for the path parameter(s) {missing}"
    return call.path.format(**{n: values[n] for n in names})


def _send(env: Env, walker: Walker, call: Call, url: str, before: str = "") -> Any:
    """One request, in a savepoint rolled back after it, with the client's cookies restored.
    ``before``: SQL run in the savepoint first (``:user`` is the walker's user id)."""
    client = walker.client
    client.cookies.clear()
    for name, value in walker.cookies.items():
        client.cookies.set(name, value)
    params = {q: QUERY_VALUES[q] for q in call.query}
    headers = {"Accept": "application/json"} if call.api else {}
    if walker.bearer:
        headers["Authorization"] = f"Bearer {walker.bearer}"
    if call.path.endswith("/$export"):
        headers["Prefer"] = "respond-async"  # the FHIR Bulk Data kick-off's required header
    nested = env.connection.begin_nested()
    try:
        if before:
            env.connection.execute(text(before), {"user": walker.user.id if walker.user else None})
        if call.method == "GET":
            return client.get(url, params=params, headers=headers, follow_redirects=False)
        headers["X-CSRF-Token"] = walker.csrf
        if call.api or call.has_body:
            return client.request(
                call.method, url, params=params, headers=headers, json={}, follow_redirects=False
            )
        return client.request(
            call.method,
            url,
            params=params,
            headers=headers,
            data={"csrf_token": walker.csrf},
            follow_redirects=False,
        )
    finally:
        if nested.is_active:
            nested.rollback()


def _problem(role: str, call: Call, url: str, response: Any, why: str) -> str:
    body = response.text[:160].replace("\n", " ")
    return f"{role:10} {call.method:6} {url} -> {response.status_code} ({why}) {body}"


def _login_redirect(response: Any) -> bool:
    return response.status_code == 303 and response.headers.get("location", "").startswith("/login")


def _check(walker: Walker, call: Call, url: str, response: Any) -> str | None:
    role, status = walker.role, response.status_code
    if status >= 500:
        return _problem(role, call, url, response, "server error")
    if call.marker in FLOW_MARKERS:
        if role == "anonymous" and call.marker != "public" and status == 200:
            return _problem(role, call, url, response, "anonymous passed a log-in step")
        return None
    if role == "anonymous":
        ok = status == 401 if call.api else _login_redirect(response)
        return None if ok else _problem(role, call, url, response, "anonymous must be refused")
    narrowed = (call.method, call.path, role) in NARROWED
    if not call.allowed(walker) or narrowed:
        return None if status == 403 else _problem(role, call, url, response, "expected exactly 403")
    if status in (401, 403, 404) or _login_redirect(response):
        return _problem(role, call, url, response, "holds the permission but was refused")
    if call.method == "GET" and status != GET_SUCCESS.get(call.path, 200):
        return _problem(role, call, url, response, "a GET with the permission must succeed")
    return None


def test_walk_covers_the_app(env: Env) -> None:
    calls = walk(env.app)
    routes = {c.path for c in calls}
    assert len(routes) >= 300 and len(calls) >= 340, (
        f"the walk shrank: {len(routes)} routes, {len(calls)} calls"
    )
    assert len(EXCLUDED) <= 3, "the exclusion list must stay short and justified"
    gated = [c for c in calls if c.permission is not None]
    for walker in env.walkers.values():  # every gated route is open to someone, or to a device
        gated = [c for c in gated if not c.allowed(walker)]
    assert not gated, f"routes no role and no token may call: {gated}"


WALKERS = [*USERS, "token", "anonymous"]


@pytest.mark.parametrize("role", WALKERS)
def test_every_route_as_role(env: Env, role: str) -> None:
    """Every route x method as one role of the walking clinic (an API token and an anonymous
    caller among them): refused exactly when the role lacks the declared permission."""
    walker = env.walkers[role]
    calls = walk(env.app)
    problems = []
    for call in calls:
        url = _url(call, env.ids[role])
        problems.append(_check(walker, call, url, _send(env, walker, call, url)))
    found = [p for p in problems if p]
    allowed = sum(c.allowed(walker) for c in calls)
    assert not found, (
        f"{len(found)} of {len(calls)} calls as {role} ({allowed} allowed) went wrong:\n" + "\n".join(found)
    )


def _object_params(call: Call) -> list[str]:
    """The path parameters naming an object of the walking clinic. Group ids are protocol names,
    the same in every clinic that has the protocol: a Group of the other clinic's own is no leak."""
    names = re.findall(r"\{(\w+)\}", call.path)
    return [n for n in names if (n.endswith("_id") or n == "number") and n != "group_id"]


def test_other_clinic_gets_404_and_no_data(env: Env) -> None:
    """Every route naming an object of the walking clinic, as each user of the other clinic whose
    role holds the permission: a GET is 404; any other method is 404, or 422 for a body refused
    before anything is looked up; never a success, and no body names the walking clinic's
    patient (family name, record number)."""
    problems, walked = [], 0
    for call in walk(env.app):
        if not _object_params(call) or call.marker in FLOW_MARKERS:
            continue
        for role, outsider in env.outsiders.items():
            if not call.allowed(outsider) or (call.method, call.path, role) in NARROWED:
                continue
            url = _url(call, env.ids[role])
            response = _send(env, outsider, call, url)
            walked += 1
            expected = (404,) if call.method == "GET" else (404, 422)
            if response.status_code not in expected:
                problems.append(_problem(role, call, url, response, f"another clinic must get {expected}"))
            leaked = [t for t in env.forbidden_text if t in response.text]
            if leaked:
                problems.append(_problem(role, call, url, response, f"another clinic sees {leaked}"))
    assert walked >= 200, f"only {walked} object calls walked for the other clinic"
    assert not problems, f"{len(problems)} of {walked} other-clinic calls went wrong:\n" + "\n".join(problems)


STALE_PASSWORD = (
    "UPDATE login_sessions SET reauthenticated_at = reauthenticated_at - INTERVAL '1 day' "
    "WHERE user_id = :user"
)


def test_sensitive_routes_need_a_recent_password(env: Env) -> None:
    """Sensitive routes were walked above inside the password window; here each is called by
    every role holding its permission with the password confirmed a day ago: the API answers 401
    reauthentication-required, a page sends the person to /reauth, and nothing else happens."""
    stale = STALE_PASSWORD
    if env.connection.dialect.name == "sqlite":
        stale = (
            "UPDATE login_sessions SET reauthenticated_at = datetime(reauthenticated_at, '-1 day') "
            "WHERE user_id = :user"
        )
    problems, walked = [], 0
    for call in walk(env.app):
        if not call.sensitive:
            continue
        for role in USERS:
            walker = env.walkers[role]
            if not call.allowed(walker):
                continue
            url = _url(call, env.ids[role])
            response = _send(env, walker, call, url, before=stale)
            walked += 1
            if call.api:
                ok = response.status_code == 401 and "reauthentication-required" in response.text
            else:
                ok = response.status_code == 303 and response.headers["location"].startswith("/reauth")
            if not ok:
                problems.append(_problem(role, call, url, response, "a stale password must not pass"))
    assert walked >= 40, f"only {walked} sensitive calls walked"
    assert not problems, f"{len(problems)} of {walked} sensitive calls went wrong:\n" + "\n".join(problems)


def test_another_patient_of_the_clinic_is_refused(env: Env) -> None:
    """The patient's own routes that name an object (a plan to consent to), called by another
    patient of the same clinic with patient A's ids: refused (403, as for another patient's
    record; 422 for a body refused before anything is looked up), and nothing of patient A in
    the answer."""
    walker = env.walkers["patient_b"]
    problems, walked = [], 0
    for call in walk(env.app):
        if not _object_params(call) or not call.allowed(walker):
            continue
        url = _url(call, env.ids["patient"])
        response = _send(env, walker, call, url)
        walked += 1
        expected = (403,) if call.method == "GET" else (403, 422)
        if response.status_code not in expected:
            problems.append(_problem("patient_b", call, url, response, f"another patient's plan: {expected}"))
        if any(t in response.text for t in env.patient_a_text):
            problems.append(_problem("patient_b", call, url, response, "patient A's data shown"))
    assert walked >= 3, f"only {walked} calls walked for another patient"
    assert not problems, "\n".join(problems)


def test_other_clinic_lists_name_nothing_of_this_clinic(env: Env) -> None:
    """Every GET that names no object (lists, boards, dashboards, reports, exports, FHIR
    searches), as each user of the other clinic holding its permission: the answer is their own
    clinic's, so it names neither the walking clinic's patient nor any of its record numbers.
    Patient B of the walking clinic likewise sees nothing of patient A on their own pages."""
    callers = [(role, outsider, env.forbidden_text) for role, outsider in env.outsiders.items()]
    callers.append(("patient", env.walkers["patient_b"], env.patient_a_text))
    problems, walked = [], 0
    for call in walk(env.app):
        if call.method != "GET" or _object_params(call) or call.marker in FLOW_MARKERS:
            continue
        for role, outsider, forbidden in callers:
            if not call.allowed(outsider) or (call.method, call.path, role) in NARROWED:
                continue
            url = _url(call, env.ids[role])
            response = _send(env, outsider, call, url)
            walked += 1
            if response.status_code >= 500:
                problems.append(_problem(role, call, url, response, "server error"))
            leaked = [t for t in forbidden if t in response.text]
            if leaked:
                problems.append(_problem(role, call, url, response, f"another clinic sees {leaked}"))
    assert walked >= 150, f"only {walked} list calls walked for the other clinic"
    assert not problems, f"{len(problems)} of {walked} other-clinic calls went wrong:\n" + "\n".join(problems)
