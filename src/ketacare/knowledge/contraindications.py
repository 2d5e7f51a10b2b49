"""Screening knowledge from ``data/contraindications.toml``: contraindications, risk factors,
required tests, interactions, the blood-pressure rule, prior therapies and MME factors."""

from __future__ import annotations

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


@dataclass(frozen=True)
class PriorTherapyRule:
    minimum: int
    options: tuple[tuple[str, str], ...]
    sourced: Sourced


@dataclass(frozen=True)
class MmeRule:
    factors: tuple[tuple[str, float], ...]
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
    )


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
        factors=tuple((name, float(f)) for name, f in r["factors"]),
        sourced=Sourced(r["source"], r["tag"]),
        flag_mme_per_day=float(r["flag_mme_per_day"]),
        flag_message=r["flag_message"],
        review_mme_per_day=float(r["review_mme_per_day"]),
        review_message=r["review_message"],
        thresholds=Sourced(r["thresholds_source"], r["tag"]),
    )
