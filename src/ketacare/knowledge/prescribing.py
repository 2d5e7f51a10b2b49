"""Prescribing knowledge from ``data/prescribing.toml``: take-home products, Schedule III refill
limits, the telehealth gate, the PDMP window, DEA and NPI number rules, default scope of practice.
Every value keeps its source and tag; [M] and design values are clinic-editable defaults."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class Product:
    key: str
    name: str
    drug: str
    route: str
    dosage_form: str
    strength_mg: float  # per unit
    unit: str
    compounded: bool
    home_use: bool
    sourced: Sourced


@dataclass(frozen=True)
class ScopeDefault:
    role: str
    activity: str  # prescribe or administer
    allowed: bool
    sourced: Sourced


@dataclass(frozen=True)
class Valued:
    """A number with its source and tag."""

    value: float
    sourced: Sourced


@dataclass(frozen=True)
class Message:
    text: str
    sourced: Sourced


@dataclass(frozen=True)
class DeaRule:
    practitioner_letters: tuple[str, ...]
    mid_level_letters: tuple[str, ...]
    business_second_char: str
    check_rule: str
    sourced: Sourced
    second_letter: Sourced
    mismatch_reason_min_chars: int


@dataclass(frozen=True)
class NpiRule:
    prefix: str
    prefix_constant: int
    first_digits: tuple[str, ...]
    check_rule: str
    sourced: Sourced


@dataclass(frozen=True)
class PrescribingRules:
    max_refills: int
    refill_window_months: int
    refills: Sourced
    scheduling: Sourced
    take_home_routes: tuple[str, ...]
    take_home: Sourced
    never_home: Message
    max_days_supply: Valued
    flexibility_end: dt.date
    flexibility: Sourced
    flexibility_basis: Sourced
    alert_days: Valued
    in_person: Sourced
    audio_only: Sourced
    encounter: Sourced
    state: Sourced
    pdmp_window_days: Valued
    early_refill_min_used_pct: Valued
    escalation: Sourced
    overlap: Sourced
    monthly_window_days: Valued
    monthly_limit: Sourced
    topical: Sourced
    benzodiazepine: Message
    benzodiazepine_with_opioid: Message
    mme_justify: Sourced
    compounded_warning: Message
    compounded_ack: Sourced
    compounded_ack_min_chars: int
    content: Message
    epcs: Message
    credential_alert_days: Valued


def _s(row: dict[str, object], prefix: str = "") -> Sourced:
    return Sourced(str(row[f"{prefix}source"]), str(row[f"{prefix}tag"]))


@cache
def prescribing_rules() -> PrescribingRules:
    d = _load("prescribing.toml")
    s3, home, tele, pdmp = d["schedule_iii"], d["take_home"], d["telehealth"], d["pdmp"]
    monthly, benzo, comp = d["monthly"], d["benzodiazepine"], d["compounded"]
    return PrescribingRules(
        max_refills=int(s3["max_refills"]),
        refill_window_months=int(s3["refill_window_months"]),
        refills=_s(s3),
        scheduling=_s(s3, "scheduling_"),
        take_home_routes=tuple(home["routes"]),
        take_home=_s(home),
        never_home=Message(home["never_home"], _s(home, "never_home_")),
        max_days_supply=Valued(float(home["max_days_supply"]), _s(home, "max_days_supply_")),
        flexibility_end=tele["flexibility_end"],
        flexibility=_s(tele, "flexibility_"),
        flexibility_basis=_s(tele, "flexibility_basis_"),
        alert_days=Valued(float(tele["alert_days"]), _s(tele, "alert_")),
        in_person=_s(tele, "in_person_"),
        audio_only=_s(tele, "audio_only_"),
        encounter=_s(tele, "encounter_"),
        state=_s(tele, "state_"),
        pdmp_window_days=Valued(float(pdmp["window_days"]), _s(pdmp)),
        early_refill_min_used_pct=Valued(float(d["early_refill"]["min_used_pct"]), _s(d["early_refill"])),
        escalation=_s(d["escalation"]),
        overlap=_s(d["overlap"]),
        monthly_window_days=Valued(float(monthly["window_days"]), _s(monthly, "window_")),
        monthly_limit=_s(monthly, "limit_"),
        topical=_s(monthly, "topical_"),
        benzodiazepine=Message(benzo["message"], _s(benzo)),
        benzodiazepine_with_opioid=Message(benzo["with_opioid_message"], _s(benzo, "with_opioid_")),
        mme_justify=_s(d["mme"], "justify_"),
        compounded_warning=Message(comp["warning"], _s(comp)),
        compounded_ack=_s(comp, "ack_"),
        compounded_ack_min_chars=int(comp["ack_min_chars"]),
        content=Message(d["content"]["message"], _s(d["content"])),
        epcs=Message(d["epcs"]["note"], _s(d["epcs"])),
        credential_alert_days=Valued(float(d["credential_alert"]["days"]), _s(d["credential_alert"])),
    )


@cache
def products() -> tuple[Product, ...]:
    return tuple(
        Product(
            key=r["key"],
            name=r["name"],
            drug=r["drug"],
            route=r["route"],
            dosage_form=r["dosage_form"],
            strength_mg=float(r["strength_mg"]),
            unit=r["unit"],
            compounded=bool(r["compounded"]),
            home_use=bool(r["home_use"]),
            sourced=_s(r),
        )
        for r in _load("prescribing.toml")["product"]
    )


@cache
def product_by_key() -> dict[str, Product]:
    return {p.key: p for p in products()}


@cache
def scope_defaults() -> tuple[ScopeDefault, ...]:
    return tuple(
        ScopeDefault(r["role"], r["activity"], bool(r["allowed"]), _s(r))
        for r in _load("prescribing.toml")["scope"]
    )


@cache
def dea_rule() -> DeaRule:
    r = _load("prescribing.toml")["dea_number"]
    return DeaRule(
        practitioner_letters=tuple(r["practitioner_letters"]),
        mid_level_letters=tuple(r["mid_level_letters"]),
        business_second_char=r["business_second_char"],
        check_rule=r["check_rule"],
        sourced=_s(r),
        second_letter=_s(r, "second_letter_"),
        mismatch_reason_min_chars=int(r["mismatch_reason_min_chars"]),
    )


@cache
def npi_rule() -> NpiRule:
    r = _load("prescribing.toml")["npi"]
    return NpiRule(
        prefix=r["prefix"],
        prefix_constant=int(r["prefix_constant"]),
        first_digits=tuple(r["first_digits"]),
        check_rule=r["check_rule"],
        sourced=_s(r),
    )
