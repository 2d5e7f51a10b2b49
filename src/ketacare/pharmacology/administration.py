"""Routes of administration, loaded from ``administration.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from functools import cache
from importlib.resources import files
from typing import Any

from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError
from ketacare.pharmacology.pk_models import PKModel

IV_ROUTES = ("iv_bolus", "iv_infusion")
_CALIBRATION_GAP = (
    "Known limit of the absorption model [R]: with literature F and a Tmax-fitted ka the "
    "predicted ketamine Cmax is 1.5-3x below published oral and sublingual peaks (e.g. oral 0.5 mg/kg: 15 vs "
    "45 ng/mL, Grant 1981); AUC agrees"
)


@dataclass(frozen=True)
class Pathway:
    """One absorption pathway; see the header of administration.toml."""

    dose_fraction: float
    bioavailability: float
    ka_per_min: float
    zero_order_min: float
    presystemic_nk: float
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    name: str
    description: str
    systemic: bool
    reason: str
    pathways: tuple[Pathway, ...]

    @property
    def is_iv(self) -> bool:
        return self.name in IV_ROUTES


def _value(raw: Any) -> tuple[float, str]:
    if isinstance(raw, dict):
        return float(raw["value"]), str(raw["tag"])
    return float(raw), ""


def _pathway(raw: dict[str, Any]) -> Pathway:
    fraction, t_fraction = _value(raw["dose_fraction"])
    f, t_f = _value(raw["bioavailability"])
    ka, t_ka = _value(raw["ka_per_min"])
    d, t_d = _value(raw.get("zero_order_min", 0.0))
    nk = 1.0 - f if raw.get("nk_from_unabsorbed", False) else 0.0
    return Pathway(fraction, f, ka, d, nk, tuple(t for t in (t_fraction, t_f, t_ka, t_d) if t))


@cache
def _catalog() -> dict[str, Any]:
    text = files("ketacare.pharmacology").joinpath("administration.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def available_routes() -> tuple[str, ...]:
    return tuple(_catalog())


@cache
def default_route(name: str) -> Route:
    if name not in available_routes():
        raise PharmacologyInputError(f"unknown route {name!r}; choose one of {', '.join(available_routes())}")
    raw = _catalog()[name]
    return Route(
        name=name,
        description=raw["description"],
        systemic=bool(raw["systemic"]),
        reason=str(raw.get("reason", "")),
        pathways=tuple(_pathway(p) for p in raw.get("pathway", [])),
    )


def _with_bioavailability(route: Route, f: float, tag: str) -> Route:
    (pathway,) = route.pathways
    nk = 1.0 - f if pathway.presystemic_nk > 0 else 0.0
    return replace(
        route,
        pathways=(replace(pathway, bioavailability=f, presystemic_nk=nk, sources=(*pathway.sources, tag)),),
    )


def route_for(model: PKModel, name: str) -> tuple[Route, list[ModelWarning]]:
    """The route's parameters for this model, with model-specific overrides and warnings."""
    route = default_route(name)
    if not route.systemic:
        raise PharmacologyInputError(f"{name}: {route.reason}")
    warnings: list[ModelWarning] = []
    override = model.params.get(f"{name}_bioavailability")
    if override is not None:
        route = _with_bioavailability(route, override.value, override.tag)
    elif not route.is_iv:
        is_s_route = name == "sublingual_film"
        if is_s_route != (model.drug == "S-ketamine"):
            warnings.append(
                ModelWarning(
                    "route_data",
                    f"{name} absorption data are for "
                    f"{'S-ketamine' if is_s_route else 'racemic ketamine'}, "
                    f"the model is {model.drug}",
                    "; ".join(route.pathways[0].sources),
                )
            )
    if name in ("oral", "sublingual"):
        warnings.append(
            ModelWarning(
                "route_calibration",
                f"{name} peak concentrations are under-predicted 1.5-3x by this absorption "
                "model; exposure (AUC) agrees",
                _CALIBRATION_GAP,
            )
        )
    return route, warnings
