"""Target-controlled infusion: plasma targeting and effect-site targeting.

Both update the pump every ``interval_s`` (default 10 s) from the exact model state:

* plasma: the rate that brings the predicted Cp exactly to the target at the end of
  the interval (Jacobs 1990 style, facts 6);
* effect site (Shafer & Gregg 1992, in the general form of PyTCI, facts 6): the largest
  rate for this interval such that, with no further infusion, the predicted Ce does not
  exceed the target at any later time on the horizon. Far from the target this gives the
  peak-targeted "bolus"; at the target it gives the maintenance rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.administration import default_route
from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError
from ketacare.pharmacology.pk_models import (
    DEFAULT_MODEL,
    Patient,
    check_patient,
    get_model,
    typical_parameters,
)
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.system import build_system
from ketacare.pharmacology.units import NG_PER_ML_PER_MG_PER_L, S_PER_MIN

FloatArray = NDArray[np.float64]
TciMode = Literal["plasma", "effect"]

DEFAULT_INTERVAL_S = 10.0
DEFAULT_HORIZON_MIN = 60.0


@dataclass(frozen=True)
class TciSchedule:
    """Pump rate per interval and the model's prediction at interval boundaries."""

    mode: TciMode
    interval_s: float
    t_start_min: FloatArray
    rate_mg_per_min: FloatArray
    t_min: FloatArray
    """Interval boundaries: 0, interval, 2 interval, ..."""
    cp_ng_per_ml: FloatArray
    ce_ng_per_ml: FloatArray
    target_ng_per_ml: FloatArray
    """The target in force at each of ``t_min``."""
    warnings: tuple[ModelWarning, ...]

    @property
    def total_dose_mg(self) -> float:
        return float(np.sum(self.rate_mg_per_min) * self.interval_s / S_PER_MIN)

    def doses(self) -> list[Dose]:
        """The schedule as IV infusions, consecutive equal rates merged, pauses left out."""
        h = self.interval_s / S_PER_MIN
        doses: list[Dose] = []
        k = 0
        rates = self.rate_mg_per_min
        while k < rates.size:
            j = k
            while j + 1 < rates.size and rates[j + 1] == rates[k]:
                j += 1
            if rates[k] > 0:
                duration = (j - k + 1) * h
                doses.append(
                    Dose("iv_infusion", float(rates[k]) * duration, float(self.t_start_min[k]), duration)
                )
            k = j + 1
        return doses


def _target_at(t: FloatArray, t_targets: FloatArray, targets: FloatArray) -> FloatArray:
    idx = np.searchsorted(t_targets, t + 1e-9, side="right") - 1
    return np.where(idx >= 0, targets[np.maximum(idx, 0)], 0.0)


def tci_schedule(
    patient: Patient,
    target_t_min: Sequence[float],
    target_ng_per_ml: Sequence[float],
    *,
    end_min: float,
    model: str = DEFAULT_MODEL,
    mode: TciMode = "effect",
    t_half_ke0_min: float = 8.3,
    interval_s: float = DEFAULT_INTERVAL_S,
    max_rate_mg_per_min: float = math.inf,
    horizon_min: float = DEFAULT_HORIZON_MIN,
) -> TciSchedule:
    """Pump schedule for a stepwise target profile (each target holds until the next).

    The default effect-site t1/2ke0 is Olofsen 2022's 8.3 min for analgesia [V].
    """
    t_targets = np.asarray(target_t_min, dtype=np.float64)
    targets = np.asarray(target_ng_per_ml, dtype=np.float64)
    if t_targets.size == 0 or t_targets.shape != targets.shape:
        raise PharmacologyInputError("give one target time per target concentration")
    if np.any(np.diff(t_targets) <= 0) or t_targets[0] < 0 or np.any(targets < 0):
        raise PharmacologyInputError("target times must increase and targets be >= 0")
    if not (interval_s > 0 and end_min > 0 and t_half_ke0_min > 0 and horizon_min > 0):
        raise PharmacologyInputError("interval, end, t_half_ke0 and horizon must be positive")
    if mode not in ("plasma", "effect"):
        raise PharmacologyInputError(f"mode must be 'plasma' or 'effect', got {mode!r}")
    pk = get_model(model)
    warnings = check_patient(pk, patient)
    params = typical_parameters(pk, np.array([patient.weight_kg]), np.array([patient.sex == "female"]))
    ke0 = math.log(2) / t_half_ke0_min
    system = build_system(pk, params, list(default_route("iv_infusion").pathways), (ke0,), False, np.ones(1))
    lam, vec = np.linalg.eig(system.a[0])
    if np.iscomplexobj(lam) or np.linalg.cond(vec) > 1e8:
        raise PharmacologyInputError("effect-site rate coincides with a disposition rate")
    inv = np.linalg.inv(vec)
    wb = inv @ system.b[0, :, 0]
    cp_row = system.c[0, system.outputs.index("cp")] @ vec * NG_PER_ML_PER_MG_PER_L
    ce_row = system.c[0, system.outputs.index("ce0")] @ vec * NG_PER_ML_PER_MG_PER_L

    h = interval_s / S_PER_MIN
    n_steps = math.ceil(end_min / h - 1e-9)
    decay = np.exp(lam * h)
    gain = np.expm1(lam * h) / lam * wb
    horizon = np.arange(1, math.ceil(horizon_min / h) + 1) * h
    decay_horizon = np.exp(np.outer(horizon, lam))
    udf = (np.exp(np.outer(horizon - h, lam)) * gain) @ ce_row
    rising = udf > 0

    t = np.arange(n_steps + 1, dtype=np.float64) * h
    target_now = _target_at(t, t_targets, targets)
    rates = np.zeros(n_steps)
    cp = np.zeros(n_steps + 1)
    ce = np.zeros(n_steps + 1)
    z = np.zeros_like(lam)
    for k in range(n_steps):
        goal = target_now[k]
        if mode == "plasma":
            rate = (goal - cp_row @ (decay * z)) / (cp_row @ gain)
        else:
            free = (decay_horizon * z) @ ce_row
            rate = float(np.min((goal - free[rising]) / udf[rising]))
        rates[k] = min(max(rate, 0.0), max_rate_mg_per_min)
        z = decay * z + gain * rates[k]
        cp[k + 1] = cp_row @ z
        ce[k + 1] = ce_row @ z
    return TciSchedule(
        mode=mode,
        interval_s=interval_s,
        t_start_min=t[:-1],
        rate_mg_per_min=rates,
        t_min=t,
        cp_ng_per_ml=cp,
        ce_ng_per_ml=ce,
        target_ng_per_ml=target_now,
        warnings=tuple(warnings),
    )
