"""The exact propagators against scipy's ODE solver, and against each other."""

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from ketacare.pharmacology.effects import Endpoint
from ketacare.pharmacology.pk_models import available_models, get_model, typical_parameters
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import make_plan
from ketacare.pharmacology.solve import propagate

ENDPOINTS = [Endpoint("slow", 100.0, 8.3), Endpoint("fast", 640.0, 0.25, nk_weight=1 / 3)]


def _ode_reference(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, doses_events: list, t_out: np.ndarray
) -> np.ndarray:
    """Integrate piece by piece between events with DOP853 at tight tolerances."""
    impulses, segments = doses_events
    breaks = sorted(
        {
            0.0,
            *[t for t, _, _ in impulses],
            *[s for s, _, _, _ in segments],
            *[e for _, e, _, _ in segments],
            float(t_out[-1]),
        }
    )
    x = np.zeros(a.shape[0])
    out = np.empty((t_out.size, c.shape[0]))
    for t0, t1 in itertools.pairwise(breaks):
        for t, ch, mg in impulses:
            if t == t0:
                x = x + b[:, ch] * mg
        u = np.zeros(b.shape[1])
        for s, e, ch, rate in segments:
            if s <= t0 < e:
                u[ch] += rate
        inside = (t_out >= t0) & (t_out <= t1)
        t_eval = np.unique(np.concatenate((t_out[inside], [t1])))
        sol = solve_ivp(
            lambda _t, y, u=u: a @ y + b @ u,
            (t0, t1),
            x,
            method="DOP853",
            rtol=1e-12,
            atol=1e-15,
            t_eval=t_eval,
        )
        if inside.any():
            out[inside] = (c @ sol.y[:, np.searchsorted(t_eval, t_out[inside])]).T
        x = sol.y[:, -1]
    if t_out[0] == 0.0:
        x0 = np.zeros(a.shape[0])
        for t, ch, mg in impulses:
            if t == 0.0:
                x0 = x0 + b[:, ch] * mg
        out[0] = c @ x0
    return out


def _events(plan):
    inp = plan.inputs
    impulses = list(
        zip(inp.impulse_t_min.tolist(), inp.impulse_channel.tolist(), inp.impulse_mg.tolist(), strict=True)
    )
    segments = []
    for k, t in enumerate(inp.rate_t_min):
        end = inp.rate_t_min[k + 1] if k + 1 < inp.rate_t_min.size else np.inf
        for ch, rate in enumerate(inp.rate_mg_per_min[k]):
            if rate:
                segments.append((float(t), float(end), ch, float(rate)))
    return impulses, segments


ROUTES = ["iv_bolus", "iv_infusion", "im", "intranasal", "sublingual", "sublingual_film", "oral", "rectal"]

dose_strategy = st.builds(
    lambda route, mg, start, dur: Dose(route, mg, start, dur if route == "iv_infusion" else 0.0),
    st.sampled_from(ROUTES),
    st.floats(1.0, 200.0),
    st.sampled_from([0.0, 3.0, 17.5, 42.25]),
    st.sampled_from([1.0, 12.5, 40.0]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(available_models()),
    weight=st.floats(20.0, 120.0),
    doses=st.lists(dose_strategy, min_size=1, max_size=3).filter(
        lambda ds: sum(d.route == "iv_infusion" for d in ds) <= 1
    ),
)
def test_modal_solution_matches_solve_ivp(model: str, weight: float, doses: list[Dose]) -> None:
    plan = make_plan(doses, model, ENDPOINTS, norketamine=True)
    params = typical_parameters(plan.model, np.array([weight]), np.array([False]))
    system = plan.system(params, np.ones(1))
    t_out = np.array([0.0, 0.5, 2.0, 7.3, 20.0, 41.0, 60.0, 150.0, 300.0])
    got = propagate(system, plan.inputs, t_out, "modal")[:, :, 0]
    ref = _ode_reference(system.a[0], system.b[0], system.c[0], _events(plan), t_out)
    scale = np.abs(ref).max(axis=0)
    assert np.all(np.abs(got - ref) <= 1e-6 * np.abs(ref) + 1e-9 * scale)


@settings(max_examples=10, deadline=None)
@given(model=st.sampled_from(available_models()), weight=st.floats(20.0, 120.0))
def test_modal_and_state_propagators_agree(model: str, weight: float) -> None:
    doses = [Dose("oral", 100.0), Dose("iv_infusion", 30.0, 5.0, 40.0), Dose("iv_bolus", 10.0, 60.0)]
    plan = make_plan(doses, model, ENDPOINTS, norketamine=True)
    params = typical_parameters(plan.model, np.full(3, weight), np.zeros(3, dtype=bool))
    system = plan.system(params, np.ones(3))
    t_out = np.linspace(0.0, 240.0, 97)
    modal = propagate(system, plan.inputs, t_out, "modal")
    state = propagate(system, plan.inputs, t_out, "state")
    assert np.allclose(modal, state, rtol=1e-8, atol=1e-12)


def test_defective_system_falls_back_to_state_propagator() -> None:
    # An absorption rate equal to the effect-site rate gives a repeated eigenvalue with a
    # single eigenvector (a Jordan block); the auto method must still be exact.
    ka = get_model("kamp2020").params["cl_l_per_min"].value / 25.0
    plan = make_plan(
        [Dose("im", 35.0)], "kamp2020", [Endpoint("e", 100.0, np.log(2) / ka)], norketamine=False
    )
    pathway = plan.channel_pathways[0]
    from dataclasses import replace

    plan = replace(plan, channel_pathways=[replace(pathway, ka_per_min=ka)])
    params = typical_parameters(plan.model, np.array([70.0]), np.array([False]))
    system = plan.system(params, np.ones(1))
    t_out = np.linspace(0.0, 120.0, 25)
    auto = propagate(system, plan.inputs, t_out, "auto")
    state = propagate(system, plan.inputs, t_out, "state")
    assert np.allclose(auto, state, rtol=1e-6, atol=1e-12)
