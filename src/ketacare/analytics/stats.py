"""Registry statistics, pure functions over plain numbers: Wilson score intervals for
proportions, t intervals for means, exact Poisson intervals for event rates, Kaplan-Meier
(lifelines) with its confidence band, and paired tests (SciPy)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times
from scipy import stats

# a list of numbers, or a NumPy array of them (the registry hands its value lists over as arrays)
Values = Sequence[float] | npt.NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None
    high: float | None
    n: int


@functools.cache
def _z(confidence: float) -> float:
    return float(stats.norm.ppf(1 - (1 - confidence) / 2))


def wilson(k: int, n: int, confidence: float = 0.95) -> Estimate:
    """Proportion k/n with the Wilson score interval (no continuity correction)."""
    if n == 0:
        return Estimate(None, None, None, 0)
    z = _z(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def mean_ci(values: Values, confidence: float = 0.95) -> Estimate:
    """Mean with the t interval (n - 1 degrees of freedom)."""
    n = len(values)
    if n == 0:
        return Estimate(None, None, None, 0)
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if n == 1:
        return Estimate(mean, None, None, 1)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def poisson_rate(events: int, exposure: float, confidence: float = 0.95) -> Estimate:
    """Events per unit of exposure with the exact (Garwood) Poisson interval."""
    if exposure <= 0:
        return Estimate(None, None, None, 0)
    alpha = 1 - confidence
    low = 0.0 if events == 0 else float(stats.chi2.ppf(alpha / 2, 2 * events)) / 2
    high = float(stats.chi2.ppf(1 - alpha / 2, 2 * events + 2)) / 2
    return Estimate(events / exposure, low / exposure, high / exposure, int(exposure))


@dataclass(frozen=True)
class Survival:
    n: int
    events: int
    median: float | None  # None: not reached
    median_low: float | None
    median_high: float | None
    timeline: list[float]
    survival: list[float]
    low: list[float]
    high: list[float]


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def kaplan_meier(
    durations: Sequence[float],
    events: Sequence[bool],
    confidence: float = 0.95,
    weights: Sequence[int] | None = None,
) -> Survival | None:
    """Kaplan-Meier estimate (lifelines; exponential Greenwood 'log-log' band) and the median
    with its interval; ``None`` for no data. ``weights``: how many subjects each (duration,
    event) pair stands for (the same estimate as the pairs repeated, from far fewer rows)."""
    if not durations:
        return None
    kmf = KaplanMeierFitter(alpha=1 - confidence)
    kmf.fit(
        np.asarray(durations, dtype=float),
        event_observed=np.asarray(events, dtype=bool),
        weights=None if weights is None else np.asarray(weights, dtype=float),
    )
    ci = median_survival_times(kmf.confidence_interval_)
    band = kmf.confidence_interval_
    w = [1] * len(durations) if weights is None else list(weights)
    return Survival(
        n=int(sum(w)),
        events=int(sum(n for n, e in zip(w, events, strict=True) if e)),
        median=_finite(float(kmf.median_survival_time_)),
        median_low=_finite(float(ci.iloc[0, 0])),
        median_high=_finite(float(ci.iloc[0, 1])),
        timeline=[float(t) for t in kmf.survival_function_.index],
        survival=[float(s) for s in kmf.survival_function_.iloc[:, 0]],
        low=[float(s) for s in band.iloc[:, 0]],
        high=[float(s) for s in band.iloc[:, 1]],
    )


@dataclass(frozen=True)
class Paired:
    n: int
    mean_change: Estimate
    t_p: float | None
    wilcoxon_p: float | None


def paired(before: Values, after: Values, confidence: float = 0.95) -> Paired:
    """Change after - before: mean with t interval, paired t-test and Wilcoxon signed-rank p."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if len(a) != len(b):
        raise ValueError("before and after differ in length")
    diffs = a - b
    change = mean_ci(diffs, confidence)
    t_p = w_p = None
    if len(diffs) >= 2 and np.std(diffs) > 0:
        t_p = float(stats.ttest_rel(a, b).pvalue)
    if np.count_nonzero(diffs) >= 1 and len(diffs) >= 2:
        w_p = _finite(float(stats.wilcoxon(a, b).pvalue))
    return Paired(len(diffs), change, t_p, w_p)
