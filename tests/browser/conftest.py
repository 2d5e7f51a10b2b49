"""Real-browser tests: a seeded KetaCare served by uvicorn in a subprocess, driven by Debian's Chromium.

One server and one browser serve the whole session; every test gets its own browser context
(its own cookies), and each test logs in as a demo user no other test uses, so the log-in
throttle, the idle timer and the data one test touches never leak into another.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET_KEY = "x" * 40
VIEWPORT = {"width": 1280, "height": 800}
STARTUP_TIMEOUT_S = 120.0  # generous: under pytest-xdist two servers and two browsers share the cores

# The server builds its settings exactly as the fixture below does; argv: data_dir, secret, port.
LAUNCHER = """
import sys
from pathlib import Path

import uvicorn

from ketacare.app import create_app
from ketacare.config import Environment, load_settings

settings = load_settings(
    environment=Environment.test,
    data_dir=Path(sys.argv[1]),
    database_url="",
    secret_key=sys.argv[2],
    idle_timeout_minutes=15,
    fhir_export_worker=True,
)
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Chromium the browser tests are skipped, except on CI, where they must run."""
    if CHROMIUM.exists() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@dataclass
class Server:
    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ketacare.sqlite3"

    @contextlib.contextmanager
    def sql(self) -> Iterator[sqlite3.Connection]:
        """A short plain-sqlite3 connection to the server's database (commits on success)."""
        conn = sqlite3.connect(self.db_path, timeout=10)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def scalar(self, query: str, *params: Any) -> Any:
        with self.sql() as conn:
            row = conn.execute(query, params).fetchone()
        return row[0] if row else None

    def totp_code(self, username: str) -> str:
        """A code the server has not accepted yet: it takes each 30-second step's code once,
        so wait for a fresh step when this user's current one was already used."""
        secret, last_step = self.sql_row(
            "SELECT totp_secret, totp_last_step FROM users WHERE username = ?", username
        )
        assert secret, f"{username} has no TOTP secret"
        totp = pyotp.TOTP(secret)
        now_step = int(time.time()) // totp.interval
        if last_step is not None and now_step <= last_step:
            time.sleep((last_step + 1) * totp.interval - time.time() + 0.05)
            now_step = int(time.time()) // totp.interval
        return str(totp.at(now_step * totp.interval))

    def sql_row(self, query: str, *params: Any) -> tuple[Any, ...]:
        with self.sql() as conn:
            row = conn.execute(query, params).fetchone()
        assert row is not None, query
        return tuple(row)

    def patient_id(self, record_number: str) -> int:
        pid = self.scalar("SELECT id FROM patients WHERE record_number = ?", record_number)
        assert pid is not None, f"no patient {record_number}"
        return int(pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(data_dir: Path) -> None:
    from ketacare import demo, migrations
    from ketacare.config import Environment, load_settings
    from ketacare.db import make_engine, make_sessionmaker, transaction

    settings = load_settings(
        environment=Environment.test,
        data_dir=data_dir,
        database_url="",
        secret_key=SECRET_KEY,
        idle_timeout_minutes=15,
    )
    engine = make_engine(settings.resolved_database_url)
    try:
        migrations.upgrade(engine)
        with transaction(make_sessionmaker(engine)) as db:
            demo.seed(db, patients_per_clinic=30)
    finally:
        engine.dispose()


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the KetaCare server exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"the KetaCare server did not answer /healthz in {STARTUP_TIMEOUT_S:g} s:\n{server.log_tail()}"
    )


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session")
def server(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("ketacare-browser")
    _seed(data_dir)
    port = _free_port()
    log_path = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETACARE_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(data_dir), SECRET_KEY, str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir,
        )
    srv = Server(url=f"http://127.0.0.1:{port}", data_dir=data_dir, log_path=log_path, process=process)
    try:
        _wait_healthy(srv)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def chromium(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def browser_context(chromium: Any, server: Server) -> Iterator[Any]:
    ctx = chromium.new_context(base_url=server.url, viewport=VIEWPORT, locale="en-US")
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        ctx.close()


@dataclass
class PageProblems:
    """Uncaught script errors and Content-Security-Policy violations seen while a test ran."""

    errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser_context: Any, server: Server) -> Iterator[Any]:
    pg = browser_context.new_page()
    problems = PageProblems()
    pg.on("pageerror", lambda exc: problems.errors.append(f"script error: {exc}"))

    def on_console(message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.errors.append(f"CSP violation: {message.text}")

    pg.on("console", on_console)
    yield pg
    assert not problems.errors, "\n".join(problems.errors) + f"\nserver log:\n{server.log_tail()}"


@pytest.fixture
def login(server: Server) -> Any:
    """``login(page, username)``: log in through the form (and the code page for TOTP users)."""
    from ketacare.demo import DEMO_PASSWORD

    def log_in(page: Any, username: str) -> None:
        page.goto("/login")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Log in").click()
        if "/login/mfa" in page.url:
            page.get_by_label("Code").fill(server.totp_code(username))
            with page.expect_navigation():
                page.get_by_role("button", name="Continue").click()
        assert page.url == f"{server.url}/", f"log-in as {username} ended on {page.url}"

    return log_in
