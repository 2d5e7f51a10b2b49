"""The ``ketacare simulate`` command (registered by ketacare.cli)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ketacare.pharmacology.effects import Endpoint, default_endpoints
from ketacare.pharmacology.errors import ModelWarning, PharmacologyInputError
from ketacare.pharmacology.pk_models import (
    DEFAULT_MODEL,
    Patient,
    available_models,
    check_patient,
    get_model,
)
from ketacare.pharmacology.population import PopulationResult, simulate_population
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import Simulation, check_times, output_times
from ketacare.pharmacology.simulate import simulate as run_simulation
from ketacare.pharmacology.units import MIN_PER_H, S_PER_MIN

_WEIGHT_CODES = ("weight_below_range", "weight_above_range")
_DOSE_KEYS = (
    "route",
    "dose_mg",
    "dose_mg_per_kg",
    "rate_mg_per_h",
    "rate_mg_per_kg_h",
    "start_min",
    "duration_min",
)
DOSE_HELP = (
    "A dose as key=value pairs: route=ROUTE plus dose_mg, dose_mg_per_kg, rate_mg_per_h or "
    "rate_mg_per_kg_h (infusions), and start_min, duration_min. "
    "Example: route=iv_infusion,rate_mg_per_kg_h=0.75,start_min=0,duration_min=40. Repeatable."
)


def parse_dose(spec: str, weight_kg: float) -> Dose:
    """One --dose value; raises PharmacologyInputError with a one-line message."""
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _DOSE_KEYS:
            raise PharmacologyInputError(
                f"bad --dose {spec!r}: use key=value pairs from {', '.join(_DOSE_KEYS)}"
            )
        fields[key] = value.strip()
    if "route" not in fields:
        raise PharmacologyInputError(f"bad --dose {spec!r}: route= is missing")
    try:
        num = {k: float(v) for k, v in fields.items() if k != "route"}
    except ValueError as exc:
        raise PharmacologyInputError(f"bad --dose {spec!r}: {exc}") from exc
    start = num.get("start_min", 0.0)
    duration = num.get("duration_min", 0.0)
    amounts = [k for k in ("dose_mg", "dose_mg_per_kg", "rate_mg_per_h", "rate_mg_per_kg_h") if k in num]
    if len(amounts) != 1:
        raise PharmacologyInputError(
            f"bad --dose {spec!r}: give exactly one of dose_mg, dose_mg_per_kg, "
            "rate_mg_per_h, rate_mg_per_kg_h"
        )
    amount_key = amounts[0]
    amount = num[amount_key]
    if amount_key.startswith("rate") and duration <= 0:
        raise PharmacologyInputError(f"bad --dose {spec!r}: a rate needs duration_min > 0")
    dose_mg = {
        "dose_mg": amount,
        "dose_mg_per_kg": amount * weight_kg,
        "rate_mg_per_h": amount * duration / MIN_PER_H,
        "rate_mg_per_kg_h": amount * weight_kg * duration / MIN_PER_H,
    }[amount_key]
    return Dose(fields["route"], dose_mg, start, duration)


def _endpoints(
    model: str,
    analgesia: float | None,
    psychotomimetic: float | None,
    hypnosis: float | None,
    t_half_ke0_min: float | None,
    nk_weight: float,
) -> list[Endpoint]:
    overrides = {"analgesia": analgesia, "psychotomimetic": psychotomimetic, "hypnosis": hypnosis}
    out = []
    for e in default_endpoints(get_model(model).drug):
        threshold = overrides.get(e.name)
        changed = replace(e, nk_weight=nk_weight)
        if threshold is not None:
            changed = replace(changed, threshold_ng_per_ml=threshold)
        if t_half_ke0_min is not None and e.name != "hypnosis":
            changed = replace(changed, t_half_ke0_min=t_half_ke0_min)
        out.append(changed)
    return out


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def _print_simulation(console: Console, sim: Simulation, table_sim: Simulation) -> None:
    table = Table(title=f"{sim.model}: concentrations (ng/mL)")
    table.add_column("t (min)", justify="right")
    table.add_column("Cp ketamine", justify="right")
    if table_sim.nk_cp_ng_per_ml is not None:
        table.add_column("Cp norketamine", justify="right")
    for e in sim.endpoints:
        table.add_column(f"Ce {e.name}", justify="right")
    for k, t in enumerate(table_sim.t_min):
        row = [f"{t:g}", f"{table_sim.cp_ng_per_ml[k]:.1f}"]
        if table_sim.nk_cp_ng_per_ml is not None:
            row.append(f"{table_sim.nk_cp_ng_per_ml[k]:.1f}")
        row += [f"{table_sim.ce_ng_per_ml[e.name][k]:.1f}" for e in sim.endpoints]
        table.add_row(*row)
    console.print(table)
    timing_table = Table(title="effects (Ce >= threshold; times in min)")
    for col in ("endpoint", "threshold ng/mL", "onset", "peak at", "peak ng/mL", "offset", "time above"):
        timing_table.add_column(col, justify="right")
    for e in sim.endpoints:
        t = sim.timings[e.name]
        offset = _fmt(t.offset_min) if t.reached else "-"
        if t.reached and t.offset_min is None:
            offset = "after end"
        timing_table.add_row(
            e.name,
            f"{e.threshold_ng_per_ml:g}",
            _fmt(t.onset_min),
            f"{t.peak_min:.1f}",
            f"{t.peak_ng_per_ml:.1f}",
            offset,
            f"{t.time_above_min:.1f}",
        )
    console.print(timing_table)


def _simulation_json(
    sim: Simulation, table_sim: Simulation, patient: Patient, doses: list[Dose]
) -> dict[str, Any]:
    return {
        "model": sim.model,
        "patient": asdict(patient),
        "doses": [asdict(d) for d in doses],
        "t_min": table_sim.t_min.tolist(),
        "cp_ng_per_ml": table_sim.cp_ng_per_ml.tolist(),
        "nk_cp_ng_per_ml": None if table_sim.nk_cp_ng_per_ml is None else table_sim.nk_cp_ng_per_ml.tolist(),
        "ce_ng_per_ml": {k: v.tolist() for k, v in table_sim.ce_ng_per_ml.items()},
        "timings": {k: asdict(v) for k, v in sim.timings.items()},
        "warnings": [asdict(w) for w in sim.warnings],
    }


def _population_json(result: PopulationResult) -> dict[str, Any]:
    return {
        "n_patients": result.n_patients,
        "percentiles": list(result.percentiles),
        "p_reach": result.p_reach,
        "p_analgesia_without_psychotomimetic": result.p_analgesia_without_psychotomimetic,
        "peak_percentiles_ng_per_ml": {k: v.tolist() for k, v in result.peak_percentiles.items()},
        "band_t_min": result.band_t_min.tolist(),
        "cp_bands_ng_per_ml": result.cp_bands.tolist(),
        "warnings": [asdict(w) for w in result.warnings],
    }


def _print_population(console: Console, result: PopulationResult) -> None:
    table = Table(title=f"{result.n_patients} virtual patients")
    table.add_column("endpoint")
    table.add_column("P(reach threshold)", justify="right")
    for p in result.percentiles:
        table.add_column(f"peak Ce p{p:g} (ng/mL)", justify="right")
    for name, prob in result.p_reach.items():
        table.add_row(name, f"{prob:.3f}", *[f"{v:.1f}" for v in result.peak_percentiles[name]])
    console.print(table)
    if result.p_analgesia_without_psychotomimetic is not None:
        console.print(
            "P(analgesic band reached without crossing the psychotomimetic one) = "
            f"{result.p_analgesia_without_psychotomimetic:.3f}"
        )


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _warn(warnings: tuple[ModelWarning, ...] | list[ModelWarning]) -> None:
    for w in warnings:
        typer.echo(f"warning: {w.message} [{w.source}]", err=True)


def simulate(
    dose: Annotated[list[str], typer.Option("--dose", help=DOSE_HELP)],
    model: Annotated[str, typer.Option(help=f"One of {', '.join(available_models())}.")] = (DEFAULT_MODEL),
    weight: Annotated[float, typer.Option(help="Weight in kg.")] = 70.0,
    age: Annotated[float, typer.Option(help="Age in years.")] = 40.0,
    sex: Annotated[str, typer.Option(help="male or female.")] = "male",
    end_min: Annotated[float, typer.Option(help="Simulated time in minutes.")] = 360.0,
    step_s: Annotated[float, typer.Option(help="Simulation grid in seconds.")] = 10.0,
    every_min: Annotated[float, typer.Option(help="Table row spacing in minutes.")] = 10.0,
    times: Annotated[str | None, typer.Option(help="Table times, e.g. '5,10,20,40'.")] = None,
    analgesia: Annotated[float | None, typer.Option(help="Analgesia threshold, ng/mL.")] = None,
    psychotomimetic: Annotated[float | None, typer.Option(help="Psychotomimetic threshold, ng/mL.")] = None,
    hypnosis: Annotated[float | None, typer.Option(help="Hypnosis threshold, ng/mL.")] = None,
    t_half_ke0: Annotated[
        float | None, typer.Option(help="Effect-site t1/2ke0 (min) for analgesia/psych.")
    ] = None,
    nk_weight: Annotated[float, typer.Option(help="Norketamine weight in the effect.")] = 0.0,
    population: Annotated[int, typer.Option(help="Number of virtual patients.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed for --population.")] = 0,
    allow_extrapolation: Annotated[
        bool, typer.Option(help="Allow a weight outside the model's validated range.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a plot (.png or .html).")] = None,
) -> None:
    """Simulate ketamine concentrations and effects for a dose schedule."""
    console = Console()
    try:
        if sex not in ("male", "female"):
            raise PharmacologyInputError(f"sex must be male or female, got {sex!r}")
        patient = Patient(weight, age, "female" if sex == "female" else "male")
        pk = get_model(model)
        range_problems = [w for w in check_patient(pk, patient) if w.code in _WEIGHT_CODES]
        if range_problems and not allow_extrapolation:
            raise PharmacologyInputError(
                range_problems[0].message + " (use --allow-extrapolation to run anyway)"
            )
        doses = [parse_dose(d, weight) for d in dose]
        endpoints = _endpoints(model, analgesia, psychotomimetic, hypnosis, t_half_ke0, nk_weight)
        if population < 0:
            raise PharmacologyInputError("--population must be zero or more")
        if plot is not None and plot.suffix.lower() not in (".png", ".html"):
            raise PharmacologyInputError(f"--plot must end in .png or .html, got {plot.name}")
        grid = output_times(end_min, step_s / S_PER_MIN)
        if population > 0:
            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("virtual patients", total=population)
                result = simulate_population(
                    doses,
                    n_patients=population,
                    model=model,
                    weight_kg=weight,
                    age_y=age,
                    female_fraction=1.0 if sex == "female" else 0.0,
                    seed=seed,
                    endpoints=endpoints,
                    t_min=grid,
                    progress=lambda done, _total: bar.update(task, completed=done),
                )
            _warn(result.warnings)
            if json_output:
                typer.echo(json.dumps(_population_json(result)))
            else:
                _print_population(console, result)
            if plot is not None:
                from ketacare.pharmacology.plots import population_figure, write_figure

                write_figure(population_figure(result, f"{population} virtual patients, {pk.title}"), plot)
            return
        sim = run_simulation(patient, doses, model=model, t_min=grid, endpoints=endpoints)
        table_times = (
            check_times(np.array([float(x) for x in times.split(",")]))
            if times
            else output_times(end_min, every_min)
        )
        table_sim = run_simulation(patient, doses, model=model, t_min=table_times, endpoints=endpoints)
        _warn(sim.warnings)
        if json_output:
            typer.echo(json.dumps(_simulation_json(sim, table_sim, patient, doses), default=_json_default))
        else:
            _print_simulation(console, sim, table_sim)
        if plot is not None:
            from ketacare.pharmacology.plots import simulation_figure, write_figure

            write_figure(simulation_figure(sim, f"{pk.title}, {weight:g} kg"), plot)
    except PharmacologyInputError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(f"bad number: {exc}") from None


def _json_default(value: object) -> object:
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
