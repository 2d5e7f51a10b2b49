"""Every self-assessment rule has a case here and a source in knowledge data."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.directory import assessment as rules
from ketacare.directory.schemas import AssessmentIn
from ketacare.errors import InvalidInput
from ketacare.knowledge.front_door import assessment_rules, sources
from ketacare.validation import parse

TODAY = dt.date(2026, 11, 22)
TAGS = {"V", "V*", "M", "design"}


def answers(**yes: str) -> rules.Answers:
    screening = {r.key: "no" for r in rules.screening_rules()}
    screening.update(yes)
    return rules.Answers(
        condition="crps1",
        pain_started=dt.date(2023, 1, 1),
        pain_now=7,
        pain_average=6,
        treatments_tried=("anticonvulsant", "antidepressant", "physical_therapy"),
        screening=screening,
    )


def test_every_rule_and_source_is_known_and_tagged() -> None:
    known = sources()
    assert all(s.tag in TAGS and s.label for s in known.values())
    for rule in assessment_rules().values():
        assert rule.sources, rule.key
        assert all(k in known for k in rule.sources), rule.key
        assert rule.level in ("stop", "review")


def test_no_concern_is_worth_discussing() -> None:
    result = rules.assess(answers(), TODAY)
    assert result.outcome == rules.DISCUSS
    assert result.headline == "Worth discussing with a clinic"
    assert result.reasons == ()
    assert result.evidence.grade == "B" and "Moderate evidence" in result.evidence.plain
    assert result.months_with_pain == 46


STOPS = ["prior_reaction", "aneurysm_bleed", "psychosis", "pregnant", "liver_severe", "raised_icp"]
REVIEWS = [
    "heart_disease",
    "blood_pressure",
    "breastfeeding",
    "liver_moderate",
    "eye_pressure",
    "substance_use",
    "opioids",
    "benzodiazepines",
]


def test_the_lists_above_cover_every_question() -> None:
    assert set(STOPS) | set(REVIEWS) == {r.key for r in rules.screening_rules()}


@pytest.mark.parametrize("key", STOPS)
def test_stop_rules_make_it_not_advisable(key: str) -> None:
    result = rules.assess(answers(**{key: "yes"}), TODAY)
    assert result.outcome == rules.NOT_ADVISABLE
    reason = next(r for r in result.reasons if r.rule == key)
    assert reason.level == "stop" and reason.sources
    assert all(s in sources() for s in reason.sources)


@pytest.mark.parametrize("key", REVIEWS)
def test_review_rules_need_a_clinician(key: str) -> None:
    result = rules.assess(answers(**{key: "yes"}), TODAY)
    assert result.outcome == rules.REVIEW
    assert [r.rule for r in result.reasons] == [key]
    assert result.reasons[0].sources


def test_unsure_needs_review_and_names_the_question() -> None:
    result = rules.assess(answers(pregnant="unsure"), TODAY)
    assert result.outcome == rules.REVIEW
    reason = next(r for r in result.reasons if r.rule == "unsure")
    assert "pregnant" in reason.text and reason.sources == ("design",)


def test_not_first_line_when_too_few_treatments_tried() -> None:
    base = answers()
    few = rules.Answers(**{**base.__dict__, "treatments_tried": ("opioid",)})
    result = rules.assess(few, TODAY)
    assert result.outcome == rules.REVIEW
    assert [r.rule for r in result.reasons] == ["not_first_line"]
    assert "not a first-line treatment" in result.reasons[0].text


def test_stop_outranks_review_and_comes_first() -> None:
    result = rules.assess(answers(opioids="yes", psychosis="yes"), TODAY)
    assert result.outcome == rules.NOT_ADVISABLE
    assert [r.level for r in result.reasons] == ["stop", "review"]


def test_opioid_doses_are_repeated_back() -> None:
    base = answers(opioids="yes")
    with_dose = rules.Answers(**{**base.__dict__, "opioid_details": "oxycodone 10 mg twice a day"})
    reason = rules.assess(with_dose, TODAY).reasons[0]
    assert "oxycodone 10 mg twice a day" in reason.text


@pytest.mark.parametrize(
    ("condition", "grade", "phrase"),
    [
        ("crps1", "B", "Moderate"),
        ("fibromyalgia", "D", "Weak or no"),
        ("sci_pain", "C", "Weak evidence"),
        ("other", None, "No graded evidence"),
    ],
)
def test_evidence_grade_said_plainly(condition: str, grade: str | None, phrase: str) -> None:
    base = answers()
    result = rules.assess(rules.Answers(**{**base.__dict__, "condition": condition}), TODAY)
    assert result.evidence.grade == grade and phrase in result.evidence.plain
    assert result.evidence.source


def _raw(**changes: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "condition": "crps1",
        "pain_started": "2023-01",
        "pain_now": 7,
        "pain_average": 6,
        "treatments_tried": ["anticonvulsant"],
        "screening": {r.key: "no" for r in rules.screening_rules()},
    }
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"pain_now": 14}, "pain_now", "less than or equal to 10"),
        ({"pain_average": -1}, "pain_average", "greater than or equal to 0"),
        ({"pain_started": "2999-01"}, "pain_started", "future"),
        ({"pain_started": "2023-13"}, "pain_started", "not a real month"),
        ({"condition": "headache-ish"}, "condition", "Choose your condition"),
        ({"screening": {}}, "screening", "Answer every safety question"),
        ({"treatments_tried": ["leeches"]}, "treatments_tried", "Unknown treatment"),
    ],
)
def test_impossible_answers_are_refused_with_a_message(
    changes: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(AssessmentIn, _raw(**changes))
    assert words in info.value.errors[field]
