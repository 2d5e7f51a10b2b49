"""The linear ODE system x' = A x + B u of a patient batch, and its outputs y = C x.

States are amounts (mg) in parent and norketamine compartments and absorption depots,
and concentrations (mg/L) in effect sites (one per distinct ke0; the effect site is a
sink, so it does not change the amounts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.administration import Pathway
from ketacare.pharmacology.pk_models import PKModel, norketamine_model

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class System:
    a: FloatArray
    """(N, n, n) per patient."""
    b: FloatArray
    """(N, n, n_channels): where one mg given on a channel goes."""
    c: FloatArray
    """(N, n_outputs, n): outputs in mg/L."""
    outputs: tuple[str, ...]
    """``cp``, ``nk_cp``, ``ce{j}`` and ``nk_ce{j}`` for the j-th ke0."""


def build_system(
    model: PKModel,
    params: dict[str, FloatArray],
    channel_pathways: list[Pathway],
    ke0_per_min: tuple[float, ...],
    norketamine: bool,
    bioavailability_factor: FloatArray,
) -> System:
    """``bioavailability_factor`` (N,) multiplies every absorbed pathway's F (IIV), capped at 1."""
    n_patients = params["v1_l"].shape[0]
    n_p = model.n_compartments
    n_nk = 2 if norketamine else 0
    depot_channels = [i for i, p in enumerate(channel_pathways) if p.ka_per_min > 0]
    n_depot = len(depot_channels)
    n_effect = len(ke0_per_min) * (2 if norketamine else 1)
    n = n_p + n_nk + n_depot + n_effect
    a = np.zeros((n_patients, n, n))
    b = np.zeros((n_patients, n, len(channel_pathways)))

    v1 = params["v1_l"]
    a[:, 0, 0] = -params["cl_l_per_min"] / v1
    for i in range(1, n_p):
        q, vi = params[f"q{i + 1}_l_per_min"], params[f"v{i + 1}_l"]
        a[:, 0, 0] -= q / v1
        a[:, 0, i] = q / vi
        a[:, i, 0] = q / v1
        a[:, i, i] = -q / vi
    nk0 = n_p
    if norketamine:
        fm = norketamine_model().params["fraction_metabolised"].value
        nv1, nv2 = params["nk_v1_l"], params["nk_v2_l"]
        ncl, nq = params["nk_cl_l_per_min"], params["nk_q2_l_per_min"]
        a[:, nk0, 0] = fm * params["cl_l_per_min"] / v1
        a[:, nk0, nk0] = -(ncl + nq) / nv1
        a[:, nk0, nk0 + 1] = nq / nv2
        a[:, nk0 + 1, nk0] = nq / nv1
        a[:, nk0 + 1, nk0 + 1] = -nq / nv2

    depot0 = n_p + n_nk
    for ch, pathway in enumerate(channel_pathways):
        if pathway.ka_per_min > 0:
            f = np.minimum(pathway.bioavailability * bioavailability_factor, 1.0)
            d = depot0 + depot_channels.index(ch)
            ka = pathway.ka_per_min
            a[:, d, d] = -ka
            a[:, 0, d] = ka * f
            if norketamine and pathway.presystemic_nk > 0:
                a[:, nk0, d] = ka * (1.0 - f)
            b[:, d, ch] = pathway.dose_fraction
        else:
            b[:, 0, ch] = pathway.dose_fraction * pathway.bioavailability

    outputs = ["cp"] + (["nk_cp"] if norketamine else [])
    rows: list[tuple[int, FloatArray]] = [(0, 1.0 / v1)]
    if norketamine:
        rows.append((nk0, 1.0 / params["nk_v1_l"]))
    e = depot0 + n_depot
    for j, ke0 in enumerate(ke0_per_min):
        sources = [("", 0, v1)] + ([("nk_", nk0, params["nk_v1_l"])] if norketamine else [])
        for prefix, src, vol in sources:
            a[:, e, src] = ke0 / vol
            a[:, e, e] = -ke0
            outputs.append(f"{prefix}ce{j}")
            rows.append((e, np.ones(n_patients)))
            e += 1
    c = np.zeros((n_patients, len(outputs), n))
    for k, (state, scale) in enumerate(rows):
        c[:, k, state] = scale
    return System(a=a, b=b, c=c, outputs=tuple(outputs))
