"""Long-term safety knowledge from ``data/safety.toml``: the liver-test hold, the bladder (LUTS)
screen, what counts as repeated exposure and the design-default intervals for re-checks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class SafetyRules:
    lft_hold_multiple: float
    lft_hold: Sourced
    liver_symptoms: str
    liver_symptoms_sourced: Sourced
    lft_baseline: Sourced
    lft_series: Sourced
    lft_interval_days: int
    lft_interval: Sourced
    bladder_items: tuple[tuple[str, str], ...]
    bladder_items_sourced: Sourced
    bladder_positive: Sourced
    bladder_each_session: Sourced
    bladder_interval_days: int
    bladder_interval: Sourced
    repeated_sessions: int
    repeated: Sourced
    lookback_days: int
    lookback: Sourced


def _s(row: dict[str, object], prefix: str) -> Sourced:
    return Sourced(str(row[f"{prefix}source"]), str(row[f"{prefix}tag"]))


@cache
def safety_rules() -> SafetyRules:
    d = _load("safety.toml")
    liver, bladder, exposure = d["liver"], d["bladder"], d["exposure"]
    return SafetyRules(
        lft_hold_multiple=float(liver["hold_multiple_of_uln"]),
        lft_hold=_s(liver, "hold_"),
        liver_symptoms=liver["symptoms"],
        liver_symptoms_sourced=_s(liver, "symptoms_"),
        lft_baseline=_s(liver, "baseline_"),
        lft_series=_s(liver, "series_"),
        lft_interval_days=int(liver["interval_days"]),
        lft_interval=_s(liver, "interval_"),
        bladder_items=tuple((k, v) for k, v in bladder["items"]),
        bladder_items_sourced=_s(bladder, "items_"),
        bladder_positive=_s(bladder, "positive_"),
        bladder_each_session=_s(bladder, "each_session_"),
        bladder_interval_days=int(bladder["interval_days"]),
        bladder_interval=_s(bladder, "interval_"),
        repeated_sessions=int(exposure["repeated_sessions"]),
        repeated=_s(exposure, "repeated_"),
        lookback_days=int(exposure["lookback_days"]),
        lookback=_s(exposure, "lookback_"),
    )
