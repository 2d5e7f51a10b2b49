"""The staff page for bulk exports: start one (with the CSRF token), see this clinic's jobs,
download through the logged-in session (the requester only), delete."""

from __future__ import annotations

import re

from sqlalchemy import select

from ketacare.interop.fhir import bulk
from ketacare.interop.fhir.models import FhirExportJob
from tests.helpers import audit_entries


def test_a_nurse_starts_downloads_and_deletes_an_export(app, as_role, world, session_factory, db) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    page = nurse.get("/fhir-exchange/exports")
    assert page.status_code == 200 and 'name="types" value="Patient"' in page.text
    assert 'href="/fhir-exchange/exports"' in nurse.get("/fhir-exchange").text

    started = nurse.post(
        "/fhir-exchange/exports", {"types": "Patient", "since": "2000-01-01"}, follow_redirects=False
    )
    assert started.status_code == 303, started.text
    job = db.execute(select(FhirExportJob).where(FhirExportJob.clinic_id == world.clinic.id)).scalar_one()
    assert job.types == ["Patient"] and job.level == "system" and job.requester_kind == "user"
    assert job.since is not None and job.since.year == 2000 and job.since.hour == 5  # midnight New York

    options = bulk.RunOptions(export_dir=app.state.settings.resolved_fhir_export_dir)
    assert bulk.run_pending(session_factory, options) == [(job.id, "done")]
    listing = nurse.get("/fhir-exchange/exports").text
    link = re.search(r'href="http://testserver(/fhir/R4/bulk/[^"]+/Patient\.ndjson)"', listing)
    assert link, listing
    downloaded = nurse.get(link.group(1))
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"].startswith("application/fhir+ndjson")
    assert sorted(line.count('"resourceType":"Patient"') for line in downloaded.text.splitlines()) == [1, 1]
    assert audit_entries(db, "fhir.export", patient_id=world.patient_a.id, resource_id=job.id)

    # Another person of the clinic sees the job but cannot download or delete it.
    prescriber = as_role("prescriber")
    theirs = prescriber.get("/fhir-exchange/exports").text
    assert job.requester_name in theirs and "Patient.ndjson" not in theirs
    assert prescriber.get(link.group(1)).status_code == 404
    assert (
        prescriber.post(f"/fhir-exchange/exports/{job.id}/delete", follow_redirects=False).status_code == 404
    )

    deleted = nurse.post(f"/fhir-exchange/exports/{job.id}/delete", follow_redirects=False)
    assert deleted.status_code == 303
    db.expire_all()
    assert db.get(FhirExportJob, job.id).status == "cancelled"
    assert not (options.export_dir / job.id).exists()
    assert nurse.get(link.group(1)).status_code == 404


def test_the_page_refuses_a_bad_date_and_an_unknown_type_without_a_job(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    bad_date = nurse.post("/fhir-exchange/exports", {"since": "someday"})
    assert bad_date.status_code == 422 and "YYYY-MM-DD" in bad_date.text
    bad_type = nurse.post("/fhir-exchange/exports", {"types": "Unicorn"})
    assert bad_type.status_code == 422 and "Unicorn" in bad_type.text
    no_csrf = nurse.client.post("/fhir-exchange/exports", data={"types": "Patient"})
    assert no_csrf.status_code == 403
    assert not db.execute(select(FhirExportJob).where(FhirExportJob.clinic_id == world.clinic.id)).first()


def test_people_without_fhir_read_cannot_open_the_page(as_role) -> None:  # type: ignore[no-untyped-def]
    assert as_role("researcher").get("/fhir-exchange/exports").status_code == 403


def test_the_page_refuses_a_date_before_the_year_1_in_utc(app, as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    # Midnight of 0001-01-01 in Tokyo is in the year 0 in UTC (was a 500: OverflowError).
    app.state.settings = app.state.settings.model_copy(update={"clinic_time_zone": "Asia/Tokyo"})
    nurse = as_role("nurse")
    early = nurse.post("/fhir-exchange/exports", {"since": "0001-01-01"})
    assert early.status_code == 422 and "between the years 1 and 9999" in early.text
    assert not db.execute(select(FhirExportJob).where(FhirExportJob.clinic_id == world.clinic.id)).first()
