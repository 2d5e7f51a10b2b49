"""Eligibility for ketamine treatment: pure rules over the record, each reason with its source.

No I/O, no database, no clock. The service gathers :class:`ScreeningFacts` from the patient
record and the latest screening, and shows the :class:`Decision` with every reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ketacare.knowledge import condition_by_code
from ketacare.knowledge.contraindications import (
    blood_pressure_rule,
    contraindications,
    interactions,
    mme_rule,
    prior_therapy_rule,
    required_tests,
    risk_factors,
)

GRADE_ORDER = ("A", "B", "C", "D")
NOT_ELIGIBLE, INCOMPLETE, NEEDS_OVERRIDE, ELIGIBLE = (
    "not_eligible",
    "incomplete",
    "needs_override",
    "eligible",
)
STATUS_LABELS = {
    NOT_ELIGIBLE: "Not eligible: hard stop",
    INCOMPLETE: "Cannot decide yet: information missing",
    NEEDS_OVERRIDE: "Needs a prescriber's documented override",
    ELIGIBLE: "Eligible",
}
BP_CAUTION = "bp_caution"
PRIOR_THERAPIES = "prior_therapies"
MIN_OVERRIDE_REASON_CHARS = 10  # (design) a written reason, not a tick box


@dataclass(frozen=True)
class MedicationFact:
    name: str
    drug_class: str
    dose_amount: float | None = None
    dose_unit: str | None = None
    doses_per_day: float | None = None


@dataclass(frozen=True)
class ScreeningFacts:
    condition_codes: tuple[str, ...] = ()
    medications: tuple[MedicationFact, ...] = ()
    allergy_substances: tuple[str, ...] = ()
    screened: bool = False
    answers: Mapping[str, str] = field(default_factory=dict)  # key -> "yes" | "no"; absent = unknown
    prior_therapies: tuple[str, ...] = ()
    sbp_mmhg: float | None = None
    dbp_mmhg: float | None = None
    ecg_on_file: bool = False
    lft_on_file: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict)  # caution key -> written reason
    high_dose_high_frequency: bool = False


@dataclass(frozen=True)
class Reason:
    code: str
    kind: str  # indication, hard_stop, caution, overridden, test, interaction, missing
    message: str
    source: str
    tag: str


@dataclass(frozen=True)
class Decision:
    status: str
    evidence_grade: str | None
    indication: str | None
    reasons: tuple[Reason, ...]
    mme_per_day: float | None = None

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]

    def of_kind(self, kind: str) -> list[Reason]:
        return [r for r in self.reasons if r.kind == kind]

    @property
    def hard_stops(self) -> list[Reason]:
        return self.of_kind("hard_stop")

    @property
    def open_cautions(self) -> list[Reason]:
        return self.of_kind("caution")

    @property
    def missing(self) -> list[Reason]:
        return self.of_kind("missing")

    @property
    def sources(self) -> list[str]:
        return sorted({f"{r.source} [{r.tag}]" for r in self.reasons})

    @property
    def allows_plan(self) -> bool:
        return self.status == ELIGIBLE


def _indication(codes: tuple[str, ...]) -> tuple[list[Reason], str | None, str | None]:
    known = condition_by_code()
    found = [known[c][0] for c in codes if c in known]
    if not found:
        return (
            [
                Reason(
                    "indication",
                    "missing",
                    "No pain condition with an ASRA-2018 evidence grade is on the record.",
                    "ASRA-2018 evidence grades (clinical-facts 1.1)",
                    "V",
                )
            ],
            None,
            None,
        )
    best = min(found, key=lambda c: GRADE_ORDER.index(c.evidence_grade))
    reasons = [
        Reason(
            "indication",
            "indication",
            f"{best.name}: evidence grade {best.evidence_grade} ({best.evidence_text}).",
            best.grade.source,
            best.grade.tag,
        )
    ]
    if best.evidence_grade != "B":
        reasons.append(
            Reason(
                "off_label_weak",
                "indication",
                "Off-label with weak or no evidence: say so in the consent.",
                "clinical-facts 1.1 rule consequence and section 9 rule 2 (ASRA-2018)",
                "V",
            )
        )
    return reasons, best.name, best.evidence_grade


def _contraindications(facts: ScreeningFacts) -> list[Reason]:
    reasons: list[Reason] = []
    allergic = any("ketamine" in s.lower() for s in facts.allergy_substances)
    for item in contraindications():
        answer = facts.answers.get(item.key)
        present = answer == "yes" or (item.key == "hypersensitivity" and allergic)
        if present:
            if item.kind == "hard":
                kind = "hard_stop"
            else:
                kind = "overridden" if item.key in facts.overrides else "caution"
            note = f" Override: {facts.overrides[item.key]}" if kind == "overridden" else ""
            why = " (ketamine allergy on the record)" if item.key == "hypersensitivity" and allergic else ""
            reasons.append(
                Reason(item.key, kind, f"{item.label}{why}.{note}", item.sourced.source, item.sourced.tag)
            )
        elif answer != "no":
            reasons.append(
                Reason(
                    item.key,
                    "missing",
                    f"Not answered: {item.question}",
                    item.sourced.source,
                    item.sourced.tag,
                )
            )
    return reasons


def _blood_pressure(facts: ScreeningFacts) -> list[Reason]:
    rule = blood_pressure_rule()
    if facts.sbp_mmhg is None or facts.dbp_mmhg is None:
        return [
            Reason(
                "blood_pressure",
                "missing",
                "No blood pressure recorded at screening.",
                rule.stop.source,
                rule.stop.tag,
            )
        ]
    bp = f"{facts.sbp_mmhg:g}/{facts.dbp_mmhg:g} mmHg"
    if facts.sbp_mmhg > rule.stop_sbp_mmhg:
        return [
            Reason(
                "uncontrolled_bp",
                "hard_stop",
                f"Blood pressure {bp} at screening: systolic above {rule.stop_sbp_mmhg:g} mmHg.",
                rule.stop.source,
                rule.stop.tag,
            )
        ]
    if facts.sbp_mmhg > rule.caution_sbp_mmhg or facts.dbp_mmhg > rule.caution_dbp_mmhg:
        kind = "overridden" if BP_CAUTION in facts.overrides else "caution"
        note = f" Override: {facts.overrides[BP_CAUTION]}" if kind == "overridden" else ""
        return [
            Reason(
                BP_CAUTION,
                kind,
                f"Blood pressure {bp} is above {rule.caution_sbp_mmhg:g}/{rule.caution_dbp_mmhg:g} mmHg: "
                f"a documented decision is needed.{note}",
                rule.caution.source,
                rule.caution.tag,
            )
        ]
    return []


def _prior_therapies(facts: ScreeningFacts, minimum: int | None, note: str) -> list[Reason]:
    rule = prior_therapy_rule()
    src, tag = rule.sourced.source, rule.sourced.tag
    minimum = rule.minimum if minimum is None else minimum
    if not facts.screened:
        return [Reason(PRIOR_THERAPIES, "missing", "Prior therapies not documented.", src, tag)]
    if len(set(facts.prior_therapies)) >= minimum:
        return []
    labels = dict(rule.options)
    tried = ", ".join(labels.get(k, k) for k in facts.prior_therapies) or "none"
    kind = "overridden" if PRIOR_THERAPIES in facts.overrides else "caution"
    override_note = f" Override: {facts.overrides[PRIOR_THERAPIES]}" if kind == "overridden" else ""
    return [
        Reason(
            PRIOR_THERAPIES,
            kind,
            f"Not first line: at least {minimum} prior therapies should have been tried "
            f"({note}; documented: {tried}).{override_note}",
            src,
            tag,
        )
    ]


def _tests(facts: ScreeningFacts) -> list[Reason]:
    tests = required_tests()
    reasons: list[Reason] = []
    needs_ecg = facts.answers.get("cardiovascular_risk") == "yes" or (
        facts.answers.get("poorly_controlled_cvd") == "yes"
    )
    needs_lft = (
        facts.answers.get("liver_risk") == "yes"
        or facts.answers.get("moderate_hepatic") == "yes"
        or facts.high_dose_high_frequency
    )
    for key, needed, on_file in (
        ("ecg", needs_ecg, facts.ecg_on_file),
        ("lft", needs_lft, facts.lft_on_file),
    ):
        if not needed:
            continue
        test = tests[key]
        kind = "test" if on_file else "missing"
        state = "on file" if on_file else "needed and not on file"
        reasons.append(
            Reason(key, kind, f"{test.label} {state} ({test.when}).", test.sourced.source, test.sourced.tag)
        )
    return reasons


def mme_per_day(medications: tuple[MedicationFact, ...]) -> tuple[float | None, list[str]]:
    """Total morphine milligram equivalents per day (CDC 2022), and the opioids it could not convert."""
    rule = mme_rule()
    total, unconverted = 0.0, []
    opioids = [m for m in medications if m.drug_class == "opioid"]
    if not opioids:
        return None, []
    for med in opioids:
        factor = next((f for name, f in rule.factors if name in med.name.lower()), None)
        unit = (med.dose_unit or "").lower()
        if factor is None or med.dose_amount is None:
            unconverted.append(med.name)
        elif "fentanyl" in med.name.lower():
            if unit != "mcg/h":
                unconverted.append(med.name)
            else:
                total += med.dose_amount * factor
        elif unit != "mg" or med.doses_per_day is None:
            unconverted.append(med.name)
        else:
            total += med.dose_amount * med.doses_per_day * factor
    return round(total, 1), unconverted


def _interactions(facts: ScreeningFacts) -> tuple[list[Reason], float | None]:
    table = interactions()
    reasons: list[Reason] = []
    for drug_class in sorted({m.drug_class for m in facts.medications} & set(table)):
        item = table[drug_class]
        names = ", ".join(sorted({m.name for m in facts.medications if m.drug_class == drug_class}))
        reasons.append(
            Reason(
                f"interaction_{drug_class}",
                "interaction",
                f"{item.message} ({names}).",
                item.sourced.source,
                item.sourced.tag,
            )
        )
    mme, unconverted = mme_per_day(facts.medications)
    rule = mme_rule()
    if mme is not None:
        level = ""
        if mme >= rule.review_mme_per_day:
            level = f" {rule.review_message}"
        elif mme >= rule.flag_mme_per_day:
            level = f" {rule.flag_message}"
        reasons.append(
            Reason(
                "mme",
                "interaction",
                f"Opioids total {mme:g} MME/day.{level}",
                f"{rule.sourced.source}; {rule.thresholds.source}",
                rule.sourced.tag,
            )
        )
    for name in unconverted:
        reasons.append(
            Reason(
                "mme_dose",
                "interaction",
                f"{name}: MME not computed (no CDC factor, or dose, unit or doses per day missing).",
                rule.sourced.source,
                rule.sourced.tag,
            )
        )
    return reasons, mme


def decide(
    facts: ScreeningFacts,
    *,
    prior_therapies_minimum: int | None = None,
    prior_therapies_note: str = "clinic-editable default",
) -> Decision:
    """The eligibility decision: hard stops first, then missing information, then open cautions.

    ``prior_therapies_minimum`` is the clinic's value in force (None: the knowledge default);
    ``prior_therapies_note`` says in the reason whose value it is."""
    indication_reasons, indication, grade = _indication(facts.condition_codes)
    risk_missing = [
        Reason(r.key, "missing", f"Not answered: {r.question}", r.sourced.source, r.sourced.tag)
        for r in risk_factors()
        if facts.answers.get(r.key) not in ("yes", "no")
    ]
    interaction_reasons, mme = _interactions(facts)
    reasons = [
        *indication_reasons,
        *_contraindications(facts),
        *_blood_pressure(facts),
        *_prior_therapies(facts, prior_therapies_minimum, prior_therapies_note),
        *risk_missing,
        *_tests(facts),
        *interaction_reasons,
    ]
    kinds = {r.kind for r in reasons}
    if "hard_stop" in kinds:
        status = NOT_ELIGIBLE
    elif "missing" in kinds:
        status = INCOMPLETE
    elif "caution" in kinds:
        status = NEEDS_OVERRIDE
    else:
        status = ELIGIBLE
    return Decision(status, grade, indication, tuple(reasons), mme)


def overridable(decision: Decision) -> dict[str, Reason]:
    """The relative cautions that a prescriber may override now, by key."""
    return {r.code: r for r in decision.open_cautions}
