"""Varvel performance metrics for predicted against measured concentrations.

Varvel, Donoho & Shafer 1992, J Pharmacokinet Biopharm 20:63 (facts 6, citation [M]).
PE = (measured - predicted) / predicted * 100%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ketacare.pharmacology.errors import PharmacologyInputError
from ketacare.pharmacology.units import MIN_PER_H


@dataclass(frozen=True)
class VarvelMetrics:
    mdpe_pct: float
    """Median performance error: bias."""
    mdape_pct: float
    """Median absolute performance error: inaccuracy."""
    wobble_pct: float
    """Median |PE - MDPE|: intra-individual variability."""
    divergence_pct_per_h: float
    """Least-squares slope of |PE| against time: drift."""
    n_samples: int


def performance_errors_pct(measured_ng_per_ml: ArrayLike, predicted_ng_per_ml: ArrayLike) -> np.ndarray:
    measured = np.asarray(measured_ng_per_ml, dtype=np.float64)
    predicted = np.asarray(predicted_ng_per_ml, dtype=np.float64)
    if measured.shape != predicted.shape or measured.ndim != 1:
        raise PharmacologyInputError("measured and predicted must be 1-D and of equal length")
    if np.any(predicted <= 0) or not np.all(np.isfinite(measured)):
        raise PharmacologyInputError("predicted must be positive and measured finite")
    return np.asarray((measured - predicted) / predicted * 100.0)


def varvel(t_min: ArrayLike, measured_ng_per_ml: ArrayLike, predicted_ng_per_ml: ArrayLike) -> VarvelMetrics:
    """Metrics for one subject; needs at least two samples at different times."""
    t_h = np.asarray(t_min, dtype=np.float64) / MIN_PER_H
    pe = performance_errors_pct(measured_ng_per_ml, predicted_ng_per_ml)
    if t_h.shape != pe.shape or np.unique(t_h).size < 2:
        raise PharmacologyInputError("need sample times, at least two distinct, one per sample")
    mdpe = float(np.median(pe))
    slope = float(np.polyfit(t_h, np.abs(pe), 1)[0])
    return VarvelMetrics(
        mdpe_pct=mdpe,
        mdape_pct=float(np.median(np.abs(pe))),
        wobble_pct=float(np.median(np.abs(pe - mdpe))),
        divergence_pct_per_h=slope,
        n_samples=int(pe.size),
    )


def varvel_population(subjects: Sequence[VarvelMetrics]) -> VarvelMetrics:
    """Population summary: the median of each metric across subjects.

    Varvel's own weighted-mean summary is not in the facts file, so the median is used.
    """
    if not subjects:
        raise PharmacologyInputError("no subjects")
    return VarvelMetrics(
        mdpe_pct=float(np.median([s.mdpe_pct for s in subjects])),
        mdape_pct=float(np.median([s.mdape_pct for s in subjects])),
        wobble_pct=float(np.median([s.wobble_pct for s in subjects])),
        divergence_pct_per_h=float(np.median([s.divergence_pct_per_h for s in subjects])),
        n_samples=sum(s.n_samples for s in subjects),
    )
