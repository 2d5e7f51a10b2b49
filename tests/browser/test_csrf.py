"""A form whose CSRF token was tampered with is refused with a 403 page, and nothing changes."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

USERNAME = "np.north"
RECORD = "NSP-000007"
SUBSTANCE = "Forged peanut allergy"


def test_tampered_csrf_token_is_refused_and_nothing_changes(page, server, login) -> None:
    pid = server.patient_id(RECORD)
    count_sql = "SELECT count(*) FROM patient_allergies WHERE patient_id = ?"
    before = server.scalar(count_sql, pid)
    login(page, USERNAME)
    page.goto(f"/patients/{pid}")

    page.locator("#allergies summary", has_text="Add an allergy").click()
    page.get_by_label("Substance as written").fill(SUBSTANCE)
    page.get_by_label("Reaction").fill("anaphylaxis")
    form = page.locator(f'form[action="/patients/{pid}/allergies"]')
    token = form.locator('input[name="csrf_token"]')
    original = token.input_value()
    assert len(original) == 64
    token.evaluate("el => { el.value = el.value.slice(0, -4) + 'beef'; }")
    assert token.input_value() != original

    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Add allergy").click()
    page.wait_for_load_state()
    assert posted.value.status == 403
    assert page.get_by_role("heading", level=1).inner_text() == (
        "The form had expired or did not come from KetaCare"
    )
    body = page.locator("main").inner_text()
    assert "This form could not be accepted" in body
    assert "nothing was changed" in body
    assert "Error 403" in body

    # Nothing changed, and the person is still logged in (the session was not harmed).
    assert server.scalar(count_sql, pid) == before
    page.goto(f"/patients/{pid}")
    assert re.search(rf"/patients/{pid}$", page.url)
    assert SUBSTANCE not in page.locator("#allergies").inner_text()
