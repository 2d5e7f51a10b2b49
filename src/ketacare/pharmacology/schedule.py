"""Dose schedules and their translation into piecewise-constant inputs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.administration import Route
from ketacare.pharmacology.errors import PharmacologyInputError
from ketacare.pharmacology.units import MIN_PER_H

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_TIME_TOL_MIN = 1e-9


@dataclass(frozen=True)
class Dose:
    """One administration. ``duration_min`` > 0 means a constant-rate IV infusion
    (``iv_infusion``) or a slow IV injection (``iv_bolus``); other routes take 0."""

    route: str
    dose_mg: float
    start_min: float = 0.0
    duration_min: float = 0.0

    @property
    def end_min(self) -> float:
        return self.start_min + self.duration_min


def infusion(rate_mg_per_kg_h: float, weight_kg: float, start_min: float, duration_min: float) -> Dose:
    """A constant-rate IV infusion given as mg/kg/h."""
    return Dose(
        "iv_infusion",
        rate_mg_per_kg_h * weight_kg * duration_min / MIN_PER_H,
        start_min,
        duration_min,
    )


def rate_steps(steps: Sequence[tuple[float, float]], weight_kg: float, end_min: float) -> list[Dose]:
    """An IV infusion with any number of rate changes.

    ``steps`` holds (start_min, rate_mg_per_kg_h) pairs in time order; each rate runs
    until the next start, the last until ``end_min``. A rate of 0 pauses the pump.
    """
    bounds = [s for s, _ in steps] + [end_min]
    if any(b2 <= b1 for b1, b2 in itertools.pairwise(bounds)):
        raise PharmacologyInputError("rate steps must be in strictly increasing time order")
    return [
        infusion(rate, weight_kg, start, stop - start)
        for (start, rate), stop in zip(steps, bounds[1:], strict=True)
        if rate > 0
    ]


def validate(doses: Sequence[Dose], routes: dict[str, Route]) -> None:
    """Raise PharmacologyInputError for a schedule that cannot be simulated."""
    if not doses:
        raise PharmacologyInputError("no doses given")
    for d in doses:
        if not (math.isfinite(d.dose_mg) and d.dose_mg > 0):
            raise PharmacologyInputError(f"dose_mg must be positive, got {d.dose_mg}")
        if not (math.isfinite(d.start_min) and d.start_min >= 0):
            raise PharmacologyInputError(f"start_min must be zero or more, got {d.start_min}")
        if not (math.isfinite(d.duration_min) and d.duration_min >= 0):
            raise PharmacologyInputError(f"duration_min must be zero or more, got {d.duration_min}")
        route = routes[d.route]
        if d.route == "iv_infusion" and d.duration_min <= 0:
            raise PharmacologyInputError("iv_infusion needs duration_min > 0")
        if not route.is_iv and d.duration_min > 0:
            raise PharmacologyInputError(f"duration_min applies to IV routes only, not {d.route}")
    infusions = sorted((d for d in doses if d.route == "iv_infusion"), key=lambda d: d.start_min)
    for a, b in itertools.pairwise(infusions):
        if b.start_min < a.end_min - _TIME_TOL_MIN:
            raise PharmacologyInputError(
                f"iv_infusion starting at {b.start_min:g} min overlaps the one running "
                f"{a.start_min:g}-{a.end_min:g} min; give rate changes as consecutive infusions"
            )


@dataclass(frozen=True)
class Inputs:
    """Doses as inputs to the linear system's channels (one channel per route pathway).

    Impulses add ``impulse_mg`` to a channel at ``impulse_t_min``; between consecutive
    ``rate_t_min`` the channel rates ``rate_mg_per_min`` are constant.
    """

    channels: tuple[tuple[str, int], ...]
    impulse_t_min: FloatArray
    impulse_channel: IntArray
    impulse_mg: FloatArray
    rate_t_min: FloatArray
    rate_mg_per_min: FloatArray
    """Shape (len(rate_t_min), n_channels): the rates from that time on."""


def to_inputs(doses: Sequence[Dose], routes: dict[str, Route]) -> Inputs:
    channels: list[tuple[str, int]] = []
    for d in doses:
        for i in range(len(routes[d.route].pathways)):
            if (d.route, i) not in channels:
                channels.append((d.route, i))
    impulses: list[tuple[float, int, float]] = []
    segments: list[tuple[float, float, int, float]] = []
    for d in doses:
        for i, pathway in enumerate(routes[d.route].pathways):
            ch = channels.index((d.route, i))
            spread_min = d.duration_min if d.duration_min > 0 else pathway.zero_order_min
            if spread_min > 0:
                segments.append((d.start_min, d.start_min + spread_min, ch, d.dose_mg / spread_min))
            else:
                impulses.append((d.start_min, ch, d.dose_mg))
    times = sorted({t for s in segments for t in (s[0], s[1])})
    rates = np.zeros((len(times), len(channels)))
    for start, stop, ch, rate in segments:
        active = [(start - _TIME_TOL_MIN) <= t < (stop - _TIME_TOL_MIN) for t in times]
        rates[np.array(active, dtype=bool), ch] += rate
    return Inputs(
        channels=tuple(channels),
        impulse_t_min=np.array([i[0] for i in impulses], dtype=np.float64),
        impulse_channel=np.array([i[1] for i in impulses], dtype=np.int64),
        impulse_mg=np.array([i[2] for i in impulses], dtype=np.float64),
        rate_t_min=np.array(times, dtype=np.float64),
        rate_mg_per_min=rates,
    )
