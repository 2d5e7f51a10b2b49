"""The registry report as Plotly figures, a standalone HTML page (Plotly's JavaScript inlined
from the installed package: it opens offline) and one CSV per table."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ketacare.analytics.registry import Report, Table
from ketacare.exports import frame_csv
from ketacare.knowledge.outcomes import outcome_rules, registry_definitions

LABELS = {
    "responder30": "≥ 30% NRS reduction",
    "responder50": "≥ 50% NRS reduction",
    "responder2pt": "≥ 2-point NRS reduction",
    "pgic_improved": "PGIC much / very much improved",
    "patients_with_ae": "patients with an adverse event",
    "needed_intervention": "patients with an AE needing medical intervention",
}


def _bars(rows: list[dict[str, Any]], keys: list[str], title: str) -> dict[str, Any]:
    traces = []
    for key in keys:
        # a figure withheld by disclosure control (``disclosure.HIDDEN``) is not drawn
        shown = [
            r
            for r in rows
            if all(isinstance(r.get(f"{key}_{p}"), int | float) for p in ("pct", "low", "high"))
        ]
        traces.append(
            {
                "type": "bar",
                "name": LABELS[key],
                "x": [r["group"] for r in shown],
                "y": [r[f"{key}_pct"] for r in shown],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [r[f"{key}_high"] - r[f"{key}_pct"] for r in shown],
                    "arrayminus": [r[f"{key}_pct"] - r[f"{key}_low"] for r in shown],
                },
            }
        )
    return {
        "data": traces,
        "layout": {
            "title": {"text": title},
            "template": "plotly_white",
            "barmode": "group",
            "yaxis": {"title": {"text": "% (Wilson 95% CI)"}, "range": [0, 100]},
            "legend": {"orientation": "h", "y": -0.25},
            "margin": {"t": 40},
        },
    }


def figures(report: Report) -> dict[str, dict[str, Any]]:
    by_condition = [r for r in report.table("summary").rows if r["dimension"] in ("all", "condition")]
    figs = {
        "responders": _bars(
            by_condition,
            ["responder30", "responder50", "responder2pt", "pgic_improved"],
            "Responders at the primary follow-up (week 4) by condition",
        ),
        "safety": _bars(
            by_condition,
            ["patients_with_ae", "needed_intervention"],
            "Adverse events by condition (per patient)",
        ),
    }
    traces = []
    for name, km in report.relief_curves.items():
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "line": {"shape": "hv"},
                "name": name,
                "x": km.timeline,
                "y": km.survival,
            }
        )
    figs["relief"] = {
        "data": traces,
        "layout": {
            "title": {"text": "Duration of relief (Kaplan-Meier)"},
            "template": "plotly_white",
            "xaxis": {"title": {"text": "days from the end of the series"}},
            "yaxis": {"title": {"text": "still responding"}, "range": [0, 1.05]},
            "legend": {"orientation": "h", "y": -0.25},
            "margin": {"t": 40},
        },
    }
    return figs


def _table_html(table: Table) -> str:
    head = "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in table.columns)
        + "</tr>"
        for r in table.rows
    )
    return (
        f"<h2>{html.escape(table.title)}</h2><div class='scroll'><table>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def notes(report: Report) -> list[str]:
    r = outcome_rules()
    result = [
        f"Responder thresholds: {r.pct.source} [{r.pct.tag}]; {r.points.source} [{r.points.tag}].",
        f"PGIC: {r.pgic.source} [{r.pgic.tag}].",
        f"Duration of relief: {r.relief.source} [{r.relief.tag}]; {r.window.source} [{r.window.tag}].",
        f"Intervals: {r.confidence_sourced.source} [{r.confidence_sourced.tag}].",
        *definition_notes(),
    ]
    if report.scope == "research":
        result.append(
            f"Small cells: {r.small_cell_sourced.source} [{r.small_cell_sourced.tag}]. "
            f"* = a count of 1 to {r.small_cell - 1}, or a figure hidden so that such a count cannot be "
            f"worked out; {report.suppressed_groups} groups of under {r.small_cell} patients hidden whole; "
            f"Kaplan-Meier curves stop before fewer than {r.small_cell} remain at risk."
        )
        result.append(
            'Free text: none. Adverse events named in free text count as "other (not coded)"; group '
            "labels are catalogue codes."
        )
    return result


def definition_notes() -> list[str]:
    """How each figure is defined, in words a clinician reads, with its source."""
    d = registry_definitions()
    return [
        f"Baseline: {d.baseline.source} [{d.baseline.tag}].",
        f"Primary follow-up: {d.primary.source} [{d.primary.tag}].",
        "Responders are shown two ways: complete-case ('evaluable' series, with a baseline and a "
        "primary follow-up) and, in the '_mnr' columns, with a missing primary follow-up counted as "
        f"no response ('primary due' series). {d.missing.source} [{d.missing.tag}].",
        "Follow-ups belong to the series they follow; baseline and end-of-session questionnaires "
        "are not follow-ups. Follow-ups due and answered, and dropout, count each series' own.",
        "Duration of relief: Kaplan-Meier with a loss dated at the follow-up that found it (the "
        "latest it can be); follow-ups are days apart, so the loss is interval-censored, and the "
        "'relief interval median' is the Turnbull estimate on those intervals (lifelines). A series "
        "without a loss is censored at its last follow-up, not at the next series. Returning for a "
        "booster may mean relief is waning (informative censoring): the 'booster' columns count such "
        "a return as a loss. Each patient's first responding series in a group.",
        "Adverse events per 100 sessions: the events of a series' discharged and aborted sessions over "
        "those same sessions (aborted sessions in both); by catalogue code.",
        f"Opioids: {d.mme.source} [{d.mme.tag}].",
        f"Dropout: {d.dropout.source} [{d.dropout.tag}].",
        f"Several series per patient: {d.clustering.source} [{d.clustering.tag}].",
    ]


def standalone_html(report: Report) -> str:
    from plotly.offline import get_plotlyjs

    figs = figures(report)
    divs = "".join(f"<div id='fig-{k}' style='height:420px'></div>" for k in figs)
    calls = "".join(
        f"Plotly.newPlot('fig-{k}', {json.dumps(f['data'])}, {json.dumps(f['layout'])}, "
        "{responsive: true});"
        for k, f in figs.items()
    )
    tables = "".join(_table_html(t) for t in report.tables.values())
    note = "".join(f"<li>{html.escape(n)}</li>" for n in notes(report))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>KetaCare registry report</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 4px}.scroll{overflow-x:auto}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>KetaCare registry report ({html.escape(report.scope)}, as of {report.as_of.isoformat()})</h1>"
        f"<ul>{note}</ul>{divs}{tables}<script>{calls}</script></body></html>"
    )


def write(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in report.tables.values():
        path = out / f"{table.name}.csv"
        frame_csv(table.frame(), path)
        written.append(path)
    page = out / "registry.html"
    page.write_text(standalone_html(report), encoding="utf-8")
    written.append(page)
    return written
