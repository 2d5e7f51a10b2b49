"""Ketamine PK/PD engine: pure NumPy, imports nothing else of KetaCare.

The public API (see docs/pharmacology.md):

* :func:`simulate` - concentration curves, effects and timings for one patient;
* :func:`route_claims_table` - onset and duration per route next to clinic claims;
* :func:`tci_schedule` - plasma or effect-site target-controlled infusion;
* :func:`varvel` / :func:`varvel_population` - predicted against measured performance;
* :func:`simulate_population` - virtual populations, percentiles and probabilities.
"""

from ketacare.pharmacology.administration import available_routes, default_route
from ketacare.pharmacology.effects import (
    NK_WEIGHT_ONE_THIRD,
    Endpoint,
    Timing,
    default_endpoints,
    time_in_band,
)
from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError
from ketacare.pharmacology.pk_models import (
    DEFAULT_MODEL,
    SIGTERMANS_FEMALE_CL_FACTOR,
    Patient,
    available_models,
    get_model,
)
from ketacare.pharmacology.population import PopulationResult, simulate_population
from ketacare.pharmacology.routetable import RouteClaimRow, route_claims_table
from ketacare.pharmacology.schedule import Dose, infusion, rate_steps
from ketacare.pharmacology.simulate import Simulation, simulate
from ketacare.pharmacology.tci import TciSchedule, tci_schedule
from ketacare.pharmacology.varvel import VarvelMetrics, varvel, varvel_population

__all__ = [
    "DEFAULT_MODEL",
    "NK_WEIGHT_ONE_THIRD",
    "SIGTERMANS_FEMALE_CL_FACTOR",
    "Dose",
    "Endpoint",
    "ModelWarning",
    "Patient",
    "PharmacologyInputError",
    "PopulationResult",
    "RouteClaimRow",
    "Simulation",
    "TciSchedule",
    "Timing",
    "VarvelMetrics",
    "available_models",
    "available_routes",
    "default_endpoints",
    "default_route",
    "get_model",
    "infusion",
    "rate_steps",
    "route_claims_table",
    "simulate",
    "simulate_population",
    "tci_schedule",
    "time_in_band",
    "varvel",
    "varvel_population",
]
