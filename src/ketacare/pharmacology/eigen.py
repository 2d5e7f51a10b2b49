"""Vectorised eigendecomposition of the engine's system matrices, from their structure.

``np.linalg.eig`` over a stack of small matrices calls LAPACK once per matrix. The
matrices built by ``system.build_system`` have a structure that gives the eigenvalues and
eigenvectors of all patients at once in closed form:

* Ordered so that every compartment feeds only later ones, A is block lower triangular.
  Its diagonal blocks are the strongly connected groups of compartments: the mammillary
  parent and norketamine cores (1-3 compartments) and single compartments (absorption
  depots, effect sites), whose eigenvalue is their diagonal entry (-ka, -ke0).
* A mammillary core is an arrowhead matrix: a central compartment exchanging with
  peripheral ones that do not exchange with each other. Its eigenvalues are the roots of
  a characteristic polynomial of degree <= 3, from the quadratic or the trigonometric cubic
  formula (all real and negative: the core is similar to a symmetric matrix). Its
  eigenvectors are (1, w_i / (lambda - d_i)), its left eigenvectors (1, u_i / (lambda - d_i)).
* The eigenvector of a mode continues into the blocks downstream of its own by forward
  substitution, (A_ll - lambda I) v_l = -sum_k A_lk v_k, and the left eigenvector into the
  blocks upstream by back substitution; both solves are closed form for an arrowhead.
  Scaling each left eigenvector by its product with the right one gives V^-1.

The sparsity pattern is read from the matrices themselves, so any system with this
structure is served. ``structured_eigen`` returns None when the pattern does not have it
(a block larger than 3 compartments, or not an arrowhead), and flags the patients whose
eigenvalues (or an eigenvalue and a peripheral rate) are too close for the closed forms to
be accurate; callers decompose those with ``np.linalg.eig``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Relative distance below which two eigenvalues, or an eigenvalue and a peripheral rate,
# count as coincident: the closed forms then lose about eps / _MIN_GAP of accuracy.
_MIN_GAP = 1e-5


@dataclass(frozen=True)
class _Block:
    center: int
    peripheral: tuple[int, ...]

    @property
    def states(self) -> list[int]:
        return [self.center, *self.peripheral]


def _blocks(pattern: BoolArray) -> tuple[list[_Block], BoolArray] | None:
    """Diagonal blocks in an order where each block only feeds later ones, and whether
    block j feeds block l (directly or not; [j, j] is True); None without the structure."""
    n = pattern.shape[0]
    # reach[i, j]: state i feeds state j through some path (a[j, i] != 0 is an edge i -> j).
    reach = pattern.T | np.eye(n, dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(n))) + 1)):
        reach = reach | ((reach.astype(np.int64) @ reach.astype(np.int64)) > 0)
    strong = reach & reach.T
    seen: set[int] = set()
    groups: list[list[int]] = []
    for i in range(n):
        if i not in seen:
            members = [int(j) for j in np.flatnonzero(strong[i])]
            seen.update(members)
            groups.append(members)
    # A group's ancestors are a strict superset of those of any group feeding it.
    groups.sort(key=lambda g: int(reach[:, g[0]].sum()))
    blocks: list[_Block] = []
    for g in groups:
        if len(g) > 3:
            return None
        centers = [
            c
            for c in g
            if all(pattern[c, i] and pattern[i, c] for i in g if i != c)
            and all(not pattern[i, j] for i in g for j in g if i != j and c not in (i, j))
        ]
        if not centers:
            return None
        blocks.append(_Block(centers[0], tuple(i for i in g if i != centers[0])))
    feeds = reach[np.ix_([b.center for b in blocks], [b.center for b in blocks])]
    return blocks, feeds


def _core_eigenvalues(alpha: FloatArray, uw: FloatArray, d: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Eigenvalues (N, 1 + p) of arrowhead blocks with centre alpha (N,), products
    u_i w_i (N, p) and peripheral diagonal d (N, p); and the patients where they are not
    real. Closed forms: linear, quadratic (stable form) or trigonometric cubic."""
    p = d.shape[1]
    if p == 0:
        return alpha[:, None].copy(), np.zeros(alpha.shape, dtype=bool)
    if p == 1:
        dd = d[:, 0]
        b = -(alpha + dd)
        c = alpha * dd - uw[:, 0]
        disc = (alpha - dd) ** 2 + 4.0 * uw[:, 0]
        bad = ~(disc >= 0)
        big = -0.5 * (b + np.sign(b + (b == 0)) * np.sqrt(np.maximum(disc, 0.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([big, c / big], axis=1), bad
    if p != 2:  # pragma: no cover - _blocks never returns larger cores
        raise ValueError("cores larger than 3 compartments have no closed form here")
    d1, d2 = d[:, 0], d[:, 1]
    a2 = -(alpha + d1 + d2)
    a1 = alpha * (d1 + d2) + d1 * d2 - uw[:, 0] - uw[:, 1]
    a0 = -alpha * d1 * d2 + uw[:, 0] * d2 + uw[:, 1] * d1
    shift = -a2 / 3.0
    pp = a1 - a2 * a2 / 3.0
    qq = (2.0 * a2 * a2 * a2) / 27.0 - a2 * a1 / 3.0 + a0
    bad = ~(pp < 0)
    neg_p = np.where(bad, 1.0, -pp)
    m = 2.0 * np.sqrt(neg_p / 3.0)
    arg = 1.5 * qq / (-neg_p) * np.sqrt(3.0 / neg_p)
    bad |= ~(np.abs(arg) <= 1.0 + 1e-12)
    theta = np.arccos(np.clip(arg, -1.0, 1.0)) / 3.0
    k = np.arange(3) * (2.0 * np.pi / 3.0)
    lam = shift[:, None] + m[:, None] * np.cos(theta[:, None] - k)
    lam.sort(axis=1)
    # The root nearest zero loses relative accuracy to cancellation; Vieta gives it from
    # the other two (lambda_1 lambda_2 lambda_3 = -a0).
    with np.errstate(divide="ignore", invalid="ignore"):
        lam[:, 2] = -a0 / (lam[:, 0] * lam[:, 1])
    # One Newton step on the cubic polishes all three.
    poly = ((lam + a2[:, None]) * lam + a1[:, None]) * lam + a0[:, None]
    slope = (3.0 * lam + 2.0 * a2[:, None]) * lam + a1[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        step = poly / slope
    lam -= np.where(np.abs(step) < 1e-6 * np.abs(lam), step, 0.0)
    return lam, bad


def _arrow_solve(
    alpha: FloatArray,
    u: FloatArray,
    w: FloatArray,
    d: FloatArray,
    lam: FloatArray,
    r: FloatArray,
) -> FloatArray:
    """Solve (M - lambda_k I) v_k = r_k for every patient and every k at once, where M is
    the arrowhead [[alpha, u], [w, diag(d)]]: alpha (N,), u, w, d (N, p), lam (N, K),
    r (N, 1 + p, K). Returns v with the shape of r."""
    s = 1.0 / (d[:, :, None] - lam[:, None, :])  # (N, p, K)
    denom = alpha[:, None] - lam - np.einsum("np,npk->nk", u * w, s)
    v0 = (r[:, 0, :] - np.einsum("np,npk->nk", u, s * r[:, 1:, :])) / denom
    out = np.empty_like(r)
    out[:, 0, :] = v0
    out[:, 1:, :] = (r[:, 1:, :] - w[:, :, None] * v0[:, None, :]) * s
    return out


def structured_eigen(
    a: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray] | None:
    """Eigenvalues (N, n), eigenvectors (N, n, n; columns), their inverse, and the patients
    the closed forms do not serve (near-coincident rates, complex roots, non-finite
    values); None if the sparsity pattern of ``a`` lacks the structure."""
    n_patients, n, _ = a.shape
    structure = _blocks(np.any(a != 0, axis=0))
    if structure is None:
        return None
    blocks, feeds = structure
    lam = np.empty((n_patients, n))
    bad = np.zeros(n_patients, dtype=bool)
    modes: list[list[int]] = []
    parts: list[tuple[FloatArray, FloatArray, FloatArray, FloatArray]] = []
    k = 0
    for blk in blocks:
        c, per = blk.center, list(blk.peripheral)
        alpha = a[:, c, c]
        u = a[:, c, :][:, per]
        w = a[:, :, c][:, per]
        d = np.stack([a[:, i, i] for i in per], axis=1) if per else np.empty((n_patients, 0))
        parts.append((alpha, u, w, d))
        core, not_real = _core_eigenvalues(alpha, u * w, d)
        bad |= not_real
        modes.append(list(range(k, k + len(blk.states))))
        lam[:, k : k + len(blk.states)] = core
        k += len(blk.states)

    # Within a block or between blocks of which one feeds the other, coincident
    # eigenvalues, or an eigenvalue on a peripheral rate, make the closed forms (and the
    # modal form itself) inaccurate. Blocks that do not interact may share a rate (the
    # ketamine and norketamine effect sites of one ke0).
    block_of = np.repeat(np.arange(len(blocks)), [len(b.states) for b in blocks])
    linked = (feeds | feeds.T)[np.ix_(block_of, block_of)]
    pairs = np.argwhere(np.triu(linked, 1))
    if pairs.size:
        li, lj = lam[:, pairs[:, 0]], lam[:, pairs[:, 1]]
        close = np.abs(li - lj) <= _MIN_GAP * np.maximum(np.abs(li), np.abs(lj))
        bad |= np.any(close, axis=1)
    bad |= np.any(lam == 0, axis=1)
    for j, part in enumerate(parts):
        if part[3].shape[1]:
            near = np.flatnonzero((feeds[:, j] | feeds[j, :])[block_of])
            gap = np.abs(lam[:, near, None] - part[3][:, None, :])
            bad |= np.any(gap <= _MIN_GAP * np.abs(part[3])[:, None, :], axis=(1, 2))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vec = np.zeros((n_patients, n, n))
        for j, blk in enumerate(blocks):
            alpha, u, w, d = parts[j]
            states, own = blk.states, modes[j]
            lam_own = lam[:, own]
            vec[:, blk.center, own] = 1.0
            for i, state in enumerate(blk.peripheral):
                vec[:, state, own] = w[:, i, None] / (lam_own - d[:, i, None])
            earlier = [m for i, js in enumerate(modes[:j]) if feeds[i, j] for m in js]
            if earlier:
                rhs = -np.matmul(a[:, states, :], vec[:, :, earlier])
                sol = _arrow_solve(alpha, u, w, d, lam[:, earlier], rhs)
                rows, cols = np.ix_(states, earlier)
                vec[:, rows, cols] = sol

        left = np.zeros((n_patients, n, n))  # rows: left eigenvectors
        for j in range(len(blocks) - 1, -1, -1):
            blk = blocks[j]
            alpha, u, w, d = parts[j]
            states, own = blk.states, modes[j]
            lam_own = lam[:, own]
            left[:, own, blk.center] = 1.0
            for i, state in enumerate(blk.peripheral):
                left[:, own, state] = u[:, i, None] / (lam_own - d[:, i, None])
            later = [m for i, js in enumerate(modes) if i > j and feeds[j, i] for m in js]
            if later:
                rhs = -np.matmul(left[:, later, :], a[:, :, states])  # (N, later, s)
                sol = _arrow_solve(alpha, w, u, d, lam[:, later], rhs.transpose(0, 2, 1))
                rows, cols = np.ix_(later, states)
                left[:, rows, cols] = sol.transpose(0, 2, 1)
        norm = np.einsum("nki,nik->nk", left, vec)
        inv = left / norm[:, :, None]
    bad |= ~np.all(np.isfinite(inv), axis=(1, 2)) | ~np.all(np.isfinite(vec), axis=(1, 2))
    return lam, vec, inv, bad
