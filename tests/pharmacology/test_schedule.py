"""Schedules: validation errors and rate changes."""

import numpy as np
import pytest

from ketacare.pharmacology.errors import PharmacologyInputError
from ketacare.pharmacology.pk_models import Patient
from ketacare.pharmacology.schedule import Dose, infusion, rate_steps
from ketacare.pharmacology.simulate import simulate

P = Patient(82.0, 45.0)


@pytest.mark.parametrize(
    ("doses", "message"),
    [
        ([Dose("iv_bolus", -1.0)], "dose_mg must be positive"),
        ([Dose("iv_bolus", float("nan"))], "dose_mg must be positive"),
        ([Dose("iv_bolus", 10.0, -5.0)], "start_min"),
        ([Dose("nasal", 10.0)], "unknown route"),
        ([Dose("oral", 10.0, 0.0, 5.0)], "IV routes only"),
        ([Dose("iv_infusion", 10.0)], "duration_min > 0"),
        ([Dose("iv_infusion", 10.0, 0.0, 30.0), Dose("iv_infusion", 5.0, 20.0, 30.0)], "overlaps"),
        ([], "no doses"),
    ],
)
def test_bad_schedules_raise(doses: list[Dose], message: str) -> None:
    with pytest.raises(PharmacologyInputError, match=message):
        simulate(P, doses)


def test_bad_patient_and_model_raise() -> None:
    with pytest.raises(PharmacologyInputError, match="weight_kg"):
        simulate(Patient(0.0, 40.0), [Dose("iv_bolus", 10.0)])
    with pytest.raises(PharmacologyInputError, match="unknown model"):
        simulate(P, [Dose("iv_bolus", 10.0)], model="marsh")
    with pytest.raises(PharmacologyInputError, match="increasing"):
        simulate(P, [Dose("iv_bolus", 10.0)], t_min=np.array([0.0, 2.0, 1.0]))


def test_rate_steps_equal_one_long_infusion_when_rates_equal() -> None:
    steps = rate_steps([(0.0, 0.5), (20.0, 0.5)], 82.0, 40.0)
    one = [infusion(0.5, 82.0, 0.0, 40.0)]
    a = simulate(P, steps, endpoints=[])
    b = simulate(P, one, endpoints=[])
    assert np.allclose(a.cp_ng_per_ml, b.cp_ng_per_ml, rtol=1e-10, atol=1e-12)
    assert one[0].dose_mg == pytest.approx(0.5 * 82.0 * 40.0 / 60.0)


def test_rate_changes_and_pause() -> None:
    doses = rate_steps([(0.0, 1.0), (10.0, 0.0), (20.0, 0.25)], 82.0, 60.0)
    assert [d.start_min for d in doses] == [0.0, 20.0]
    sim = simulate(P, doses, endpoints=[], t_min=np.array([10.0, 15.0, 20.0, 60.0]))
    assert sim.cp_ng_per_ml[1] < sim.cp_ng_per_ml[0]
    with pytest.raises(PharmacologyInputError, match="increasing"):
        rate_steps([(10.0, 1.0), (5.0, 1.0)], 82.0, 60.0)


def test_linearity_doubling_dose_doubles_concentration() -> None:
    a = simulate(P, [Dose("oral", 50.0), Dose("iv_bolus", 10.0, 30.0)], endpoints=[])
    b = simulate(P, [Dose("oral", 100.0), Dose("iv_bolus", 20.0, 30.0)], endpoints=[])
    assert np.allclose(2 * a.cp_ng_per_ml, b.cp_ng_per_ml, rtol=1e-9, atol=1e-12)
