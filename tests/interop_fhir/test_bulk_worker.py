"""The export worker: a job whose worker died (stale heartbeat) is queued again and finished by
the next worker; a live one is left alone; a job deleted while it runs stops and leaves no
files; the app's real worker thread finishes a job on its own."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from ketacare.app import create_app
from ketacare.config import Environment, load_settings
from ketacare.db import make_sessionmaker, transaction, utcnow
from ketacare.interop.fhir import bulk
from ketacare.interop.fhir.models import FhirExportJob
from tests.interop_fhir.conftest import DemoFhir
from tests.interop_fhir.test_bulk_export import BASE, download, export_dir, kick_off, run_jobs, status_path


def _age_heartbeat(demo: DemoFhir, job_id: str, seconds: int) -> None:
    with transaction(make_sessionmaker(demo.engine)) as db:
        db.execute(
            update(FhirExportJob)
            .where(FhirExportJob.id == job_id)
            .values(heartbeat_at=utcnow() - dt.timedelta(seconds=seconds))
        )


def _claim_only(demo: DemoFhir, worker: str, job_id: str) -> None:
    """Claims queued jobs as ``worker`` until ``job_id`` is its (a crashed worker never runs them)."""
    factory = make_sessionmaker(demo.engine)
    while (claimed := bulk.claim(factory, worker)) is not None:
        if claimed == job_id:
            return
    raise AssertionError("the job was not claimable")


def test_a_job_left_running_by_a_dead_worker_is_requeued_and_completed(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient,Group")
    job_id = location.rsplit("/", 1)[1]
    _claim_only(demo_fhir, "crashed-host:1:1", job_id)
    partial = export_dir(demo_fhir) / job_id / "1"  # attempt 1's directory
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "Patient.ndjson.part").write_text('{"resourceType": "Pat')
    # Still heartbeating: a second worker leaves it alone.
    assert job_id not in [j for j, _ in run_jobs(demo_fhir, stale_after=dt.timedelta(seconds=60))]
    assert demo_fhir.client.get(status_path(location), headers=demo_fhir.headers).status_code == 202
    # The heartbeat stops (the process died): the next pass re-queues and finishes it.
    _age_heartbeat(demo_fhir, job_id, 600)
    assert (job_id, "done") in run_jobs(demo_fhir, stale_after=dt.timedelta(seconds=60))
    manifest = demo_fhir.get(status_path(location))
    resources = download(demo_fhir, manifest)
    assert len(resources["Patient"]) == 12
    assert not partial.exists()  # what the dead attempt left goes once attempt 2 finished
    assert (export_dir(demo_fhir) / job_id / "2" / "Patient.ndjson").is_file()
    with demo_fhir.db() as db:
        job = db.get(FhirExportJob, job_id)
        assert job is not None and job.status == "done" and job.attempts == 2
        assert job.output_attempt == 2
        assert job.worker != "crashed-host:1:1"


def test_a_job_that_keeps_dying_fails_after_three_attempts(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    job_id = location.rsplit("/", 1)[1]
    for attempt in range(bulk.MAX_ATTEMPTS):
        _claim_only(demo_fhir, f"dying:{attempt}", job_id)
        _age_heartbeat(demo_fhir, job_id, 600)
        bulk.requeue_stale(make_sessionmaker(demo_fhir.engine), dt.timedelta(seconds=60))
    failed = demo_fhir.client.get(status_path(location), headers=demo_fhir.headers)
    assert failed.status_code == 500
    outcome = failed.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "stopped 3 times" in outcome["issue"][0]["diagnostics"]


def test_a_job_deleted_while_running_stops_and_leaves_no_files(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    job_id = location.rsplit("/", 1)[1]
    _claim_only(demo_fhir, "slow-worker", job_id)
    assert demo_fhir.client.delete(status_path(location), headers=demo_fhir.headers).status_code == 202
    factory = make_sessionmaker(demo_fhir.engine)
    options = bulk.RunOptions(export_dir=export_dir(demo_fhir), worker_name="slow-worker")
    assert bulk.run_job(factory, factory, job_id, options) == "lost"
    assert not (export_dir(demo_fhir) / job_id).exists()
    with demo_fhir.db() as db:
        job = db.get(FhirExportJob, job_id)
        assert job is not None and job.status == "cancelled"


def test_the_apps_worker_thread_finishes_a_job(demo_fhir: DemoFhir, tmp_path: Path) -> None:
    settings = load_settings(
        environment=Environment.test,
        data_dir=tmp_path,
        secret_key="fhir-" + "k" * 40,
        fhir_export_worker=True,
    )
    app = create_app(settings, engine=demo_fhir.engine, check_migrations=False)
    with TestClient(app, base_url="http://testserver") as client:
        started = client.get(
            f"{BASE}/$export",
            params={"_type": "Patient"},
            headers={**demo_fhir.headers, "Prefer": "respond-async"},
        )
        assert started.status_code == 202
        path = status_path(started.headers["content-location"])
        deadline = time.monotonic() + 60
        while (response := client.get(path, headers=demo_fhir.headers)).status_code == 202:
            assert time.monotonic() < deadline, "the worker thread did not finish the job"
            time.sleep(0.2)
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert [(o["type"], o["count"]) for o in output] == [("Patient", 12)]
        lines = client.get(urlsplit(output[0]["url"]).path, headers=demo_fhir.headers).text.splitlines()
        assert len(lines) == 12
        assert (tmp_path / "fhir-exports" / path.rsplit("/", 1)[1] / "1" / "Patient.ndjson").is_file()


def test_a_worker_that_lost_its_job_leaves_its_successors_files(
    demo_fhir: DemoFhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A stalls past the stale time; B re-queues the job and finishes it; A carries on,
    finds it lost the job and removes only its own attempt's files: B's stay downloadable."""
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    job_id = location.rsplit("/", 1)[1]
    _claim_only(demo_fhir, "worker-a", job_id)
    real = bulk.write_ndjson
    seen: dict[str, list[tuple[str, str]]] = {}

    def stalled(*args: Any, **kwargs: Any) -> bulk.ExportResult:
        monkeypatch.setattr(bulk, "write_ndjson", real)
        _age_heartbeat(demo_fhir, job_id, 600)
        seen["b"] = run_jobs(demo_fhir, stale_after=dt.timedelta(seconds=60), worker_name="worker-b")
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "write_ndjson", stalled)
    factory = make_sessionmaker(demo_fhir.engine)
    reader_engine = bulk.snapshot_engine(demo_fhir.engine)
    options = bulk.RunOptions(export_dir=export_dir(demo_fhir), worker_name="worker-a", heartbeat_seconds=60)
    try:
        ended = bulk.run_job(factory, make_sessionmaker(reader_engine), job_id, options)
    finally:
        if reader_engine is not demo_fhir.engine:
            reader_engine.dispose()
    assert (job_id, "done") in seen["b"] and ended == "lost"
    manifest = demo_fhir.get(status_path(location))
    assert [(o["type"], o["count"]) for o in manifest["output"]] == [("Patient", 12)]
    assert len(download(demo_fhir, manifest)["Patient"]) == 12
    assert not (export_dir(demo_fhir) / job_id / "1").exists()
    with demo_fhir.db() as db:
        job = db.get(FhirExportJob, job_id)
        assert job is not None and job.status == "done" and job.output_attempt == 2
        assert job.worker == "worker-b"


def test_a_slow_query_does_not_make_a_live_job_look_dead(
    demo_fhir: DemoFhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat runs on its own timer: a read that yields nothing for longer than the
    stale time (no progress calls) leaves the job running, not re-queued."""
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    job_id = location.rsplit("/", 1)[1]
    _claim_only(demo_fhir, "slow-query", job_id)
    real = bulk.write_ndjson
    factory = make_sessionmaker(demo_fhir.engine)
    during: dict[str, Any] = {}

    def slow(*args: Any, **kwargs: Any) -> bulk.ExportResult:
        time.sleep(1.5)  # one long query, before the first resource
        bulk.requeue_stale(factory, dt.timedelta(seconds=1))
        with demo_fhir.db() as db:
            job = db.get(FhirExportJob, job_id)
            assert job is not None
            during.update(status=job.status, worker=job.worker)
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "write_ndjson", slow)
    options = bulk.RunOptions(
        export_dir=export_dir(demo_fhir), worker_name="slow-query", heartbeat_seconds=0.1
    )
    reader_engine = bulk.snapshot_engine(demo_fhir.engine)
    try:
        ended = bulk.run_job(factory, make_sessionmaker(reader_engine), job_id, options)
    finally:
        if reader_engine is not demo_fhir.engine:
            reader_engine.dispose()
    assert during == {"status": "running", "worker": "slow-query"}
    assert ended == "done"
    assert [o["count"] for o in demo_fhir.get(status_path(location))["output"]] == [12]
