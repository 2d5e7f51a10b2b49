"""Each statistic against a hand-computed or SciPy/lifelines reference on small data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ketacare.analytics import stats


def test_wilson_by_hand() -> None:
    # 5/10, z = 1.959964: centre (0.5 + z^2/20) / (1 + z^2/10) = 0.5;
    # half = z*sqrt(0.025 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    half = z * math.sqrt(0.025 + z * z / 400) / (1 + z * z / 10)
    e = stats.wilson(5, 10)
    assert e.value == 0.5 and e.low == pytest.approx(0.5 - half) and e.high == pytest.approx(0.5 + half)
    assert (round(e.low, 4), round(e.high, 4)) == (0.2366, 0.7634)
    zero = stats.wilson(0, 20)
    assert zero.low == 0.0 and zero.high == pytest.approx(z * z / 20 / (1 + z * z / 20))
    assert stats.wilson(0, 0).value is None


def test_mean_ci_against_scipy() -> None:
    values = [-3.0, -1.0, -4.0, 0.0, -2.0]
    e = stats.mean_ci(values)
    low, high = sps.t.interval(0.95, 4, loc=-2.0, scale=sps.sem(values))
    assert e.value == -2.0 and e.low == pytest.approx(low) and e.high == pytest.approx(high)


def test_poisson_exact_interval() -> None:
    # 3 events in 100 sessions: exact 95% limits 0.6187 and 8.7673 events (Garwood)
    e = stats.poisson_rate(3, 100)
    assert e.value == 0.03
    assert e.low == pytest.approx(0.0061871, abs=1e-6) and e.high == pytest.approx(0.0876727, abs=1e-6)
    assert stats.poisson_rate(0, 50).low == 0.0


def test_kaplan_meier_by_hand() -> None:
    # times 5,10,15+,20,25+: S(5)=4/5, S(10)=3/5, S(20)=3/5*1/2=0.3 -> median 20
    km = stats.kaplan_meier([5, 10, 15, 20, 25], [True, True, False, True, False])
    assert km is not None
    assert dict(zip(km.timeline, km.survival, strict=True))[20.0] == pytest.approx(0.3)
    assert km.median == 20.0 and km.events == 3
    # Greenwood log-log lower limit at t=5: S=0.8, var term 1/(5*4)=0.05
    s, v = 0.8, 0.05
    se = math.sqrt(v) / abs(math.log(s))
    low = s ** math.exp(1.959963984540054 * se)
    assert km.low[1] == pytest.approx(low, rel=1e-6)


def test_median_not_reached_is_none() -> None:
    km = stats.kaplan_meier([10, 20, 30, 40], [True, False, False, False])  # S never reaches 0.5
    assert km is not None and km.median is None


def test_paired_against_scipy() -> None:
    before, after = [60.0, 90.0, 30.0, 45.0], [40.0, 90.0, 20.0, 30.0]
    p = stats.paired(before, after)
    assert p.mean_change.value == -11.25
    assert p.t_p == pytest.approx(sps.ttest_rel(after, before).pvalue)
    assert p.wilcoxon_p == pytest.approx(sps.wilcoxon(after, before).pvalue)


# --- several series per patient ----------------------------------------------------------------------

CLUSTERED = [  # (patient, value): patients 1 and 2 have four series each, alike within a patient
    (1, 1.0), (1, 1.0), (1, 1.0), (1, 1.0), (2, 0.0), (2, 0.0), (2, 0.0), (2, 0.0), (3, 1.0), (4, 0.0),
]  # fmt: skip


def _sums(rows: list[tuple[int, float]]) -> stats.ClusterSums:
    totals: dict[int, list[float]] = {}
    for patient, y in rows:
        t = totals.setdefault(patient, [0.0, 0.0])
        t[0] += y
        t[1] += 1
    return stats.ClusterSums.of([(a, b) for a, b in totals.values()])


def test_the_cluster_robust_variance_is_statsmodels() -> None:
    """CR1 = OLS with cluster-robust covariance (Stata's small-sample factor); CR0 = GEE's robust
    covariance, independence working correlation (statsmodels, the field's library)."""
    import statsmodels.api as sm

    y = np.array([v for _, v in CLUSTERED])
    groups = np.array([p for p, _ in CLUSTERED])
    ones = np.ones((len(y), 1))
    ols = sm.OLS(y, ones).fit(cov_type="cluster", cov_kwds={"groups": groups})
    gee = sm.GEE(y, ones, groups=groups, cov_struct=sm.cov_struct.Independence()).fit()
    sums = _sums(CLUSTERED)
    assert sums.ratio == pytest.approx(float(ols.params[0]))
    assert sums.variance() == pytest.approx(float(ols.cov_params()[0, 0]))
    assert sums.variance(small_sample=False) == pytest.approx(float(gee.cov_robust[0, 0]))


@pytest.mark.parametrize(
    ("rule", "rows", "same_as_plain"),
    [
        ("one series per patient: the plain Wilson interval", [(i, float(i % 2)) for i in range(10)], True),
        ("several series per patient: wider than the plain Wilson interval", CLUSTERED, False),
    ],
)
def test_cluster_wilson(rule: str, rows: list[tuple[int, float]], same_as_plain: bool) -> None:
    sums = _sums(rows)
    plain = stats.wilson(round(sums.y), round(sums.n))
    ours = stats.cluster_wilson(sums)
    assert ours.value == plain.value
    assert plain.low is not None and plain.high is not None and ours.low is not None and ours.high is not None
    if same_as_plain:
        assert (ours.low, ours.high) == pytest.approx((plain.low, plain.high)), rule
    else:
        assert ours.low < plain.low and ours.high > plain.high, rule


def test_a_cluster_mean_over_one_series_each_is_the_t_interval() -> None:
    values = [-4.0, -2.0, 0.0, -1.0]
    ours = stats.cluster_mean(stats.ClusterSums.of([(v, 1.0) for v in values]))
    plain = stats.mean_ci(values)
    assert (ours.value, ours.low, ours.high) == pytest.approx((plain.value, plain.low, plain.high))


def test_p_values_are_adjusted_for_the_false_discovery_rate() -> None:
    assert stats.fdr_adjusted([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.04, 0.04])
