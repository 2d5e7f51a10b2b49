"""Superbill codes and the default clinic price list from ``data/billing.toml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class BillingCode:
    code: str
    system: str
    label: str
    rule: str
    sourced: Sourced


@dataclass(frozen=True)
class DefaultPrices:
    consultation_usd: float
    drug_usd_per_mg: float
    premedication_usd_per_session: float
    session_bands: tuple[tuple[int, float], ...]
    sourced: Sourced


@cache
def billing_codes() -> dict[str, BillingCode]:
    rows = _load("billing.toml")["code"]
    return {
        r["code"]: BillingCode(r["code"], r["system"], r["label"], r["rule"], Sourced(r["source"], r["tag"]))
        for r in rows
    }


@cache
def default_prices() -> DefaultPrices:
    r = _load("billing.toml")["default_prices"]
    return DefaultPrices(
        consultation_usd=float(r["consultation_usd"]),
        drug_usd_per_mg=float(r["drug_usd_per_mg"]),
        premedication_usd_per_session=float(r["premedication_usd_per_session"]),
        session_bands=tuple((int(m), float(fee)) for m, fee in r["session_bands"]),
        sourced=Sourced(r["source"], r["tag"]),
    )


@dataclass(frozen=True)
class BillingCutoffs:
    push_max_min: int
    initial_hour_min: int
    add_on_grace_min: int
    esketamine_low_max_mg: float
    sourced: Sourced


@cache
def billing_cutoffs() -> BillingCutoffs:
    r = _load("billing.toml")["cutoffs"]
    return BillingCutoffs(
        int(r["push_max_min"]),
        int(r["initial_hour_min"]),
        int(r["add_on_grace_min"]),
        float(r["esketamine_low_max_mg"]),
        Sourced(r["source"], r["tag"]),
    )
