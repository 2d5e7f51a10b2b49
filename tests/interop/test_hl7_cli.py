"""``ketacare hl7 send`` (the simulated monitor) and ``ketacare hl7 listen``'s refusals.
The listener's normal run is exercised as a real process by test_hl7_kill.py."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ketacare.cli import app
from ketacare.sessions.device import DeviceBatch, DeviceRejected, IngestResult
from tests.interop.conftest import Address, RecordingIngest

runner = CliRunner()


def send(port: int, *extra: str) -> object:
    return runner.invoke(
        app, ["hl7", "send", "--port", str(port), "--clinic", "north", "--record", "NSP-000007", *extra]
    )


def test_send_streams_a_course_of_vitals_and_reports_the_acks(
    serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    _, port = serve(recording)
    result = send(port, "--count", "12", "--spike", "--device", "BED-12")
    assert result.exit_code == 0, result.output
    assert "12 acknowledged, 0 refused" in result.output
    assert [(b.clinic_slug, b.record_number, b.device_id) for b in recording.batches] == [
        ("north", "NSP-000007", "BED-12")
    ] * 12
    systolic = [o.value for b in recording.batches for o in b.observations if o.kind == "sbp"]
    assert systolic[6] == 190.0 and max(systolic[:6] + systolic[7:]) < 160
    times = [b.observations[0].observed_at for b in recording.batches]
    assert times == sorted(times) and len(set(times)) == 12


def test_send_in_loinc_codes(serve: Callable[..., Address], recording: RecordingIngest) -> None:
    _, port = serve(recording)
    assert send(port, "--count", "2", "--codes", "loinc").exit_code == 0
    assert {o.kind for o in recording.batches[0].observations} == {
        "sbp",
        "dbp",
        "map",
        "hr",
        "spo2",
        "rr",
        "temp_c",
    }


def test_send_exits_1_when_messages_are_refused(serve: Callable[..., Address]) -> None:
    def refuse(batch: DeviceBatch) -> IngestResult:
        raise DeviceRejected("unknown_patient", "No patient 'NSP-000007' in clinic 'north'.")

    _, port = serve(refuse)
    result = send(port, "--count", "2")
    assert result.exit_code == 1
    assert "0 acknowledged, 2 refused" in result.output
    assert "AE 204 No patient" in result.output


def test_send_exits_2_when_nothing_listens() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = send(port, "--count", "1")
    assert result.exit_code == 2
    assert "cannot reach an HL7 listener" in result.output


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KETACARE_DATABASE_URL", raising=False)
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    return tmp_path


def test_listen_refuses_an_unmigrated_database(env: Path) -> None:
    result = runner.invoke(app, ["hl7", "listen", "--port", "0"])
    assert result.exit_code == 2
    assert "ketacare db upgrade" in result.output


def test_listen_refuses_a_port_in_use(env: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = runner.invoke(app, ["hl7", "listen", "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 2
    assert "cannot listen on" in result.output


def test_listen_refuses_an_unknown_log_level(env: Path) -> None:
    result = runner.invoke(app, ["hl7", "listen", "--log-level", "chatty"])
    assert result.exit_code == 2
    assert "unknown log level" in result.output


def test_listen_works_where_an_event_loop_already_runs(env: Path) -> None:
    # A process that drove a browser (Playwright's sync API) keeps a loop running in its main
    # thread: the command must not depend on being the only loop.
    import asyncio

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0

    async def inside_a_loop() -> Any:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            return runner.invoke(app, ["hl7", "listen", "--port", str(taken.getsockname()[1])])

    # A thread of the test's own, whatever loop the test process may already be running.
    import threading

    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(asyncio.run(inside_a_loop())))
    worker.start()
    worker.join()
    result = results[0]
    assert result.exit_code == 2 and "cannot listen on" in result.output
