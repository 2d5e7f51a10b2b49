"""The kill test: ``ketacare hl7 listen`` as a real process on a SQLite file, SIGKILLed in the
middle of a stream, restarted; the monitor resends what was not acknowledged (and some that
were). Every acknowledged observation is in the database exactly once."""

from __future__ import annotations

import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ketacare.db import make_engine
from ketacare.interop.hl7v2 import monitor
from ketacare.interop.hl7v2.monitor import MonitorConnection, send_messages
from tests.interop.conftest import T0
from tests.interop.seed import seed_running_sessions, stored_control_ids, vitals

STARTUP_TIMEOUT_S = 60.0
READY = re.compile(r"Listening for HL7 v2 \(MLLP\) on (\S+):(\d+)")
MESSAGES = 300
KILL_AFTER_ACKS = 40


class Listener:
    """``python -m ketacare hl7 listen --port 0`` on the given database."""

    def __init__(self, database: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KETACARE_")}
        env |= {
            "KETACARE_DATABASE_URL": f"sqlite:///{database}",
            "KETACARE_ENVIRONMENT": "test",
            "KETACARE_SECRET_KEY": "k" * 40,
            "KETACARE_DATA_DIR": str(database.parent),
        }
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ketacare", "hl7", "listen", "--port", "0", "--log-level", "warning"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self.address = self._wait_ready(log)

    def _wait_ready(self, log: Path) -> tuple[str, int]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                seen += chunk
                found = READY.search(seen.decode(errors="replace"))
                if found:
                    return found.group(1), int(found.group(2))
                if not chunk:
                    break
            if self.process.poll() is not None:
                break
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"the listener did not start:\n{seen.decode()}\n{log.read_text()[-3000:]}")

    def stop(self, signum: int) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=30)
        self._log.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def stream(
    address: tuple[str, int], messages: list[tuple[str, str]], acked: list[str], enough: threading.Event
) -> None:
    """One monitor sending in order until the connection dies; ``enough`` is set after
    KILL_AFTER_ACKS acknowledgements, and the monitor goes on sending."""
    try:
        with MonitorConnection(*address, timeout_s=30) as connection:
            for control_id, text in messages:
                reply = connection.send(text)
                assert reply.ack_code == "AA", reply.raw
                acked.append(control_id)
                if len(acked) == KILL_AFTER_ACKS:
                    enough.set()
    except OSError:
        return
    finally:
        enough.set()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "kill.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    seed_running_sessions(engine)
    engine.dispose()
    return path


def test_sigkill_mid_stream_loses_no_acknowledged_observation_and_stores_none_twice(
    database: Path, tmp_path: Path
) -> None:
    points = monitor.trajectory(T0, MESSAGES, interval_s=15, seed=11, sbp_spike_at=MESSAGES // 2)
    messages = monitor.messages_for(
        points, clinic_slug="north", record_number="NSP-000001", device_id="BED-1", control_prefix="kill"
    )
    log = tmp_path / "listener.log"

    first = Listener(database, log)
    acked: list[str] = []
    enough = threading.Event()
    sender = threading.Thread(target=stream, args=(first.address, messages, acked, enough))
    sender.start()
    assert enough.wait(timeout=120)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    sender.join(timeout=60)
    assert KILL_AFTER_ACKS <= len(acked) < MESSAGES, "the kill must land mid-stream"
    before_restart = set(acked)

    second = Listener(database, log)
    unacknowledged = [m for m in messages if m[0] not in before_restart]
    again = [m for m in messages if m[0] in set(acked[:5] + acked[-5:])]
    report = send_messages(*second.address, again + unacknowledged)
    assert second.stop(signal.SIGTERM) == 0  # a clean stop ends with exit code 0
    assert not report.refused and not report.unanswered
    assert len(report.acknowledged) == len(again) + len(unacknowledged)

    engine: Engine = make_engine(f"sqlite:///{database}")
    try:
        stored = stored_control_ids(engine)
        rows = vitals(engine)
    finally:
        engine.dispose()
    assert sorted(stored) == sorted(c for c, _ in messages)  # every message once, none twice
    expected = Counter((kind, value, p.observed_at) for p in points for kind, value in p.values.items())
    assert Counter((kind, value, at) for _, kind, value, at in rows) == expected
    with sqlite3.connect(database) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
