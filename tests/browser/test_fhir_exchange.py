"""FHIR exchange as its users meet it: a clinic admin creates a SMART-scoped token on the API
tokens page in Chromium and opens the FHIR exchange page; then every ``sh`` example of
docs/fhir.md runs with curl against the real server with that token, in order, as one script,
and each example's output is checked (JSON that validates, or the NDJSON it promises)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pyotp
import pytest

pytestmark = pytest.mark.browser

DOC = Path(__file__).resolve().parents[2] / "docs" / "fhir.md"
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
MARK = "@@@ketacare-doc-block-end@@@"
ADMIN = "fhir-admin.north"  # made by this test; no other browser test uses it


def _make_admin(server, username: str = ADMIN) -> None:  # type: ignore[no-untyped-def]
    from ketacare.auth.passwords import hash_password
    from ketacare.demo import DEMO_PASSWORD

    clinic_id = server.scalar("SELECT id FROM clinics WHERE slug = 'north'")
    with server.sql() as conn:
        conn.execute(
            "INSERT INTO users (clinic_id, username, full_name, role, password_hash, totp_secret, "
            "totp_enrolled, is_active, created_at) VALUES (?, ?, 'Fhir Admin', 'clinic_admin', ?, ?, 1, 1, "
            "CURRENT_TIMESTAMP)",
            (clinic_id, username, hash_password(DEMO_PASSWORD), pyotp.random_base32()),
        )


def _create_token(page, server) -> str:  # type: ignore[no-untyped-def]
    from ketacare.demo import DEMO_PASSWORD

    page.goto("/admin/tokens")
    if "/reauth" in page.url:
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name=re.compile("Confirm|Continue")).click()
        page.goto("/admin/tokens")
    page.get_by_label("Name").fill("Hospital integration engine")
    page.locator('input[name="scopes"][value="system/*.read"]').check()
    page.locator('input[name="scopes"][value="system/*.write"]').check()
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Create")).click()
    if "/reauth" in page.url:
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name=re.compile("Confirm|Continue")).click()
        return _create_token(page, server)
    secret = page.locator("code.secret").inner_text().strip()
    assert secret.startswith("kc_")
    return str(secret)


def _blocks() -> list[str]:
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) >= 10, "docs/fhir.md should show the API with curl examples"
    return blocks


def _check_output(index: int, code: str, output: str) -> None:
    """Each line of an example's output: a JSON resource that validates (an OperationOutcome
    only of information or warnings), a 2xx status line, or a bare 2xx status code."""
    from tests.interop_fhir.conftest import validate

    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, f"example {index} printed nothing:\n{code}"
    for line in lines:
        if line.startswith("{"):
            body = json.loads(line)
            if "resourceType" in body:
                validate(body)
                assert body["resourceType"] != "OperationOutcome" or all(
                    i["severity"] in ("information", "warning") for i in body["issue"]
                ), f"example {index} answered an error:\n{code}\n{line}"
        elif line.startswith("HTTP/"):
            assert re.match(r"HTTP/\S+ (200|202)", line), f"example {index}:\n{code}\n{line[:500]}"
        else:
            assert re.fullmatch(r"20[0-9]", line.strip()), f"example {index} printed {line[:300]!r}"


def test_admin_makes_a_token_and_the_documented_curl_examples_work(page, server, login) -> None:  # type: ignore[no-untyped-def]
    _make_admin(server)
    login(page, ADMIN)
    token = _create_token(page, server)

    page.goto("/fhir-exchange")
    assert page.get_by_role("heading", name="FHIR exchange").is_visible()
    assert page.get_by_role("cell", name="Observation", exact=True).is_visible()
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "fhir-exchange.png"), full_page=False)

    patient = server.scalar(
        "SELECT p.id FROM patients p JOIN clinics c ON c.id = p.clinic_id WHERE c.slug = 'north' "
        "AND EXISTS (SELECT 1 FROM treatment_sessions s "
        "WHERE s.patient_id = p.id AND s.status = 'discharged') "
        "ORDER BY p.id LIMIT 1"
    )
    blocks = _blocks()
    script = "set -euo pipefail\n" + "".join(f"{b}\necho '{MARK}'\n" for b in blocks)
    workdir = server.data_dir / "docs-run"
    workdir.mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KETACARE_")},
        "BASE": f"{server.url}/fhir/R4",
        "TOKEN": token,
        "PATIENT": str(patient),
    }
    run = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, cwd=workdir, timeout=300, check=False
    )
    assert run.returncode == 0, f"the examples failed:\n{run.stderr[-3000:]}\n{run.stdout[-3000:]}"
    outputs = run.stdout.split(MARK + "\n")
    assert len(outputs) == len(blocks) + 1
    for index, (code, output) in enumerate(zip(blocks, outputs, strict=False)):
        _check_output(index, code, output)


PORTER = "fhir-porter.north"  # made by the test below; no other browser test uses it
MOVING_IN = "\n".join(
    json.dumps(line)
    for line in (
        {
            "resourceType": "Patient",
            "id": "old-7",
            "name": [{"family": "Meitner", "given": ["Lise"]}],
            "gender": "female",
            "birthDate": "1958-11-07",
        },
        {
            "resourceType": "Condition",
            "id": "c-7",
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M79.7"}]},
            "subject": {"reference": "Patient/old-7"},
        },
        {"resourceType": "Condition", "id": "c-8", "subject": {"reference": "Patient/old-7"}},
    )
)


def test_admin_imports_ndjson_then_exports_from_the_pages(page, server, login, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _make_admin(server, PORTER)
    login(page, PORTER)

    upload = tmp_path / "moving-in.ndjson"
    upload.write_text(MOVING_IN + "\n")
    page.goto("/fhir-exchange")
    with page.expect_navigation():
        page.get_by_role("link", name="Import from FHIR NDJSON").click()
    page.get_by_label("NDJSON files").set_input_files(str(upload))
    page.get_by_label("Source system").fill("old-clinic-ehr")
    with page.expect_navigation():
        page.get_by_role("button", name="Import").click()
    totals = page.locator("#import-totals").inner_text()
    assert "3 lines: 2 accepted, 0 unchanged, 1 rejected" in totals, totals
    rejected = page.locator("#import-report tr.outcome-rejected").inner_text()
    assert "c-8" in rejected and "code" in rejected.lower(), rejected
    page.screenshot(path=str(IMG / "fhir-import.png"), full_page=True)
    with page.expect_navigation():
        page.locator("#import-report a[href^='/patients/']").first.click()
    assert page.get_by_role("heading", name="Meitner, Lise").is_visible()
    assert page.get_by_text("M79.7").first.is_visible()

    page.goto("/fhir-exchange/exports")
    page.locator('input[name="types"][value="Patient"]').check()
    with page.expect_navigation():
        page.get_by_role("button", name="Start export").click()
    link = page.locator("a[href*='/bulk/'][href$='Patient.ndjson']")
    for _ in range(60):
        if link.count():
            break
        page.wait_for_timeout(500)
        page.reload()
    assert link.count() == 1, page.content()[-2000:]
    page.screenshot(path=str(IMG / "fhir-exports.png"), full_page=True)
    download = page.request.get(link.get_attribute("href"))
    assert download.ok and download.headers["content-type"].startswith("application/fhir+ndjson")
    names = [json.loads(line)["name"][0]["family"] for line in download.text().splitlines()]
    assert "Meitner" in names and len(names) == server.scalar(
        "SELECT count(*) FROM patients p JOIN clinics c ON c.id = p.clinic_id WHERE c.slug = 'north'"
    )
