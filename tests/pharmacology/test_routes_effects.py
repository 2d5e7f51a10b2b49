"""Routes and effect timings against facts section 4, and the seed-claims table."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ketacare.pharmacology.effects import Endpoint, effect_fraction, time_in_band, timing
from ketacare.pharmacology.errors import PharmacologyInputError
from ketacare.pharmacology.pk_models import Patient
from ketacare.pharmacology.routetable import route_claims_table
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import simulate

P70 = Patient(70.0, 40.0)
FAST_KAMP = Endpoint("fast", 100.0, math.log(2) / 2.791)
DEFS = [
    Endpoint("ce100", 100.0, 8.3),
    FAST_KAMP,
    Endpoint("ce50", 50.0, 8.3),
    Endpoint("ce200", 200.0, 8.3),
    Endpoint("knk", 50.0, 0.0, nk_weight=1 / 3),
]

# Facts section 4 [R]: (doses, Cp max ng/mL, at min, {endpoint: (onset, offset)}, NK max/at)
SECTION_4 = [
    (
        [Dose("iv_bolus", 21.0, 0.0, 1.0)],
        756,
        1.0,
        {"ce100": (2.5, 30), "fast": (0.5, 16), "ce50": (1.3, 65), "ce200": None},
        None,
    ),
    (
        [Dose("iv_infusion", 35.0, 0.0, 40.0)],
        253,
        40.0,
        {"ce100": (15.3, 75), "fast": (4.8, 58), "ce50": (8.7, 133), "ce200": (35.7, 46)},
        None,
    ),
    (
        [Dose("im", 35.0)],
        326,
        7.5,
        {"ce100": (6.5, 60), "fast": (1.3, 46), "ce50": (4.0, 115), "ce200": (14.8, 27)},
        None,
    ),
    (
        [Dose("intranasal", 50.0)],
        91,
        18.5,
        {"ce100": None, "fast": None, "ce50": (13.8, 111), "ce200": None},
        None,
    ),
    ([Dose("sublingual", 25.0)], 18, 45.3, {"ce100": None, "ce50": None}, (68, 83)),
    ([Dose("oral", 35.0)], 15, 46.5, {"ce100": None, "ce50": None}, (100, 80)),
    ([Dose("oral", 140.0)], 58, 46.5, {"ce100": None, "ce50": (33.8, 116), "knk": (4.3, 408)}, (402, 80)),
    ([Dose("rectal", 35.0)], 23, 41.5, {"ce100": None, "knk": (36.8, 110)}, (101, 78)),
]


@pytest.mark.parametrize(("doses", "cmax", "tmax", "timings", "nk"), SECTION_4)
def test_section_4_table(doses, cmax, tmax, timings, nk) -> None:
    sim = simulate(P70, doses, endpoints=DEFS, end_min=600.0, step_min=0.05)
    k = int(np.argmax(sim.cp_ng_per_ml))
    assert sim.cp_ng_per_ml[k] == pytest.approx(cmax, abs=0.6)
    assert sim.t_min[k] == pytest.approx(tmax, abs=0.3)
    for name, expected in timings.items():
        t = sim.timings[name]
        if expected is None:
            assert not t.reached
        else:
            # The facts table rounds onsets to 0.1 min and most offsets to 1 min.
            assert t.onset_min == pytest.approx(expected[0], abs=0.25)
            assert t.offset_min == pytest.approx(expected[1], abs=1.0)
    if nk is not None:
        assert sim.nk_cp_ng_per_ml is not None
        j = int(np.argmax(sim.nk_cp_ng_per_ml))
        assert sim.nk_cp_ng_per_ml[j] == pytest.approx(nk[0], abs=1.0)
        assert sim.t_min[j] == pytest.approx(nk[1], abs=1.0)


def test_hornik_im_uses_its_own_bioavailability() -> None:
    child = Patient(20.0, 6.0)
    hornik = simulate(child, [Dose("im", 10.0)], model="hornik2018", endpoints=[])
    iv = simulate(child, [Dose("iv_bolus", 10.0)], model="hornik2018", endpoints=[])
    auc_ratio = np.trapezoid(hornik.cp_ng_per_ml, hornik.t_min) / np.trapezoid(iv.cp_ng_per_ml, iv.t_min)
    assert auc_ratio == pytest.approx(0.41, rel=0.03)


def test_topical_is_not_simulated() -> None:
    with pytest.raises(PharmacologyInputError, match="no human plasma data"):
        simulate(P70, [Dose("topical", 10.0)])


def test_warnings_are_data() -> None:
    sim = simulate(Patient(82.0, 40.0), [Dose("iv_bolus", 20.0)], model="herd2007")
    codes = {w.code for w in sim.warnings}
    assert codes == {"age_above_range", "weight_above_range"}
    oral = simulate(P70, [Dose("oral", 100.0)], model="s_ketamine_otto2021")
    assert "route_calibration" in {w.code for w in oral.warnings}
    im_s = simulate(P70, [Dose("im", 20.0)], model="s_ketamine_otto2021")
    assert "route_data" in {w.code for w in im_s.warnings}


def test_s_ketamine_oral_bioavailability_is_fanta() -> None:
    oral = simulate(
        P70, [Dose("oral", 50.0)], model="s_ketamine_otto2021", endpoints=[], end_min=2000.0, step_min=1.0
    )
    iv = simulate(
        P70, [Dose("iv_bolus", 50.0)], model="s_ketamine_otto2021", endpoints=[], end_min=2000.0, step_min=1.0
    )
    ratio = np.trapezoid(oral.cp_ng_per_ml, oral.t_min) / np.trapezoid(iv.cp_ng_per_ml, iv.t_min)
    assert ratio == pytest.approx(0.08, rel=0.02)


def test_timing_interpolates_crossings() -> None:
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    c = np.array([0.0, 100.0, 300.0, 100.0, 0.0])
    tm = timing("x", t, c, 200.0)
    assert tm.onset_min == pytest.approx(1.5)
    assert tm.offset_min == pytest.approx(2.5)
    assert tm.time_above_min == pytest.approx(1.0)
    assert tm.peak_min == 2.0
    assert time_in_band(t, c, 100.0, 200.0) == pytest.approx(1.0)


@given(st.lists(st.floats(0.0, 500.0), min_size=2, max_size=30), st.floats(1.0, 400.0))
def test_time_in_bands_adds_up(values: list[float], level: float) -> None:
    t = np.arange(len(values), dtype=float)
    c = np.array(values)
    total = t[-1] - t[0]
    parts = time_in_band(t, c, 0.0, level) + time_in_band(t, c, level, math.inf)
    assert parts == pytest.approx(total, abs=1e-9)


def test_sigmoid_effect_is_half_at_threshold() -> None:
    e = Endpoint("s", 120.0, 8.3, hill=3.0)
    assert effect_fraction(e, np.array([120.0]))[0] == pytest.approx(0.5)


def test_route_claims_table_verdicts() -> None:
    iv_fast = next(r for r in route_claims_table() if r.route == "iv_bolus" and "fast" in r.definition)
    assert iv_fast.verdict == "supported"
    iv_measured = next(
        r for r in route_claims_table() if r.route == "iv_bolus" and "measured" in r.definition
    )
    assert iv_measured.verdict == "duration supported, onset not"
    nasal = [r for r in route_claims_table() if r.route == "intranasal"]
    assert all("duration not" in r.verdict or r.verdict == "not supported" for r in nasal)
    im = [r for r in route_claims_table() if r.route == "im"]
    assert all(r.verdict.startswith("slower onset: yes") for r in im)
    topical = [r for r in route_claims_table() if r.route == "topical"]
    assert topical[0].verdict == "not simulated"


def test_documented_oral_calibration_error() -> None:
    """docs/pharmacology.md states these errors against Grant 1981 and Chong 2006."""
    half = simulate(P70, [Dose("oral", 35.0)], endpoints=[]).cp_ng_per_ml.max()
    small = simulate(P70, [Dose("oral", 25.0)], endpoints=[]).cp_ng_per_ml.max()
    assert half / 45.0 - 1.0 == pytest.approx(-0.68, abs=0.01)
    assert small / 22.8 - 1.0 == pytest.approx(-0.54, abs=0.01)
