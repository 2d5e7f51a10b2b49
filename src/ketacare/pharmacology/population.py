"""Virtual populations: between-subject variability, chunked so memory stays bounded.

Percentile bands come from per-time-point histograms on a log-concentration grid that
are filled chunk by chunk, so memory does not grow with the number of patients; a band
value is exact to within a fraction of one bin (about 2% of the value, interpolated).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.effects import Endpoint
from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError
from ketacare.pharmacology.models import (
    DEFAULT_MODEL,
    Patient,
    check_patient,
    model_variability,
    typical_parameters,
)
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import (
    DEFAULT_END_MIN,
    DEFAULT_STEP_MIN,
    check_times,
    make_plan,
    output_times,
)
from ketacare.pharmacology.solve import propagate
from ketacare.pharmacology.units import NG_PER_ML_PER_MG_PER_L

FloatArray = NDArray[np.float64]
Progress = Callable[[int, int], None]

PERCENTILES = (5.0, 50.0, 95.0)
DEFAULT_CHUNK = 1024
_LOG10_LO, _LOG10_HI, _N_BINS = -3.0, 5.0, 1000
_MAX_BAND_POINTS = 400


@dataclass(frozen=True)
class PopulationResult:
    """Summary of a virtual population; concentrations in ng/mL.

    ``band_t_min`` is a subsample of the simulation grid (at most 400 points) at which
    ``cp_bands`` and ``ce_bands[name]`` give the requested percentiles (rows). Peaks and
    probabilities use the full grid.
    """

    n_patients: int
    percentiles: tuple[float, ...]
    band_t_min: FloatArray
    cp_bands: FloatArray
    ce_bands: dict[str, FloatArray]
    peak_percentiles: dict[str, FloatArray]
    p_reach: dict[str, float]
    """Probability that the endpoint's drive reaches its threshold."""
    p_analgesia_without_psychotomimetic: float | None
    thresholds_ng_per_ml: dict[str, float]
    warnings: tuple[ModelWarning, ...]


def _band_stride(n_times: int) -> int:
    return max(1, math.ceil(n_times / _MAX_BAND_POINTS))


def _bin_index(conc_ng_per_ml: FloatArray) -> NDArray[np.int64]:
    """Bin 0 holds values below 10**_LOG10_LO (including zero); bins 1.._N_BINS the rest."""
    pos = (np.log10(np.maximum(conc_ng_per_ml, 1e-300)) - _LOG10_LO) * (
        _N_BINS / (_LOG10_HI - _LOG10_LO)
    )
    idx = np.floor(pos).astype(np.int64) + 1
    return np.clip(idx, 0, _N_BINS)


def _percentiles_from_counts(counts: NDArray[np.int64], q: Sequence[float]) -> FloatArray:
    """Percentiles (rows) per time point (columns), interpolated log-linearly in a bin."""
    n_times, _ = counts.shape
    total = counts.sum(axis=1)
    cum = np.cumsum(counts, axis=1)
    width = (_LOG10_HI - _LOG10_LO) / _N_BINS
    out = np.empty((len(q), n_times))
    rows = np.arange(n_times)
    for i, p in enumerate(q):
        rank = p / 100.0 * total
        b = np.minimum((cum < rank[:, None]).sum(axis=1), _N_BINS)
        below = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0)
        frac = np.clip((rank - below) / np.maximum(counts[rows, b], 1), 0.0, 1.0)
        log_value = _LOG10_LO + (b - 1 + frac) * width
        out[i] = np.where(b == 0, 0.0, 10.0**log_value)
    return out


def _as_array(value: float | FloatArray, n: int, name: str) -> FloatArray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise PharmacologyInputError(f"{name} must be finite and not negative")
    return arr


def simulate_population(
    doses: Sequence[Dose],
    *,
    n_patients: int,
    model: str = DEFAULT_MODEL,
    weight_kg: float | FloatArray = 70.0,
    age_y: float | FloatArray = 40.0,
    female_fraction: float = 0.0,
    seed: int = 0,
    endpoints: Sequence[Endpoint] | None = None,
    t_min: FloatArray | None = None,
    end_min: float = DEFAULT_END_MIN,
    step_min: float = DEFAULT_STEP_MIN,
    percentiles: Sequence[float] = PERCENTILES,
    norketamine: bool = False,
    female_clearance_factor: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> PopulationResult:
    """Simulate ``n_patients`` virtual patients with log-normal variability.

    ``weight_kg`` and ``age_y`` are a value for everyone or one value per patient; sex is
    drawn with probability ``female_fraction``. Results do not depend on ``chunk_size``.
    ``progress(done, total)`` is called after each chunk.
    """
    if n_patients < 1 or chunk_size < 1:
        raise PharmacologyInputError("n_patients and chunk_size must be at least 1")
    if not 0.0 <= female_fraction <= 1.0:
        raise PharmacologyInputError("female_fraction must be between 0 and 1")
    plan = make_plan(doses, model, endpoints, norketamine)
    times = check_times(t_min) if t_min is not None else output_times(end_min, step_min)
    weights = _as_array(weight_kg, n_patients, "weight_kg")
    ages = _as_array(age_y, n_patients, "age_y")
    variability, iiv_warnings = model_variability(plan.model)
    warnings = list(iiv_warnings) + list(plan.warnings)
    for w, a in {(float(weights.min()), float(ages.min())),
                 (float(weights.max()), float(ages.max()))}:
        warnings.extend(x for x in check_patient(plan.model, Patient(w, a)) if x not in warnings)
    chol = np.linalg.cholesky(variability.covariance)
    # Separate streams for sex and eta keep every patient's draws independent of chunking.
    sex_rng, eta_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    stride = _band_stride(times.size)
    band_times = times[::stride]
    quantities = {"cp": None, **{e.name: e for e in plan.endpoints}}
    counts = {k: np.zeros((band_times.size, _N_BINS + 1), dtype=np.int64) for k in quantities}
    peaks = {e.name: np.empty(n_patients) for e in plan.endpoints}
    offsets = (np.arange(band_times.size) * (_N_BINS + 1))[:, None]

    for start in range(0, n_patients, chunk_size):
        stop = min(start + chunk_size, n_patients)
        n = stop - start
        female = sex_rng.random(n) < female_fraction
        eta = eta_rng.standard_normal((n, len(variability.names))) @ chol.T
        params = typical_parameters(
            plan.model, weights[start:stop], female, female_clearance_factor
        )
        f_factor = np.ones(n)
        for k, name in enumerate(variability.names):
            if name == "bioavailability":
                f_factor = np.exp(eta[:, k])
            else:
                params[name] = params[name] * np.exp(eta[:, k])
        system = plan.system(params, f_factor)
        y = propagate(system, plan.inputs, times)
        y *= NG_PER_ML_PER_MG_PER_L
        for key, endpoint in quantities.items():
            q = (y[:, system.outputs.index("cp")] if endpoint is None
                 else plan.drive_mg_per_l(system.outputs, y, endpoint))
            if endpoint is not None:
                peaks[key][start:stop] = q.max(axis=0)
            flat = (_bin_index(q[::stride]) + offsets).ravel()
            counts[key] += np.bincount(flat, minlength=counts[key].size).reshape(
                counts[key].shape
            )
        if progress is not None:
            progress(stop, n_patients)

    q_list = list(percentiles)
    p_reach = {
        e.name: float(np.mean(peaks[e.name] >= e.threshold_ng_per_ml)) for e in plan.endpoints
    }
    names = {e.name: e for e in plan.endpoints}
    p_without = None
    if "analgesia" in names and "psychotomimetic" in names:
        reached = peaks["analgesia"] >= names["analgesia"].threshold_ng_per_ml
        crossed = peaks["psychotomimetic"] >= names["psychotomimetic"].threshold_ng_per_ml
        p_without = float(np.mean(reached & ~crossed))
    return PopulationResult(
        n_patients=n_patients,
        percentiles=tuple(q_list),
        band_t_min=band_times,
        cp_bands=_percentiles_from_counts(counts["cp"], q_list),
        ce_bands={e.name: _percentiles_from_counts(counts[e.name], q_list)
                  for e in plan.endpoints},
        peak_percentiles={k: np.percentile(v, q_list) for k, v in peaks.items()},
        p_reach=p_reach,
        p_analgesia_without_psychotomimetic=p_without,
        thresholds_ng_per_ml={e.name: e.threshold_ng_per_ml for e in plan.endpoints},
        warnings=tuple(warnings),
    )
