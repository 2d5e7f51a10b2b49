"""The blocked modal path of propagate_summary equals the step-by-step propagate()."""

import numpy as np
import pytest

from ketacare.pharmacology.pk_models import typical_parameters
from ketacare.pharmacology.population import _EDGES, _bin_index, _percentiles_from_counts
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import make_plan, output_times
from ketacare.pharmacology.solve import propagate, propagate_summary

SCHEDULES = {
    "infusion": [Dose("iv_infusion", 35.0, 0.0, 40.0)],
    "mixed": [
        Dose("iv_bolus", 20.0),
        Dose("oral", 50.0, start_min=30.0),
        Dose("iv_infusion", 20.0, 60.0, 15.0),
        Dose("intranasal", 30.0, start_min=100.0),
    ],
}


def _batch(doses: list[Dose], model: str, n: int, norketamine: bool):  # type: ignore[no-untyped-def]
    plan = make_plan(doses, model, None, norketamine)
    rng = np.random.default_rng(7)
    params = typical_parameters(plan.model, 50.0 + 40.0 * rng.random(n), np.zeros(n, bool), 1.0)
    for k in params:
        params[k] = params[k] * np.exp(0.3 * rng.standard_normal(n))
    return plan, plan.system(params, np.ones(n))


@pytest.mark.parametrize("model", ["kamp2020", "s_ketamine_otto2021", "herd2007"])
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("norketamine", [False, True])
def test_blocked_summary_equals_step_by_step(model: str, schedule: str, norketamine: bool) -> None:
    plan, system = _batch(SCHEDULES[schedule], model, 150, norketamine)
    times = output_times(360.0, 10.0 / 60.0)
    weights = np.random.default_rng(1).random((4, len(system.outputs)))
    index = np.arange(0, times.size, 6)
    peak, samples = propagate_summary(system, plan.inputs, times, weights, index)
    y = np.einsum("qo,ton->nqt", weights, propagate(system, plan.inputs, times, "modal"))
    scale = np.abs(y).max(axis=2)
    assert np.all(np.abs(peak - y.max(axis=2)) <= 1e-9 * scale)
    assert np.all(np.abs(samples - y[:, :, index]) <= 1e-9 * scale[:, :, None])
    big = np.abs(y[:, :, index]) > 1e-6 * scale[:, :, None]
    # Relative agreement on values above a millionth of the peak: with NumPy 2.4 the smallest of
    # these differ by up to 1.5e-9 relative (rounding in the matrix exponential), far inside 1e-8.
    assert np.allclose(samples[big], y[:, :, index][big], rtol=1e-8, atol=0)


def test_irregular_grid_falls_back_to_propagate() -> None:
    plan, system = _batch(SCHEDULES["mixed"], "kamp2020", 40, True)
    times = np.array([0.0, 0.5, 3.0, 7.25, 31.0, 90.0, 200.0])
    weights = np.eye(len(system.outputs))
    index = np.array([0, 3, 6])
    peak, samples = propagate_summary(system, plan.inputs, times, weights, index)
    y = np.einsum("qo,ton->nqt", weights, propagate(system, plan.inputs, times))
    assert np.array_equal(peak, y.max(axis=2))
    assert np.array_equal(samples, y[:, :, index])


def test_bins_hold_their_values() -> None:
    values = np.array([0.0, -1e-18, 5e-4, 1e-3, 0.37, 1.0, 150.0, 99_999.0])
    idx = _bin_index(values)
    assert list(idx[:3]) == [0, 0, 0]
    inside = idx > 0
    assert np.all(_EDGES[idx[inside] - 1] <= values[inside])
    assert np.all(values[inside] < _EDGES[idx[inside]])
    width = np.diff(_EDGES) / _EDGES[:-1]
    assert width.max() <= 1 / 64 + 1e-12


def test_histogram_percentiles_match_numpy_within_a_bin() -> None:
    rng = np.random.default_rng(3)
    values = np.exp(rng.normal(4.0, 0.5, size=(5, 20_000)))
    counts = np.zeros((5, _EDGES.size), dtype=np.int64)
    for row in range(5):
        counts[row] = np.bincount(_bin_index(values[row]), minlength=_EDGES.size)
    got = _percentiles_from_counts(counts, [5.0, 50.0, 95.0])
    exact = np.percentile(values, [5.0, 50.0, 95.0], axis=1)
    assert np.all(np.abs(got / exact - 1.0) < 1 / 64)
