"""Against the facts file's section 5.3 reference tables (opentiva 1.1.2 numbers, ug/mL).

The tables are printed to 4 decimals, so the tolerance is relative 1e-3 plus half a unit
in the last printed place (5e-5 ug/mL); several small entries (e.g. 0.0046) carry a
rounding error larger than 1e-3 relative on their own.
"""

import math

import numpy as np
import pytest

from ketacare.pharmacology.effects import Endpoint
from ketacare.pharmacology.pk_models import Patient, derived_quantities, get_model
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import simulate

T_MIN = np.array([5, 10, 20, 40, 60, 120, 240], dtype=float)
SCENARIO = [Dose("iv_infusion", 35.0, 0.0, 40.0)]
PATIENT = Patient(70.0, 40.0, "male")

CP = {
    "domino1984": [0.1553, 0.1818, 0.2096, 0.2403, 0.0551, 0.0358, 0.0173],
    "clements1981": [0.0332, 0.0620, 0.1095, 0.1773, 0.1154, 0.0588, 0.0346],
    "hijazi2003": [0.0522, 0.0945, 0.1567, 0.2253, 0.0996, 0.0131, 0.0046],
    "herd2007": [0.0839, 0.1320, 0.1865, 0.2534, 0.1193, 0.0681, 0.0242],
    "hornik2018": [0.1188, 0.2128, 0.3476, 0.4956, 0.2233, 0.0708, 0.0484],
    "kamp2020": [0.1093, 0.1545, 0.1983, 0.2531, 0.0959, 0.0499, 0.0256],
}
CE = {
    "domino1984": [0.1365, 0.1742, 0.2062, 0.2383, 0.0567, 0.0362, 0.0175],
    "clements1981": [0.0320, 0.0609, 0.1086, 0.1768, 0.1158, 0.0589, 0.0346],
    "hijazi2003": [0.0501, 0.0928, 0.1556, 0.2249, 0.1005, 0.0132, 0.0046],
    "herd2007": [0.0796, 0.1293, 0.1851, 0.2524, 0.1199, 0.0683, 0.0243],
    "hornik2018": [0.1135, 0.2086, 0.3450, 0.4943, 0.2252, 0.0709, 0.0485],
    "kamp2020": [0.1042, 0.1521, 0.1970, 0.2522, 0.0964, 0.0501, 0.0257],
}
# opentiva's 1-s Ce recursion is off by 1e-4 to 2e-4 at 5 min (facts 5.3); the independent
# LSODA values for that column are used where it gives them.
CE_5MIN_LSODA = {"domino1984": 0.1366, "kamp2020": 0.1043}
ANASIM_CE_KE0_05 = [0.0764, 0.1375, 0.1910, 0.2483, 0.0995, 0.0507, 0.0258]


def _close(got_ug_per_ml: np.ndarray, table: list[float]) -> None:
    ref = np.array(table)
    assert np.all(np.abs(got_ug_per_ml - ref) <= 1e-3 * ref + 5e-5), (got_ug_per_ml, ref)


@pytest.mark.parametrize("model", sorted(CP))
def test_plasma_matches_reference_table(model: str) -> None:
    sim = simulate(PATIENT, SCENARIO, model=model, t_min=T_MIN, endpoints=[])
    _close(sim.cp_ng_per_ml / 1000.0, CP[model])


@pytest.mark.parametrize("model", sorted(CE))
def test_effect_site_matches_reference_table(model: str) -> None:
    ke0 = get_model(model).params["ke0_opentiva_per_min"].value
    endpoint = Endpoint("ref", 100.0, math.log(2) / ke0)
    sim = simulate(PATIENT, SCENARIO, model=model, t_min=T_MIN, endpoints=[endpoint])
    table = list(CE[model])
    if model in CE_5MIN_LSODA:
        table[0] = CE_5MIN_LSODA[model]
        _close(sim.ce_ng_per_ml["ref"] / 1000.0, table)
    else:
        got = sim.ce_ng_per_ml["ref"] / 1000.0
        _close(got[1:], table[1:])
        assert abs(got[0] - table[0]) <= 3e-4


def test_kamp_effect_site_matches_anasim_with_its_ke0() -> None:
    endpoint = Endpoint("anasim", 100.0, math.log(2) / 0.5)
    sim = simulate(PATIENT, SCENARIO, t_min=T_MIN, endpoints=[endpoint])
    _close(sim.ce_ng_per_ml["anasim"] / 1000.0, ANASIM_CE_KE0_05)


@pytest.mark.parametrize(
    ("model", "cl", "vss", "t_half"),
    [
        ("domino1984", 1.93, 193, 115),
        ("clements1981", 1.34, 289, 183),
        ("hijazi2003", 2.52, 297, 297),
        ("herd2007", 1.50, 141, 80),
        ("hornik2018", 0.65, 185, 299),
        ("kamp2020", 1.40, 238, 184),
    ],
)
def test_derived_quantities(model: str, cl: float, vss: float, t_half: float) -> None:
    d = derived_quantities(get_model(model), 70.0)
    assert d["cl_l_per_min"] == pytest.approx(cl, abs=0.006)
    assert d["vss_l"] == pytest.approx(vss, abs=0.6)
    assert d["t_half_terminal_min"] == pytest.approx(t_half, abs=0.6)
