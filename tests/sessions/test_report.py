"""The session report: the printable page, the PDF (its text read back from the page content),
and signatures that fix what the report states."""

from __future__ import annotations

import datetime as dt
import re

from ketacare.auth import service as auth
from ketacare.knowledge.billing import billing_codes
from ketacare.sessions import pdf, report, views
from ketacare.sessions.models import Administration
from ketacare.web.templating import DISCLAIMER
from tests.helpers import audit_entries, is_problem
from tests.sessions.conftest import prechecked, running

# --- reading the text of a PDF that fpdf2 wrote uncompressed ------------------------------------


def _unescape(raw: bytes) -> bytes:
    simple = {
        b"n": b"\n",
        b"r": b"\r",
        b"t": b"\t",
        b"b": b"\b",
        b"f": b"\f",
        b"(": b"(",
        b")": b")",
        b"\\": b"\\",
    }

    def one(m: re.Match[bytes]) -> bytes:
        token = m.group(1)
        return bytes([int(token, 8)]) if token[:1].isdigit() else simple.get(token, token)

    return re.sub(rb"\\([0-7]{1,3}|.)", one, raw, flags=re.S)


def pdf_text(data: bytes) -> str:
    """The text shown on the pages: each font's 2-byte codes mapped back through its ToUnicode
    CMap (the DejaVu subsets fpdf2 embeds), in content-stream order."""
    objects = {int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\n(.*?)\nendobj", data, re.S)}
    fonts: dict[bytes, dict[int, str]] = {}
    for name, number in re.findall(rb"/(F\d+) (\d+) 0 R", data):
        cmap_ref = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(number)])
        assert cmap_ref, "every font carries its ToUnicode map"
        pairs = re.findall(rb"<([0-9A-F]{4})> <([0-9A-F]{4,8})>", objects[int(cmap_ref.group(1))])
        fonts[name] = {int(code, 16): chr(int(uni, 16)) for code, uni in pairs}
    out: list[str] = []
    for stream in re.findall(rb"stream\n(.*?)\nendstream", data, re.S):
        font: dict[int, str] | None = None
        for m in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj", stream, re.S):
            if m.group(1):
                font = fonts.get(m.group(1))
            elif font is not None:
                raw = _unescape(m.group(2))
                out.append(
                    "".join(
                        font.get(int.from_bytes(raw[i : i + 2], "big"), "?") for i in range(0, len(raw), 2)
                    )
                )
    return "\n".join(out)


# --- a finished session -----------------------------------------------------------------------


def finished(nurse, world, db, booked) -> int:  # type: ignore[no-untyped-def]
    """An infusion of 100 minutes with a halved rate, an alarm acknowledged and resolved, a
    grade 2 adverse event, scores, recovery and discharge."""
    sid = running(nurse, world, booked)
    high = nurse.api(
        "POST", f"/api/v1/sessions/{sid}/vitals", json={"readings": [{"kind": "sbp", "value": 185}]}
    )
    assert {a["rule"] for a in high.json()["alarms"]} >= {"sbp_high"}
    changed = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/administrations",
        json={"kind": "rate_change", "drug": "ketamine", "rate_mg_per_h": 14, "reason": "SBP 185"},
    )
    assert changed.status_code == 201, changed.text
    for a in nurse.api("GET", f"/api/v1/sessions/{sid}").json()["alarms"]:
        assert (
            nurse.api(
                "POST", f"/api/v1/alarms/{a['id']}/acknowledge", json={"note": "rate halved"}
            ).status_code
            == 200
        )
        assert (
            nurse.api("POST", f"/api/v1/alarms/{a['id']}/resolve", json={"note": "SBP 150"}).status_code
            == 200
        )
    ae = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/adverse-events",
        json={
            "term_key": "nausea",
            "grade": 2,
            "actions": ["medication_given"],
            "medication_given": "ondansetron 4 mg",
            "outcome": "resolved",
        },
    )
    assert ae.status_code == 201, ae.text
    nurse.api("POST", f"/api/v1/sessions/{sid}/scores", json={"scale": "cadss6", "items": [1, 0, 2, 0, 0, 1]})
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/end-dosing", json={}).status_code == 200
    # The infusion ran 100 minutes and ended 70 minutes ago: 30 min at 28 mg/h, 70 min at 14 mg/h.
    now = dt.datetime.now(dt.UTC)
    minutes_ago = {"start": 170, "rate_change": 140, "stop": 70}
    for entry in db.query(Administration).filter_by(session_id=sid):
        entry.given_at = now - dt.timedelta(minutes=minutes_ago[entry.kind])
    db.commit()
    nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/vitals",
        json={
            "readings": [
                {"kind": "sbp", "value": 128},
                {"kind": "dbp", "value": 80},
                {"kind": "hr", "value": 74},
                {"kind": "spo2", "value": 98},
            ]
        },
    )
    nurse.api(
        "POST", f"/api/v1/sessions/{sid}/scores", json={"scale": "moaas", "items": [5], "phase": "after"}
    )
    checks = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/discharge-checks",
        json={"alert_and_oriented": True, "escort_present": True, "instructions_given": True},
    )
    assert checks.json()["status"] == "ready_for_discharge", checks.json()["discharge_checklist"]
    done = nurse.api("POST", f"/api/v1/sessions/{sid}/discharge", json={})
    assert done.status_code == 200 and done.json()["status"] == "discharged", done.text
    return sid


def test_report_page_shows_totals_alarms_events_billing(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = finished(nurse, world, db, booked)
    page = nurse.get(f"/sessions/{sid}/report")
    assert page.status_code == 200
    html = page.text
    assert "30.33 mg" in html and "0.379 mg/kg" in html and "100 min" in html  # 28*30/60 + 14*70/60
    assert "Systolic pressure at or above 180 mmHg" in html and "rate halved" in html
    assert "Nausea" in html and "ondansetron 4 mg" in html and "2: Moderate" in html
    codes = billing_codes()
    assert "96365" in html and codes["96365"].label in html
    assert "96366" in html and codes["96366"].label in html
    assert "CADSS-6" in html and "LOT-1" in html
    assert 'id="not-signed"' in html and 'id="sign"' in html  # discharged: the nurse may sign
    assert 'class="chart" id="timeline-chart"' in html and "Predicted plasma ketamine" in html
    assert audit_entries(db, "session.report", resource_id=str(sid))


def test_timeline_figure_holds_every_series(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = finished(nurse, world, db, booked)
    v = views.view(db, auth.principal_for(world.users["nurse"], None, "127.0.0.1"), sid)
    tl = report.timeline(v)
    # the rate as steps: 28 mg/h, then 14, then 0 at the stop
    assert list(tl.rate.values) == [28.0, 14.0, 0.0]
    assert (tl.rate.times[1] - tl.rate.times[0]) == dt.timedelta(minutes=30)
    fig = report.plotly_figure(tl)
    names = {t["name"] for t in fig["data"]}
    assert {"Systolic BP (mmHg)", "Alarm", "Adverse event", "Ketamine rate (mg/h)"} <= names
    assert "Predicted plasma ketamine (ng/mL)" in names
    conc = next(t for t in fig["data"] if t["name"].startswith("Predicted"))
    assert conc["yaxis"] == "y3" and max(conc["y"]) > 0
    png = pdf.timeline_png(tl)
    assert png.startswith(b"\x89PNG")


def test_pdf_holds_the_whole_report(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = finished(nurse, world, db, booked)
    for url in (f"/sessions/{sid}/report.pdf", f"/api/v1/sessions/{sid}/report.pdf"):
        got = nurse.client.get(url)
        assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
        assert got.content.startswith(b"%PDF") and len(got.content) > 20_000
    assert audit_entries(db, "session.report.pdf", resource_id=str(sid))

    v = views.view(db, auth.principal_for(world.users["nurse"], None, "127.0.0.1"), sid)
    rep = report.build(v, "Test Pain Clinic", views.report_digest(v))
    data = pdf.build(rep, report.timeline(v), compress=False)
    assert b"/Subtype /Image" in data  # the timeline
    text = pdf_text(data)
    flat = " ".join(text.split())
    for expected in (
        "Test Pain Clinic",
        "Lovelace, Ada",
        "TST-900001",
        "IV infusion",
        "State history",
        "Pre-checks done",
        "Sam Escort",
        "Administration record",
        "Rate change",
        "LOT-1",
        "SBP 185",
        "30.33 mg",
        "0.379 mg/kg",
        "100 min",
        "CADSS-6",
        "Systolic pressure at or above 180 mmHg",
        "rate halved",
        "Nausea",
        "ondansetron 4 mg",
        "Discharge checklist",
        "At least 60 minutes since the last dose",
        "96365",
        "96366",
        "NOT SIGNED",
    ):
        assert expected in flat, expected
    assert " ".join(DISCLAIMER.split()[:6]) in flat


def test_unicode_names_print(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    v = views.view(db, auth.principal_for(world.users["nurse"], None, "127.0.0.1"), sid)
    rep = report.build(v, "Klinik Ünïcode — Zoë ≥ µ", views.report_digest(v))
    text = pdf_text(pdf.build(rep, report.timeline(v), compress=False))
    assert "Klinik Ünïcode — Zoë ≥ µ" in text
    assert "NOT SIGNED" in text


def test_signing_then_changing_the_record_refuses_the_second_signature(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse, doctor = as_role("nurse"), as_role("prescriber")
    sid = finished(nurse, world, db, booked)
    signed = nurse.post(f"/sessions/{sid}/sign", follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == f"/sessions/{sid}/report?saved=signed"
    page = doctor.get(f"/sessions/{sid}/report").text
    assert "Nurse" in page and 'id="not-signed"' not in page and 'id="sign"' in page
    sha = re.search(r'id="report-sha">([0-9a-f]{64})<', page)
    assert sha
    # A late adverse event changes what the report states.
    late = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/adverse-events",
        json={"term_key": "headache", "grade": 1, "outcome": "resolved"},
    )
    assert late.status_code == 201
    refused = doctor.api("POST", f"/api/v1/sessions/{sid}/sign")
    assert is_problem(refused, 409) and "changed" in refused.json()["detail"]
    changed = doctor.get(f"/sessions/{sid}/report").text
    assert 'id="changed"' in changed
    assert nurse.api("GET", f"/api/v1/sessions/{sid}").json()["signatures"]["prescriber"] is None


def test_both_signatures_show_in_the_pdf(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse, doctor = as_role("nurse"), as_role("prescriber")
    sid = finished(nurse, world, db, booked)
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/sign").status_code == 200
    assert doctor.api("POST", f"/api/v1/sessions/{sid}/sign").status_code == 200
    page = doctor.get(f"/sessions/{sid}/report").text
    assert 'id="sign"' not in page and 'id="not-signed"' not in page
    v = views.view(db, auth.principal_for(world.users["nurse"], None, "127.0.0.1"), sid)
    rep = report.build(v, "Test Pain Clinic", views.report_digest(v))
    flat = " ".join(pdf_text(pdf.build(rep, report.timeline(v), compress=False)).split())
    assert "NOT SIGNED" not in flat
    assert world.users["nurse"].full_name in flat and world.users["prescriber"].full_name in flat
    assert v.session.report_sha256 and v.session.report_sha256[:20] in flat


def test_report_is_not_signable_while_running(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    page = nurse.get(f"/sessions/{sid}/report").text
    assert 'id="sign"' not in page and "signed after discharge" in page
    assert is_problem(nurse.api("POST", f"/api/v1/sessions/{sid}/sign"), 409)


def test_who_may_read_the_report(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    sid = running(as_role("nurse"), world, booked)
    for role in ("admin", "prescriber"):
        assert as_role(role).get(f"/sessions/{sid}/report").status_code == 200
    for role in ("researcher", "auditor", "patient_a"):
        client = as_role(role)
        assert client.get(f"/sessions/{sid}/report").status_code == 403
        assert client.client.get(f"/api/v1/sessions/{sid}/report.pdf").status_code == 403
    outsider = as_role("outsider_nurse")
    assert outsider.get(f"/sessions/{sid}/report").status_code == 404
    assert outsider.client.get(f"/sessions/{sid}/report.pdf").status_code == 404


def test_aborted_session_report_is_signable_with_its_reason(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    assert (
        nurse.api("POST", f"/api/v1/sessions/{sid}/abort", json={"reason": "Patient felt unwell"}).status_code
        == 200
    )
    html = nurse.get(f"/sessions/{sid}/report").text
    assert "Patient felt unwell" in html and "Nothing given." in html and "No billable units yet." in html
    assert "Check-in to abort" in html and 'id="sign"' in html
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/sign").status_code == 200
