"""Virtual populations: percentiles converge, chunking does not change results."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from ketacare.pharmacology.effects import Endpoint
from ketacare.pharmacology.errors import PharmacologyInputError
from ketacare.pharmacology.pk_models import get_model, model_variability
from ketacare.pharmacology.population import simulate_population
from ketacare.pharmacology.schedule import Dose

BOLUS = [Dose("iv_bolus", 35.0)]
PLASMA = [Endpoint("plasma", 1000.0, 0.0)]


def _exact_t0(q: float) -> float:
    """After an IV bolus, Cp(0) = dose / V1 with V1 log-normal: exact percentiles."""
    cov, _ = model_variability(get_model("kamp2020"))
    omega = math.sqrt(cov.covariance[0, 0])
    return 35.0 / 25.0 * 1000.0 * math.exp(norm.ppf(q / 100.0) * omega)


def _band_error(n: int, seed: int) -> float:
    r = simulate_population(BOLUS, n_patients=n, seed=seed, endpoints=PLASMA, t_min=np.array([0.0, 1.0]))
    exact = np.array([_exact_t0(q) for q in r.percentiles])
    return float(np.max(np.abs(r.cp_bands[:, 0] / exact - 1.0)))


def test_percentiles_converge_to_exact_values() -> None:
    small = np.mean([_band_error(200, s) for s in range(5)])
    large = _band_error(40_000, 11)
    assert large < 0.02
    assert large < small / 2


def test_probability_of_reaching_threshold_matches_lognormal() -> None:
    cov, _ = model_variability(get_model("kamp2020"))
    omega = math.sqrt(cov.covariance[0, 0])
    r = simulate_population(BOLUS, n_patients=40_000, seed=3, endpoints=PLASMA, t_min=np.array([0.0, 1.0]))
    exact = norm.cdf(math.log(35.0 / 25.0) / omega)
    assert r.p_reach["plasma"] == pytest.approx(exact, abs=0.01)


def test_chunking_does_not_change_results() -> None:
    doses = [Dose("iv_infusion", 35.0, 0.0, 40.0)]
    kwargs = {
        "n_patients": 700,
        "seed": 5,
        "end_min": 120.0,
        "female_fraction": 0.5,
        "female_clearance_factor": 1.2,
    }
    a = simulate_population(doses, chunk_size=64, **kwargs)
    b = simulate_population(doses, chunk_size=1000, **kwargs)
    assert np.array_equal(a.cp_bands, b.cp_bands)
    assert a.p_reach == b.p_reach
    for k in a.peak_percentiles:
        assert np.allclose(a.peak_percentiles[k], b.peak_percentiles[k], rtol=1e-12)


def test_summary_and_progress() -> None:
    calls: list[tuple[int, int]] = []
    r = simulate_population(
        [Dose("iv_infusion", 35.0, 0.0, 40.0)],
        n_patients=300,
        chunk_size=128,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(128, 300), (256, 300), (300, 300)]
    assert r.band_t_min.size <= 400
    assert r.cp_bands.shape == (3, r.band_t_min.size)
    assert np.all(np.diff(r.cp_bands, axis=0) >= 0)
    assert r.p_analgesia_without_psychotomimetic is not None
    assert 0.0 <= r.p_analgesia_without_psychotomimetic <= r.p_reach["analgesia"]
    assert "borrowed_iiv" in {w.code for w in r.warnings}


def test_s_ketamine_variability_includes_bioavailability() -> None:
    r = simulate_population(
        [Dose("oral", 50.0)], n_patients=2000, model="s_ketamine_otto2021", norketamine=True, end_min=240.0
    )
    lo, mid, hi = r.peak_percentiles["analgesia"]
    assert lo < mid < hi
    assert "borrowed_iiv" not in {w.code for w in r.warnings}


def test_population_bad_input() -> None:
    with pytest.raises(PharmacologyInputError):
        simulate_population(BOLUS, n_patients=0)
    with pytest.raises(PharmacologyInputError):
        simulate_population(BOLUS, n_patients=10, female_fraction=2.0)
    with pytest.raises(PharmacologyInputError):
        simulate_population(BOLUS, n_patients=10, weight_kg=np.array([70.0, -1.0] * 5))
