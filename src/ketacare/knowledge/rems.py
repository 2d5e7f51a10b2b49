"""The Spravato REMS Patient Monitoring Form from ``data/rems.toml``: its dose choices, the
blood-pressure check time, the concomitant-medicine boxes and how answers are suggested."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class ConcomitantBox:
    key: str
    label: str
    drug_classes: tuple[str, ...]


@dataclass(frozen=True)
class RemsRules:
    form: Sourced
    submit_within_days: int
    submit: Sourced
    dose_choices_mg: tuple[int, ...]
    dose: Sourced
    bp_check_after_first_dose_min: int
    bp_check: Sourced
    concomitant: tuple[ConcomitantBox, ...]
    concomitant_sourced: Sourced
    mapping: Sourced
    sedation_below: dict[str, int]
    sedation_terms: tuple[str, ...]
    dissociation_cadss6_above: int
    dissociation_terms: tuple[str, ...]
    respiratory_terms: tuple[str, ...]
    respiratory_alarms: tuple[str, ...]
    suggest: Sourced


@cache
def rems_rules() -> RemsRules:
    data = _load("rems.toml")
    form, con, sug = data["form"], data["concomitant"], data["suggest"]
    return RemsRules(
        form=Sourced(form["source"], form["tag"]),
        submit_within_days=int(form["submit_within_days"]),
        submit=Sourced(form["submit_source"], form["submit_tag"]),
        dose_choices_mg=tuple(int(d) for d in form["dose_choices_mg"]),
        dose=Sourced(form["dose_source"], form["dose_tag"]),
        bp_check_after_first_dose_min=int(form["bp_check_after_first_dose_min"]),
        bp_check=Sourced(form["bp_check_source"], form["bp_check_tag"]),
        concomitant=tuple(
            ConcomitantBox(i["key"], i["label"], tuple(i["drug_classes"])) for i in con["item"]
        ),
        concomitant_sourced=Sourced(con["source"], con["tag"]),
        mapping=Sourced(con["mapping_source"], con["mapping_tag"]),
        sedation_below={k: int(v) for k, v in sug["sedation_below"].items()},
        sedation_terms=tuple(sug["sedation_terms"]),
        dissociation_cadss6_above=int(sug["dissociation_cadss6_above"]),
        dissociation_terms=tuple(sug["dissociation_terms"]),
        respiratory_terms=tuple(sug["respiratory_terms"]),
        respiratory_alarms=tuple(sug["respiratory_alarms"]),
        suggest=Sourced(sug["source"], sug["tag"]),
    )
