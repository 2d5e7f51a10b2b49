"""HL7 v2 ingest benchmark: 50 simulated bedside monitors streaming ORU^R01 over MLLP into the
real listener and the real sessions service, on SQLite and on PostgreSQL.

Run from the repository root:

    .venv/bin/python bench/hl7_ingest.py [--monitors 50] [--messages 40] [--backends sqlite,postgresql]

For each backend one run builds a scratch database (a temporary SQLite file; a new PostgreSQL
database on 127.0.0.1:5432 as user postgres, dropped afterwards), migrates it and puts two sets
of ``--monitors`` patients in running treatment sessions. Then, in the same process:

1. baseline, per message: the same rows the listener writes for each message (its 7 vital
   signs and its device-message receipt) inserted directly with ``executemany``, one
   transaction per message, from ``--monitors`` threads at once; then deleted again;
2. baseline, bulk: all those rows in one ``executemany`` and one commit (the floor);
3. listener, flat out: the real listener runs in this process on a loopback port; the monitors
   run as threads of a child process (so they do not compete for this process's GIL). Each of
   ``--monitors`` monitors sends ``--messages`` messages as fast as the ACKs come back (one
   message, one ACK, as monitors do); one message per monitor half-way carries a systolic spike
   of 190 mmHg, which raises the clinic-default alarm;
4. listener, paced: the second set of monitors send ``--paced-messages`` messages each, one
   every ``--pace`` seconds (staggered), with a spike half-way: alarm latency at a realistic load
   (real monitors send every 5 to 60 s; this is faster).

Figures: messages/s and observations/s, each as a ratio to the per-message baseline (and the
bulk floor); alarm latency p50/p99 measured two ways: in the listener from the moment the frame
was read to the commit that wrote the alarm row ("receipt -> alarm row"), and at the monitor
from sending the message to reading its ACK ("send -> ACK", which comes after that commit). It measures;
it never asserts on time. A message that is not acknowledged, or a missing alarm, is a problem:
it is shown and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.interop.seed: patients in running sessions

import numpy as np  # noqa: E402
from sqlalchemy import Engine, create_engine, delete, select, text  # noqa: E402

from ketacare.db import make_engine, make_sessionmaker  # noqa: E402
from ketacare.interop.hl7v2 import monitor  # noqa: E402
from ketacare.interop.hl7v2.mllp import BackgroundListener, MLLPListener, database_ingest  # noqa: E402
from ketacare.interop.hl7v2.parse import read_header  # noqa: E402
from ketacare.sessions.device import DeviceBatch, IngestResult  # noqa: E402
from ketacare.sessions.models import Alarm, DeviceMessage, TreatmentSession, VitalSign  # noqa: E402
from tests.interop.seed import seed_running_sessions  # noqa: E402

PG_ROOT = "postgresql+psycopg://postgres@127.0.0.1:5432"
SPIKE_SBP = 190.0
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Rate:
    messages: int
    observations: int
    seconds: float
    messages_per_s: float = 0.0
    observations_per_s: float = 0.0

    def __post_init__(self) -> None:
        self.messages_per_s = self.messages / self.seconds if self.seconds else 0.0
        self.observations_per_s = self.observations / self.seconds if self.seconds else 0.0


@dataclass
class Latency:
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def latency(seconds: list[float]) -> Latency:
    if not seconds:
        return Latency(0, float("nan"), float("nan"), float("nan"))
    ms = np.array(seconds) * 1000
    return Latency(len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max()))


@dataclass
class BackendRun:
    backend: str
    version: str
    monitors: int
    messages_per_monitor: int
    baseline_per_message: Rate | None = None
    baseline_bulk: Rate | None = None
    listener: Rate | None = None
    ratio_to_per_message: float = 0.0
    ratio_to_bulk: float = 0.0
    alarm_receipt_to_row_saturated: Latency | None = None
    alarm_send_to_ack_saturated: Latency | None = None
    ack_send_to_ack_saturated: Latency | None = None
    paced: Rate | None = None
    alarm_receipt_to_row_paced: Latency | None = None
    alarm_send_to_ack_paced: Latency | None = None
    ack_send_to_ack_paced: Latency | None = None
    alarms_expected: int = 0
    alarms_found: int = 0
    problems: list[str] = field(default_factory=list)


# --- databases ----------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(backend: str) -> Iterator[tuple[str, str]]:
    """(url, server version) of a fresh empty database, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ketacare-hl7-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", sqlite3.sqlite_version
        return
    name = f"ketacare_bench_hl7_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_ROOT}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one())
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ROOT}/{name}", version
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_reachable() -> str:
    """'' when PostgreSQL answers, else why not."""
    try:
        engine = create_engine(f"{PG_ROOT}/postgres", connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure means: skip this backend and say why
        return str(exc).splitlines()[0]
    return ""


def session_ids(engine: Engine) -> dict[str, int]:
    """record number -> running session id."""
    from ketacare.patients.models import Patient

    with engine.connect() as conn:
        rows = conn.execute(
            select(Patient.record_number, TreatmentSession.id).join(
                TreatmentSession, TreatmentSession.patient_id == Patient.id
            )
        ).all()
    return {str(r): int(s) for r, s in rows}


# --- the workload -------------------------------------------------------------------------


@dataclass
class Monitor:
    clinic: str
    record: str
    device: str
    messages: list[tuple[str, str]]
    points: list[monitor.VitalsPoint]
    spike_control_id: str


def monitors_for(clinic: str, records: list[str], count: int, prefix: str) -> list[Monitor]:
    found = []
    for bed, record in enumerate(records):
        points = monitor.trajectory(T0, count, interval_s=15, seed=bed, sbp_spike_at=count // 2)
        device = f"{prefix}-BED-{bed:02d}"
        messages = monitor.messages_for(
            points, clinic_slug=clinic, record_number=record, device_id=device, control_prefix=device
        )
        found.append(Monitor(clinic, record, device, messages, points, messages[count // 2][0]))
    return found


def observations(monitors: list[Monitor]) -> int:
    return sum(len(p.values) for m in monitors for p in m.points)


# --- baselines ----------------------------------------------------------------------------


def baseline_rows(
    m: Monitor, session_id: int, clinic_id: int
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    now = dt.datetime.now(dt.UTC)
    rows = []
    for (control_id, _), point in zip(m.messages, m.points, strict=True):
        receipt = {
            "clinic_id": clinic_id,
            "device_id": m.device,
            "control_id": f"base-{control_id}",
            "session_id": session_id,
            "source": "bench",
            "observations": len(point.values),
            "received_at": now,
        }
        vitals = [
            {
                "session_id": session_id,
                "kind": kind,
                "value": value,
                "observed_at": point.observed_at,
                "source": "bench",
                "device_id": m.device,
                "recorded_by_id": None,
                "received_at": now,
            }
            for kind, value in point.values.items()
        ]
        rows.append((receipt, vitals))
    return rows


def run_baselines(engine: Engine, monitors: list[Monitor], sessions: dict[str, int]) -> tuple[Rate, Rate]:
    with engine.connect() as conn:
        clinic_id = int(
            conn.execute(
                select(TreatmentSession.clinic_id).where(TreatmentSession.id == sessions[monitors[0].record])
            ).scalar_one()
        )
    per_monitor = [baseline_rows(m, sessions[m.record], clinic_id) for m in monitors]
    receipts, vitals = DeviceMessage.__table__, VitalSign.__table__  # type: ignore[attr-defined]

    def one_monitor(rows: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        for receipt, vital_rows in rows:
            with engine.begin() as conn:
                conn.execute(receipts.insert(), [receipt])
                conn.execute(vitals.insert(), vital_rows)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(monitors)) as pool:
        list(pool.map(one_monitor, per_monitor))
    per_message = Rate(
        len(monitors[0].messages) * len(monitors), observations(monitors), time.perf_counter() - started
    )
    cleanup(engine)

    all_receipts = [r for rows in per_monitor for r, _ in rows]
    all_vitals = [v for rows in per_monitor for _, vs in rows for v in vs]
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(receipts.insert(), all_receipts)
        conn.execute(vitals.insert(), all_vitals)
    bulk = Rate(len(all_receipts), len(all_vitals), time.perf_counter() - started)
    cleanup(engine)
    return per_message, bulk


def cleanup(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(VitalSign).where(VitalSign.source == "bench"))
        conn.execute(delete(DeviceMessage).where(DeviceMessage.source == "bench"))


# --- the listener -------------------------------------------------------------------------


class TimedListener(MLLPListener):
    """The real listener, noting when each frame was read and when its commit was done."""

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.committed: dict[str, tuple[float, int]] = {}  # control id -> (time, alarms raised)
        self.receipt_to_commit: dict[str, float] = {}
        real = database_ingest(make_sessionmaker(engine))

        def ingest(batch: DeviceBatch) -> IngestResult:
            result = real(batch)  # returns after the commit
            self.committed[str(batch.control_id)] = (time.perf_counter(), len(result.alarms_raised))
            return result

        super().__init__(ingest, **options)

    async def handle(self, message: bytes) -> bytes:
        received = time.perf_counter()
        reply = await super().handle(message)
        header = read_header(message.decode("latin-1"))
        if header is not None and header.control_id in self.committed:
            done, _ = self.committed[header.control_id]
            self.receipt_to_commit[header.control_id] = done - received
        return reply


# --- the monitors: a child process, so their threads do not share the listener's GIL ------


def drive(address: tuple[str, int], job: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One monitor: send each message, wait for its ACK (paced when the job says so)."""
    acked, refused, send_to_ack = 0, [], {}
    pace_s = float(job["pace"])
    with monitor.MonitorConnection(*address, timeout_s=120) as connection:
        if pace_s:
            time.sleep(rng.uniform(0, pace_s))  # monitors are not in step
        next_at = time.perf_counter()
        for control_id, message in job["messages"]:
            if pace_s:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += pace_s
            started = time.perf_counter()
            reply = connection.send(message)
            send_to_ack[control_id] = time.perf_counter() - started
            if reply.ack_code == "AA" and reply.control_id == control_id:
                acked += 1
            else:
                refused.append(f"{control_id}: {reply.ack_code} {reply.error_code} {reply.text}")
    return {"acked": acked, "refused": refused, "send_to_ack": send_to_ack}


def drive_all(host: str, port: int) -> None:
    """The child process: jobs as JSON on stdin, results as JSON on stdout."""
    jobs = json.load(sys.stdin)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda n: drive((host, port), jobs[n], random.Random(n)), range(len(jobs))))
    json.dump({"seconds": time.perf_counter() - started, "results": results}, sys.stdout)


def run_monitors(address: tuple[str, int], monitors: list[Monitor], pace_s: float) -> dict[str, Any]:
    jobs = [{"messages": m.messages, "pace": pace_s} for m in monitors]
    child = subprocess.run(
        [sys.executable, __file__, "--drive", address[0], str(address[1])],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the monitors' process failed:\n{child.stderr[-3000:]}")
    return dict(json.loads(child.stdout))


def run_listener(
    engine: Engine, monitors: list[Monitor], pace_s: float, workers: int
) -> tuple[Rate, Latency, Latency, Latency, list[str]]:
    listener = TimedListener(engine, workers=workers)
    with BackgroundListener(listener) as running:
        driven = run_monitors(running.address, monitors, pace_s)
    results = driven["results"]
    problems = [p for r in results for p in r["refused"]]
    spikes = {m.spike_control_id for m in monitors}
    alarm_rows = [listener.receipt_to_commit[c] for c in spikes if c in listener.receipt_to_commit]
    alarm_acks = [r["send_to_ack"][c] for r in results for c in spikes if c in r["send_to_ack"]]
    all_acks = [s for r in results for s in r["send_to_ack"].values()]
    raised = sum(1 for c in spikes if listener.committed.get(c, (0.0, 0))[1] > 0)
    if raised != len(spikes):
        problems.append(f"{len(spikes) - raised} spike message(s) raised no alarm")
    rate = Rate(sum(r["acked"] for r in results), observations(monitors), float(driven["seconds"]))
    return rate, latency(alarm_rows), latency(alarm_acks), latency(all_acks), problems


def count_alarms(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(Alarm.id).where(Alarm.rule_key == "sbp_high")).all())


def run_backend(backend: str, args: argparse.Namespace) -> BackendRun:
    with scratch_database(backend) as (url, version):
        log(f"{backend} {version}: seeding {2 * args.monitors} patients in running sessions")
        engine = make_engine(url)
        try:
            north = seed_running_sessions(engine, clinic_slug="north", patients=args.monitors, prefix="NSP")
            bay = seed_running_sessions(
                engine, clinic_slug="bay", patients=args.monitors, prefix="BAY", migrate=False
            )
            sessions = session_ids(engine)
            flat_out = monitors_for("north", north, args.messages, "N")
            paced = monitors_for("bay", bay, args.paced_messages, "B")
            run = BackendRun(backend, version, args.monitors, args.messages)

            log(f"{backend}: baselines (executemany, per message and bulk)")
            run.baseline_per_message, run.baseline_bulk = run_baselines(engine, flat_out, sessions)

            log(f"{backend}: listener, {args.monitors} monitors flat out")
            rate, rows, acks, all_acks, problems = run_listener(engine, flat_out, 0.0, args.workers)
            run.listener, run.alarm_receipt_to_row_saturated, run.alarm_send_to_ack_saturated = (
                rate,
                rows,
                acks,
            )
            run.ack_send_to_ack_saturated = all_acks
            run.problems += problems
            run.ratio_to_per_message = rate.observations_per_s / run.baseline_per_message.observations_per_s
            run.ratio_to_bulk = rate.observations_per_s / run.baseline_bulk.observations_per_s

            log(f"{backend}: listener, {args.monitors} monitors paced at one message per {args.pace:g} s")
            rate, rows, acks, all_acks, problems = run_listener(engine, paced, args.pace, args.workers)
            run.paced, run.alarm_receipt_to_row_paced, run.alarm_send_to_ack_paced = rate, rows, acks
            run.ack_send_to_ack_paced = all_acks
            run.problems += problems

            run.alarms_expected = 2 * args.monitors
            run.alarms_found = count_alarms(engine)
            if run.alarms_found != run.alarms_expected:
                run.problems.append(
                    f"{run.alarms_found} sbp_high alarms in the database, {run.alarms_expected} expected"
                )
            total = args.monitors * (args.messages + args.paced_messages)
            if rate.messages + (run.listener.messages if run.listener else 0) != total:
                run.problems.append("not every message was acknowledged")
        finally:
            engine.dispose()
    return run


# --- output -------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "load_average": os.getloadavg(),
    }


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def print_run(run: BackendRun) -> None:
    assert run.baseline_per_message and run.baseline_bulk and run.listener and run.paced
    print(
        f"\n{run.backend} {run.version}: {run.monitors} monitors x {run.messages_per_monitor} messages "
        f"(7 observations each)"
    )
    print("| path | messages/s | observations/s | ratio to per-message baseline | ratio to bulk floor |")
    print("|---|---:|---:|---:|---:|")
    base = run.baseline_per_message.observations_per_s
    bulk = run.baseline_bulk.observations_per_s
    for name, rate in (
        ("executemany, one transaction per message (baseline)", run.baseline_per_message),
        ("executemany, one transaction for all (floor)", run.baseline_bulk),
        ("MLLP listener -> sessions service, flat out", run.listener),
        ("MLLP listener, paced (load, not capacity)", run.paced),
    ):
        print(
            f"| {name} | {fmt(rate.messages_per_s)} | {fmt(rate.observations_per_s)} | "
            f"{rate.observations_per_s / base:.3f} | {rate.observations_per_s / bulk:.4f} |"
        )
    print("\n| latency (ms) | samples | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for name, lat in (
        ("alarm: receipt -> alarm row committed, flat out", run.alarm_receipt_to_row_saturated),
        ("alarm: send -> ACK, flat out", run.alarm_send_to_ack_saturated),
        ("any message: send -> ACK, flat out", run.ack_send_to_ack_saturated),
        ("alarm: receipt -> alarm row committed, paced", run.alarm_receipt_to_row_paced),
        ("alarm: send -> ACK, paced", run.alarm_send_to_ack_paced),
        ("any message: send -> ACK, paced", run.ack_send_to_ack_paced),
    ):
        assert lat is not None
        print(f"| {name} | {lat.samples} | {fmt(lat.p50_ms)} | {fmt(lat.p99_ms)} | {fmt(lat.max_ms)} |")
    print(f"\nsbp_high alarms: {run.alarms_found} of {run.alarms_expected} expected")
    for problem in run.problems[:20]:
        print(f"PROBLEM: {problem}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=50)
    parser.add_argument("--messages", type=int, default=40, help="per monitor, flat out")
    parser.add_argument("--paced-messages", type=int, default=10, help="per monitor, paced")
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between a paced monitor's messages")
    parser.add_argument("--workers", type=int, default=8, help="the listener's ingest threads")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--drive", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive_all(args.drive[0], int(args.drive[1]))
        return 0
    if args.monitors < 1 or args.messages < 2 or args.paced_messages < 2:
        parser.error("--monitors must be at least 1, --messages and --paced-messages at least 2")
    runs: list[BackendRun] = []
    skipped: dict[str, str] = {}
    before = machine()
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}")
        if backend == "postgresql" and (why := postgres_reachable()):
            skipped[backend] = why
            log(f"postgresql skipped: {why}")
            continue
        runs.append(run_backend(backend, args))
    after = machine()
    if args.json:
        print(
            json.dumps(
                {
                    "machine_before": before,
                    "machine_after": after,
                    "skipped": skipped,
                    "runs": [asdict(r) for r in runs],
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(f"machine: {before} (load average after: {after['load_average']})")
        for run in runs:
            print_run(run)
        for backend, why in skipped.items():
            print(f"\n{backend}: skipped ({why})")
    return 1 if any(r.problems for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
