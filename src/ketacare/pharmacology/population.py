"""Virtual populations: between-subject variability, chunked so memory stays bounded.

Percentile bands come from per-time-point histograms that are filled chunk by chunk, so
memory does not grow with the number of patients. The bins are log-linear: each octave
from 2^-10 to 2^17 ng/mL is split into 64 equal bins, so a bin is read straight from the
bits of the double (exponent and the top 6 mantissa bits) and is 0.8-1.6% of its value
wide; a band value is exact to within a fraction of one bin (interpolated).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.effects import Endpoint
from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError
from ketacare.pharmacology.pk_models import (
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
from ketacare.pharmacology.solve import propagate_summary
from ketacare.pharmacology.units import NG_PER_ML_PER_MG_PER_L

FloatArray = NDArray[np.float64]
Progress = Callable[[int, int], None]

PERCENTILES = (5.0, 50.0, 95.0)
DEFAULT_CHUNK = 4096
_SUB_BITS = 6
_LO_EXP, _HI_EXP = -10, 17
_N_BINS = (_HI_EXP - _LO_EXP) << _SUB_BITS
_SHIFT = 52 - _SUB_BITS
_BASE = (1023 + _LO_EXP) << _SUB_BITS
# _EDGES[i] is the lower edge of bin i + 1 (and the upper edge of bin i).
_EDGES = (np.arange(_BASE, _BASE + _N_BINS + 1, dtype=np.int64) << _SHIFT).view(np.float64)
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
    """Bin 0 holds values below 2**_LO_EXP (zero and negative rounding noise included);
    bins 1.._N_BINS the rest, the last one also everything above 2**_HI_EXP."""
    idx = np.ascontiguousarray(conc_ng_per_ml).view(np.int64) >> _SHIFT
    idx -= _BASE - 1
    return np.clip(idx, 0, _N_BINS, out=idx)


def _percentiles_from_counts(counts: NDArray[np.int64], q: Sequence[float]) -> FloatArray:
    """Percentiles (rows) per time point (columns), interpolated linearly in a bin."""
    n_times, _ = counts.shape
    total = counts.sum(axis=1)
    cum = np.cumsum(counts, axis=1)
    out = np.empty((len(q), n_times))
    rows = np.arange(n_times)
    for i, p in enumerate(q):
        rank = p / 100.0 * total
        b = np.minimum((cum < rank[:, None]).sum(axis=1), _N_BINS)
        below = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0)
        frac = np.clip((rank - below) / np.maximum(counts[rows, b], 1), 0.0, 1.0)
        lower = _EDGES[np.maximum(b - 1, 0)]
        value = lower + frac * (_EDGES[b] - lower)
        out[i] = np.where(b == 0, 0.0, value)
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
    for w, a in {(float(weights.min()), float(ages.min())), (float(weights.max()), float(ages.max()))}:
        warnings.extend(x for x in check_patient(plan.model, Patient(w, a)) if x not in warnings)
    chol = np.linalg.cholesky(variability.covariance)
    # Separate streams for sex and eta keep every patient's draws independent of chunking.
    sex_rng, eta_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    stride = _band_stride(times.size)
    band_index = np.arange(0, times.size, stride)
    band_times = times[band_index]
    # Each quantity (Cp, then every endpoint's drive) is a fixed combination of the
    # system outputs; endpoints with the same drive share one row, computed once.
    outputs = plan.system(
        typical_parameters(plan.model, weights[:1], np.zeros(1, dtype=bool), 1.0), np.ones(1)
    ).outputs
    rows: list[tuple[float, ...]] = []
    row_of: dict[str, int] = {}
    for key, endpoint in {"cp": None, **{e.name: e for e in plan.endpoints}}.items():
        unit = np.eye(len(outputs))
        weight = (
            unit[outputs.index("cp")]
            if endpoint is None
            else plan.drive_mg_per_l(outputs, unit[None], endpoint)[0]
        )
        row = tuple(float(x) for x in weight * NG_PER_ML_PER_MG_PER_L)
        if row not in rows:
            rows.append(row)
        row_of[key] = rows.index(row)
    weight_matrix = np.array(rows)
    n_bands, n_q = band_index.size, len(rows)
    # Counts are bin-major, (bin, quantity, band time), so that one patient's consecutive
    # samples, which mostly share a bin, are counted at neighbouring addresses.
    n_qt = n_q * n_bands
    counts_flat = np.zeros((_N_BINS + 1) * n_qt, dtype=np.int64)
    qt_offset = np.arange(n_qt).reshape(n_q, n_bands) - (_BASE - 1) * n_qt
    index_buf = np.empty((min(chunk_size, n_patients), n_q, n_bands), dtype=np.int64)
    peaks = np.empty((n_patients, n_q))

    for start in range(0, n_patients, chunk_size):
        stop = min(start + chunk_size, n_patients)
        n = stop - start
        female = sex_rng.random(n) < female_fraction
        eta = eta_rng.standard_normal((n, len(variability.names))) @ chol.T
        params = typical_parameters(plan.model, weights[start:stop], female, female_clearance_factor)
        f_factor = np.ones(n)
        for k, name in enumerate(variability.names):
            if name == "bioavailability":
                f_factor = np.exp(eta[:, k])
            else:
                params[name] = params[name] * np.exp(eta[:, k])
        system = plan.system(params, f_factor)
        peaks[start:stop], samples = propagate_summary(system, plan.inputs, times, weight_matrix, band_index)
        # _bin_index in place, folded with the (bin, quantity, time) offsets.
        idx = index_buf[:n]
        np.right_shift(samples.view(np.int64), _SHIFT, out=idx)
        np.clip(idx, _BASE - 1, _BASE - 1 + _N_BINS, out=idx)
        np.multiply(idx, n_qt, out=idx)
        np.add(idx, qt_offset, out=idx)
        counts_flat += np.bincount(idx.reshape(-1), minlength=counts_flat.size)
        if progress is not None:
            progress(stop, n_patients)

    counts = np.ascontiguousarray(counts_flat.reshape(_N_BINS + 1, n_q, n_bands).transpose(1, 2, 0))
    q_list = list(percentiles)
    peak_of = {e.name: peaks[:, row_of[e.name]] for e in plan.endpoints}
    p_reach = {e.name: float(np.mean(peak_of[e.name] >= e.threshold_ng_per_ml)) for e in plan.endpoints}
    names = {e.name: e for e in plan.endpoints}
    p_without = None
    if "analgesia" in names and "psychotomimetic" in names:
        reached = peak_of["analgesia"] >= names["analgesia"].threshold_ng_per_ml
        crossed = peak_of["psychotomimetic"] >= names["psychotomimetic"].threshold_ng_per_ml
        p_without = float(np.mean(reached & ~crossed))
    return PopulationResult(
        n_patients=n_patients,
        percentiles=tuple(q_list),
        band_t_min=band_times,
        cp_bands=_percentiles_from_counts(counts[row_of["cp"]], q_list),
        ce_bands={e.name: _percentiles_from_counts(counts[row_of[e.name]], q_list) for e in plan.endpoints},
        peak_percentiles={k: np.percentile(v, q_list) for k, v in peak_of.items()},
        p_reach=p_reach,
        p_analgesia_without_psychotomimetic=p_without,
        thresholds_ng_per_ml={e.name: e.threshold_ng_per_ml for e in plan.endpoints},
        warnings=tuple(warnings),
    )
