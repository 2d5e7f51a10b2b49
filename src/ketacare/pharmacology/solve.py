"""Exact solution of x' = A x + B u(t) for piecewise-constant u(t) plus impulses.

Two exact propagators share one event loop:

* ``modal`` (default): A = V diag(lambda) V^-1, so each mode z_i = (V^-1 x)_i obeys the
  scalar equation z_i' = lambda_i z_i + (V^-1 B u)_i, advanced over a step h by
  z_i <- e^{lambda_i h} z_i + (e^{lambda_i h} - 1)/lambda_i (V^-1 B u)_i. Patients are
  laid out along the last axis so every step is a handful of contiguous vector operations.
* ``state``: the augmented matrix exponential expm([[A, B], [0, 0]] h) gives the
  state-transition matrix and the input integral for each step length. It needs no
  eigendecomposition, so it also serves patients whose A is (nearly) defective, e.g. an
  absorption rate equal to a disposition rate.

``propagate_summary`` serves virtual populations, which need only a few linear
combinations of the outputs, their maxima over time and their values at some times. On a
uniform grid whose knots are all output times it uses the same modal solution in closed
form over blocks of ``_BLOCK`` steps: within a block that starts at knot s with mode state
z_s and constant drive u, z_{s+j} = e^{lambda j h} z_s + (e^{lambda j h} - 1)/lambda u.
The tables e^{lambda j h} and (e^{lambda j h} - 1)/lambda (j < _BLOCK) are computed once
per patient, and every block's outputs come from one small matrix product per patient
(BLAS), so no Python loop runs over the time steps. Other grids and nearly defective
patients fall back to ``propagate``. Its eigendecomposition uses the closed forms of
``eigen.structured_eigen`` (all patients at once) instead of one LAPACK call per patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import expm

from ketacare.pharmacology.eigen import structured_eigen
from ketacare.pharmacology.schedule import Inputs
from ketacare.pharmacology.system import System

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Method = Literal["auto", "modal", "state"]

_TIME_TOL_MIN = 1e-9
# Above this condition number of the eigenvector matrix the modal form loses more than
# about 1e-6 of relative accuracy, so such patients go to the state propagator.
_MAX_EIGVEC_CONDITION = 1e8
# Steps per block of the blocked modal solution, and patients per matrix product batch
# (sized so a batch's outputs, about 64 x 2161 x 3 doubles, stay in the L2 cache).
_BLOCK = 64
_SUB_BATCH = 64


@dataclass(frozen=True)
class _Knots:
    t_min: FloatArray
    step_group: IntArray
    """Index into ``step_min`` of the step that ends at each knot (first knot: -1)."""
    step_min: FloatArray
    output_index: IntArray
    """Position in the requested output times, or -1."""
    rate_row: IntArray
    """Row of Inputs.rate_mg_per_min that starts at the knot, or -1."""
    impulses: list[list[tuple[int, float]]]


def _knots(inputs: Inputs, t_out_min: FloatArray) -> _Knots:
    candidates = np.concatenate(([0.0], t_out_min, inputs.impulse_t_min, inputs.rate_t_min))
    candidates.sort()
    keep = np.concatenate(([True], np.diff(candidates) > _TIME_TOL_MIN))
    t = candidates[keep]

    def locate(times: FloatArray) -> IntArray:
        idx = np.searchsorted(t, times - _TIME_TOL_MIN)
        return np.asarray(idx, dtype=np.int64)

    output_index = np.full(t.shape, -1, dtype=np.int64)
    output_index[locate(t_out_min)] = np.arange(t_out_min.size)
    rate_row = np.full(t.shape, -1, dtype=np.int64)
    rate_row[locate(inputs.rate_t_min)] = np.arange(inputs.rate_t_min.size)
    impulses: list[list[tuple[int, float]]] = [[] for _ in t]
    for k, ch, mg in zip(
        locate(inputs.impulse_t_min), inputs.impulse_channel, inputs.impulse_mg, strict=True
    ):
        impulses[int(k)].append((int(ch), float(mg)))
    steps = np.round(np.diff(t), 9)
    step_min, group = np.unique(steps, return_inverse=True)
    return _Knots(
        t_min=t,
        step_group=np.concatenate(([-1], group)).astype(np.int64),
        step_min=np.asarray(step_min, dtype=np.float64),
        output_index=output_index,
        rate_row=rate_row,
        impulses=impulses,
    )


def propagate(system: System, inputs: Inputs, t_out_min: FloatArray, method: Method = "auto") -> FloatArray:
    """Outputs (mg/L) at ``t_out_min`` (strictly increasing, >= 0): shape (T, n_outputs, N).

    A value at the time of an impulse includes the impulse.
    """
    knots = _knots(inputs, t_out_min)
    if method == "state":
        return _propagate_state(system, inputs, knots)
    lam, vec, inv, bad = _eigen(system.a)
    if not bad.any():
        return _propagate_modal(system.b, system.c, inputs, knots, lam.real, vec.real, inv.real)
    if method == "modal":
        raise np.linalg.LinAlgError("system matrix not diagonalisable to working accuracy")
    good = ~bad
    out = np.empty((t_out_min.size, len(system.outputs), lam.shape[0]))
    if good.any():
        out[:, :, good] = _propagate_modal(
            system.b[good],
            system.c[good],
            inputs,
            knots,
            lam[good].real,
            vec[good].real,
            inv[good].real,
        )
    sub = System(system.a[bad], system.b[bad], system.c[bad], system.outputs)
    out[:, :, bad] = _propagate_state(sub, inputs, knots)
    return out


def _eigen(a: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """Eigenvalues (N, n), eigenvectors, their inverse, and the patients the modal form
    cannot serve to working accuracy (complex or ill-conditioned eigenvectors)."""
    lam, vec = np.linalg.eig(a)
    inv = np.linalg.inv(vec)
    condition = np.abs(vec).sum(axis=1).max(axis=1) * np.abs(inv).sum(axis=1).max(axis=1)
    imag = np.abs(lam.imag).max(axis=1) if np.iscomplexobj(lam) else np.zeros(lam.shape[0])
    bad = (condition > _MAX_EIGVEC_CONDITION) | (imag > 0) | ~np.isfinite(condition)
    return lam, vec, inv, bad


def _eigen_batch(a: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """``_eigen`` for a patient batch: the closed forms of ``eigen.structured_eigen`` where
    they apply, LAPACK for the patients (or systems) they do not serve."""
    structured = structured_eigen(a)
    if structured is None:
        return _eigen(a)
    lam, vec, inv, bad = structured
    if bad.any():
        l_bad, v_bad, i_bad, still_bad = _eigen(a[bad])
        lam[bad], vec[bad], inv[bad] = l_bad.real, v_bad.real, i_bad.real
        bad[bad] = still_bad
    return lam, vec, inv, bad


def propagate_summary(
    system: System,
    inputs: Inputs,
    t_out_min: FloatArray,
    weights: FloatArray,
    sample_index: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """Maxima and samples of linear combinations of the outputs, for a patient batch.

    ``weights`` (Q, n_outputs) defines Q quantities q = weights @ y (the same for every
    patient). Returns ``peak`` (N, Q), each quantity's maximum over all of ``t_out_min``,
    and ``samples`` (N, Q, len(sample_index)), its values at ``t_out_min[sample_index]``.
    The numbers equal those of ``propagate`` followed by the combination, to rounding.
    """
    knots = _knots(inputs, t_out_min)
    n_patients = system.a.shape[0]
    if knots.t_min.size == t_out_min.size and knots.step_min.size <= 1:
        lam, vec, inv, bad = _eigen_batch(system.a)
        if not bad.any():
            wc = np.einsum("qo,pom->pqm", weights, system.c @ vec.real)
            return _summary_blocked(inv.real @ system.b, wc, lam.real, inputs, knots, sample_index)
    else:
        bad = np.ones(n_patients, dtype=bool)
    peak = np.empty((n_patients, weights.shape[0]))
    samples = np.empty((n_patients, weights.shape[0], sample_index.size))
    good = ~bad
    if good.any():
        wc = np.einsum("qo,pom->pqm", weights, system.c[good] @ vec[good].real)
        peak[good], samples[good] = _summary_blocked(
            inv[good].real @ system.b[good], wc, lam[good].real, inputs, knots, sample_index
        )
    sub = System(system.a[bad], system.b[bad], system.c[bad], system.outputs)
    y = np.einsum("qo,ton->nqt", weights, propagate(sub, inputs, t_out_min))
    peak[bad] = y.max(axis=2)
    samples[bad] = y[:, :, sample_index]
    return peak, samples


def _summary_blocked(
    wb: FloatArray,
    wc: FloatArray,
    lam: FloatArray,
    inputs: Inputs,
    knots: _Knots,
    sample_index: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """propagate_summary's modal path on a uniform grid; wb (N, modes, channels) is
    V^-1 B, wc (N, Q, modes) is weights C V, lam (N, modes)."""
    n_patients, n_q, n_modes = wc.shape
    n_t = knots.t_min.size
    h = float(knots.step_min[0]) if knots.step_min.size else 0.0
    block = min(_BLOCK, n_t)
    # Tables per patient, mode and step count j = 0..block (the last one only advances).
    # gain_j = (e^{lambda j h} - 1)/lambda = g_1 (1 + e^{lambda h} + ... + e^{lambda (j-1) h}),
    # a sum of positive terms, so the cumulative sum is accurate to about j ulps.
    decay = np.exp(lam[:, :, None] * (h * np.arange(block + 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        gain_1 = np.expm1(lam * h) / lam
    gain = np.zeros_like(decay)
    np.cumsum(decay[:, :, :-1], axis=2, out=gain[:, :, 1:])
    gain *= gain_1[:, :, None]

    # Block starts: the mode state after the start knot's impulses, and the drive.
    events = np.flatnonzero((knots.rate_row >= 0) | np.array([bool(i) for i in knots.impulses]))
    starts: list[int] = []
    lengths: list[int] = []
    z_start: list[FloatArray] = []
    u_start: list[FloatArray | None] = []
    z = np.zeros((n_patients, n_modes))
    u = np.zeros((n_patients, n_modes))
    driving = False
    s = 0
    while s < n_t:
        for ch, mg in knots.impulses[s]:
            z = z + wb[:, :, ch] * mg
        r_row = knots.rate_row[s]
        if r_row >= 0:
            rates = inputs.rate_mg_per_min[r_row]
            driving = bool(np.any(rates))
            u = wb @ rates
        later = events[events > s]
        r = min(block, int(later[0]) - s if later.size else n_t - s)
        starts.append(s)
        lengths.append(r)
        z_start.append(z)
        u_start.append(u if driving else None)
        z = decay[:, :, r] * z
        if driving:
            z = z + gain[:, :, r] * u
        s += r

    # Driven blocks first, so their input terms are added to one contiguous slice.
    order = sorted(range(len(starts)), key=lambda b: u_start[b] is None)
    n_blocks, n_driven = len(order), sum(v is not None for v in u_start)
    zb = np.stack([z_start[b] for b in order], axis=1)  # (N, blocks, modes)
    drives = [v for v in (u_start[b] for b in order) if v is not None]
    ub = np.stack(drives, axis=1) if drives else None
    position = np.empty(n_blocks, dtype=np.int64)
    position[order] = np.arange(n_blocks)
    # Where each sample lies in a patient's (block, row) output, flattened.
    start_arr = np.asarray(starts)
    s_block = np.searchsorted(start_arr, sample_index, side="right") - 1
    flat_index = position[s_block] * block + sample_index - start_arr[s_block]
    partial = [(int(position[b]), r) for b, r in enumerate(lengths) if r < block]

    peak = np.empty((n_patients, n_q))
    samples = np.empty((n_patients, n_q, sample_index.size))
    d_tab = decay[:, :, :block]
    g_tab = gain[:, :, :block]
    for lo in range(0, n_patients, _SUB_BATCH):
        hi = min(lo + _SUB_BATCH, n_patients)
        w = wc[lo:hi, :, None, :] * zb[lo:hi, None, :, :]  # (n, Q, blocks, modes)
        y = np.matmul(w.reshape(hi - lo, n_q * n_blocks, n_modes), d_tab[lo:hi])
        y = y.reshape(hi - lo, n_q, n_blocks, block)
        if ub is not None:
            wu = wc[lo:hi, :, None, :] * ub[lo:hi, None, :, :]
            y[:, :, :n_driven, :] += np.matmul(
                wu.reshape(hi - lo, n_q * n_driven, n_modes), g_tab[lo:hi]
            ).reshape(hi - lo, n_q, n_driven, block)
        for b, r in partial:
            y[:, :, b, r:] = -np.inf
        flat = y.reshape(hi - lo, n_q, n_blocks * block)
        np.take(flat, flat_index, axis=2, out=samples[lo:hi], mode="clip")
        np.max(flat, axis=2, out=peak[lo:hi])
    return peak, samples


def _propagate_modal(
    b: FloatArray,
    c: FloatArray,
    inputs: Inputs,
    knots: _Knots,
    lam: FloatArray,
    vec: FloatArray,
    inv: FloatArray,
) -> FloatArray:
    # Mode-major (mode, patient) layout keeps each step's arithmetic contiguous.
    wb = np.ascontiguousarray(np.transpose(inv @ b, (2, 1, 0)))
    cv = np.ascontiguousarray(np.transpose(c @ vec, (1, 2, 0)))
    lam_t = np.ascontiguousarray(lam.T)
    decay = [np.exp(lam_t * h) for h in knots.step_min]
    gain = [np.expm1(lam_t * h) / lam_t for h in knots.step_min]
    n_out = int(np.count_nonzero(knots.output_index >= 0))
    out = np.empty((n_out, cv.shape[0], lam_t.shape[1]))
    z = np.zeros_like(lam_t)
    drive = np.zeros_like(lam_t)
    driving = False
    for k in range(knots.t_min.size):
        g = knots.step_group[k]
        if g >= 0:
            z *= decay[g]
            if driving:
                z += gain[g] * drive
        for ch, mg in knots.impulses[k]:
            z += wb[ch] * mg
        r = knots.rate_row[k]
        if r >= 0:
            rates = inputs.rate_mg_per_min[r]
            driving = bool(np.any(rates))
            drive = np.einsum("c,cmn->mn", rates, wb)
        j = knots.output_index[k]
        if j >= 0:
            np.einsum("omn,mn->on", cv, z, out=out[j])
    return out


def _propagate_state(system: System, inputs: Inputs, knots: _Knots) -> FloatArray:
    n_patients, n, n_ch = system.b.shape
    aug = np.zeros((n_patients, n + n_ch, n + n_ch))
    aug[:, :n, :n] = system.a
    aug[:, :n, n:] = system.b
    phi, gamma = [], []
    for h in knots.step_min:
        m = expm(aug * h)
        phi.append(m[:, :n, :n])
        gamma.append(m[:, :n, n:])
    n_out = int(np.count_nonzero(knots.output_index >= 0))
    out = np.empty((n_out, system.c.shape[1], n_patients))
    x = np.zeros((n_patients, n))
    rates = np.zeros(n_ch)
    for k in range(knots.t_min.size):
        g = knots.step_group[k]
        if g >= 0:
            x = np.einsum("pij,pj->pi", phi[g], x) + gamma[g] @ rates
        for ch, mg in knots.impulses[k]:
            x += system.b[:, :, ch] * mg
        r = knots.rate_row[k]
        if r >= 0:
            rates = inputs.rate_mg_per_min[r]
        j = knots.output_index[k]
        if j >= 0:
            out[j] = np.einsum("poi,pi->op", system.c, x)
    return out
