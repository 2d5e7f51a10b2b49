"""Registry statistics, pure functions over plain numbers: Wilson score intervals for
proportions, t intervals for means, exact Poisson intervals for event rates, Kaplan-Meier
(lifelines) with its confidence band and the interval-censored (Turnbull) estimate, paired tests
(SciPy), and what patients with several series need: cluster-robust (by patient) variances of
ratios, with the Wilson and Poisson intervals on the effective sample size, and false-discovery-rate
(Benjamini-Hochberg) adjusted p-values."""

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


# --- several series per patient: cluster-robust ratios ----------------------------------------------


@dataclass(frozen=True)
class ClusterSums:
    """A ratio ``sum y / sum n`` over clusters (patients), as the sums the sandwich variance
    needs: with ``y_i``, ``n_i`` each patient's totals, ``yy`` = sum y_i^2, ``yn`` = sum y_i n_i,
    ``nn`` = sum n_i^2, and ``clusters`` the patients with n_i > 0. A proportion of series has
    y = responders, n = series; a mean has y = the sum of the values."""

    y: float
    n: float
    yy: float
    yn: float
    nn: float
    clusters: int

    @classmethod
    def of(cls, totals: Sequence[tuple[float, float]]) -> ClusterSums:
        """From each patient's (y_i, n_i)."""
        kept = [(y, n) for y, n in totals if n > 0]
        return cls(
            y=float(sum(y for y, _ in kept)),
            n=float(sum(n for _, n in kept)),
            yy=float(sum(y * y for y, _ in kept)),
            yn=float(sum(y * n for y, n in kept)),
            nn=float(sum(n * n for _, n in kept)),
            clusters=len(kept),
        )

    @property
    def ratio(self) -> float | None:
        return None if self.n <= 0 else self.y / self.n

    def variance(self, small_sample: bool = True) -> float | None:
        """The cluster-robust variance of the ratio, sum_i (y_i - R n_i)^2 / N^2 (CR0: statsmodels'
        GEE robust covariance of an intercept-only model), times G/(G-1) with ``small_sample``
        (CR1: its OLS with ``cov_type="cluster"``; for a mean over one series per patient, the
        usual s^2/n)."""
        r, g = self.ratio, self.clusters
        if r is None or g < 2:
            return None
        resid = max(self.yy - 2 * r * self.yn + r * r * self.nn, 0.0)
        return resid * (g / (g - 1) if small_sample else 1.0) / (self.n * self.n)


def cluster_wilson(sums: ClusterSums, confidence: float = 0.95) -> Estimate:
    """A proportion of series with the Wilson interval on the effective sample size (the number
    of series divided by the design effect, CR0 variance against binomial, at least 1; Korn and
    Graubard 1998): the plain Wilson interval when every patient has one series."""
    n, k = round(sums.n), round(sums.y)
    plain = wilson(k, n, confidence)
    var, p = sums.variance(small_sample=False), sums.ratio
    if n == 0 or p is None or var is None or var <= 0 or p in (0.0, 1.0):
        return plain
    n_eff = min(float(n), p * (1 - p) / var)
    z = _z(confidence)
    denom = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def cluster_mean(sums: ClusterSums, confidence: float = 0.95) -> Estimate:
    """A mean over series with its cluster-robust (CR1) standard error and a t interval on
    patients - 1 degrees of freedom: the usual t interval when every patient has one series."""
    mean, var = sums.ratio, sums.variance()
    n = round(sums.n)
    if mean is None:
        return Estimate(None, None, None, 0)
    if var is None:
        return Estimate(mean, None, None, n)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, sums.clusters - 1)) * math.sqrt(var)
    return Estimate(mean, mean - half, mean + half, n)


def cluster_t_p(sums: ClusterSums) -> float | None:
    """Two-sided p of mean = 0 with the cluster-robust standard error (t, patients - 1 df)."""
    mean, var = sums.ratio, sums.variance()
    if mean is None or var is None or var <= 0:
        return None
    t = mean / math.sqrt(var)
    return float(2 * stats.t.sf(abs(t), sums.clusters - 1))


def cluster_poisson_rate(sums: ClusterSums, confidence: float = 0.95) -> Estimate:
    """Events per session with the exact Poisson interval on the effective counts (events and
    sessions divided by the design effect, CR0 variance against Poisson, at least 1)."""
    events, exposure = sums.y, sums.n
    if exposure <= 0:
        return Estimate(None, None, None, 0)
    rate, var = events / exposure, sums.variance(small_sample=False)
    deff = 1.0
    if events > 0 and var is not None and var > 0:
        deff = max(1.0, var / (rate / exposure))
    e, x = events / deff, exposure / deff
    alpha = 1 - confidence
    low = 0.0 if e <= 0 else float(stats.chi2.ppf(alpha / 2, 2 * e)) / 2
    high = float(stats.chi2.ppf(1 - alpha / 2, 2 * e + 2)) / 2
    return Estimate(rate, low / x, high / x, int(exposure))


def wilcoxon_p(values: Values) -> float | None:
    """Wilcoxon signed-rank p of one value per patient (e.g. each patient's mean change)."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2 or np.count_nonzero(arr) < 1:
        return None
    # exact for up to 50 values without ties or zeros, else the normal approximation (SciPy's
    # automatic choice would run a permutation test, far too slow for a report)
    nonzero = np.abs(arr[arr != 0])
    exact = len(arr) <= 50 and len(nonzero) == len(arr) and len(np.unique(nonzero)) == len(nonzero)
    return _finite(float(stats.wilcoxon(arr, method="exact" if exact else "approx").pvalue))


def fdr_adjusted(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (SciPy's ``false_discovery_control``), the missing
    ones left missing."""
    known = [(i, p) for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if known:
        adjusted = stats.false_discovery_control([p for _, p in known], method="bh")
        for (i, _), q in zip(known, adjusted, strict=True):
            out[i] = float(q)
    return out


def interval_median(
    lower: Sequence[float], upper: Sequence[float], weights: Sequence[int] | None = None
) -> float | None:
    """The median of an interval-censored time (each loss known only to lie in (lower, upper];
    upper infinite: still responding at ``lower``), from the Turnbull NPMLE (lifelines'
    ``fit_interval_censoring``): the first day by which its estimate has fallen to one half (the
    end of the Turnbull interval that holds the half-way mass); ``None``: no data or not
    reached."""
    if not len(lower) or not np.isfinite(np.asarray(upper, dtype=float)).any():
        return None
    # identical intervals as one weighted interval, in order: the NPMLE is iterative, and the
    # same data handed over in another order or multiplicity may stop a day apart
    counts: dict[tuple[float, float], float] = {}
    w = [1] * len(lower) if weights is None else list(weights)
    for lo_, hi_, n in zip(lower, upper, w, strict=True):
        counts[(float(lo_), float(hi_))] = counts.get((float(lo_), float(hi_)), 0.0) + float(n)
    pairs = sorted(counts)
    kmf = KaplanMeierFitter()
    # lifelines takes closed intervals; days are whole: a loss after day ``lower`` is on day
    # lower + 1 at the earliest, so (lower, upper] is [lower + 1, upper]
    kmf.fit_interval_censoring(
        np.array([p[0] + 1 for p in pairs]),
        np.array([p[1] for p in pairs]),
        weights=np.array([counts[p] for p in pairs]),
    )
    curve = kmf.survival_function_["NPMLE_estimate_lower"]
    below = curve[(curve <= 0.5) & np.isfinite(curve.index.to_numpy(dtype=float))]
    return None if below.empty else float(below.index[0])
