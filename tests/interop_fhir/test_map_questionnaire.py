"""Questionnaire: the outcome instruments, built from the knowledge data; the BPI only with a
clinic licence."""

from __future__ import annotations

from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.knowledge.outcomes import instruments
from ketacare.outcomes import service as outcomes
from ketacare.outcomes.schemas import SettingsIn
from tests.interop_fhir.conftest import validate_bundle
from tests.interop_fhir.test_map_medication_request import BASE, assert_round_trips, by_id, read_all

LOINC_NRS = {"system": "http://loinc.org", "code": "72514-3"}


def test_every_questionnaire_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "Questionnaire")
    assert_round_trips(resources)
    assert {r["id"] for r in resources} == {"follow-up", "nrs", "peg", "pgic", "bladder"}  # no BPI licence


def test_items_come_from_the_knowledge_data(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "Questionnaire"))
    catalogue = instruments()
    for key in ("nrs", "peg", "pgic", "bladder"):
        q = found[key]
        inst = catalogue[key]
        assert q["status"] == "active" and q["url"] == f"urn:ketacare:questionnaire:{key}"
        assert q["title"] == inst.label
        assert [(i["linkId"], i["text"]) for i in q["item"]] == [(f"{key}.{k}", t) for k, t in inst.items]
    nrs = found["nrs"]["item"][0]
    assert nrs["type"] == "integer" and {k: nrs["code"][0][k] for k in LOINC_NRS} == LOINC_NRS
    assert [e["valueInteger"] for e in nrs["extension"]] == [0, 10]
    assert all("code" not in i for i in found["peg"]["item"])  # PEG LOINC is [M] in the facts
    pgic = found["pgic"]["item"][0]
    assert pgic["type"] == "choice"
    assert [(o["valueCoding"]["code"], o["valueCoding"]["display"]) for o in pgic["answerOption"]] == [
        (str(v), label) for v, label in catalogue["pgic"].choices
    ]
    bladder = found["bladder"]["item"][0]
    assert [o["valueCoding"]["display"] for o in bladder["answerOption"]] == ["Yes", "No"]
    groups = found["follow-up"]["item"]
    assert [g["linkId"] for g in groups] == ["nrs", "peg", "pgic", "bladder"]
    assert groups[2]["item"] == found["pgic"]["item"]


def test_search_by_url_and_code(demo_fhir) -> None:
    found = read_all(demo_fhir, "Questionnaire", url="urn:ketacare:questionnaire:pgic")
    assert [r["id"] for r in found] == ["pgic"]
    with_nrs = read_all(demo_fhir, "Questionnaire", code="http://loinc.org|72514-3")
    assert {r["id"] for r in with_nrs} == {"nrs", "follow-up"}


def test_the_bpi_appears_with_a_licence_in_that_clinic_only(browser, world, token_for, db) -> None:
    admin = world.users["admin"]
    actor = Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)
    outcomes.save_settings(
        db,
        actor,
        SettingsIn(
            schedule_days="1,7,14,28",
            monthly_every_days=30,
            monthly_until_days=365,
            link_valid_days=7,
            reminder_after_days=2,
            bpi_licence="MAPI Research Trust licence 2026-0042",
        ),
    )
    db.commit()
    client = browser().client
    ours = validate_bundle(client.get(f"{BASE}/Questionnaire", headers=token_for("system/*.read")).json())
    bpi = by_id(ours)["bpi-sf"]
    assert len(bpi["item"]) == len(instruments()["bpi_sf"].items) == 11
    assert "MAPI Research Trust licence 2026-0042" in bpi["copyright"]
    assert "bpi_sf" in [g["linkId"] for g in by_id(ours)["follow-up"]["item"]]
    other_admin = world.users["outsider"]
    other_actor = Principal(other_admin.id, other_admin.username, Role.clinic_admin, world.other_clinic.id)
    theirs = client.get(f"{BASE}/Questionnaire", headers=token_for("system/*.read", clinic_actor=other_actor))
    assert "bpi-sf" not in {e["resource"]["id"] for e in theirs.json()["entry"]}
    assert (
        client.get(
            f"{BASE}/Questionnaire/bpi-sf", headers=token_for("system/*.read", clinic_actor=other_actor)
        ).status_code
        == 404
    )
