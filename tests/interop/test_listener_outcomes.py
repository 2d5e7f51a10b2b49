"""What the listener answers for each outcome of the ingest: ACK only when it returned (the
transaction committed), NAK with the right code when it refused or failed; many monitors at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.exc import OperationalError

from ketacare.interop.hl7v2 import monitor
from ketacare.interop.hl7v2.monitor import MonitorConnection, send_messages
from ketacare.sessions.device import DeviceBatch, DeviceRejected, IngestResult
from tests.interop.conftest import T0, Address, RecordingIngest, valid_message


@pytest.mark.parametrize(
    ("code", "error_code", "location"),
    [
        ("unknown_clinic", "204", "MSH^1^4"),
        ("unknown_patient", "204", "PID^1^3"),
        ("no_active_session", "204", "PID^1^3"),
        ("implausible", "102", ""),
        ("invalid", "102", ""),
        ("duplicate_race", "207", "MSH^1^10"),
        ("something_new", "207", ""),
    ],
)
def test_a_refusal_by_the_sessions_service_is_a_nak_ae(
    code: str, error_code: str, location: str, serve: Callable[..., Address]
) -> None:
    def refuse(batch: DeviceBatch) -> IngestResult:
        raise DeviceRejected(code, f"refused: {code}")

    with MonitorConnection(*serve(refuse)) as connection:
        reply = connection.send(valid_message("R-1"))
    assert (reply.ack_code, reply.control_id, reply.error_code, reply.text) == (
        "AE",
        "R-1",
        error_code,
        f"refused: {code}",
    )
    assert reply.raw.split("\r")[2].split("|")[2] == location


def test_a_database_outage_is_a_nak_207_and_the_resend_is_stored_once(serve: Callable[..., Address]) -> None:
    recording = RecordingIngest()
    outage = threading.Event()
    outage.set()

    def flaky(batch: DeviceBatch) -> IngestResult:
        if outage.is_set():
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        return recording(batch)

    host, port = serve(flaky)
    message = valid_message("OUT-1")
    with MonitorConnection(host, port) as connection:
        first = connection.send(message)
        assert (first.ack_code, first.error_code) == ("AE", "207")
        assert "send again" in first.text
        assert recording.batches == []
        outage.clear()
        second = connection.send(message)
        third = connection.send(message)  # the monitor missed our ACK and sends it once more
    assert (second.ack_code, third.ack_code) == ("AA", "AA")
    assert recording.control_ids == ["OUT-1"]


def test_an_unexpected_error_in_the_ingest_is_a_nak_207_and_the_listener_goes_on(
    serve: Callable[..., Address],
) -> None:
    calls = []

    def broken(batch: DeviceBatch) -> IngestResult:
        calls.append(batch.control_id)
        if len(calls) == 1:
            raise ZeroDivisionError("a bug")
        return IngestResult(1, len(batch.observations), False, ())

    host, port = serve(broken)
    report = send_messages(host, port, [("B-1", valid_message("B-1")), ("B-2", valid_message("B-2"))])
    assert report.refused["B-1"].error_code == "207"
    assert report.acknowledged == ["B-2"]


def test_the_ack_is_sent_only_after_the_ingest_returned(serve: Callable[..., Address]) -> None:
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(batch: DeviceBatch) -> IngestResult:
        entered.set()
        release.wait(timeout=30)
        finished.set()
        return IngestResult(1, len(batch.observations), False, ())

    with MonitorConnection(*serve(slow)) as connection:
        connection.send_raw(monitor.frame(valid_message("SLOW").encode()))
        assert entered.wait(timeout=30)
        connection.set_timeout(0.3)
        with pytest.raises(TimeoutError):  # nothing may arrive while the transaction is open
            connection.receive()
        connection.set_timeout(30)
        release.set()
        reply = connection.receive()
        assert finished.is_set()
    assert (reply.ack_code, reply.control_id) == ("AA", "SLOW")


def test_a_message_whose_observations_are_all_unavailable_is_acknowledged_without_storing(
    serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    text = valid_message("PROBE-OFF").replace("|98|", "|8388607|").replace("|122|", "|8388607|")
    text = text.replace("|70|", "|8388607|")
    with MonitorConnection(*serve(recording)) as connection:
        reply = connection.send(text)
    assert reply.ack_code == "AA"
    assert recording.batches == []


def test_fifty_monitors_at_once_each_get_their_own_acks(
    serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    host, port = serve(recording)

    def one_monitor(bed: int) -> monitor.SendReport:
        points = monitor.trajectory(T0, 5, seed=bed)
        messages = monitor.messages_for(
            points, clinic_slug="north", record_number=f"NSP-{bed:06d}", device_id=f"BED-{bed}"
        )
        return send_messages(host, port, messages)

    with ThreadPoolExecutor(max_workers=50) as pool:
        reports = list(pool.map(one_monitor, range(50)))
    assert all(len(r.acknowledged) == 5 and not r.refused and not r.unanswered for r in reports)
    assert len(recording.batches) == 250
    by_device: dict[str, list[str]] = {}
    for batch in recording.batches:
        by_device.setdefault(batch.device_id, []).append(str(batch.control_id))
    assert all(ids == sorted(ids) for ids in by_device.values())  # each monitor's order kept
