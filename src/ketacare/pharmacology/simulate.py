"""Concentration curves and effect timings for one patient and a dose schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.administration import Pathway, Route, route_for
from ketacare.pharmacology.effects import (
    Endpoint,
    Timing,
    default_endpoints,
    effect_fraction,
    timing,
    validate_endpoints,
)
from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError
from ketacare.pharmacology.pk_models import (
    DEFAULT_MODEL,
    Patient,
    PKModel,
    check_patient,
    get_model,
    typical_parameters,
)
from ketacare.pharmacology.schedule import Dose, Inputs, to_inputs, validate
from ketacare.pharmacology.solve import Method, propagate
from ketacare.pharmacology.system import System, build_system
from ketacare.pharmacology.units import NG_PER_ML_PER_MG_PER_L

FloatArray = NDArray[np.float64]

DEFAULT_STEP_MIN = 10.0 / 60.0
DEFAULT_END_MIN = 360.0


@dataclass(frozen=True)
class Simulation:
    """Predicted concentrations (ng/mL) at ``t_min``.

    ``ce_ng_per_ml[name]`` is the endpoint's drive, Ce(ketamine) + nk_weight *
    Ce(norketamine); ``effect[name]`` its sigmoid Emax fraction (0/1 for thresholds).
    """

    model: str
    t_min: FloatArray
    cp_ng_per_ml: FloatArray
    nk_cp_ng_per_ml: FloatArray | None
    ce_ng_per_ml: dict[str, FloatArray]
    effect: dict[str, FloatArray]
    timings: dict[str, Timing]
    endpoints: tuple[Endpoint, ...]
    warnings: tuple[ModelWarning, ...]


@dataclass(frozen=True)
class Plan:
    """A validated schedule, ready to be turned into systems for any patient batch."""

    model: PKModel
    inputs: Inputs
    channel_pathways: list[Pathway]
    endpoints: tuple[Endpoint, ...]
    ke0_per_min: tuple[float, ...]
    norketamine: bool
    warnings: tuple[ModelWarning, ...]

    def system(self, params: dict[str, FloatArray], bioavailability_factor: FloatArray) -> System:
        return build_system(
            self.model,
            params,
            self.channel_pathways,
            self.ke0_per_min,
            self.norketamine,
            bioavailability_factor,
        )

    def drive_mg_per_l(self, outputs: tuple[str, ...], y: FloatArray, e: Endpoint) -> FloatArray:
        """The endpoint's drive from propagate()'s output (time, output, patient)."""
        if math.isinf(e.ke0_per_min):
            parent, metabolite = "cp", "nk_cp"
        else:
            j = self.ke0_per_min.index(e.ke0_per_min)
            parent, metabolite = f"ce{j}", f"nk_ce{j}"
        drive = y[:, outputs.index(parent)]
        if e.nk_weight != 0:
            drive = drive + e.nk_weight * y[:, outputs.index(metabolite)]
        return drive


def make_plan(
    doses: Sequence[Dose],
    model: str = DEFAULT_MODEL,
    endpoints: Sequence[Endpoint] | None = None,
    norketamine: bool = True,
) -> Plan:
    pk = get_model(model)
    eps = tuple(endpoints) if endpoints is not None else default_endpoints(pk.drug)
    validate_endpoints(eps)
    warnings: list[ModelWarning] = []
    routes: dict[str, Route] = {}
    for d in doses:
        if d.route not in routes:
            routes[d.route], route_warnings = route_for(pk, d.route)
            warnings.extend(route_warnings)
    validate(doses, routes)
    inputs = to_inputs(doses, routes)
    need_nk = norketamine or any(e.nk_weight != 0 for e in eps)
    ke0s = tuple(dict.fromkeys(e.ke0_per_min for e in eps if not math.isinf(e.ke0_per_min)))
    return Plan(
        model=pk,
        inputs=inputs,
        channel_pathways=[routes[r].pathways[i] for r, i in inputs.channels],
        endpoints=eps,
        ke0_per_min=ke0s,
        norketamine=need_nk,
        warnings=tuple(warnings),
    )


def output_times(end_min: float = DEFAULT_END_MIN, step_min: float = DEFAULT_STEP_MIN) -> FloatArray:
    """0, step, 2 step, ... up to and including end_min."""
    if not (end_min > 0 and step_min > 0 and np.isfinite(end_min) and np.isfinite(step_min)):
        raise PharmacologyInputError("end_min and step_min must be positive")
    n = int(np.floor(end_min / step_min + 1e-9))
    return np.arange(n + 1, dtype=np.float64) * step_min


def check_times(t_min: FloatArray) -> FloatArray:
    t = np.asarray(t_min, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or t[0] < 0:
        raise PharmacologyInputError("output times must be a non-empty list of minutes >= 0")
    if np.any(np.diff(t) <= 0):
        raise PharmacologyInputError("output times must be strictly increasing")
    return t


def simulate(
    patient: Patient,
    doses: Sequence[Dose],
    *,
    model: str = DEFAULT_MODEL,
    t_min: FloatArray | None = None,
    end_min: float = DEFAULT_END_MIN,
    step_min: float = DEFAULT_STEP_MIN,
    endpoints: Sequence[Endpoint] | None = None,
    norketamine: bool = True,
    female_clearance_factor: float = 1.0,
    method: Method = "auto",
) -> Simulation:
    """Plasma and effect-site concentrations, effects and timings for one patient.

    Times default to a 10-s grid over 6 h. Model-validity problems come back in
    ``warnings``; input that cannot be simulated raises PharmacologyInputError.
    """
    plan = make_plan(doses, model, endpoints, norketamine)
    times = check_times(t_min) if t_min is not None else output_times(end_min, step_min)
    warnings = [*check_patient(plan.model, patient), *plan.warnings]
    params = typical_parameters(
        plan.model,
        np.array([patient.weight_kg]),
        np.array([patient.sex == "female"]),
        female_clearance_factor,
    )
    system = plan.system(params, np.ones(1))
    y = propagate(system, plan.inputs, times, method)[:, :, 0] * NG_PER_ML_PER_MG_PER_L
    ce: dict[str, FloatArray] = {}
    effect: dict[str, FloatArray] = {}
    timings: dict[str, Timing] = {}
    for e in plan.endpoints:
        drive = plan.drive_mg_per_l(system.outputs, y[:, :, None], e)[:, 0]
        ce[e.name] = drive
        effect[e.name] = effect_fraction(e, drive)
        timings[e.name] = timing(e.name, times, drive, e.threshold_ng_per_ml)
    return Simulation(
        model=plan.model.key,
        t_min=times,
        cp_ng_per_ml=y[:, system.outputs.index("cp")],
        nk_cp_ng_per_ml=y[:, system.outputs.index("nk_cp")] if plan.norketamine else None,
        ce_ng_per_ml=ce,
        effect=effect,
        timings=timings,
        endpoints=plan.endpoints,
        warnings=tuple(warnings),
    )
