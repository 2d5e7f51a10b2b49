"""Target-controlled infusion hits its targets in the model; Varvel metrics."""

import numpy as np
import pytest

from ketacare.pharmacology.effects import Endpoint
from ketacare.pharmacology.errors import PharmacologyInputError
from ketacare.pharmacology.pk_models import Patient
from ketacare.pharmacology.simulate import simulate
from ketacare.pharmacology.tci import tci_schedule
from ketacare.pharmacology.varvel import varvel, varvel_population

P = Patient(82.0, 45.0)


def _check_hits(mode: str, model: str) -> None:
    sched = tci_schedule(P, [0.0, 60.0], [150.0, 250.0], end_min=120.0, mode=mode, model=model)
    # Re-simulate the pump schedule independently on a 1-s grid.
    endpoint = Endpoint("e", 100.0, 8.3) if mode == "effect" else Endpoint("e", 100.0, 0.0)
    sim = simulate(P, sched.doses(), model=model, endpoints=[endpoint], end_min=120.0, step_min=1 / 60)
    c = sim.ce_ng_per_ml["e"]
    target = np.where(sim.t_min < 60.0, 150.0, 250.0)
    for start, stop in ((0.0, 60.0), (60.0, 120.0)):
        seg = (sim.t_min >= start) & (sim.t_min < stop)
        rel = c[seg] / target[seg] - 1.0
        reached = int(np.argmax(np.abs(rel) <= 0.01))
        assert np.abs(rel[reached]) <= 0.01
        assert np.all(np.abs(rel[reached:]) <= 0.01), (mode, start, np.abs(rel[reached:]).max())
    assert np.allclose(
        np.interp(sched.t_min, sim.t_min, c),
        sched.ce_ng_per_ml if mode == "effect" else sched.cp_ng_per_ml,
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("model", ["kamp2020", "domino1984", "s_ketamine_otto2021"])
@pytest.mark.parametrize("mode", ["plasma", "effect"])
def test_tci_hits_target_within_one_percent(mode: str, model: str) -> None:
    _check_hits(mode, model)


def test_effect_tci_does_not_overshoot_and_is_quick() -> None:
    effect = tci_schedule(P, [0.0], [150.0], end_min=60.0, mode="effect")
    assert effect.ce_ng_per_ml.max() <= 150.0 * (1 + 1e-9)
    first = effect.t_min[np.argmax(effect.ce_ng_per_ml >= 0.99 * 150.0)]
    plasma = tci_schedule(P, [0.0], [150.0], end_min=60.0, mode="plasma")
    first_plasma_ce = plasma.t_min[np.argmax(plasma.ce_ng_per_ml >= 0.99 * 150.0)]
    assert first < first_plasma_ce
    assert effect.interval_s == 10.0
    assert effect.rate_mg_per_min.size == 360


def test_tci_bad_input() -> None:
    with pytest.raises(PharmacologyInputError):
        tci_schedule(P, [0.0, 0.0], [100.0, 120.0], end_min=10.0)
    with pytest.raises(PharmacologyInputError):
        tci_schedule(P, [0.0], [100.0], end_min=10.0, mode="open-loop")  # type: ignore[arg-type]


def test_varvel_metrics() -> None:
    t = np.array([0.0, 60.0, 120.0, 180.0])
    predicted = np.array([100.0, 100.0, 100.0, 100.0])
    measured = np.array([110.0, 90.0, 120.0, 130.0])
    m = varvel(t, measured, predicted)
    assert m.mdpe_pct == pytest.approx(15.0)
    assert m.mdape_pct == pytest.approx(15.0)
    assert m.wobble_pct == pytest.approx(10.0)
    assert m.divergence_pct_per_h == pytest.approx(np.polyfit([0, 1, 2, 3], [10, 10, 20, 30], 1)[0])
    pop = varvel_population([m, varvel(t, predicted, predicted)])
    assert pop.mdpe_pct == pytest.approx(7.5)
    perfect = varvel(t, predicted, predicted)
    assert (perfect.mdpe_pct, perfect.mdape_pct, perfect.wobble_pct) == (0.0, 0.0, 0.0)
    with pytest.raises(PharmacologyInputError):
        varvel(t, measured, np.zeros(4))
