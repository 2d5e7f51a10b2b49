"""PK check of a plan with the pharmacology engine: curves with bands, onset and offset of
analgesia, time above the psychotomimetic band, warnings, and a population 5-95% band."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ketacare.pharmacology import Dose, Patient, PharmacologyInputError, simulate, simulate_population

SIMULATED_ROUTES = ("iv_infusion", "iv_bolus", "im", "oral", "sublingual", "intranasal")
TAIL_MIN = 180.0  # (design) how long after the end of dosing the curve is drawn
MAX_POINTS = 500
COLOURS = {"analgesia": "#1b7837", "psychotomimetic": "#d95f02"}
LINE_COLOURS = ("#000000", "#2166ac", "#762a83", "#b2182b")


@dataclass(frozen=True)
class SessionDosing:
    label: str
    route: str
    dose_mg: float
    duration_min: float


@dataclass(frozen=True)
class SessionPk:
    label: str
    onset_min: float | None
    offset_min: float | None
    peak_ng_per_ml: float
    time_in_analgesic_band_min: float
    time_above_psychotomimetic_min: float
    p_reach_analgesia: float | None = None  # share of the virtual population reaching analgesia


@dataclass(frozen=True)
class PkCheck:
    available: bool
    reason: str
    sessions: tuple[SessionPk, ...]
    warnings: tuple[str, ...]
    figure: dict[str, Any]
    p_reach_analgesia: float | None = None
    population_size: int = 0
    thresholds_ng_per_ml: tuple[float, float] | None = None
    source: str = ""


def _dose(s: SessionDosing) -> Dose:
    duration = s.duration_min if s.route == "iv_infusion" else 0.0
    return Dose(s.route, s.dose_mg, 0.0, duration)


def _translucent(colour: str, alpha: float = 0.15) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _thin(values: Any, stride: int) -> list[float]:
    return [round(float(v), 2) for v in np.asarray(values)[::stride]]


def check(
    dosings: list[SessionDosing],
    *,
    weight_kg: float,
    age_y: float,
    sex: str,
    psychotomimetic_long_min: float,
    population_size: int,
    seed: int = 1,
    long_min_note: str = "clinic-editable default [design]",
) -> PkCheck:
    """Simulate each distinct session dose for this patient (weight, age, sex)."""
    if not dosings:
        return PkCheck(False, "No session doses to simulate.", (), (), {})
    route = dosings[0].route
    if route not in SIMULATED_ROUTES:
        why = {
            "topical": "Topical ketamine is not simulated: there are no human plasma data.",
            "esketamine_nasal": "Esketamine nasal spray is not simulated: the engine has no absorption "
            "rate for it (pharmacology facts gap).",
        }.get(route, f"The route {route} is not simulated.")
        return PkCheck(False, why, (), (), {})
    patient = Patient(weight_kg=weight_kg, age_y=age_y, sex="female" if sex == "female" else "male")
    end_min = max(s.duration_min for s in dosings) + TAIL_MIN
    step = max(1.0, end_min / 2000.0)
    traces: list[dict[str, Any]] = []
    results: list[SessionPk] = []
    warnings: list[str] = []
    thresholds: dict[str, float] = {}
    top = 1.0
    try:
        sims = [
            simulate(patient, [_dose(s)], end_min=end_min, step_min=step, norketamine=False) for s in dosings
        ]
        # Every distinct session dose gets its own population (the same seed: the same virtual
        # patients), so each curve has its 5-95% band and its probability of analgesia.
        populations = [
            simulate_population(
                [_dose(s)],
                n_patients=population_size,
                weight_kg=weight_kg,
                age_y=age_y,
                female_fraction=1.0 if sex == "female" else 0.0,
                seed=seed,
                end_min=end_min,
                step_min=step,
            )
            for s in dosings
        ]
    except PharmacologyInputError as exc:
        return PkCheck(False, f"The engine could not simulate this plan: {exc}", (), (), {})
    for w in sims[0].warnings:
        warnings.append(f"{w.message} ({w.source})")
    bands: list[dict[str, Any]] = []
    for index, (s, sim, population) in enumerate(zip(dosings, sims, populations, strict=True)):
        thresholds = {e.name: e.threshold_ng_per_ml for e in sim.endpoints}
        an, psy = sim.timings["analgesia"], sim.timings["psychotomimetic"]
        ce = sim.ce_ng_per_ml["analgesia"]
        in_band = float(np.sum((ce >= thresholds["analgesia"]) & (ce < thresholds["psychotomimetic"])) * step)
        results.append(
            SessionPk(
                label=s.label,
                onset_min=None if an.onset_min is None else round(float(an.onset_min), 1),
                offset_min=None if an.offset_min is None else round(float(an.offset_min), 1),
                peak_ng_per_ml=round(float(sim.cp_ng_per_ml.max()), 1),
                time_in_analgesic_band_min=round(in_band, 1),
                time_above_psychotomimetic_min=round(float(psy.time_above_min), 1),
                p_reach_analgesia=round(float(population.p_reach["analgesia"]), 3),
            )
        )
        if not an.reached:
            warnings.append(
                f"{s.label}: predicted to stay below the analgesic band "
                f"({thresholds['analgesia']:g} ng/mL at the effect site)."
            )
        if psy.time_above_min > psychotomimetic_long_min:
            warnings.append(
                f"{s.label}: predicted above the psychotomimetic band ({thresholds['psychotomimetic']:g} "
                f"ng/mL) for {psy.time_above_min:.0f} min (more than {psychotomimetic_long_min:g} min, "
                f"{long_min_note})."
            )
        stride = max(1, len(sim.t_min) // MAX_POINTS)
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        traces.append(
            {
                "type": "scatter",
                "x": _thin(sim.t_min, stride),
                "y": _thin(sim.cp_ng_per_ml, stride),
                "name": f"{s.label}: plasma",
                "line": {"color": colour},
            }
        )
        traces.append(
            {
                "type": "scatter",
                "x": _thin(sim.t_min, stride),
                "y": _thin(ce, stride),
                "name": f"{s.label}: effect site",
                "line": {"color": colour, "dash": "dash"},
            }
        )
        top = max(top, float(sim.cp_ng_per_ml.max()))
        lo, hi = population.cp_bands[0], population.cp_bands[-1]
        band_stride = max(1, len(population.band_t_min) // MAX_POINTS)
        band_x = _thin(population.band_t_min, band_stride)
        bands.append(
            {
                "type": "scatter",
                "x": band_x,
                "y": _thin(hi, band_stride),
                "line": {"width": 0},
                "showlegend": False,
                "hoverinfo": "skip",
            }
        )
        bands.append(
            {
                "type": "scatter",
                "x": band_x,
                "y": _thin(lo, band_stride),
                "fill": "tonexty",
                "fillcolor": _translucent(colour),
                "line": {"width": 0},
                "name": f"{s.label}: plasma 5-95% ({population.n_patients} virtual patients)",
            }
        )
        top = max(top, float(hi.max()))
    traces = bands + traces
    top = max(top, thresholds["psychotomimetic"]) * 1.1
    analgesia, psychotomimetic = thresholds["analgesia"], thresholds["psychotomimetic"]
    figure = {
        "data": traces,
        "layout": {
            "xaxis": {"title": {"text": "time from start of session (min)"}},
            "yaxis": {"title": {"text": "ketamine (ng/mL)"}, "range": [0, top]},
            "template": "plotly_white",
            "margin": {"t": 30},
            "legend": {"orientation": "h", "y": -0.25},
            "shapes": [
                {
                    "type": "rect",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": analgesia,
                    "y1": psychotomimetic,
                    "fillcolor": COLOURS["analgesia"],
                    "opacity": 0.1,
                    "line": {"width": 0},
                },
                {
                    "type": "rect",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": psychotomimetic,
                    "y1": top,
                    "fillcolor": COLOURS["psychotomimetic"],
                    "opacity": 0.1,
                    "line": {"width": 0},
                },
            ],
            "annotations": [
                {
                    "xref": "paper",
                    "x": 0.01,
                    "y": analgesia,
                    "yanchor": "bottom",
                    "showarrow": False,
                    "text": f"analgesic band ≥ {analgesia:g} ng/mL",
                },
                {
                    "xref": "paper",
                    "x": 0.01,
                    "y": psychotomimetic,
                    "yanchor": "bottom",
                    "showarrow": False,
                    "text": f"psychotomimetic ≥ {psychotomimetic:g} ng/mL",
                },
            ],
        },
    }
    source = "; ".join(e.source for e in sims[0].endpoints if e.name in ("analgesia", "psychotomimetic"))
    return PkCheck(
        available=True,
        reason="",
        sessions=tuple(results),
        warnings=tuple(warnings),
        figure=figure,
        p_reach_analgesia=max(r.p_reach_analgesia or 0.0 for r in results),
        population_size=populations[0].n_patients,
        thresholds_ng_per_ml=(analgesia, psychotomimetic),
        source=source,
    )
