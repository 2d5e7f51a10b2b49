"""The vetting score's breakdown, "no data yet" signals, ZIP centroids and the haversine distance."""

from __future__ import annotations

import pytest

from ketacare.directory import geo, vetting

FULL = vetting.ClinicFacts(
    years_experience=8,
    physicians=2,
    crnas=1,
    nurse_practitioners=1,
    acls_certified=True,
    board_certified=True,
    setting="ambulatory",
    room_type="private",
    equipment=frozenset({"infusion_pump", "nibp", "spo2", "ecg", "oxygen", "suction", "bvm", "crash_cart"}),
    review_count=5,
    review_average=5.0,
)


def test_a_clinic_meeting_everything_scores_100_of_what_can_be_judged() -> None:
    score = vetting.score(FULL)
    assert score.value == 100
    names = [c.name for c in score.criteria]
    assert names == ["Experience", "Reputation", "Credentials", "Set and setting", "Safety signals"]


def test_signals_from_features_not_built_say_no_data_yet_and_do_not_count() -> None:
    score = vetting.score(FULL)
    missing = [i for c in score.criteria for i in c.items if i.earned is None]
    labels = {i.label for i in missing}
    assert labels == {
        "Sessions delivered on KetaCare",
        "Adverse-event reporting on record",
        "Controlled-substance compliance",
    }
    assert all(i.detail.startswith("no data yet") for i in missing)
    assert score.possible < 120


def test_few_reviews_are_not_enough_to_judge_reputation() -> None:
    facts = vetting.ClinicFacts(**{**FULL.__dict__, "review_count": 2, "review_average": 1.0})
    reputation = vetting.score(facts).criteria[1]
    assert reputation.items[0].earned is None and reputation.possible == 0


def test_missing_credentials_and_equipment_lower_the_score_with_reasons() -> None:
    facts = vetting.ClinicFacts(
        **{
            **FULL.__dict__,
            "acls_certified": False,
            "physicians": 0,
            "crnas": 0,
            "equipment": frozenset({"spo2"}),
        }
    )
    score = vetting.score(facts)
    assert score.value < 75
    equipment = score.criteria[4].items[0]
    assert "1 of 8" in equipment.detail and "Crash cart" in equipment.detail
    acls = score.criteria[2].items[1]
    assert acls.earned == 0 and "asra_personnel_memory" in acls.sources


def test_zip_lookup_and_unknown_zip() -> None:
    boston = geo.lookup("02108")
    assert boston is not None and boston.state == "MA"
    assert geo.lookup("00000") is None
    assert len(geo.zip_table()) > 40_000


def test_haversine_new_york_to_los_angeles() -> None:
    # JFK (40.6413, -73.7781) to LAX (33.9416, -118.4085): about 2,475 statute miles great-circle.
    assert geo.haversine_miles(40.6413, -73.7781, 33.9416, -118.4085) == pytest.approx(2475, rel=0.01)
    assert geo.haversine_miles(1.0, 2.0, 1.0, 2.0) == 0.0
