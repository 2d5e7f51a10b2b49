"""Effect endpoints: effect-site equilibration, thresholds or sigmoid Emax, and timings."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.errors import PharmacologyInputError

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Endpoint:
    """One effect. The drive is Ce(ketamine) + nk_weight * Ce(norketamine), both with
    the same ke0. Without ``hill`` the endpoint is a threshold; with it, the effect is the
    sigmoid Emax fraction Ce^hill / (threshold^hill + Ce^hill), whose 50% point is the
    threshold, so onset and offset mean the same in both forms. ``t_half_ke0_min = 0``
    makes the drive the plasma concentration (no effect-site delay)."""

    name: str
    threshold_ng_per_ml: float
    t_half_ke0_min: float
    nk_weight: float = 0.0
    hill: float | None = None
    source: str = ""

    @property
    def ke0_per_min(self) -> float:
        return math.inf if self.t_half_ke0_min == 0 else math.log(2) / self.t_half_ke0_min


def _endpoint_data() -> dict[str, Any]:
    text = files("ketacare.pharmacology").joinpath("endpoints.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


_DATA = _endpoint_data()

NK_WEIGHT_ONE_THIRD = 1.0 / float(_DATA["norketamine"]["potency_divisor"])
"""Norketamine potency 'thought to be one third' of ketamine's (Fanta 2015) [V]; endpoints.toml."""


def _endpoints(drug: str) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(
            str(row["name"]),
            float(row["threshold_ng_per_ml"]),
            float(row["t_half_ke0_min"]),
            source=str(row["source"]),
        )
        for row in _DATA["endpoint"]
        if row["drug"] == drug
    )


RACEMIC_ENDPOINTS = _endpoints("racemic")
"""Racemic ketamine: analgesia, psychotomimetic and hypnosis, from endpoints.toml."""

S_KETAMINE_ENDPOINTS = _endpoints("S-ketamine")
"""No published S-ketamine hypnosis threshold, so none is offered (endpoints.toml)."""


def default_endpoints(drug: str) -> tuple[Endpoint, ...]:
    return S_KETAMINE_ENDPOINTS if drug == "S-ketamine" else RACEMIC_ENDPOINTS


def validate_endpoints(endpoints: tuple[Endpoint, ...]) -> None:
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise PharmacologyInputError("endpoint names must be unique")
    for e in endpoints:
        if not (e.threshold_ng_per_ml > 0 and math.isfinite(e.threshold_ng_per_ml)):
            raise PharmacologyInputError(f"{e.name}: threshold must be positive")
        if not (e.t_half_ke0_min >= 0 and math.isfinite(e.t_half_ke0_min)):
            raise PharmacologyInputError(f"{e.name}: t_half_ke0_min must be zero or more")
        if not (math.isfinite(e.nk_weight)):
            raise PharmacologyInputError(f"{e.name}: nk_weight must be finite")
        if e.hill is not None and not e.hill > 0:
            raise PharmacologyInputError(f"{e.name}: hill must be positive")


def effect_fraction(endpoint: Endpoint, drive_ng_per_ml: FloatArray) -> FloatArray:
    """Fraction of Emax (sigmoid), or 0/1 for a threshold endpoint."""
    c = np.maximum(drive_ng_per_ml, 0.0)
    if endpoint.hill is None:
        return (c >= endpoint.threshold_ng_per_ml).astype(np.float64)
    ratio = (c / endpoint.threshold_ng_per_ml) ** endpoint.hill
    return np.asarray(ratio / (1.0 + ratio), dtype=np.float64)


@dataclass(frozen=True)
class Timing:
    """When an endpoint's drive is at or above its threshold; times in minutes.

    ``onset_min`` is the first upward crossing, ``offset_min`` the last downward one
    (None while still above at the end of the simulation), ``time_above_min`` the total
    time at or above threshold. Crossings are linearly interpolated between samples.
    """

    endpoint: str
    threshold_ng_per_ml: float
    onset_min: float | None
    offset_min: float | None
    peak_min: float
    peak_ng_per_ml: float
    time_above_min: float

    @property
    def reached(self) -> bool:
        return self.onset_min is not None

    @property
    def duration_min(self) -> float | None:
        """Offset minus onset (includes any dips below threshold in between)."""
        if self.onset_min is None or self.offset_min is None:
            return None
        return self.offset_min - self.onset_min


def _crossing(t0: float, t1: float, c0: float, c1: float, level: float) -> float:
    return t0 + (level - c0) * (t1 - t0) / (c1 - c0)


def timing(name: str, t_min: FloatArray, conc_ng_per_ml: FloatArray, threshold_ng_per_ml: float) -> Timing:
    """Onset, peak, offset and time at or above a threshold for one sampled curve."""
    k_peak = int(np.argmax(conc_ng_per_ml))
    above = conc_ng_per_ml >= threshold_ng_per_ml
    onset = offset = None
    total = 0.0
    if above.any():
        first = int(np.argmax(above))
        onset = (
            float(t_min[0])
            if first == 0
            else _crossing(
                t_min[first - 1],
                t_min[first],
                conc_ng_per_ml[first - 1],
                conc_ng_per_ml[first],
                threshold_ng_per_ml,
            )
        )
        last = int(above.size - 1 - np.argmax(above[::-1]))
        if last < above.size - 1:
            offset = _crossing(
                t_min[last],
                t_min[last + 1],
                conc_ng_per_ml[last],
                conc_ng_per_ml[last + 1],
                threshold_ng_per_ml,
            )
        total = time_in_band(t_min, conc_ng_per_ml, threshold_ng_per_ml, math.inf)
    return Timing(
        endpoint=name,
        threshold_ng_per_ml=threshold_ng_per_ml,
        onset_min=onset,
        offset_min=offset,
        peak_min=float(t_min[k_peak]),
        peak_ng_per_ml=float(conc_ng_per_ml[k_peak]),
        time_above_min=total,
    )


def time_in_band(
    t_min: FloatArray,
    conc_ng_per_ml: FloatArray,
    lower_ng_per_ml: float,
    upper_ng_per_ml: float,
) -> float:
    """Minutes with lower <= conc < upper, with the curve linear between samples."""
    c0, c1 = conc_ng_per_ml[:-1], conc_ng_per_ml[1:]
    dt = np.diff(t_min)
    slope = c1 - c0
    flat = np.abs(slope) < 1e-300
    safe = np.where(flat, 1.0, slope)

    # Fraction of each interval spent below a level, for a linear segment.
    def below(level: float) -> FloatArray:
        if math.isinf(level):
            return np.ones_like(c0)
        frac = np.clip((level - c0) / safe, 0.0, 1.0)
        rising = np.where(slope > 0, frac, 1.0 - frac)
        return np.where(flat, (c0 < level).astype(np.float64), rising)

    inside = below(upper_ng_per_ml) - below(lower_ng_per_ml)
    return float(np.sum(np.clip(inside, 0.0, 1.0) * dt))
