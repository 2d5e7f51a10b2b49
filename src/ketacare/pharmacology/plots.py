"""Plotly figures of simulations and populations, written as offline HTML or PNG."""

from __future__ import annotations

import os
from pathlib import Path

import plotly.graph_objects as go

from ketacare.pharmacology.errors import PharmacologyInputError
from ketacare.pharmacology.population import PopulationResult
from ketacare.pharmacology.simulate import Simulation

_CHROMIUM = "/usr/bin/chromium"
_COLOURS = {"analgesia": "#1b7837", "psychotomimetic": "#d95f02", "hypnosis": "#7570b3"}


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _shade_bands(fig: go.Figure, thresholds: dict[str, float], top: float) -> None:
    low = thresholds.get("analgesia")
    high = thresholds.get("psychotomimetic")
    if low is not None:
        fig.add_hrect(
            y0=low,
            y1=high if high is not None and high > low else top,
            fillcolor=_COLOURS["analgesia"],
            opacity=0.10,
            line_width=0,
            annotation_text="analgesic band",
            annotation_position="top left",
        )
    if high is not None:
        fig.add_hrect(
            y0=high,
            y1=top,
            fillcolor=_COLOURS["psychotomimetic"],
            opacity=0.10,
            line_width=0,
            annotation_text="psychotomimetic",
            annotation_position="top left",
        )


def simulation_figure(sim: Simulation, title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=sim.t_min, y=sim.cp_ng_per_ml, name="plasma ketamine", line={"color": "black"})
    )
    if sim.nk_cp_ng_per_ml is not None:
        fig.add_trace(
            go.Scatter(
                x=sim.t_min,
                y=sim.nk_cp_ng_per_ml,
                name="plasma norketamine",
                line={"color": "grey", "dash": "dot"},
            )
        )
    for e in sim.endpoints:
        fig.add_trace(
            go.Scatter(
                x=sim.t_min,
                y=sim.ce_ng_per_ml[e.name],
                name=f"effect site, {e.name} (t1/2ke0 {e.t_half_ke0_min:g} min)",
                line={"color": _COLOURS.get(e.name, "#444"), "dash": "dash"},
            )
        )
    top = max(float(sim.cp_ng_per_ml.max()), 1.0) * 1.1
    _shade_bands(fig, {e.name: e.threshold_ng_per_ml for e in sim.endpoints}, top)
    fig.update_layout(
        title=title,
        xaxis_title="time (min)",
        yaxis_title="concentration (ng/mL)",
        yaxis_range=[0, top],
        template="plotly_white",
        legend={"x": 0.55, "y": 0.98},
    )
    return fig


def population_figure(result: PopulationResult, title: str) -> go.Figure:
    fig = go.Figure()
    lo, mid, hi = 0, len(result.percentiles) // 2, len(result.percentiles) - 1
    series = [("plasma ketamine", result.cp_bands, "#000000")] + [
        (f"effect site, {k}", v, _COLOURS.get(k, "#444"))
        for k, v in result.ce_bands.items()
        if k == "analgesia"
    ]
    for name, bands, colour in series:
        fig.add_trace(
            go.Scatter(
                x=result.band_t_min, y=bands[hi], line={"width": 0}, showlegend=False, hoverinfo="skip"
            )
        )
        fig.add_trace(
            go.Scatter(
                x=result.band_t_min,
                y=bands[lo],
                fill="tonexty",
                line={"width": 0},
                fillcolor=_rgba(colour, 0.2),
                name=f"{name} {result.percentiles[lo]:g}-{result.percentiles[hi]:g}th pct",
            )
        )
        fig.add_trace(
            go.Scatter(x=result.band_t_min, y=bands[mid], line={"color": colour}, name=f"{name} median")
        )
    top = float(result.cp_bands[hi].max()) * 1.1
    _shade_bands(fig, result.thresholds_ng_per_ml, top)
    fig.update_layout(
        title=title,
        xaxis_title="time (min)",
        yaxis_title="concentration (ng/mL)",
        yaxis_range=[0, top],
        template="plotly_white",
    )
    return fig


def write_figure(fig: go.Figure, path: Path) -> None:
    """``.html`` with plotly.js inlined from the installed package, or ``.png`` (kaleido)."""
    suffix = path.suffix.lower()
    if suffix == ".html":
        fig.write_html(path, include_plotlyjs=True, full_html=True)
    elif suffix == ".png":
        # kaleido drives a local Chromium; Debian's sits outside kaleido's search path.
        if os.path.exists(_CHROMIUM):
            os.environ.setdefault("BROWSER_PATH", _CHROMIUM)
        try:
            fig.write_image(path, width=1000, height=560, scale=1)
        except (ImportError, ValueError, RuntimeError) as exc:
            raise PharmacologyInputError(f"PNG export needs kaleido and Chromium: {exc}") from exc
    else:
        raise PharmacologyInputError(f"plot file must end in .png or .html, got {path.name}")
