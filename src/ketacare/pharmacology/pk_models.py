"""Published ketamine disposition models, loaded from ``pk_models.toml``.

Each model keeps its citation, population, sampling site, validity limits and the
source tag of every number, so that a plan can show where a prediction comes from.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError

Sex = Literal["male", "female"]
FloatArray = NDArray[np.float64]

DEFAULT_MODEL = "kamp2020"
REFERENCE_WEIGHT_KG = 70.0
SIGTERMANS_FEMALE_CL_FACTOR = 1.2
"""Sigtermans 2009 [V: abstract]: S-ketamine and S-norketamine clearance 20% greater in
women. No model in the facts file carries it, so it is off by default (factor 1)."""

_DISPOSITION_NAMES = (
    "v1_l",
    "v2_l",
    "v3_l",
    "cl_l_per_min",
    "q2_l_per_min",
    "q3_l_per_min",
)


@dataclass(frozen=True)
class Sourced:
    """A number with the source tag it carries in the facts file."""

    value: float
    tag: str
    exponent: float = 0.0
    """Allometric weight exponent: value * (weight_kg / 70) ** exponent."""


@dataclass(frozen=True)
class Variability:
    """Log-normal between-subject variability: parameter * exp(eta), eta ~ N(0, covariance)."""

    names: tuple[str, ...]
    covariance: FloatArray
    tag: str


@dataclass(frozen=True)
class Patient:
    weight_kg: float
    age_y: float
    sex: Sex = "male"


@dataclass(frozen=True)
class PKModel:
    key: str
    title: str
    citation: str
    drug: str
    population: str
    sampling: str
    parameterisation: Literal["micro", "clearance"]
    params: dict[str, Sourced]
    variability: Variability | None

    @property
    def n_compartments(self) -> int:
        if self.parameterisation == "micro":
            return 3 if "k13" in self.params else 2 if "k12" in self.params else 1
        return 3 if "v3_l" in self.params else 2 if "v2_l" in self.params else 1

    def limit(self, name: str) -> float | None:
        entry = self.params.get(name)
        return None if entry is None else entry.value


@dataclass(frozen=True)
class Norketamine:
    citation: str
    params: dict[str, Sourced]


def _sourced(raw: dict[str, Any]) -> Sourced:
    return Sourced(float(raw["value"]), str(raw["tag"]), float(raw.get("exponent", 0.0)))


def _variability(raw: dict[str, Any]) -> Variability:
    return Variability(tuple(raw["names"]), np.asarray(raw["covariance"], dtype=np.float64), str(raw["tag"]))


@cache
def _catalog() -> dict[str, Any]:
    text = files("ketacare.pharmacology").joinpath("pk_models.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def available_models() -> tuple[str, ...]:
    return tuple(k for k in _catalog() if k not in ("norketamine", "borrowed_iiv"))


@cache
def get_model(key: str) -> PKModel:
    """The model called ``key`` (see :func:`available_models`)."""
    if key not in available_models():
        raise PharmacologyInputError(f"unknown model {key!r}; choose one of {', '.join(available_models())}")
    raw = _catalog()[key]
    params = {k: _sourced(v) for k, v in raw.items() if isinstance(v, dict) and "value" in v}
    variability = _variability(raw["iiv"]) if "iiv" in raw else None
    return PKModel(
        key=key,
        title=raw["title"],
        citation=raw["citation"],
        drug=raw["drug"],
        population=raw["population"],
        sampling=raw["sampling"],
        parameterisation=raw["parameterisation"],
        params=params,
        variability=variability,
    )


@cache
def norketamine_model() -> Norketamine:
    raw = _catalog()["norketamine"]
    params = {k: _sourced(v) for k, v in raw.items() if isinstance(v, dict)}
    return Norketamine(citation=raw["citation"], params=params)


@cache
def borrowed_variability() -> Variability:
    return _variability(_catalog()["borrowed_iiv"])


def model_variability(model: PKModel) -> tuple[Variability, list[ModelWarning]]:
    """The model's own variability, or the borrowed Otto 2021 block with a warning."""
    if model.variability is not None:
        return model.variability, []
    borrowed = borrowed_variability()
    return borrowed, [
        ModelWarning(
            "borrowed_iiv",
            f"{model.title} publishes no between-subject variability; "
            "the Otto 2021 S-ketamine/S-norketamine block is used instead",
            borrowed.tag,
        )
    ]


def check_patient(model: PKModel, patient: Patient) -> list[ModelWarning]:
    """Warnings for a patient outside the model's validated age or weight range."""
    if not (np.isfinite(patient.weight_kg) and patient.weight_kg > 0):
        raise PharmacologyInputError(f"weight_kg must be positive, got {patient.weight_kg}")
    if not (np.isfinite(patient.age_y) and patient.age_y >= 0):
        raise PharmacologyInputError(f"age_y must be zero or more, got {patient.age_y}")
    if patient.sex not in ("male", "female"):
        raise PharmacologyInputError(f"sex must be 'male' or 'female', got {patient.sex!r}")
    warnings: list[ModelWarning] = []
    checks = (
        ("age_min_y", patient.age_y, "age_below_range", "age {v} y is below", -1),
        ("age_max_y", patient.age_y, "age_above_range", "age {v} y is above", 1),
        ("weight_min_kg", patient.weight_kg, "weight_below_range", "weight {v} kg is below", -1),
        ("weight_max_kg", patient.weight_kg, "weight_above_range", "weight {v} kg is above", 1),
    )
    for name, value, code, text, sign in checks:
        entry = model.params.get(name)
        if entry is not None and sign * (value - entry.value) > 0:
            warnings.append(
                ModelWarning(
                    code,
                    f"{text.format(v=value)} the {model.title} model's limit of "
                    f"{entry.value:g} ({model.population}); predictions are extrapolated",
                    entry.tag,
                )
            )
    return warnings


def _scaled(entry: Sourced, weight_kg: FloatArray) -> FloatArray:
    return entry.value * (weight_kg / REFERENCE_WEIGHT_KG) ** entry.exponent


def typical_parameters(
    model: PKModel,
    weight_kg: FloatArray,
    female: NDArray[np.bool_],
    female_clearance_factor: float = 1.0,
) -> dict[str, FloatArray]:
    """Volumes (L) and clearances (L/min) of parent and norketamine per patient.

    Micro-constant models are converted: CL = k10 V1, Q2 = k12 V1, V2 = Q2 / k21, ...
    """
    p = model.params
    out: dict[str, FloatArray] = {}
    if model.parameterisation == "micro":
        v1 = p["v1_l_per_kg"].value * weight_kg
        out["v1_l"] = v1
        out["cl_l_per_min"] = p["k10"].value * v1
        for i, (kin, kout) in enumerate((("k12", "k21"), ("k13", "k31")), start=2):
            if kin in p:
                q = p[kin].value * v1
                out[f"q{i}_l_per_min"] = q
                out[f"v{i}_l"] = q / p[kout].value
    else:
        for name in _DISPOSITION_NAMES:
            if name in p:
                out[name] = _scaled(p[name], weight_kg)
    nk = norketamine_model().params
    for name in ("v1_l", "v2_l", "cl_l_per_min", "q2_l_per_min"):
        out[f"nk_{name}"] = _scaled(nk[name], weight_kg)
    sex_factor = np.where(female, female_clearance_factor, 1.0)
    out["cl_l_per_min"] = out["cl_l_per_min"] * sex_factor
    out["nk_cl_l_per_min"] = out["nk_cl_l_per_min"] * sex_factor
    return out


def derived_quantities(model: PKModel, weight_kg: float) -> dict[str, float]:
    """Clearance (L/min), steady-state volume (L) and terminal half-life (min)."""
    params = typical_parameters(model, np.array([weight_kg]), np.array([False]))
    n = model.n_compartments
    v = [float(params[f"v{i}_l"][0]) for i in range(1, n + 1)]
    q = [float(params[f"q{i}_l_per_min"][0]) for i in range(2, n + 1)]
    cl = float(params["cl_l_per_min"][0])
    a = np.zeros((n, n))
    a[0, 0] = -cl / v[0]
    for i in range(1, n):
        a[0, 0] -= q[i - 1] / v[0]
        a[0, i] = q[i - 1] / v[i]
        a[i, 0] = q[i - 1] / v[0]
        a[i, i] = -q[i - 1] / v[i]
    slowest = float(np.max(np.linalg.eigvals(a).real))
    return {
        "cl_l_per_min": cl,
        "vss_l": float(sum(v)),
        "t_half_terminal_min": float(np.log(2) / -slowest),
    }
