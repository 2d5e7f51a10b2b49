"""End-to-end HTTP benchmark of the real app: uvicorn in a subprocess, 10,000 demo patients.

Run from the repository root:

    .venv/bin/python bench/http.py [--patients-per-clinic 5000] [--seconds 8] [--concurrency 8] [--json]

One run builds a fresh SQLite database in a temporary directory, seeds it with the demo data,
starts ``ketacare.app.create_app`` under uvicorn on a free loopback port, logs in as
``nurse.north`` and then, for each endpoint, drives it with N client threads (one
``httpx.Client`` each) for a fixed duration after a warm-up. It reports requests per second and
p50/p95 latency, each relative to ``/healthz`` of the same app (the cheapest database-backed
endpoint: ``SELECT 1`` in a transaction; ``/login`` is the no-database floor), plus how many audit
entries each request appended.

It measures; it never asserts on time. A non-200 answer is counted, shown in the table and makes
the exit code 1; a refused or timed-out connection ends the run. The server subprocess is
killed on every exit path and the temporary directory is removed. KETACARE_* environment
variables are ignored, so the run can never touch a configured database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

# This file is named http.py, so run as a script its folder (sys.path[0]) would shadow the standard
# library's ``http`` package, which httpx needs: drop that folder from the path before importing.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import httpx  # noqa: E402

HOST = "127.0.0.1"
SECRET_KEY = "b" * 40
USERNAME = "nurse.north"
MAX_REQUESTS_PER_THREAD = 1_000_000  # a hard bound on every measuring loop, besides the deadline
STARTUP_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0

# The server process: the same settings as the seeding step, the real application factory.
LAUNCHER = """
import sys
import uvicorn
from ketacare.app import create_app
from ketacare.config import Environment, load_settings

settings = load_settings(environment=Environment.test, data_dir=sys.argv[1], secret_key=sys.argv[3])
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


class BenchError(RuntimeError):
    """The benchmark could not run as intended (a server that did not start, a failed log-in)."""


@dataclass
class Endpoint:
    name: str
    path: str
    expect_text: str = ""  # a sanity check on one response body during warm-up


@dataclass
class Result:
    endpoint: str
    path: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    response_bytes: int
    audit_entries_per_request: float
    non_200: dict[str, int] = field(default_factory=dict)
    warmup_non_200: dict[str, int] = field(default_factory=dict)
    first_non_200: str = ""
    rps_vs_baseline: float = 0.0
    p95_vs_baseline: float = 0.0


@dataclass
class Run:
    concurrency: int
    seconds: float
    warmup_seconds: float
    patients: int
    query: str
    patient_id: int
    search_total: int
    seed_seconds: float
    machine: dict[str, object]
    results: list[Result] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # any entry here makes the exit code 1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- database ------------------------------------------------------------------------------


def build_database(data_dir: Path, patients_per_clinic: int) -> float:
    """Fresh migrated SQLite database with the demo data; returns the seconds it took."""
    from ketacare import db as kdb
    from ketacare import demo, migrations
    from ketacare.config import Environment, load_settings

    started = time.perf_counter()
    settings = load_settings(environment=Environment.test, data_dir=data_dir, secret_key=SECRET_KEY)
    engine = kdb.make_engine(settings.resolved_database_url)
    try:
        migrations.upgrade(engine)
        with kdb.transaction(kdb.make_sessionmaker(engine)) as session:
            demo.seed(session, patients_per_clinic=patients_per_clinic)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def database_path(data_dir: Path) -> Path:
    return data_dir / "ketacare.sqlite3"


def read_only(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database_path(data_dir)}?mode=ro", uri=True, timeout=30)


def pick_patient(data_dir: Path, query: str) -> tuple[int, int, int]:
    """(a north-clinic patient id, patients in the database, north patients matching ``query``).

    The count follows the app's name search: every term is a prefix of the family or given name
    or equals the record number (case-insensitive). It checks the list page's "N patients" line.
    """
    terms = query.lower().replace(",", " ").split()
    with contextlib.closing(read_only(data_dir)) as conn:
        rows = conn.execute(
            "SELECT p.id, p.family_name, p.given_name, p.record_number FROM patients p "
            "JOIN clinics c ON c.id = p.clinic_id WHERE c.slug = 'north' ORDER BY p.id"
        ).fetchall()
        (patients,) = conn.execute("SELECT count(*) FROM patients").fetchone()
    matching = sum(
        all(family.lower().startswith(t) or given.lower().startswith(t) or record.lower() == t for t in terms)
        for _, family, given, record in rows
    )
    return int(rows[0][0]), int(patients), matching


def audit_seq(data_dir: Path) -> int:
    with contextlib.closing(read_only(data_dir)) as conn:
        row = conn.execute("SELECT COALESCE(SUM(seq), 0) FROM audit_heads").fetchone()
    return int(row[0]) if row else 0


# --- server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without KETACARE_* variables, so nothing outside redirects the database."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KETACARE_")}


def start_server(data_dir: Path, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(data_dir), str(port), SECRET_KEY],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
            cwd=data_dir,  # `-c` puts the working directory on sys.path; keep it free of an http.py
        )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def server_log_tail(log_file: Path, chars: int = 3000) -> str:
    try:
        return log_file.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


def wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log_file: Path) -> float:
    started = time.perf_counter()
    deadline = started + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"the server exited with code {proc.returncode} before answering /healthz:\n"
                    + server_log_tail(log_file)
                )
            try:
                if client.get("/healthz").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise BenchError(f"/healthz did not answer 200 within {STARTUP_TIMEOUT_S:.0f} s")


# --- client --------------------------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def log_in(base_url: str, password: str) -> dict[str, str]:
    """Log in through the form like a browser; return the cookies to send afterwards."""
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, follow_redirects=False) as client:
        page = client.get("/login")
        if page.status_code != 200:
            raise BenchError(f"GET /login answered {page.status_code}")
        match = CSRF_INPUT.search(page.text)
        if not match or "ketacare_csrf" not in client.cookies:
            raise BenchError("the login page carried no csrf_token field or no ketacare_csrf cookie")
        answer = client.post(
            "/login",
            data={"username": USERNAME, "password": password, "csrf_token": match.group(1), "next": "/"},
        )
        if answer.status_code != 303 or answer.headers.get("location") != "/":
            raise BenchError(
                f"log-in as {USERNAME} answered {answer.status_code} "
                f"(location {answer.headers.get('location')!r}); expected 303 to /"
            )
        if "ketacare_session" not in client.cookies:
            raise BenchError("log-in succeeded but set no ketacare_session cookie")
        return {name: value for name, value in client.cookies.items()}


@dataclass
class Window:
    latencies: list[float]  # every answered request, whatever its status
    elapsed: float
    non_200: dict[str, int]  # status -> how many
    first_non_200: str
    transport_error: str | None
    sample_body: bytes  # one 200 body, for the sanity check


def drive(base_url: str, cookies: dict[str, str], path: str, threads: int, seconds: float) -> Window:
    """``threads`` clients request ``path`` back to back until ``seconds`` have passed.

    A non-200 answer is counted and the window goes on (the caller fails the run afterwards);
    a transport error (refused, reset, timed out) stops every thread at once.
    """
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    finished_at = [0.0] * threads
    non_200: Counter[str] = Counter()
    first_non_200: list[str] = []
    transport_errors: list[str] = []
    sample: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1, timeout=60)
    start_box: list[float] = []

    def worker(index: int) -> None:
        latencies = per_thread[index]
        with httpx.Client(base_url=base_url, cookies=cookies, timeout=REQUEST_TIMEOUT_S) as client:
            barrier.wait()
            deadline = start_box[0] + seconds
            for _ in range(MAX_REQUESTS_PER_THREAD):
                if stop.is_set() or time.perf_counter() >= deadline:
                    break
                t0 = time.perf_counter()
                try:
                    response = client.get(path)
                except httpx.HTTPError as exc:
                    with lock:
                        transport_errors.append(f"{type(exc).__name__}: {exc}")
                    stop.set()
                    break
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    with lock:
                        non_200[str(response.status_code)] += 1
                        if not first_non_200:
                            first_non_200.append(f"status {response.status_code}: {response.text[:300]!r}")
                elif not sample:
                    with lock:
                        sample.append(response.content)
            finished_at[index] = time.perf_counter()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    start_box.append(time.perf_counter())  # set before the barrier releases the workers
    barrier.wait()
    for thread in pool:
        thread.join(timeout=seconds + REQUEST_TIMEOUT_S + 30)
    if any(thread.is_alive() for thread in pool):
        stop.set()
        transport_errors.append("a client thread did not finish in time")
    elapsed = max(finished_at) - start_box[0] if any(finished_at) else 0.0
    return Window(
        latencies=[lat for latencies in per_thread for lat in latencies],
        elapsed=elapsed,
        non_200=dict(non_200),
        first_non_200=first_non_200[0] if first_non_200 else "",
        transport_error=transport_errors[0] if transport_errors else None,
        sample_body=sample[0] if sample else b"",
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def measure(
    base_url: str,
    cookies: dict[str, str],
    endpoint: Endpoint,
    threads: int,
    seconds: float,
    warmup: float,
    data_dir: Path,
) -> Result:
    """Warm up, then one measured window. Raises on a transport error; counts non-200 answers."""
    warm_non_200: dict[str, int] = {}
    warm_first = ""
    if warmup > 0:
        warm = drive(base_url, cookies, endpoint.path, threads, warmup)
        if warm.transport_error:
            raise BenchError(f"GET {endpoint.path} (warm-up) failed: {warm.transport_error}")
        warm_non_200, warm_first = warm.non_200, warm.first_non_200
        if warm.sample_body and endpoint.expect_text.encode() not in warm.sample_body:
            raise BenchError(f"GET {endpoint.path} answered 200 but without {endpoint.expect_text!r}")
    seq_before = audit_seq(data_dir)
    window = drive(base_url, cookies, endpoint.path, threads, seconds)
    seq_after = audit_seq(data_dir)
    if window.transport_error:
        raise BenchError(f"GET {endpoint.path} failed: {window.transport_error}")
    if not window.latencies or window.elapsed <= 0:
        raise BenchError(f"GET {endpoint.path}: no request completed in {seconds} s")
    latencies = sorted(window.latencies)
    count = len(latencies)
    return Result(
        endpoint=endpoint.name,
        path=endpoint.path,
        requests=count,
        seconds=round(window.elapsed, 3),
        rps=count / window.elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p95_ms=percentile(latencies, 0.95) * 1000,
        max_ms=latencies[-1] * 1000,
        response_bytes=len(window.sample_body),
        audit_entries_per_request=(seq_after - seq_before) / count,
        non_200=window.non_200,
        warmup_non_200=warm_non_200,
        first_non_200=window.first_non_200 or warm_first,
    )


# --- report --------------------------------------------------------------------------------


def source_revision() -> str:
    """The git commit of the code under test, "+dirty" when src/ has uncommitted changes."""
    repo = _HERE.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_facts() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "source": source_revision(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "httpx": httpx.__version__,
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def table(run: Run) -> str:
    header = (
        f"{'endpoint':<26}{'rps':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'rps/base':>10}"
        f"{'p95/base':>10}{'audit/req':>10}{'requests':>10}  non-200"
    )
    lines = [header, "-" * len(header)]
    for r in run.results:
        bad = ", ".join(f"{n}x{status}" for status, n in sorted(r.non_200.items())) or "0"
        if r.warmup_non_200:
            bad += " (warm-up: " + ", ".join(f"{n}x{s}" for s, n in sorted(r.warmup_non_200.items())) + ")"
        lines.append(
            f"{r.endpoint:<26}{r.rps:>8.1f}{r.p50_ms:>9.2f}{r.p95_ms:>9.2f}{r.max_ms:>9.0f}"
            f"{r.rps_vs_baseline:>10.3f}{r.p95_vs_baseline:>10.2f}{r.audit_entries_per_request:>10.1f}"
            f"{r.requests:>10}  {bad}"
        )
    m = run.machine
    lines += [
        "",
        f"concurrency {run.concurrency}, {run.seconds:g} s per endpoint after {run.warmup_seconds:g} s "
        f"warm-up; {run.patients} patients; q={run.query!r} matches {run.search_total} in the clinic; "
        f"patient id {run.patient_id}",
        f"source {m['source']}; machine: {m['cores']} cores, Python {m['python']}, SQLite {m['sqlite']}, "
        f"httpx {m['httpx']}, {m['platform']}",
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end')}; "
        f"seeding took {run.seed_seconds:.1f} s",
    ]
    lines += [f"FAILED: {problem}" for problem in run.problems]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients-per-clinic", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per endpoint")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--query", default="smi", help="name prefix(es) to search the patient list for")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.patients_per_clinic < 2 or args.concurrency < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("need --patients-per-clinic >= 2, --concurrency >= 1, --seconds > 0, --warmup >= 0")
    if args.seconds > 600 or args.concurrency > 256:
        parser.error("--seconds is at most 600 and --concurrency at most 256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [k for k in os.environ if k.startswith("KETACARE_")]:
        del os.environ[name]  # settings come from the overrides below only, never a real database
    from ketacare.demo import DEMO_PASSWORD

    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="ketacare-bench-") as tmp:
        data_dir = Path(tmp)
        log(f"seeding {2 * args.patients_per_clinic} patients into {data_dir} ...")
        try:
            seed_seconds = build_database(data_dir, args.patients_per_clinic)
        except Exception as exc:  # any failure here is the code under test, not the benchmark
            log(f"error: could not build and seed the database: {type(exc).__name__}: {exc}")
            return 1
        patient_id, patients, search_total = pick_patient(data_dir, args.query)
        run = Run(
            concurrency=args.concurrency,
            seconds=args.seconds,
            warmup_seconds=args.warmup,
            patients=patients,
            query=args.query,
            patient_id=patient_id,
            search_total=search_total,
            seed_seconds=round(seed_seconds, 2),
            machine=machine,
        )
        endpoints = [
            Endpoint("GET /healthz (baseline)", "/healthz", '"ok"'),
            Endpoint("GET /login", "/login", "csrf_token"),
            Endpoint(
                f"GET /patients?q={args.query}",
                "/patients?" + urllib.parse.urlencode({"q": args.query}),
                f">{search_total} patient",
            ),
            Endpoint("GET /patients/<id>", f"/patients/{patient_id}", "<h1"),
        ]
        port = free_port()
        base_url = f"http://{HOST}:{port}"
        log_file = data_dir / "server.log"
        proc = start_server(data_dir, port, log_file)
        try:
            startup = wait_healthy(proc, base_url, log_file)
            log(f"server up on {base_url} in {startup:.1f} s; logging in as {USERNAME}")
            cookies = log_in(base_url, DEMO_PASSWORD)
            for endpoint in endpoints:
                log(f"  {endpoint.path}: {args.warmup:g} s warm-up, {args.seconds:g} s x {args.concurrency}")
                run.results.append(
                    measure(
                        base_url, cookies, endpoint, args.concurrency, args.seconds, args.warmup, data_dir
                    )
                )
                if proc.poll() is not None:
                    raise BenchError(f"the server died (code {proc.returncode})")
        except BenchError as exc:
            run.problems.append(str(exc))
            log(f"error: {exc}")
            tail = server_log_tail(log_file).strip()
            if tail:
                log(f"server log (tail):\n{tail}")
        finally:
            stop_server(proc)
    already_logged = len(run.problems)
    for r in run.results:
        if r.non_200 or r.warmup_non_200:
            run.problems.append(
                f"GET {r.path}: non-200 answers {r.non_200} (warm-up {r.warmup_non_200}); "
                f"first: {r.first_non_200}"
            )
    if run.results:
        baseline = run.results[0]
        for r in run.results:
            r.rps_vs_baseline = r.rps / baseline.rps
            r.p95_vs_baseline = r.p95_ms / baseline.p95_ms
    if hasattr(os, "getloadavg"):
        machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(asdict(run), indent=2) if args.json else table(run))
    for problem in run.problems[already_logged:]:
        log(f"error: {problem}")
    return 1 if run.problems else 0


if __name__ == "__main__":
    sys.exit(main())
