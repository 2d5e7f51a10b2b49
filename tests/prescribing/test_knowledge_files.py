"""prescribing.toml and safety.toml: every value names its source and tag; the legal numbers are
the ones the facts file gives."""

from __future__ import annotations

import dataclasses
import datetime as dt

from ketacare.knowledge import Sourced
from ketacare.knowledge.prescribing import dea_rule, npi_rule, prescribing_rules, products, scope_defaults
from ketacare.knowledge.safety import safety_rules

TAGS = {"V", "V*", "M", "design"}


def _sourced(obj: object) -> list[Sourced]:
    found = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, Sourced):
            found.append(value)
        elif dataclasses.is_dataclass(value):
            found.extend(_sourced(value))
    return found


def test_every_value_is_sourced_and_tagged() -> None:
    items = [prescribing_rules(), safety_rules(), dea_rule(), npi_rule(), *products(), *scope_defaults()]
    for item in items:
        sourced = _sourced(item)
        assert sourced, item
        for s in sourced:
            assert s.source.strip() and s.tag in TAGS, (item, s)


def test_the_legal_numbers_are_those_of_the_facts_file() -> None:
    r = prescribing_rules()
    assert (r.max_refills, r.refill_window_months, r.refills.tag) == (5, 6, "V")  # facts 6.1
    assert r.flexibility_end == dt.date(2026, 12, 31) and "90 FR 61301" in r.flexibility.source  # facts 6.5
    assert r.pdmp_window_days.value == 90 and r.pdmp_window_days.sourced.tag == "V"  # facts 5.3, rule 9
    assert r.alert_days.value == 90 and r.alert_days.sourced.tag == "design"  # facts 6.5 platform rule
    assert set(r.take_home_routes) == {"oral", "sublingual", "intranasal", "topical"}
    s = safety_rules()
    assert s.lft_hold_multiple == 3 and "Noppers" in s.lft_hold.source  # facts 3.4
    assert s.lft_interval.tag == s.bladder_interval.tag == s.repeated.tag == "design"


def test_esketamine_is_listed_only_to_be_refused_and_home_products_are_flagged_compounded() -> None:
    home = [p for p in products() if p.home_use]
    assert home and all(p.drug == "ketamine" and p.compounded for p in home)
    assert [p.drug for p in products() if not p.home_use] == ["esketamine"]
