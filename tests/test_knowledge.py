"""Every clinical fact in knowledge/ names its source and tag; codes are well-formed."""

from __future__ import annotations

from ketacare.knowledge import demo_mix, is_icd10_cm, pain_conditions

TAGS = {"V", "V*", "M", "design"}


def test_every_condition_is_sourced_and_tagged() -> None:
    conditions = pain_conditions()
    assert len(conditions) >= 10
    for condition in conditions:
        assert condition.grade.source and condition.grade.tag in TAGS, condition.key
        assert condition.codes_sourced.source and condition.codes_sourced.tag in TAGS, condition.key
        assert condition.evidence_grade in {"A", "B", "C", "D"}
        for code in condition.codes:
            assert is_icd10_cm(code.code), code


def test_only_crps_has_grade_b() -> None:
    # ASRA-2018: CRPS is the only indication with moderate (B) evidence.
    graded_b = {c.key for c in pain_conditions() if c.evidence_grade == "B"}
    assert graded_b == {"crps1", "crps2"}


def test_demo_mix_is_marked_design_and_covers_known_conditions() -> None:
    mix = demo_mix()
    assert mix["tag"] == "design"
    assert set(mix["condition_weights"]) <= {c.key for c in pain_conditions()}


def test_icd10_pattern() -> None:
    assert is_icd10_cm("G90.512") and is_icd10_cm("M79.7") and is_icd10_cm("G89.4")
    assert not is_icd10_cm("hello") and not is_icd10_cm("U07") and not is_icd10_cm("G9")
