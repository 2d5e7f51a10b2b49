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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import expm

from ketacare.pharmacology.schedule import Inputs
from ketacare.pharmacology.system import System

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Method = Literal["auto", "modal", "state"]

_TIME_TOL_MIN = 1e-9
# Above this condition number of the eigenvector matrix the modal form loses more than
# about 1e-6 of relative accuracy, so such patients go to the state propagator.
_MAX_EIGVEC_CONDITION = 1e8


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


def propagate(
    system: System, inputs: Inputs, t_out_min: FloatArray, method: Method = "auto"
) -> FloatArray:
    """Outputs (mg/L) at ``t_out_min`` (strictly increasing, >= 0): shape (T, n_outputs, N).

    A value at the time of an impulse includes the impulse.
    """
    knots = _knots(inputs, t_out_min)
    if method == "state":
        return _propagate_state(system, inputs, knots)
    lam, vec = np.linalg.eig(system.a)
    inv = np.linalg.inv(vec)
    condition = np.abs(vec).sum(axis=1).max(axis=1) * np.abs(inv).sum(axis=1).max(axis=1)
    imag = np.abs(lam.imag).max(axis=1) if np.iscomplexobj(lam) else np.zeros(lam.shape[0])
    bad = (condition > _MAX_EIGVEC_CONDITION) | (imag > 0) | ~np.isfinite(condition)
    if not bad.any():
        return _propagate_modal(system.b, system.c, inputs, knots, lam.real, vec.real, inv.real)
    if method == "modal":
        raise np.linalg.LinAlgError("system matrix not diagonalisable to working accuracy")
    good = ~bad
    out = np.empty((t_out_min.size, len(system.outputs), lam.shape[0]))
    if good.any():
        out[:, :, good] = _propagate_modal(
            system.b[good], system.c[good], inputs, knots,
            lam[good].real, vec[good].real, inv[good].real,
        )
    sub = System(system.a[bad], system.b[bad], system.c[bad], system.outputs)
    out[:, :, bad] = _propagate_state(sub, inputs, knots)
    return out


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
