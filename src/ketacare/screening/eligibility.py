"""Eligibility for ketamine treatment: pure rules over the record, each reason with its source.

No I/O, no database, no clock. The service gathers :class:`ScreeningFacts` from the patient
record and the latest screening, and shows the :class:`Decision` with every reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ketacare.knowledge import condition_by_code
from ketacare.knowledge.allergens import hypersensitivity_rule, ingredient_of
from ketacare.knowledge.contraindications import (
    blood_pressure_findings,
    blood_pressure_rule,
    contraindications,
    interactions,
    mme_rule,
    opioid_for,
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
    allergy_substances: tuple[str, ...] = ()  # free text of allergies without a code
    allergy_codes: tuple[str, ...] = ()  # coded allergens (knowledge allergens.toml)
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
                    "ASRA/AAPM/ASA 2018 consensus guideline: evidence grades per condition",
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
                "ASRA/AAPM/ASA 2018 consensus guideline: only CRPS carries grade B; other uses are "
                "off-label with weak or no evidence and need off-label consent",
                "V",
            )
        )
    return reasons, best.name, best.evidence_grade


def _contraindications(facts: ScreeningFacts) -> list[Reason]:
    reasons: list[Reason] = []
    # On the ingredient, never on a fragment of a name: "Ketalar" is ketamine, "Spravato"
    # esketamine; free text is coded by an exact normalised name (knowledge: allergens).
    rule = hypersensitivity_rule()
    found = [ingredient_of(code, "") for code in facts.allergy_codes] + [
        ingredient_of(None, text) for text in facts.allergy_substances
    ]
    allergic = any(i in rule.ingredients for i in found if i is not None)
    for item in contraindications():
        answer = facts.answers.get(item.key)
        present = answer == "yes" or (item.key == "hypersensitivity" and allergic)
        if present:
            if item.kind == "hard":
                kind = "hard_stop"
            else:
                kind = "overridden" if item.key in facts.overrides else "caution"
            note = f" Override: {facts.overrides[item.key]}" if kind == "overridden" else ""
            why = (
                " (ketamine or esketamine allergy on the record)"
                if item.key == "hypersensitivity" and allergic
                else ""
            )
            source, tag = item.sourced.source, item.sourced.tag
            if item.key == "hypersensitivity" and allergic and answer != "yes":
                source, tag = rule.sourced.source, rule.sourced.tag
            reasons.append(Reason(item.key, kind, f"{item.label}{why}.{note}", source, tag))
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


# Screening reason codes of the blood-pressure findings (knowledge: blood_pressure_findings).
BP_REASON_CODES = {"sbp_high": "uncontrolled_bp", "sbp_low": "bp_low", "dbp_high": "bp_diastolic_high"}


def _blood_pressure(facts: ScreeningFacts) -> list[Reason]:
    """Screening applies the session pre-check's rule (one function): a hold is a hard stop here,
    above 140/90 mmHg a caution that needs a prescriber's documented override."""
    rule = blood_pressure_rule()
    if facts.sbp_mmhg is None or facts.dbp_mmhg is None:
        return [
            Reason(
                "blood_pressure",
                "missing",
                "No blood pressure recorded at screening (both systolic and diastolic are needed).",
                rule.stop.source,
                rule.stop.tag,
            )
        ]
    reasons: list[Reason] = []
    for finding in blood_pressure_findings(facts.sbp_mmhg, facts.dbp_mmhg):
        src, tag = finding.sourced.source, finding.sourced.tag
        if finding.level == "hold":
            reasons.append(
                Reason(
                    BP_REASON_CODES[finding.code],
                    "hard_stop",
                    f"{finding.message} Ketamine is not given at this pressure.",
                    src,
                    tag,
                )
            )
        else:
            kind = "overridden" if BP_CAUTION in facts.overrides else "caution"
            note = f" Override: {facts.overrides[BP_CAUTION]}" if kind == "overridden" else ""
            reasons.append(Reason(BP_CAUTION, kind, f"{finding.message}{note}", src, tag))
    return reasons


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


@dataclass(frozen=True)
class MmeResult:
    """Morphine milligram equivalents per day (CDC), with what could not be converted.

    ``total`` is None unless every opioid on the list was converted: an opioid without a CDC
    factor (buprenorphine) or without a usable dose makes the total "not computed", never 0.
    ``known`` is the sum of the opioids that were converted (a lower bound), None when none was."""

    opioids: int
    parts: tuple[tuple[str, float], ...]  # (medication name, MME/day)
    no_factor: tuple[str, ...]  # opioids the CDC gives no factor for, or not in the table
    incomplete: tuple[str, ...]  # opioids with a factor but no usable dose, unit or frequency

    @property
    def unconverted(self) -> list[str]:
        return [*self.no_factor, *self.incomplete]

    @property
    def known(self) -> float | None:
        return round(sum(v for _, v in self.parts), 1) if self.parts else None

    @property
    def total(self) -> float | None:
        if not self.opioids or self.unconverted:
            return None
        return self.known

    def level(self) -> str:
        """ "review" at >= 90 MME/day, "flag" at >= 50, else "" (on the known part: a lower bound)."""
        rule = mme_rule()
        known = self.known
        if known is None:
            return ""
        if known >= rule.review_mme_per_day:
            return "review"
        if known >= rule.flag_mme_per_day:
            return "flag"
        return ""

    def advice(self) -> list[str]:
        """What the level asks for: at >= 90 both the review and the >= 50 advice (naloxone,
        sedation monitoring), never the one instead of the other."""
        rule = mme_rule()
        level = self.level()
        if level == "review":
            return [rule.review_message, rule.flag_message]
        if level == "flag":
            return [rule.flag_message]
        return []

    def summary(self) -> str:
        """``Opioids total 60 MME/day`` or, when something was not converted, what was and what not."""
        if not self.opioids:
            return "No opioid on the medication list."
        if self.total is not None:
            return f"Opioids total {self.total:g} MME/day."
        skipped = "; ".join(
            [f"{n}: no CDC conversion factor" for n in self.no_factor]
            + [f"{n}: dose, unit or doses per day missing" for n in self.incomplete]
        )
        if self.known is None:
            return f"MME not computed ({skipped})."
        return (
            f"Total MME not computed ({skipped}); the opioids with a factor come to {self.known:g} MME/day."
        )


def mme_per_day(medications: tuple[MedicationFact, ...] | list[MedicationFact]) -> MmeResult:
    """The one MME computation of screening, prescribing, outcomes and the safety board (CDC
    factors, knowledge: contraindications [mme]). Opioids are matched by exact name, never by a
    fragment of one."""
    parts: list[tuple[str, float]] = []
    no_factor: list[str] = []
    incomplete: list[str] = []
    opioids = [m for m in medications if m.drug_class == "opioid"]
    for med in opioids:
        opioid = opioid_for(med.name)
        unit = (med.dose_unit or "").strip().lower()
        if opioid is None or opioid.factor is None:
            no_factor.append(med.name)
        elif med.dose_amount is None or unit != opioid.unit:
            incomplete.append(med.name)
        elif opioid.unit == "mcg/h":
            parts.append((med.name, med.dose_amount * opioid.factor))
        elif med.doses_per_day is None:
            incomplete.append(med.name)
        else:
            parts.append((med.name, med.dose_amount * med.doses_per_day * opioid.factor))
    return MmeResult(len(opioids), tuple(parts), tuple(no_factor), tuple(incomplete))


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
    result = mme_per_day(facts.medications)
    rule = mme_rule()
    if result.opioids:
        advice = "".join(f" {a}." for a in result.advice())
        reasons.append(
            Reason(
                "mme",
                "interaction",
                f"{result.summary()}{advice}",
                f"{rule.sourced.source}; {rule.thresholds.source}",
                rule.sourced.tag,
            )
        )
    return reasons, result.total


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
