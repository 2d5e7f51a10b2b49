"""Screening knowledge from ``data/contraindications.toml``: contraindications, risk factors,
required tests, interactions, the blood-pressure rule, prior therapies and MME factors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class Contraindication:
    key: str
    label: str
    kind: str  # hard or relative
    question: str
    sourced: Sourced


@dataclass(frozen=True)
class RiskFactor:
    key: str
    question: str
    sourced: Sourced


@dataclass(frozen=True)
class RequiredTest:
    key: str
    label: str
    when: str
    sourced: Sourced


@dataclass(frozen=True)
class Interaction:
    drug_class: str
    message: str
    sourced: Sourced


@dataclass(frozen=True)
class BloodPressureRule:
    caution_sbp_mmhg: float
    caution_dbp_mmhg: float
    caution: Sourced
    stop_sbp_mmhg: float
    stop: Sourced
    low_sbp_mmhg: float
    low: Sourced
    pause_dbp_mmhg: float
    pause: Sourced


@dataclass(frozen=True)
class BpFinding:
    """One reason a blood pressure stops or slows ketamine: ``hold`` (not given) or ``decision``
    (a prescriber documents the decision to go ahead), with its source."""

    code: str  # sbp_low, sbp_high, dbp_high, above_caution
    level: str  # hold or decision
    message: str
    sourced: Sourced


@dataclass(frozen=True)
class PriorTherapyRule:
    minimum: int
    options: tuple[tuple[str, str], ...]
    sourced: Sourced


@dataclass(frozen=True)
class Opioid:
    """An opioid of the MME table: its exact names and CDC factor (None: the CDC gives none)."""

    key: str
    names: tuple[str, ...]
    factor: float | None
    unit: str  # what the factor multiplies: "mg" (per day) or "mcg/h"; "" without a factor
    sourced: Sourced


@dataclass(frozen=True)
class MmeRule:
    opioids: tuple[Opioid, ...]
    ignored_words: frozenset[str]
    sourced: Sourced
    flag_mme_per_day: float
    flag_message: str
    review_mme_per_day: float
    review_message: str
    thresholds: Sourced


@cache
def contraindications() -> tuple[Contraindication, ...]:
    rows = _load("contraindications.toml")["contraindication"]
    return tuple(
        Contraindication(r["key"], r["label"], r["kind"], r["question"], Sourced(r["source"], r["tag"]))
        for r in rows
    )


@cache
def risk_factors() -> tuple[RiskFactor, ...]:
    rows = _load("contraindications.toml")["risk_factor"]
    return tuple(RiskFactor(r["key"], r["question"], Sourced(r["source"], r["tag"])) for r in rows)


@cache
def required_tests() -> dict[str, RequiredTest]:
    rows = _load("contraindications.toml")["test"]
    return {
        r["key"]: RequiredTest(r["key"], r["label"], r["when"], Sourced(r["source"], r["tag"])) for r in rows
    }


@cache
def interactions() -> dict[str, Interaction]:
    rows = _load("contraindications.toml")["interaction"]
    return {
        r["drug_class"]: Interaction(r["drug_class"], r["message"], Sourced(r["source"], r["tag"]))
        for r in rows
    }


@cache
def blood_pressure_rule() -> BloodPressureRule:
    r = _load("contraindications.toml")["blood_pressure"]
    return BloodPressureRule(
        caution_sbp_mmhg=float(r["caution_sbp_mmhg"]),
        caution_dbp_mmhg=float(r["caution_dbp_mmhg"]),
        caution=Sourced(r["caution_source"], r["caution_tag"]),
        stop_sbp_mmhg=float(r["stop_sbp_mmhg"]),
        stop=Sourced(r["stop_source"], r["stop_tag"]),
        low_sbp_mmhg=float(r["low_sbp_mmhg"]),
        low=Sourced(r["low_source"], r["low_tag"]),
        pause_dbp_mmhg=float(r["pause_dbp_mmhg"]),
        pause=Sourced(r["pause_source"], r["pause_tag"]),
    )


def blood_pressure_findings(sbp_mmhg: float, dbp_mmhg: float) -> list[BpFinding]:
    """The one blood-pressure rule of screening and the session pre-check (pure): systolic and
    diastolic, low and high. Holds first (SBP < 90 or > 180 mmHg, DBP >= 110 mmHg); when nothing
    holds, above 140/90 mmHg needs a documented decision. Empty when neither applies."""
    rule = blood_pressure_rule()
    bp = f"{sbp_mmhg:g}/{dbp_mmhg:g} mmHg"
    holds: list[BpFinding] = []
    if sbp_mmhg < rule.low_sbp_mmhg:
        holds.append(
            BpFinding(
                "sbp_low",
                "hold",
                f"Blood pressure {bp}: systolic below {rule.low_sbp_mmhg:g} mmHg.",
                rule.low,
            )
        )
    if sbp_mmhg > rule.stop_sbp_mmhg:
        holds.append(
            BpFinding(
                "sbp_high",
                "hold",
                f"Blood pressure {bp}: systolic above {rule.stop_sbp_mmhg:g} mmHg.",
                rule.stop,
            )
        )
    if dbp_mmhg >= rule.pause_dbp_mmhg:
        holds.append(
            BpFinding(
                "dbp_high",
                "hold",
                f"Blood pressure {bp}: diastolic at or above {rule.pause_dbp_mmhg:g} mmHg.",
                rule.pause,
            )
        )
    if holds:
        return holds
    if sbp_mmhg > rule.caution_sbp_mmhg or dbp_mmhg > rule.caution_dbp_mmhg:
        return [
            BpFinding(
                "above_caution",
                "decision",
                f"Blood pressure {bp} is above {rule.caution_sbp_mmhg:g}/{rule.caution_dbp_mmhg:g} mmHg: "
                "a documented decision is needed.",
                rule.caution,
            )
        ]
    return []


@cache
def prior_therapy_rule() -> PriorTherapyRule:
    r = _load("contraindications.toml")["prior_therapies"]
    return PriorTherapyRule(
        minimum=int(r["minimum"]),
        options=tuple((k, v) for k, v in r["options"]),
        sourced=Sourced(r["source"], r["tag"]),
    )


@cache
def mme_rule() -> MmeRule:
    r = _load("contraindications.toml")["mme"]
    return MmeRule(
        opioids=tuple(
            Opioid(
                str(o["key"]),
                tuple(str(n) for n in o["names"]),
                float(o["factor"]) if "factor" in o else None,
                str(o["unit"]),
                Sourced(o["source"], o["tag"]),
            )
            for o in _load("contraindications.toml")["mme_opioid"]
        ),
        ignored_words=frozenset(str(w) for w in r["ignored_words"]),
        sourced=Sourced(r["source"], r["tag"]),
        flag_mme_per_day=float(r["flag_mme_per_day"]),
        flag_message=r["flag_message"],
        review_mme_per_day=float(r["review_mme_per_day"]),
        review_message=r["review_message"],
        thresholds=Sourced(r["thresholds_source"], r["tag"]),
    )


_STRENGTH = re.compile(r"\d+(?:\.\d+)?(?:mg|mcg|mcg/h|ug|ug/h|ml)?")


def normalised_drug_name(name: str, ignored: frozenset[str] = frozenset()) -> str:
    """Lower case, whitespace collapsed, the ``ignored`` whole words and (with ``ignored``) whole
    words that are a strength (``5``, ``10mg``) dropped; never a fragment of a word."""
    words = name.strip().lower().split()
    return " ".join(w for w in words if w not in ignored and not (ignored and _STRENGTH.fullmatch(w)))


@cache
def _opioid_names() -> dict[str, Opioid]:
    rule = mme_rule()
    return {normalised_drug_name(n): o for o in rule.opioids for n in o.names}


def opioid_for(name: str) -> Opioid | None:
    """The opioid of the MME table a medication name is, matched whole (``dihydrocodeine`` is
    never ``codeine``); None when the name is not in the table."""
    return _opioid_names().get(normalised_drug_name(name, mme_rule().ignored_words))
