"""A real MLLP listener on a loopback port (its own event loop in a thread), with an ingest
function the test chooses: a recording fake, or the real sessions service on a real database."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator

import pytest

from ketacare.interop.hl7v2 import monitor
from ketacare.interop.hl7v2.mllp import BackgroundListener, Ingest, MLLPListener
from ketacare.sessions.device import DeviceBatch, IngestResult

Address = tuple[str, int]
T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


class RecordingIngest:
    """Stands in for the sessions service: remembers batches, spots duplicates by control id."""

    def __init__(self) -> None:
        self.batches: list[DeviceBatch] = []
        self._seen: set[tuple[str, str, str | None]] = set()
        self._lock = threading.Lock()

    def __call__(self, batch: DeviceBatch) -> IngestResult:
        key = (batch.clinic_slug, batch.device_id, batch.control_id)
        with self._lock:
            if key in self._seen:
                return IngestResult(1, 0, True, ())
            self._seen.add(key)
            self.batches.append(batch)
        return IngestResult(1, len(batch.observations), False, ())

    @property
    def control_ids(self) -> list[str | None]:
        return [b.control_id for b in self.batches]


@pytest.fixture
def recording() -> RecordingIngest:
    return RecordingIngest()


@pytest.fixture
def serve() -> Iterator[Callable[..., Address]]:
    """``serve(ingest, **listener_options)`` starts a listener and returns its address."""
    running: list[BackgroundListener] = []

    def start(ingest: Ingest, **options: object) -> Address:
        background = BackgroundListener(MLLPListener(ingest, **options))  # type: ignore[arg-type]
        background.__enter__()
        running.append(background)
        return background.address

    yield start
    for background in running:
        background.__exit__(None, None, None)


def valid_message(control_id: str = "OK-1", *, record: str = "NSP-000001", clinic: str = "north") -> str:
    return monitor.build_oru(
        clinic_slug=clinic,
        record_number=record,
        device_id="BED-1",
        control_id=control_id,
        observed_at=T0,
        vitals={"sbp": 122.0, "hr": 70.0, "spo2": 98.0},
    )
