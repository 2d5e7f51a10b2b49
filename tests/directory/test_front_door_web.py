"""The front door through HTTP: the assessment, search, booking with and without consent, the
clinic's queue, cancel links, estimates, honeypot and rate limits. Bad input changes nothing."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ketacare.directory import service, tokens
from ketacare.directory.assessment import screening_rules
from ketacare.directory.models import ConsultationRequest, ConsultationSlot, FormHit
from tests.conftest import SECRET_KEY
from tests.directory.conftest import add_prices, make_profile
from tests.helpers import audit_entries, count, is_problem
from tests.sessions.conftest import discharged

TOKEN = re.compile(r'name="assessment" value="([^"]+)"')


def visitor(browser: Any, path: str = "/assess") -> Any:
    b = browser()
    b.refresh_csrf(path)
    return b


def form(**changes: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "condition": "crps1",
        "pain_started": "2023-01",
        "pain_now": "7",
        "pain_average": "6",
        "treatments": ["anticonvulsant", "antidepressant"],
        **{f"q_{r.key}": "no" for r in screening_rules()},
        "website": "",
    }
    data.update(changes)
    return data


def test_public_pages_need_no_login(browser: Any, front: Any) -> None:
    b = browser()
    for url in [
        "/start",
        "/learn",
        "/learn/what-is-ketamine",
        "/learn/routes",
        "/assess",
        "/clinics",
        "/clinics/test",
    ]:
        page = b.get(url)
        assert page.status_code == 200, url
        assert "not medical advice" in page.text, url
    routes = b.get("/learn/routes").text
    assert "Verdict" in routes and "@media print" in routes and "Sources" in routes


def test_assessment_result_with_reasons_and_sources_stores_nothing(browser: Any, db: Any, front: Any) -> None:
    b = visitor(browser)
    before = count(db, ConsultationRequest)
    page = b.post("/assess", form(q_opioids="yes", opioid_details="oxycodone 10 mg"))
    assert page.status_code == 200
    assert "Needs a clinician&#39;s review first" in page.text
    assert "Spravato (esketamine) US prescribing information" in page.text
    assert "Moderate evidence" in page.text and "not a first-line treatment" in page.text
    assert count(db, ConsultationRequest) == before


def test_impossible_answers_rerender_with_values_kept(browser: Any, db: Any) -> None:
    b = visitor(browser)
    page = b.post("/assess", form(pain_now="14", pain_started="2999-02", q_pregnant="yes"))
    assert page.status_code == 422
    assert "less than or equal to 10" in page.text and "future" in page.text
    assert 'value="14"' in page.text and 'value="2999-02"' in page.text
    assert re.search(r'name="q_pregnant" value="yes"\s+checked', page.text)


def test_assessment_api(browser: Any) -> None:
    b = visitor(browser)
    body = {
        "condition": "fibromyalgia",
        "pain_started": "2020-05",
        "pain_now": 6,
        "pain_average": 5,
        "treatments_tried": ["opioid", "physical_therapy"],
        "screening": {r.key: "no" for r in screening_rules()} | {"psychosis": "yes"},
    }
    response = b.api("POST", "/api/v1/assessment", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["outcome"] == "not_advisable" and data["condition"]["grade"] == "D"
    assert data["reasons"][0]["sources"][0]["tag"] == "V"
    bad = b.api("POST", "/api/v1/assessment", json={**body, "pain_now": 14})
    assert is_problem(bad, 422)
    assert any(e["field"] == "pain_now" for e in bad.json()["errors"])


def test_unknown_zip_is_a_clear_message(browser: Any, front: Any) -> None:
    b = visitor(browser, "/clinics")
    page = b.post("/clinics/search", {"zip": "00000", "route": "im"})
    assert page.status_code == 422 and "We do not know the ZIP code 00000" in page.text
    assert 'value="00000"' in page.text
    api = b.api("POST", "/api/v1/clinics/search", json={"zip": "00000"})
    assert is_problem(api, 422)


def test_search_by_distance_route_price_and_score(browser: Any, db: Any, world: Any, front: Any) -> None:
    make_profile(db, world.other_clinic.id, zip_code="94105", routes=["oral"])
    db.commit()
    b = visitor(browser, "/clinics")
    near = b.api("POST", "/api/v1/clinics/search", json={"zip": "02110", "radius_miles": 50}).json()
    assert [c["slug"] for c in near["clinics"]] == ["test"]
    assert near["clinics"][0]["distance_miles"] < 5
    wide = b.api("POST", "/api/v1/clinics/search", json={"zip": "02110", "radius_miles": 3000}).json()
    assert [c["slug"] for c in wide["clinics"]] == ["test", "other"]
    oral = b.api(
        "POST", "/api/v1/clinics/search", json={"zip": "02110", "radius_miles": 3000, "route": "oral"}
    )
    assert [c["slug"] for c in oral.json()["clinics"]] == ["other"]
    strict = b.api(
        "POST", "/api/v1/clinics/search", json={"zip": "02110", "radius_miles": 3000, "min_score": 101}
    )
    assert strict.status_code == 422
    priced = b.api(
        "POST", "/api/v1/clinics/search", json={"zip": "02110", "radius_miles": 3000, "max_session_usd": 700}
    )
    assert priced.json()["clinics"] == []  # neither has a price list yet
    add_prices(db, world)
    db.commit()
    priced = b.api(
        "POST", "/api/v1/clinics/search", json={"zip": "02110", "radius_miles": 3000, "max_session_usd": 700}
    )
    assert [c["slug"] for c in priced.json()["clinics"]] == ["test"]


def _book(b: Any, slot_id: int, token: str = "", share: bool = False, **extra: str) -> Any:
    data = {
        "slot_id": str(slot_id),
        "name": "Pat Public",
        "email": "pat@example.org",
        "assessment": token,
        "website": "",
        **extra,
    }
    if share:
        data["share_answers"] = "on"
    return b.post("/clinics/test/book", data)


def test_booking_with_consent_reaches_the_queue_with_answers(
    browser: Any, as_role: Any, db: Any, front: Any
) -> None:
    b = visitor(browser)
    result = b.post("/assess", form(q_benzodiazepines="yes"))
    token = TOKEN.search(result.text).group(1)  # type: ignore[union-attr]
    start = b.post("/clinics/test/book", {"step": "start", "assessment": token})
    assert "Send my self-assessment answers" in start.text
    slot = front["slots"][0]
    booked = _book(b, slot.id, token, share=True)
    assert booked.status_code == 200, booked.text
    assert "Consultation requested" in booked.text and "sent to the clinic" in booked.text
    row = db.query(ConsultationRequest).one()
    assert row.answers["screening"]["benzodiazepines"] == "yes" and row.outcome == "review"
    assert "pat@example.org" not in booked.url.path and row.reference in booked.text
    entry = audit_entries(db, "directory.request.create")[-1]
    assert "pat" not in entry.detail.lower() and row.reference in entry.detail

    nurse = as_role("nurse")
    queue = nurse.get("/directory/queue")
    assert queue.status_code == 200 and row.reference in queue.text
    item = nurse.get(f"/directory/queue/{row.id}")
    assert (
        "Needs a clinician&#39;s review first" in item.text and "Do you take benzodiazepines now" in item.text
    )
    assert audit_entries(db, "directory.request.read", resource_id=str(row.id))


def test_booking_without_consent_discards_answers(browser: Any, db: Any, front: Any) -> None:
    b = visitor(browser)
    token = TOKEN.search(b.post("/assess", form()).text).group(1)  # type: ignore[union-attr]
    booked = _book(b, front["slots"][1].id, token, share=False)
    assert booked.status_code == 200 and "not kept" in booked.text
    row = db.query(ConsultationRequest).one()
    assert row.answers is None and row.outcome is None


def test_a_slot_taken_a_moment_ago_keeps_what_was_typed(browser: Any, db: Any, front: Any) -> None:
    first, second = visitor(browser), visitor(browser)
    slot = front["slots"][0]
    assert _book(first, slot.id).status_code == 200
    again = _book(second, slot.id, phone="555-0199")
    assert again.status_code == 422
    assert "Someone booked this time a moment ago" in again.text
    assert 'value="Pat Public"' in again.text and 'value="555-0199"' in again.text
    assert count(db, ConsultationRequest) == 1


def test_cancel_link_frees_the_slot_and_expires(browser: Any, db: Any, front: Any) -> None:
    b = visitor(browser)
    booked = _book(b, front["slots"][0].id)
    link = re.search(r'id="cancel-link" href="https?://[^/]+(/bookings/cancel/[^"]+)"', booked.text).group(1)  # type: ignore[union-attr]
    page = b.get(link)
    assert page.status_code == 200 and "Cancel this consultation" in page.text
    done = b.post(link)
    assert "is cancelled" in done.text
    db.expire_all()
    assert db.get(ConsultationSlot, front["slots"][0].id).status == "open"
    row = db.query(ConsultationRequest).one()
    assert row.status == "cancelled" and row.slot_id is None
    # the freed slot can be booked again
    assert _book(visitor(browser), front["slots"][0].id).status_code == 200

    expired = tokens.sign(
        SECRET_KEY, "cancel", {"r": row.id}, dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()
    )
    page = b.get(f"/bookings/cancel/{expired}")
    assert page.status_code == 422 and "expired" in page.text
    assert "not valid" in b.get("/bookings/cancel/forged.token").text


def test_cancel_api_and_bad_token(browser: Any, db: Any, front: Any) -> None:
    b = visitor(browser)
    made = b.api(
        "POST",
        "/api/v1/clinics/test/bookings",
        json={"slot_id": front["slots"][2].id, "name": "Api Person", "email": "api@example.org"},
    )
    assert made.status_code == 201, made.text
    token = made.json()["cancel_url"].rsplit("/", 1)[1]
    assert b.api("POST", "/api/v1/bookings/cancel", json={"token": token}).json()["status"] == "cancelled"
    assert is_problem(b.api("POST", "/api/v1/bookings/cancel", json={"token": "x" * 20}), 422)


def test_estimate_from_the_price_list_and_no_price_list(
    browser: Any, db: Any, world: Any, front: Any
) -> None:
    b = browser()
    missing = b.get("/clinics/test/estimate?protocol=outpatient_series")
    assert missing.status_code == 422 and "has not published a price list" in missing.text
    assert is_problem(b.get("/api/v1/clinics/test/estimate?protocol=outpatient_series"), 422)
    add_prices(db, world)
    db.commit()
    data = b.get("/api/v1/clinics/test/estimate?protocol=outpatient_series&weight_kg=70").json()
    one, series, year = data["ranges"]
    # consultation 350 + 240-min session 1000 + drug 0.35 mg/kg/h x 70 kg x 4 h = 98 mg at $1 + premed 20
    assert one["high_usd"] == 350 + 1000 + 98 + 20
    assert series["low_usd"] < series["high_usd"]
    assert year["low_usd"] == 4 * (1000 + 20) + 4 * round(0.175 * 70 * 4, 1)
    assert any("experimental" in f["text"] for f in data["insurance"])
    page = b.get("/clinics/test/estimate?protocol=outpatient_series")
    assert page.status_code == 200 and "Initial series" in page.text and "96365" in page.text


def test_honeypot_and_rate_limit(browser: Any, db: Any, front: Any) -> None:
    b = visitor(browser)
    trap = b.post("/assess", form(website="http://spam.example"))
    assert trap.status_code == 400
    for _ in range(service.RATE_LIMITS["book"]):
        b.post("/clinics/test/book", {"slot_id": "999999", "name": "", "email": "", "website": ""})
    assert count(db, FormHit, FormHit.form == "book") == service.RATE_LIMITS["book"]
    assert all(len(h.addr_hash) == 64 for h in db.query(FormHit))
    throttled = _book(b, front["slots"][0].id)
    assert throttled.status_code == 429
    assert count(db, ConsultationRequest) == 0


def test_expired_answers_are_refused_and_nothing_is_booked(browser: Any, db: Any, front: Any) -> None:
    b = visitor(browser)
    old = tokens.sign(SECRET_KEY, "assessment", {"answers": {}, "outcome": "discuss"}, 1.0)
    page = _book(b, front["slots"][0].id, old, share=True)
    assert page.status_code == 422 and "expired" in page.text
    db.expire_all()
    assert count(db, ConsultationRequest) == 0
    assert db.get(ConsultationSlot, front["slots"][0].id).status == "open"


def test_staff_pages_by_role(as_role: Any, world: Any, db: Any, front: Any) -> None:
    for role, profile, queue in [
        ("admin", 200, 200),
        ("nurse", 403, 200),
        ("prescriber", 403, 200),
        ("patient_a", 403, 403),
        ("researcher", 403, 403),
    ]:
        client = as_role(role)
        assert client.get("/directory/profile").status_code == profile, role
        assert client.get("/directory/queue").status_code == queue, role


def test_admin_edits_profile_and_slots_with_errors_kept(
    as_role: Any, db: Any, world: Any, front: Any
) -> None:
    admin = as_role("admin")
    bad = admin.client.post(
        "/directory/profile",
        data={
            "csrf_token": admin.csrf,
            "street": "2 Road",
            "city": "Boston",
            "state": "MA",
            "zip": "00000",
            "routes": ["iv_infusion"],
            "setting": "office",
            "room_type": "shared",
        },
    )
    assert (
        bad.status_code == 422
        and "00000 is not a US ZIP code we know" in bad.text
        and 'value="2 Road"' in bad.text
    )
    good = admin.client.post(
        "/directory/profile",
        data={
            "csrf_token": admin.csrf,
            "published": "on",
            "street": "2 Road",
            "city": "Boston",
            "state": "ma",
            "zip": "02108",
            "routes": ["iv_infusion", "oral"],
            "setting": "office",
            "room_type": "shared",
            "equipment": ["spo2"],
        },
        follow_redirects=False,
    )
    assert good.status_code == 303
    db.expire_all()
    profile = service.profile_row(db, world.clinic.id)
    assert profile is not None and profile.routes == ["iv_infusion", "oral"] and profile.state == "MA"
    past = admin.post("/directory/slots", {"first_start": "2020-01-01T09:00", "count": "2"})
    assert past.status_code == 422 and "future" in past.text
    future = (dt.datetime.now() + dt.timedelta(days=30)).strftime("%Y-%m-%dT09:00")
    assert (
        admin.post(
            "/directory/slots", {"first_start": future, "count": "3"}, follow_redirects=False
        ).status_code
        == 303
    )
    dup = admin.post("/directory/slots", {"first_start": future, "count": "1"})
    assert dup.status_code == 422 and "already a slot" in dup.text


def test_reviews_one_per_patient_moderated_never_deleted(
    as_role: Any, browser: Any, db: Any, front: Any, world: Any
) -> None:
    patient = as_role("patient_a")
    # only a patient who has had a session at the clinic may review it (a verified review)
    early = patient.post("/my/review", {"rating": "4", "body": "Kind staff, clear explanations."})
    assert early.status_code == 403
    discharged(as_role, world, db)
    assert patient.post("/my/review", {"rating": "6", "body": "x"}).status_code == 422
    assert (
        patient.post(
            "/my/review", {"rating": "4", "body": "Kind staff, clear explanations."}, follow_redirects=False
        ).status_code
        == 303
    )
    assert (
        patient.post(
            "/my/review", {"rating": "2", "body": "Changed my mind about the wait."}, follow_redirects=False
        ).status_code
        == 303
    )
    from ketacare.directory.models import ClinicReview

    assert count(db, ClinicReview) == 1
    review = db.query(ClinicReview).one()
    admin = as_role("admin")
    refused = admin.post(f"/directory/reviews/{review.id}", {"decision": "hide", "reason": ""})
    assert refused.status_code == 422 and "needs a reason" in refused.text
    admin.post(f"/directory/reviews/{review.id}", {"decision": "hide", "reason": "Names a staff member"})
    page = browser().get("/clinics/test")
    assert "A review was hidden by the clinic. Reason given: Names a staff member" in page.text
    assert count(db, ClinicReview) == 1
