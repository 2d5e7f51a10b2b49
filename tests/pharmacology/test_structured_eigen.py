"""The closed-form, structure-aware eigendecomposition equals LAPACK's (np.linalg.eig)."""

import numpy as np
import pytest

from ketacare.pharmacology.eigen import structured_eigen
from ketacare.pharmacology.pk_models import available_models, typical_parameters
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import make_plan, output_times
from ketacare.pharmacology.solve import _eigen, _eigen_batch, propagate, propagate_summary

BOLUS = [Dose("iv_bolus", 20.0)]
EVERY_ROUTE = [
    Dose("iv_bolus", 20.0),
    Dose("im", 30.0, start_min=5.0),
    Dose("oral", 50.0, start_min=30.0),
    Dose("iv_infusion", 20.0, 60.0, 15.0),
    Dose("intranasal", 30.0, start_min=100.0),
    Dose("sublingual", 10.0, start_min=110.0),
    Dose("sublingual_film", 10.0, start_min=120.0),
    Dose("rectal", 10.0, start_min=130.0),
]


def _system(doses: list[Dose], model: str, n: int, norketamine: bool, seed: int = 7):  # type: ignore[no-untyped-def]
    plan = make_plan(doses, model, None, norketamine)
    rng = np.random.default_rng(seed)
    params = typical_parameters(plan.model, 50.0 + 40.0 * rng.random(n), np.zeros(n, bool), 1.0)
    for k in params:
        params[k] = params[k] * np.exp(0.3 * rng.standard_normal(n))
    return plan, plan.system(params, np.exp(0.1 * rng.standard_normal(n)))


def _modal_products(vec, lam, inv, system):  # type: ignore[no-untyped-def]
    """C V diag(e^{lambda t}) V^-1 B at a few t: what the modal solution is made of,
    independent of how eigenvectors are scaled or modes ordered."""
    t = np.array([0.0, 0.5, 5.0, 60.0, 360.0])
    cv = system.c @ vec
    wb = inv @ system.b
    return np.einsum("pom,ptm,pmc->ptoc", cv, np.exp(lam[:, None, :] * t[None, :, None]), wb)


@pytest.mark.parametrize("model", available_models())
@pytest.mark.parametrize("doses", [BOLUS, EVERY_ROUTE], ids=["iv", "every_route"])
@pytest.mark.parametrize("norketamine", [False, True])
def test_closed_forms_equal_lapack(model: str, doses: list[Dose], norketamine: bool) -> None:
    _, system = _system(doses, model, 300, norketamine)
    result = structured_eigen(system.a)
    assert result is not None
    lam, vec, inv, bad = result
    assert bad.mean() < 0.02  # only near-coincident rates go to LAPACK
    ok = ~bad
    ref_lam, ref_vec, ref_inv, ref_bad = _eigen(system.a)
    assert not ref_bad[ok].any()
    # Same eigenvalues (as sets), to 1e-12 relative.
    got, want = np.sort(lam[ok], axis=1), np.sort(ref_lam[ok].real, axis=1)
    assert np.all(np.abs(got - want) <= 1e-12 * np.abs(want))
    # V^-1 V = I, and the products the modal solution uses agree to 1e-9 relative.
    # (Eigenvectors are not normalised, so V^-1 V - I is measured against |V^-1| |V|.)
    identity = np.eye(lam.shape[1])
    size = np.abs(inv[ok]) @ np.abs(vec[ok])
    assert np.all(np.abs(inv[ok] @ vec[ok] - identity) <= 1e-12 * size + 1e-300)
    sub = type(system)(system.a[ok], system.b[ok], system.c[ok], system.outputs)
    mine = _modal_products(vec[ok], lam[ok], inv[ok], sub)
    ref = _modal_products(ref_vec[ok].real, ref_lam[ok].real, ref_inv[ok].real, sub)
    scale = np.abs(ref).max(axis=(1, 2, 3), keepdims=True)
    assert np.all(np.abs(mine - ref) <= 1e-9 * scale)


def test_coincident_rates_fall_back_to_lapack() -> None:
    _, system = _system(EVERY_ROUTE, "kamp2020", 50, True)
    a = system.a.copy()
    # Patient 0: the oral depot's ka equals a disposition eigenvalue of the parent core.
    core = np.linalg.eigvals(a[0, :3, :3]).real
    depot = next(i for i in range(a.shape[1]) if a[0, i, i] == -0.0117)
    a[0, depot, depot] = core[1]
    result = structured_eigen(a)
    assert result is not None
    bad = result[3]
    assert bad[0] and not bad[1:].any()
    # The batch helper serves it from LAPACK, whose own check then decides.
    b_lam, _, _, b_bad = _eigen_batch(a)
    r_lam, _, _, r_bad = _eigen(a[:1])
    assert b_bad[0] == r_bad[0]
    if not r_bad[0]:
        assert np.array_equal(b_lam[0], r_lam[0].real)


def test_shared_ke0_of_independent_effect_sites_is_not_a_coincidence() -> None:
    """The ketamine and norketamine effect sites of one ke0 share an eigenvalue but do not
    interact, so the closed forms still serve them."""
    _, system = _system(BOLUS, "kamp2020", 100, True)
    result = structured_eigen(system.a)
    assert result is not None
    assert not result[3].any()


def test_unsupported_structure_returns_none() -> None:
    rng = np.random.default_rng(0)
    a = -np.eye(4)[None] + 0.1 * rng.random((3, 4, 4))  # one dense 4 x 4 block
    assert structured_eigen(a) is None
    lam, _, _, bad = _eigen_batch(a)
    ref = _eigen(a)
    assert np.array_equal(lam, ref[0]) and np.array_equal(bad, ref[3])


@pytest.mark.parametrize("model", ["domino1984", "hornik2018"])
def test_population_path_with_every_route_equals_step_by_step(model: str) -> None:
    plan, system = _system(EVERY_ROUTE, model, 120, True, seed=3)
    times = output_times(240.0, 10.0 / 60.0)
    weights = np.random.default_rng(2).random((3, len(system.outputs)))
    index = np.arange(0, times.size, 5)
    peak, samples = propagate_summary(system, plan.inputs, times, weights, index)
    y = np.einsum("qo,ton->nqt", weights, propagate(system, plan.inputs, times, "state"))
    scale = np.abs(y).max(axis=2)
    assert np.all(np.abs(peak - y.max(axis=2)) <= 1e-9 * scale)
    assert np.all(np.abs(samples - y[:, :, index]) <= 1e-9 * scale[:, :, None])
