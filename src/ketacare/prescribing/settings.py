"""The clinic's prescribing settings: the legal date and the design defaults a clinic may set for
itself. Pure: the specs with their ranges, and the values in force.

The telehealth flexibility end date is a setting (90 FR 61301 sets it now; a further DEA
extension changes it without a release). The Schedule III refill limits are law and stay fixed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from ketacare.clinic_settings import KNOWLEDGE, OWN, Spec, Value, in_force, note, number
from ketacare.knowledge.prescribing import prescribing_rules

SPECS: tuple[Spec, ...] = (
    Spec(
        "flexibility_end",
        "DEA telemedicine flexibility in force until",
        "",
        "date",
        None,
        None,
        lambda: prescribing_rules().flexibility_end,
        lambda: prescribing_rules().flexibility.tag,
        lambda: prescribing_rules().flexibility.source,
        "telehealth prescriptions without an in-person evaluation are refused after this date",
    ),
    Spec(
        "flexibility_alert_days",
        "Warn before the flexibility ends",
        "days",
        "int",
        1,
        365,
        lambda: prescribing_rules().alert_days.value,
        lambda: prescribing_rules().alert_days.sourced.tag,
        lambda: prescribing_rules().alert_days.sourced.source,
        "telehealth check and safety view: a warning this many days before the end date",
    ),
    Spec(
        "pdmp_window_days",
        "PDMP check no older than",
        "days",
        "int",
        1,
        90,
        lambda: prescribing_rules().pdmp_window_days.value,
        lambda: prescribing_rules().pdmp_window_days.sourced.tag,
        lambda: prescribing_rules().pdmp_window_days.sourced.source,
        "PDMP check: an older query blocks signing (a clinic may only be stricter than 90 days)",
    ),
    Spec(
        "early_refill_min_used_pct",
        "A new prescription needs at least this share of the last supply used",
        "%",
        "int",
        50,
        100,
        lambda: prescribing_rules().early_refill_min_used_pct.value,
        lambda: prescribing_rules().early_refill_min_used_pct.sourced.tag,
        lambda: prescribing_rules().early_refill_min_used_pct.sourced.source,
        "early-refill check: an earlier prescription of the same product is refused",
    ),
    Spec(
        "monthly_limit_mg",
        "Warn above this much ketamine in 30 days",
        "mg",
        "float",
        1,
        100000,
        lambda: None,
        lambda: prescribing_rules().monthly_limit.tag,
        lambda: prescribing_rules().monthly_limit.source,
        "monthly cumulative check: shown always, judged only against the clinic's own limit",
    ),
    Spec(
        "credential_alert_days",
        "List credentials expiring within",
        "days",
        "int",
        1,
        365,
        lambda: prescribing_rules().credential_alert_days.value,
        lambda: prescribing_rules().credential_alert_days.sourced.tag,
        lambda: prescribing_rules().credential_alert_days.sourced.source,
        "credential checks warn and the safety view lists credentials expiring this soon",
    ),
)
SPEC_BY_KEY = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class RxSettings:
    flexibility_end: dt.date
    flexibility_alert_days: int
    pdmp_window_days: int
    early_refill_min_used_pct: int
    monthly_limit_mg: float | None
    credential_alert_days: int
    own: frozenset[str] = field(default_factory=frozenset)

    def origin(self, key: str) -> str:
        return OWN if key in self.own else KNOWLEDGE

    def note(self, key: str) -> str:
        """How a check names the value: the clinic's own setting or the knowledge default."""
        return note(SPEC_BY_KEY[key], key in self.own)


def resolve(overrides: Mapping[str, Value]) -> RxSettings:
    values, own = in_force(SPECS, overrides)
    end = values["flexibility_end"]
    assert isinstance(end, dt.date)
    limit = values["monthly_limit_mg"]
    return RxSettings(
        flexibility_end=end,
        flexibility_alert_days=int(number(values["flexibility_alert_days"])),
        pdmp_window_days=int(number(values["pdmp_window_days"])),
        early_refill_min_used_pct=int(number(values["early_refill_min_used_pct"])),
        monthly_limit_mg=None if limit is None else number(limit),
        credential_alert_days=int(number(values["credential_alert_days"])),
        own=own,
    )


def knowledge_defaults() -> RxSettings:
    return resolve({})
