"""An implausible weight is refused next to its field; what was typed stays; nothing is saved."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

USERNAME = "nurse.north"
RECORD = "NSP-000005"
MEASURED_ON = "2025-01-15"


def test_weight_of_900_kg_is_refused_next_to_the_field_and_nothing_saved(page, server, login) -> None:
    pid = server.patient_id(RECORD)
    count_sql = "SELECT count(*) FROM patient_measurements WHERE patient_id = ?"
    saved_before = server.scalar(count_sql, pid)
    login(page, USERNAME)
    page.goto(f"/patients/{pid}")
    table_rows = page.locator("#measurements table tbody tr")
    rows_before = table_rows.all_inner_texts()
    assert rows_before and saved_before >= 1

    page.locator("#measurements summary", has_text="Record weight or height").click()
    page.get_by_label("Weight (kg)").fill("900")
    page.get_by_label("Measured on").fill(MEASURED_ON)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Save measurement").click()
    page.wait_for_load_state()
    assert posted.value.status == 422
    assert re.search(rf"/patients/{pid}/measurements$", page.url)

    # The error sits next to the weight field, which is marked invalid and keeps what was typed.
    weight_field = page.locator(".field", has=page.locator("#f-weight_kg"))
    assert "has-error" in (weight_field.get_attribute("class") or "")
    error = weight_field.locator(".error")
    assert error.is_visible()
    assert error.inner_text() == "A weight of 900 kg is not plausible; enter 25 to 350 kg."
    weight = page.get_by_label("Weight (kg)")
    assert weight.get_attribute("aria-invalid") == "true"
    assert weight.get_attribute("aria-describedby") == error.get_attribute("id")
    assert weight.input_value() == "900"
    assert page.get_by_label("Measured on").input_value() == MEASURED_ON
    assert page.get_by_label("Height (cm)").input_value() == ""
    assert page.get_by_label("Height (cm)").get_attribute("aria-invalid") is None

    # The section stays open with a summary saying nothing was saved.
    assert page.locator("#measurements details").get_attribute("open") is not None
    summary = page.locator("#measurements .error-summary")
    assert "Please correct 1 thing" in summary.inner_text()
    assert "Nothing was saved yet" in summary.inner_text()
    # Only this section shows errors.
    assert page.locator(".error-summary").count() == 1

    # Nothing saved: the table and the database are as before.
    assert table_rows.all_inner_texts() == rows_before
    assert server.scalar(count_sql, pid) == saved_before
    assert "900" not in page.locator("dl.facts").first.inner_text()
