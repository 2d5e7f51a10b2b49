"""An attacker's reading of the research report, written apart from ``analytics/disclosure.py``:
parse every number of the summary and adverse-event CSVs, recover counts from percentages and
rates beside their denominators (and denominators from numerators), then subtract along every
row, column and total until nothing new comes out. ``small_cells_found`` counts the cells of
1 to 10 that are shown or recovered exactly (compared with the truth: the unsuppressed report)."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from typing import Any

import pandas as pd

COUNTS = ("patients", "series", "sessions", "evaluable", "pgic_n", "relief_n", "relief_events",
          "mme_n", "follow_ups_due", "follow_ups_answered", "dropout_n", "primary_due",
          "relief_booster_events", "mme_patients", "mme_nonusers", "mme_nonusers_started")  # fmt: skip
# count columns shown under another cell's name
RENAMED = {"sessions_exposed": "attempted", "ae_events": "events"}
# (total, part): the rest is a count too
PARTS = (("relief_n", "relief_events"), ("relief_n", "relief_booster_events"),
         ("mme_nonusers", "mme_nonusers_started"))  # fmt: skip
# (column prefix, numerator name, denominator name)
PROPORTIONS = (
    ("completion", "sessions", "attempted"),
    ("responder30", "r30", "evaluable"),
    ("responder50", "r50", "evaluable"),
    ("responder2pt", "r2", "evaluable"),
    ("responder30_mnr", "r30", "primary_due"),
    ("responder50_mnr", "r50", "primary_due"),
    ("responder2pt_mnr", "r2", "primary_due"),
    ("pgic_improved", "pgic_yes", "pgic_n"),
    ("patients_with_ae", "with_ae", "patients"),
    ("needed_intervention", "needed", "patients"),
    ("answered", "follow_ups_answered", "follow_ups_due"),
    ("dropout", "dropouts", "dropout_n"),
)


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return float(value)
    except ValueError:
        return None  # "*" or a label


def read_csv(text: str) -> list[dict[str, Any]]:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False).to_dict("records")  # type: ignore[no-any-return]


def true_counts(summary: list[dict[str, Any]], adverse: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    """Every cell's true value, from the unsuppressed report's rows (counts recovered from the
    unrounded figures where the row holds only a percentage)."""
    cells: dict[tuple[Any, ...], int] = {}
    for r in summary:
        s = ("s", r["dimension"], r["group"])
        for c in COUNTS:
            cells[(*s, c)] = int(r[c])
        for prefix, k, n in PROPORTIONS:
            if prefix == "completion":
                continue
            pct = r[f"{prefix}_pct"]
            cells[(*s, k)] = round(pct * r[n] / 100) if pct is not None else 0
            cells[(*s, f"{k}/{n}-not")] = r[n] - cells[(*s, k)]
        attempted = int(r["sessions_exposed"])
        cells[(*s, "attempted")] = attempted
        cells[(*s, "sessions/attempted-not")] = attempted - r["sessions"]
        cells[(*s, "events")] = int(r["ae_events"])
        for total, part in PARTS:
            cells[(*s, f"{part}/{total}-not")] = r[total] - r[part]
    for r in adverse:
        a = ("ae", r["dimension"], r["group"], str(r["term"]), str(r["grade"]))
        cells[(*a, "events")] = int(r["events"])
        cells[(*a, "patients")] = int(r["patients"])
        cells[(*a, "needed")] = int(r["needed_intervention"])
    return cells


class Attack:
    def __init__(self, summary: list[dict[str, Any]], adverse: list[dict[str, Any]]) -> None:
        self.known: dict[tuple[Any, ...], float] = {}
        self.shown: set[tuple[Any, ...]] = set()
        self.lines: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = []
        self.ratios: list[tuple[tuple[Any, ...], tuple[Any, ...], float | None, tuple[Any, ...]]] = []
        groups: dict[str, list[str]] = defaultdict(list)
        for r in summary:
            groups[r["dimension"]].append(r["group"])
            s = ("s", r["dimension"], r["group"])
            for c in COUNTS:
                self._show((*s, c), _num(r[c]))
            for column, c in RENAMED.items():
                self._show((*s, c), _num(r[column]))
            for prefix, k, n in PROPORTIONS:
                pct = _num(r[f"{prefix}_pct"])
                self.ratios.append(((*s, k), (*s, n), pct, (*s, f"{k}/{n}-not")))
                self.lines.append(((*s, n), [(*s, k), (*s, f"{k}/{n}-not")]))
            for total, part in PARTS:
                self.lines.append(((*s, total), [(*s, part), (*s, f"{part}/{total}-not")]))
            rate = _num(r["ae_per_100_sessions"])
            self.ratios.append(((*s, "events"), (*s, "attempted"), rate, ()))
        ae_by_group: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for r in adverse:
            a = ("ae", r["dimension"], r["group"], str(r["term"]), str(r["grade"]))
            s = ("s", r["dimension"], r["group"])
            ae_by_group[(r["dimension"], r["group"])].append((str(r["term"]), str(r["grade"])))
            self._show((*a, "events"), _num(r["events"]))
            self._show((*a, "patients"), _num(r["patients"]))
            self._show((*a, "needed"), _num(r["needed_intervention"]))
            self.ratios.append(
                ((*a, "patients"), (*s, "patients"), _num(r["patients_pct"]), (*a, "patients-not"))
            )
            self.lines.append(((*s, "patients"), [(*a, "patients"), (*a, "patients-not")]))
            self.ratios.append(((*a, "events"), (*s, "attempted"), _num(r["per_100_sessions"]), ()))
            self.lines.append(((*a, "events"), [(*a, "needed"), (*a, "needed-not")]))
        for (dim, group), keys in ae_by_group.items():
            self.lines.append(
                (("s", dim, group, "events"), [("ae", dim, group, t, g, "events") for t, g in keys])
            )
        names = {c[3] for line in self.lines for c in (line[0], *line[1]) if c[0] == "s"} | set(COUNTS)
        for dim, gs in groups.items():
            if dim == "all":
                continue
            for name in names:
                self.lines.append((("s", "all", "all", name), [("s", dim, g, name) for g in gs]))
            for t, g in ae_by_group.get(("all", "all"), []):
                for name in ("events", "patients", "needed", "patients-not", "needed-not"):
                    parts = [("ae", dim, grp, t, g, name) for grp in gs if (t, g) in ae_by_group[(dim, grp)]]
                    self.lines.append((("ae", "all", "all", t, g, name), parts))

    def _show(self, cell: tuple[Any, ...], value: float | None) -> None:
        if value is not None:
            self.known[cell] = value
            self.shown.add(cell)

    def run(self) -> dict[tuple[Any, ...], float]:
        """Every cell the attacker knows (shown or derived)."""
        changed = True
        while changed:
            changed = False
            for k, n, rate, comp in self.ratios:
                if rate is not None and n in self.known and k not in self.known:
                    self.known[k] = round(rate * self.known[n] / 100)
                    changed = True
                if rate and k in self.known and n not in self.known:
                    self.known[n] = round(self.known[k] * 100 / rate)
                    changed = True
                if comp and k in self.known and n in self.known and comp not in self.known:
                    self.known[comp] = self.known[n] - self.known[k]
                    changed = True
            for total, parts in self.lines:
                cells = [total, *parts]
                unknown = [c for c in cells if c not in self.known]
                if len(unknown) != 1:
                    continue
                (cell,) = unknown
                if cell == total:
                    self.known[cell] = sum(self.known[p] for p in parts)
                else:
                    self.known[cell] = self.known[total] - sum(self.known[p] for p in parts if p != cell)
                changed = True
        return self.known


def small_cells_found(
    research: tuple[list[dict[str, Any]], list[dict[str, Any]]], truth: dict[tuple[Any, ...], int]
) -> list[tuple[tuple[Any, ...], int]]:
    """The cells of 1 to 10 the attacker has exactly (shown, or derived and right)."""
    known = Attack(*research).run()
    return sorted(
        ((cell, value) for cell, value in truth.items() if 0 < value < 11 and known.get(cell) == value),
        key=repr,
    )
