"""The two-minute self-assessment: a pure function from answers to an honest result.

Three outcomes: "worth discussing with a clinic", "needs a clinician's review first" and "not
advisable for you". Every reason names its rule and the sources behind it (knowledge/data/
front_door.toml). No I/O, no database, no clock: ``today`` is passed in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ketacare.knowledge import pain_conditions
from ketacare.knowledge.front_door import (
    AssessmentRule,
    Statement,
    assessment_rules,
    evidence_statements,
    minimum_treatments_tried,
    treatment_options,
)

DISCUSS = "discuss"
REVIEW = "review"
NOT_ADVISABLE = "not_advisable"
HEADLINES = {
    DISCUSS: "Worth discussing with a clinic",
    REVIEW: "Needs a clinician's review first",
    NOT_ADVISABLE: "Not advisable for you",
}
ANSWERS = ("yes", "no", "unsure")
OTHER_CONDITION = "other"
# The questions asked with yes / no / not sure; "unsure" and "not_first_line" are derived rules.
DERIVED_RULES = ("unsure", "not_first_line")


def screening_rules() -> tuple[AssessmentRule, ...]:
    return tuple(r for r in assessment_rules().values() if r.key not in DERIVED_RULES)


def condition_choices() -> list[tuple[str, str]]:
    return [(c.key, c.name) for c in pain_conditions()] + [(OTHER_CONDITION, "Another condition")]


@dataclass(frozen=True)
class Answers:
    condition: str
    pain_started: dt.date
    pain_now: int
    pain_average: int
    treatments_tried: tuple[str, ...]
    screening: dict[str, str]  # rule key -> yes / no / unsure
    opioid_details: str = ""


@dataclass(frozen=True)
class Reason:
    rule: str
    level: str  # stop, review or info
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ConditionEvidence:
    name: str
    grade: str | None
    text: str
    plain: str
    source: str
    tag: str


@dataclass(frozen=True)
class Result:
    outcome: str
    reasons: tuple[Reason, ...]
    evidence: ConditionEvidence
    statements: tuple[Statement, ...]
    months_with_pain: int
    not_first_line: str = (
        "Ketamine is not a first-line treatment for chronic pain: it is considered after other "
        "treatments have not helped enough."
    )
    treatments_tried: tuple[str, ...] = field(default=())

    @property
    def headline(self) -> str:
        return HEADLINES[self.outcome]

    def source_keys(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for reason in self.reasons:
            for key in reason.sources:
                seen.setdefault(key, None)
        for statement in self.statements:
            for key in statement.sources:
                seen.setdefault(key, None)
        return tuple(seen)


def months_between(start: dt.date, today: dt.date) -> int:
    return max(0, (today.year - start.year) * 12 + today.month - start.month)


def _plain_grade(grade: str | None) -> str:
    if grade == "B":
        return "Moderate evidence: the strongest there is for ketamine in pain, and only for CRPS."
    if grade == "C":
        return "Weak evidence of short-term improvement."
    if grade == "D":
        return "Weak or no evidence of benefit."
    return "No graded evidence for ketamine in this condition."


def condition_evidence(condition: str) -> ConditionEvidence:
    found = next((c for c in pain_conditions() if c.key == condition), None)
    if found is None:
        return ConditionEvidence(
            "Another condition",
            None,
            "The guideline grades no evidence for conditions outside its list.",
            _plain_grade(None),
            "ASRA-2018 via Guideline Central and MedCentral summaries",
            "V",
        )
    return ConditionEvidence(
        found.name,
        found.evidence_grade,
        found.evidence_text,
        _plain_grade(found.evidence_grade),
        found.grade.source,
        found.grade.tag,
    )


def assess(answers: Answers, today: dt.date) -> Result:
    """Apply every rule; the most serious level decides the outcome."""
    rules = assessment_rules()
    reasons: list[Reason] = []
    unsure: list[str] = []
    for rule in screening_rules():
        answer = answers.screening.get(rule.key, "unsure")
        if answer == "yes":
            reasons.append(Reason(rule.key, rule.level, rule.reason, rule.sources))
        elif answer == "unsure":
            unsure.append(rule.question)
    if answers.screening.get("opioids") == "yes" and answers.opioid_details.strip():
        reasons = [
            Reason(r.rule, r.level, f"{r.text} You told us: {answers.opioid_details.strip()}.", r.sources)
            if r.rule == "opioids"
            else r
            for r in reasons
        ]
    if unsure:
        rule = rules["unsure"]
        listed = "; ".join(q.rstrip("?") for q in unsure)
        reasons.append(Reason(rule.key, rule.level, f"{rule.reason} Not sure: {listed}.", rule.sources))
    known = {k for k, _ in treatment_options()}
    tried = tuple(t for t in answers.treatments_tried if t in known)
    if len(tried) < minimum_treatments_tried():
        rule = rules["not_first_line"]
        reasons.append(Reason(rule.key, rule.level, rule.reason, rule.sources))
    levels = {r.level for r in reasons}
    outcome = NOT_ADVISABLE if "stop" in levels else REVIEW if "review" in levels else DISCUSS
    order = {"stop": 0, "review": 1}
    reasons.sort(key=lambda r: order.get(r.level, 2))
    return Result(
        outcome=outcome,
        reasons=tuple(reasons),
        evidence=condition_evidence(answers.condition),
        statements=evidence_statements(),
        months_with_pain=months_between(answers.pain_started, today),
        treatments_tried=tried,
    )
