"""FHIR Bulk Data export through the HTTP protocol on the demo database: kick-off, status,
manifest, NDJSON files (every line validated), patient and group level, ``_type`` and
``_since``, refused kick-offs, other requesters, deletion."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from ketacare.audit.models import AuditEntry
from ketacare.auth import service as auth
from ketacare.auth.models import User
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import make_sessionmaker, transaction
from ketacare.interop.fhir import bulk, service
from ketacare.interop.fhir.models import FhirExportFile, FhirExportJob
from ketacare.interop.fhir.resources import mappers
from ketacare.patients.models import Patient
from ketacare.planning.models import TreatmentPlan
from tests.interop_fhir.conftest import FHIR_JSON, DemoFhir, validate

BASE = "/fhir/R4"
ASYNC = {"Prefer": "respond-async"}


def export_dir(demo: DemoFhir) -> Path:
    return Path(demo.client.app.state.settings.resolved_fhir_export_dir)  # type: ignore[attr-defined]


def run_jobs(demo: DemoFhir, **options: Any) -> list[tuple[str, str]]:
    engine = demo.engine
    reader_engine = bulk.snapshot_engine(engine)
    try:
        return bulk.run_pending(
            make_sessionmaker(engine),
            bulk.RunOptions(export_dir=export_dir(demo), **options),
            reader=make_sessionmaker(reader_engine),
        )
    finally:
        if reader_engine is not engine and engine.dialect.name == "sqlite":
            reader_engine.dispose()


def kick_off(demo: DemoFhir, path: str, headers: dict[str, str] | None = None, **params: str) -> str:
    response = demo.client.get(path, params=params, headers={**(headers or demo.headers), **ASYNC})
    assert response.status_code == 202, response.text
    location = response.headers["content-location"]
    assert location.startswith(f"http://testserver{BASE}/bulk/")
    return location


def status_path(location: str) -> str:
    return urlsplit(location).path


def finish(demo: DemoFhir, location: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    pending = demo.client.get(status_path(location), headers=headers or demo.headers)
    assert pending.status_code == 202
    assert pending.headers["x-progress"] and pending.headers["retry-after"] == "2"
    job_id = location.rsplit("/", 1)[1]
    assert (job_id, "done") in run_jobs(demo)
    done = demo.client.get(status_path(location), headers=headers or demo.headers)
    assert done.status_code == 200, done.text
    body: dict[str, Any] = done.json()
    assert body["requiresAccessToken"] is True and body["error"] == []
    assert body["request"].startswith(f"http://testserver{BASE}/")
    dt.datetime.fromisoformat(body["transactionTime"])
    return body


def download(
    demo: DemoFhir, manifest: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, list]:
    """Every file of the manifest, each line parsed and validated; type -> resources."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        response = demo.client.get(urlsplit(item["url"]).path, headers=headers or demo.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = response.text.splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            resource = json.loads(line)
            assert resource["resourceType"] == item["type"]
            validate(resource)
            out.setdefault(item["type"], []).append(resource)
    return out


def patients_of(resources: dict[str, list]) -> set[int]:
    found: set[int] = set()
    for kind, items in resources.items():
        mapper = mappers()[kind]
        for resource in items:
            found |= service.patient_ids_of(mapper, resource)
    return found


def clinic_patient_ids(demo: DemoFhir) -> set[int]:
    with demo.db() as db:
        return set(db.execute(select(Patient.id).where(Patient.clinic_id == demo.clinic_id)).scalars())


def other_token(demo: DemoFhir, *scopes: str) -> dict[str, str]:
    with transaction(make_sessionmaker(demo.engine)) as db:
        admin = db.execute(
            select(User).where(User.clinic_id == demo.clinic_id, User.role == Role.clinic_admin.value)
        ).scalar_one()
        actor = Principal(admin.id, admin.username, Role.clinic_admin, demo.clinic_id)
        count = db.execute(select(func.count()).select_from(FhirExportJob)).scalar_one()
        _, secret = auth.create_api_token(db, actor, f"bulk other {count} {'+'.join(scopes)}", list(scopes))
    return {"Authorization": f"Bearer {secret}", "Accept": FHIR_JSON}


def job_count(demo: DemoFhir) -> int:
    with demo.db() as db:
        return int(db.execute(select(func.count()).select_from(FhirExportJob)).scalar_one())


def test_system_export_through_the_protocol_validates_every_line(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export")
    manifest = finish(demo_fhir, location)
    resources = download(demo_fhir, manifest)
    assert {item["type"] for item in manifest["output"]} == {t for t, items in resources.items() if items}
    assert "Patient" in resources and "Group" in resources
    patient_ids = {int(p["id"]) for p in resources["Patient"]}
    assert patient_ids == clinic_patient_ids(demo_fhir) and len(patient_ids) == 12
    # Nothing of the other clinic: every patient reference is one of this clinic's patients.
    assert patients_of(resources) <= patient_ids
    with demo_fhir.db() as db:
        job = db.get(FhirExportJob, location.rsplit("/", 1)[1])
        assert job is not None and job.status == "done"
        assert job.counts["Patient"] == 12
        assert sum(job.counts.values()) == sum(item["count"] for item in manifest["output"])
        audited = set(
            db.execute(
                select(AuditEntry.patient_id).where(
                    AuditEntry.action == "fhir.export", AuditEntry.resource_id == job.id
                )
            ).scalars()
        )
        assert audited == patient_ids
        assert db.execute(
            select(AuditEntry).where(
                AuditEntry.action == "fhir.export.kickoff", AuditEntry.resource_id == job.id
            )
        ).scalar_one()


def test_patient_level_export_holds_only_patient_data(demo_fhir: DemoFhir) -> None:
    manifest = finish(demo_fhir, kick_off(demo_fhir, f"{BASE}/Patient/$export"))
    resources = download(demo_fhir, manifest)
    compartment = {t for t, m in mappers().items() if m.patient_data}
    assert set(resources) <= compartment and "Group" not in resources and "Patient" in resources
    assert {int(p["id"]) for p in resources["Patient"]} == clinic_patient_ids(demo_fhir)


def test_group_export_holds_only_the_groups_patients(demo_fhir: DemoFhir) -> None:
    groups = [e["resource"] for e in demo_fhir.get(f"{BASE}/Group").get("entry", [])]
    for g in groups:
        validate(g)
    with demo_fhir.db() as db:
        plans = db.execute(
            select(TreatmentPlan.protocol_key, TreatmentPlan.patient_id).where(
                TreatmentPlan.clinic_id == demo_fhir.clinic_id
            )
        ).all()
    by_key: dict[str, set[int]] = {}
    for key, patient_id in plans:
        by_key.setdefault(key, set()).add(patient_id)
    assert by_key, "the demo has treatment plans"
    for g in groups:
        key = g["identifier"][0]["value"]
        members = {int(m["entity"]["reference"].split("/")[1]) for m in g.get("member", [])}
        assert members == by_key.get(key, set()) and g["quantity"] == len(members)
    chosen = max((g for g in groups if g.get("member")), key=lambda g: g["quantity"])
    members = {int(m["entity"]["reference"].split("/")[1]) for m in chosen["member"]}
    assert members < clinic_patient_ids(demo_fhir), "a group of some patients, not all"
    manifest = finish(demo_fhir, kick_off(demo_fhir, f"{BASE}/Group/{chosen['id']}/$export"))
    resources = download(demo_fhir, manifest)
    assert {int(p["id"]) for p in resources["Patient"]} == members
    assert patients_of(resources) <= members and len(resources) > 1


def test_type_and_since_narrow_the_output(demo_fhir: DemoFhir) -> None:
    manifest = finish(demo_fhir, kick_off(demo_fhir, f"{BASE}/$export", _type="Patient,Group"))
    assert {item["type"] for item in manifest["output"]} == {"Patient", "Group"}
    counts = {item["type"]: item["count"] for item in manifest["output"]}
    assert counts["Patient"] == 12

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    empty = finish(demo_fhir, kick_off(demo_fhir, f"{BASE}/$export", _type="Patient", _since=future))
    assert empty["output"] == []
    past = finish(
        demo_fhir, kick_off(demo_fhir, f"{BASE}/$export", _type="Patient", _since="2000-01-01T00:00:00+00:00")
    )
    assert [item["count"] for item in past["output"]] == [12]


def test_a_token_scoped_to_one_type_exports_that_type_only(demo_fhir: DemoFhir) -> None:
    narrow = other_token(demo_fhir, "system/Patient.read")
    manifest = finish(demo_fhir, kick_off(demo_fhir, f"{BASE}/$export", narrow), narrow)
    assert [item["type"] for item in manifest["output"]] == ["Patient"]
    refused = demo_fhir.client.get(f"{BASE}/$export", params={"_type": "Group"}, headers={**narrow, **ASYNC})
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("headers", "params", "status", "words"),
    [
        ({}, {}, 400, "respond-async"),
        (ASYNC, {"_type": "Unicorn"}, 400, "Unicorn"),
        (ASYNC, {"_since": "yesterday"}, 400, "instant"),
        (ASYNC, {"_since": "2026-01-01"}, 400, "instant"),
        # Past the year 9999, or before the year 1, once in UTC (was a 500: OverflowError).
        (ASYNC, {"_since": "9999-12-31T23:59:59-01:00"}, 400, "outside the years 1 to 9999"),
        (ASYNC, {"_since": "0001-01-01T00:00:00+01:00"}, 400, "outside the years 1 to 9999"),
        # A _type with no names is not "every type" (it was: the export held everything).
        (ASYNC, {"_type": ",,"}, 400, "_type names no resource type"),
        (ASYNC, {"_type": ""}, 400, "_type names no resource type"),
        (ASYNC, {"_outputFormat": "text/csv"}, 400, "_outputFormat"),
        (ASYNC, {"_typeFilter": "Patient?gender=female"}, 400, "_typeFilter"),
        ({**ASYNC, "Accept": "text/html"}, {}, 400, "Accept"),
    ],
)
def test_bad_kick_off_is_an_operation_outcome_and_makes_no_job(
    demo_fhir: DemoFhir, headers: dict[str, str], params: dict[str, str], status: int, words: str
) -> None:
    before = job_count(demo_fhir)
    response = demo_fhir.client.get(
        f"{BASE}/$export", params=params, headers={**demo_fhir.headers, **headers}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    validate(body)
    assert body["resourceType"] == "OperationOutcome" and words in body["issue"][0]["diagnostics"]
    assert job_count(demo_fhir) == before


def test_patient_level_refuses_a_type_outside_the_compartment_and_unknown_group(demo_fhir: DemoFhir) -> None:
    before = job_count(demo_fhir)
    wrong = demo_fhir.client.get(
        f"{BASE}/Patient/$export", params={"_type": "Group"}, headers={**demo_fhir.headers, **ASYNC}
    )
    assert wrong.status_code == 400 and "not patient data" in wrong.json()["issue"][0]["diagnostics"]
    missing = demo_fhir.client.get(
        f"{BASE}/Group/protocol-nope/$export", headers={**demo_fhir.headers, **ASYNC}
    )
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    assert job_count(demo_fhir) == before


def test_another_token_cannot_see_or_download_the_job(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    manifest = finish(demo_fhir, location)
    stranger = other_token(demo_fhir, "system/*.read")
    assert demo_fhir.client.get(status_path(location), headers=stranger).status_code == 404
    file_url = urlsplit(manifest["output"][0]["url"]).path
    refused = demo_fhir.client.get(file_url, headers=stranger)
    assert refused.status_code == 404 and refused.json()["resourceType"] == "OperationOutcome"
    assert demo_fhir.client.delete(status_path(location), headers=stranger).status_code == 404
    assert demo_fhir.client.get(file_url, headers=demo_fhir.headers).status_code == 200
    assert demo_fhir.client.get(file_url.replace("Patient.ndjson", "..%2Fx.ndjson")).status_code in (401, 404)
    unknown = demo_fhir.client.get(f"{BASE}/bulk/{'x' * 32}", headers=demo_fhir.headers)
    assert unknown.status_code == 404


def test_delete_removes_the_files_and_the_job(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    manifest = finish(demo_fhir, location)
    job_id = location.rsplit("/", 1)[1]
    folder = export_dir(demo_fhir) / job_id
    assert (folder / "1" / "Patient.ndjson").is_file()  # attempt 1 wrote it
    assert demo_fhir.client.delete(status_path(location), headers=demo_fhir.headers).status_code == 202
    assert not folder.exists()
    assert demo_fhir.client.get(status_path(location), headers=demo_fhir.headers).status_code == 404
    assert (
        demo_fhir.client.get(
            urlsplit(manifest["output"][0]["url"]).path, headers=demo_fhir.headers
        ).status_code
        == 404
    )
    with demo_fhir.db() as db:
        job = db.get(FhirExportJob, job_id)
        assert job is not None and job.status == "cancelled"
        assert not db.execute(select(FhirExportFile).where(FhirExportFile.job_id == job_id)).first()


def test_a_queued_job_deleted_before_it_runs_never_writes(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    assert demo_fhir.client.delete(status_path(location), headers=demo_fhir.headers).status_code == 202
    job_id = location.rsplit("/", 1)[1]
    assert job_id not in [j for j, _ in run_jobs(demo_fhir)]
    assert not (export_dir(demo_fhir) / job_id).exists()


def test_large_types_are_split_into_files_and_the_manifest_lists_each(demo_fhir: DemoFhir) -> None:
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient")
    job_id = location.rsplit("/", 1)[1]
    assert (job_id, "done") in run_jobs(demo_fhir, max_lines=5)
    manifest = demo_fhir.get(status_path(location))
    assert [(o["url"].rsplit("/", 1)[1], o["count"]) for o in manifest["output"]] == [
        ("Patient.ndjson", 5),
        ("Patient.2.ndjson", 5),
        ("Patient.3.ndjson", 2),
    ]
    ids = [p["id"] for p in download(demo_fhir, manifest)["Patient"]]
    assert len(ids) == len(set(ids)) == 12


def test_the_capability_statement_lists_export(demo_fhir: DemoFhir) -> None:
    body = demo_fhir.get(f"{BASE}/metadata")
    validate(body)
    operations = {o["name"]: o["definition"] for o in body["rest"][0]["operation"]}
    assert operations["export"] == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
    assert "Group" in {r["type"] for r in body["rest"][0]["resource"]}


def test_each_download_is_audited_naming_the_job_and_the_file(demo_fhir: DemoFhir) -> None:
    """The per-patient ``fhir.export`` entries are written when the job finishes; each download
    writes one more entry naming the job and the file, so the two join on the job id."""
    location = kick_off(demo_fhir, f"{BASE}/$export", _type="Patient,Group")
    manifest = finish(demo_fhir, location)
    job_id = location.rsplit("/", 1)[1]
    patient_file = next(o for o in manifest["output"] if o["type"] == "Patient")
    assert (
        demo_fhir.client.get(urlsplit(patient_file["url"]).path, headers=demo_fhir.headers).status_code == 200
    )
    with demo_fhir.db() as db:
        exported = db.execute(
            select(AuditEntry.patient_id, AuditEntry.detail).where(
                AuditEntry.action == "fhir.export", AuditEntry.resource_id == job_id
            )
        ).all()
        downloads = (
            db.execute(
                select(AuditEntry).where(
                    AuditEntry.action == "fhir.export.download", AuditEntry.resource_id == job_id
                )
            )
            .scalars()
            .all()
        )
    assert {pid for pid, _ in exported} == clinic_patient_ids(demo_fhir)
    assert {detail for _, detail in exported} == {f"system export job {job_id}"}
    assert len(downloads) == 1
    assert downloads[0].detail == f"export job {job_id}, file Patient.ndjson: 12 Patient"
    assert downloads[0].patient_id is None
