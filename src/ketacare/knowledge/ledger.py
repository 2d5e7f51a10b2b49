"""Controlled-substance ledger rules from ``data/ledger.toml``: scheduling, records, retention,
inventories, waste, destruction (DEA Form 41), theft and loss (DEA Form 106), the DEA number
check digit and the FDA warning on compounded ketamine. Every number keeps its source and tag."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class Fact:
    """A statement from the facts file with its source and tag, shown beside the rule it drives."""

    text: str
    sourced: Sourced


@dataclass(frozen=True)
class LedgerRules:
    schedule: str
    scheduling: Fact
    dea_drug_code: int
    dea_drug_code_sourced: Sourced
    receipt: Fact
    records: Fact
    administration_record: Fact
    retention_min_years: int
    retention: Fact
    retention_max_years: int
    initial_inventory: Fact
    biennial_years: int
    biennial_window_months: int
    biennial: Fact
    estimated_count: Fact
    discrepancy: Fact
    waste: Fact
    waste_witness: Fact
    destruction: Fact
    destruction_witnesses: int
    destruction_witnesses_fact: Fact
    destruction_filing: Fact
    notice_business_days: int
    notice: Fact
    business_days: Fact
    form106_days: int
    form106: Fact
    theft_always: Fact
    significant_loss: Fact
    state_notice: Fact
    registration_number: Fact
    compounded_warning: Fact
    compounded_nasal_warning: Fact
    home_acknowledgement: Fact
    expiry_warning_days: int
    expiry_warning: Sourced


def _fact(section: dict[str, object], prefix: str = "") -> Fact:
    key = f"{prefix}_" if prefix else ""
    return Fact(str(section[f"{key}text"]), Sourced(str(section[f"{key}source"]), str(section[f"{key}tag"])))


@cache
def ledger_rules() -> LedgerRules:
    data = _load("ledger.toml")
    sch, rec, ret, inv = data["schedule"], data["records"], data["retention"], data["inventory"]
    waste, dest, tl, comp = data["waste"], data["destruction"], data["theft_loss"], data["compounded"]
    dash = data["dashboard"]
    return LedgerRules(
        schedule=str(sch["schedule"]),
        scheduling=_fact(sch),
        dea_drug_code=int(sch["dea_drug_code"]),
        dea_drug_code_sourced=Sourced(sch["dea_drug_code_source"], sch["dea_drug_code_tag"]),
        receipt=_fact(data["receipt"]),
        records=_fact(rec),
        administration_record=_fact(rec, "administration"),
        retention_min_years=int(ret["min_years"]),
        retention=_fact(ret),
        retention_max_years=int(ret["max_years"]),
        initial_inventory=_fact(inv, "initial"),
        biennial_years=int(inv["biennial_years"]),
        biennial_window_months=int(inv["biennial_window_months"]),
        biennial=_fact(inv, "biennial"),
        estimated_count=_fact(inv, "estimate"),
        discrepancy=_fact(inv, "discrepancy"),
        waste=_fact(waste),
        waste_witness=_fact(waste, "witness"),
        destruction=_fact(dest),
        destruction_witnesses=int(dest["witnesses"]),
        destruction_witnesses_fact=_fact(dest, "witnesses"),
        destruction_filing=_fact(dest, "filing"),
        notice_business_days=int(tl["notice_business_days"]),
        notice=_fact(tl, "notice"),
        business_days=_fact(tl, "business_days"),
        form106_days=int(tl["form106_days"]),
        form106=_fact(tl, "form106"),
        theft_always=_fact(tl, "theft"),
        significant_loss=_fact(tl, "significant"),
        state_notice=_fact(tl, "state"),
        registration_number=_fact(data["registration"]),
        compounded_warning=Fact(comp["warning"], Sourced(comp["source"], comp["tag"])),
        compounded_nasal_warning=Fact(
            comp["nasal_warning"], Sourced(comp["nasal_source"], comp["nasal_tag"])
        ),
        home_acknowledgement=Fact(
            comp["home_acknowledgement"], Sourced(comp["home_source"], comp["home_tag"])
        ),
        expiry_warning_days=int(dash["expiry_warning_days"]),
        expiry_warning=Sourced(dash["expiry_warning_source"], dash["expiry_warning_tag"]),
    )
