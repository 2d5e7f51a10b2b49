"""Screenshots for the README and the user guide, taken at a tablet-sized 1280x800 viewport."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "img"
VIEWPORT = {"width": 1280, "height": 800}
USERNAME = "dr.north"
# The demo patient of North Shore with the fullest record: allergies, conditions and medications.
RICHEST_PATIENT = """
SELECT p.id FROM patients p JOIN clinics c ON c.id = p.clinic_id
WHERE c.slug = 'north'
ORDER BY (SELECT count(*) FROM patient_allergies a WHERE a.patient_id = p.id) > 0 DESC,
         (SELECT count(*) FROM patient_medications m WHERE m.patient_id = p.id) DESC,
         (SELECT count(*) FROM patient_conditions c2 WHERE c2.patient_id = p.id) DESC,
         p.id
LIMIT 1
"""


def _shoot(page, name: str) -> None:
    page.evaluate("document.fonts.ready.then(() => true)")
    # Every stylesheet loaded and applied: the header has its dark background.
    background = page.locator("header.top").evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(18, 50, 79)", f"styles missing on {page.url}: header is {background}"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"screenshot-{name}.png"
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    assert path.stat().st_size > 10_000, f"{path} looks empty"


def test_screenshots_for_docs(page, server, login) -> None:
    assert page.viewport_size == VIEWPORT

    page.goto("/login")
    _shoot(page, "login")

    login(page, USERNAME)
    assert page.get_by_role("heading", name="Recently added").is_visible()
    _shoot(page, "dashboard")

    pid = server.scalar(RICHEST_PATIENT)
    page.goto(f"/patients/{pid}")
    assert page.locator("#medications tbody tr").count() >= 1
    _shoot(page, "patient")
