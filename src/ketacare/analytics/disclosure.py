"""Disclosure control for research outputs (pure: no I/O, no clock).

The rule (CMS cell-size suppression policy, as ``outcomes.toml`` sources it): no count of 1 to
10 is shown, nor can one be worked out from what is shown (a percentage or an interval beside
its denominator, a total minus the other groups, a denominator minus its numerator). Every
count the research report rests on is a *cell*; the linear relations between them are *lines*
(a total and its parts: the overall figure and the groups of one dimension; a denominator and
its numerator with its complement; a group's adverse events and its cells by term and grade).

1. Primary suppression: every cell of 1 to 10 is hidden, and every cell of a group of fewer
   than ``small_cell`` patients (its statistics describe a handful of people).
2. Complementary suppression, until nothing changes: a line with exactly one hidden cell would
   give it away by subtraction, so a second cell of the line is hidden (the smallest non-zero
   part, a group before the overall figure); where the line's total is shown, the hidden parts
   together must also reach ``small_cell`` (else their sum is itself a small count).
3. A check by linear algebra over each connected set of lines: a hidden cell that the shown
   cells determine exactly (the null space of the hidden cells' equations has no freedom in it)
   gets another cell of its lines hidden, and steps 2-3 repeat.

A figure (a percentage with its interval, a rate, a mean, a p-value, a median) is shown only
when every cell it rests on is shown. Kaplan-Meier curves stop before the first step with fewer
than ``small_cell`` at risk, and a median beyond that point is withheld.

Free text never reaches a research output: ``coded`` replaces any group label that is not a
catalogue code before the report is computed.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.linalg import null_space

from ketacare.analytics.extract import Columns
from ketacare.knowledge import pain_conditions
from ketacare.knowledge.protocols import ROUTES
from ketacare.knowledge.sessions import session_rules

HIDDEN = "*"
SMALL_GROUP = "suppressed (< {n} patients)"
PARTLY = "partly: * = a count of 1-{m}, or hidden so that one cannot be worked out"
OTHER = "other (not coded)"
CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

Cell = tuple[Any, ...]


@dataclass
class Line:
    """total = sum(parts)."""

    total: Cell
    parts: list[Cell]


@dataclass
class Cells:
    """Counts with the linear relations between them, and which are hidden."""

    small: int
    values: dict[Cell, int] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)
    hidden: set[Cell] = field(default_factory=set)
    _rests: int = 0

    def add(self, cell: Cell, value: int) -> None:
        self.values[cell] = int(value)

    def line(self, total: Cell, parts: Iterable[Cell]) -> None:
        """A total and its parts. Where the parts fall short of the total (a group left out, such
        as a route not recorded), the rest is an unseen part of its own; where they exceed it
        (a patient in two groups), the relation is kept as if exact: it is the attacker's best
        guess, so it is protected as one."""
        parts = [p for p in parts if p in self.values]
        if total not in self.values or not parts:
            return
        rest = self.values[total] - sum(self.values[p] for p in parts)
        if rest > 0:
            self._rests += 1
            cell: Cell = ("rest", self._rests)
            self.values[cell] = rest
            self.hidden.add(cell)
            parts.append(cell)
        self.lines.append(Line(total, parts))

    def sensitive(self, value: int) -> bool:
        return 0 < value < self.small

    def shown(self, *cells: Cell) -> bool:
        return all(c in self.values and c not in self.hidden for c in cells)

    # --- the suppression ------------------------------------------------------------------------

    def solve(self, primary: Iterable[Cell] = ()) -> set[Cell]:
        self.hidden |= {c for c, v in self.values.items() if self.sensitive(v)}
        self.hidden |= {c for c in primary if c in self.values}
        while True:
            self._complements()
            determined = self._determined()
            progress = False
            for cell in determined:
                for line in self.lines:
                    if (cell == line.total or cell in line.parts) and self._hide_one_more(line):
                        progress = True
                        break
            if not progress:  # none, or only cells whose every line is hidden (worth 0 to anyone)
                return self.hidden

    def _violated(self, line: Line) -> bool:
        cells = [line.total, *line.parts]
        unknown = [c for c in cells if c in self.hidden]
        if len(unknown) == 1:
            return True
        if line.total not in self.hidden:
            hidden_sum = sum(self.values[p] for p in line.parts if p in self.hidden)
            return self.sensitive(hidden_sum)
        return False

    def _hide_one_more(self, line: Line) -> bool:
        def cost(c: Cell) -> tuple[int, int]:
            overall = int(len(c) > 2 and c[1] == "all")
            return (int(self.values[c] == 0), overall * 10**9 + self.values[c])

        candidates = sorted((p for p in line.parts if p not in self.hidden), key=cost)
        if candidates:
            self.hidden.add(candidates[0])
            return True
        if line.total not in self.hidden:
            self.hidden.add(line.total)
            return True
        return False

    def _complements(self) -> None:
        changed = True
        while changed:
            changed = False
            for line in self.lines:
                while self._violated(line) and self._hide_one_more(line):
                    changed = True

    def _determined(self) -> list[Cell]:
        """Hidden cells that the shown cells pin down exactly, by linear algebra per connected
        set of lines."""
        by_cell: dict[Cell, list[int]] = defaultdict(list)
        for i, line in enumerate(self.lines):
            for c in (line.total, *line.parts):
                if c in self.hidden:
                    by_cell[c].append(i)
        seen: set[int] = set()
        found: list[Cell] = []
        for start in range(len(self.lines)):
            if start in seen:
                continue
            component, stack = [], [start]
            seen.add(start)
            while stack:
                i = stack.pop()
                component.append(i)
                line = self.lines[i]
                for c in (line.total, *line.parts):
                    for j in by_cell.get(c, ()):
                        if j not in seen:
                            seen.add(j)
                            stack.append(j)
            found.extend(self._determined_in(component))
        return found

    def _determined_in(self, component: list[int]) -> list[Cell]:
        hidden = sorted(
            {c for i in component for c in (self.lines[i].total, *self.lines[i].parts) if c in self.hidden},
            key=repr,
        )
        if not hidden:
            return []
        index = {c: k for k, c in enumerate(hidden)}
        matrix = np.zeros((len(component), len(hidden)))
        for row, i in enumerate(component):
            line = self.lines[i]
            if line.total in index:
                matrix[row, index[line.total]] -= 1.0
            for p in line.parts:
                if p in index:
                    matrix[row, index[p]] += 1.0
        free = null_space(matrix)
        if free.shape[1] == 0:
            return hidden
        weight = np.linalg.norm(free, axis=1)
        return [c for c, w in zip(hidden, weight, strict=True) if w < 1e-9]


# --- the research report's cells ---------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """A figure shown as the columns ``columns``: numerator / denominator (a proportion: with a
    complement cell, denominator - numerator, itself a count)."""

    columns: tuple[str, ...]
    numerator: str
    denominator: str
    proportion: bool = True


# The summary's cells (the counts each group's figures rest on) and how its columns show them.
SUMMARY_COUNTS = (
    "patients",
    "series",
    "sessions",
    "aborted",
    "evaluable",
    "r30",
    "r50",
    "r2",
    "pgic_n",
    "pgic_yes",
    "relief_n",
    "relief_events",
    "with_ae",
    "events",
    "needed",
    "mme_n",
    "follow_ups_due",
    "follow_ups_answered",
    "dropout_n",
    "dropouts",
    "primary_due",
    "relief_booster_events",
    "mme_patients",
    "mme_nonusers",
    "mme_nonusers_started",
)
LABELS = ("dimension", "group", "suppressed")
COUNTS_SHOWN = {
    "patients": "patients",
    "series": "series",
    "sessions": "sessions",
    "evaluable": "evaluable",
    "pgic_n": "pgic_n",
    "relief_n": "relief_n",
    "relief_events": "relief_events",
    "mme_n": "mme_n",
    "follow_ups_due": "follow_ups_due",
    "follow_ups_answered": "follow_ups_answered",
    "dropout_n": "dropout_n",
    "sessions_exposed": "attempted",
    "ae_events": "events",
    "primary_due": "primary_due",
    "relief_booster_events": "relief_booster_events",
    "mme_patients": "mme_patients",
    "mme_nonusers": "mme_nonusers",
    "mme_nonusers_started": "mme_nonusers_started",
}
RATIOS = (
    Ratio(("completion_pct", "completion_low", "completion_high"), "sessions", "attempted"),
    Ratio(("responder30_pct", "responder30_low", "responder30_high"), "r30", "evaluable"),
    Ratio(("responder50_pct", "responder50_low", "responder50_high"), "r50", "evaluable"),
    Ratio(("responder2pt_pct", "responder2pt_low", "responder2pt_high"), "r2", "evaluable"),
    # missing as non-response: the same responders over every series whose primary window is due
    Ratio(("responder30_mnr_pct", "responder30_mnr_low", "responder30_mnr_high"), "r30", "primary_due"),
    Ratio(("responder50_mnr_pct", "responder50_mnr_low", "responder50_mnr_high"), "r50", "primary_due"),
    Ratio(("responder2pt_mnr_pct", "responder2pt_mnr_low", "responder2pt_mnr_high"), "r2", "primary_due"),
    Ratio(("pgic_improved_pct", "pgic_improved_low", "pgic_improved_high"), "pgic_yes", "pgic_n"),
    Ratio(("patients_with_ae_pct", "patients_with_ae_low", "patients_with_ae_high"), "with_ae", "patients"),
    Ratio(("needed_intervention_pct", "needed_intervention_low", "needed_intervention_high"),
          "needed", "patients"),
    Ratio(("answered_pct", "answered_low", "answered_high"), "follow_ups_answered", "follow_ups_due"),
    Ratio(("dropout_pct", "dropout_low", "dropout_high"), "dropouts", "dropout_n"),
    Ratio(("ae_per_100_sessions", "ae_per_100_low", "ae_per_100_high"), "events", "attempted", False),
    # relief_n - relief_events: the censored series (no column of their own)
    Ratio((), "relief_events", "relief_n"),
    # relief_n - relief_booster_events: censored without a return for a new series
    Ratio((), "relief_booster_events", "relief_n"),
    # opioid non-users who stayed off opioids
    Ratio((), "mme_nonusers_started", "mme_nonusers"),
)  # fmt: skip
# figures that are not counts, shown when every count they describe is shown (the MME figures:
# the users' series and the patients they cluster in)
MME = ("mme_n", "mme_patients")
MEANS: dict[str, tuple[str, ...]] = {
    "nrs_change_mean": ("evaluable",),
    "nrs_change_low": ("evaluable",),
    "nrs_change_high": ("evaluable",),
    "mme_change_mean": MME,
    "mme_change_low": MME,
    "mme_change_high": MME,
    "mme_t_p": MME,
    "mme_wilcoxon_p": MME,
    # the false-discovery-rate adjusted p-values: set by the registry over the p-values shown
    "mme_t_p_bh": MME,
    "mme_wilcoxon_p_bh": MME,
}
# medians of relief: the Kaplan-Meier median with its interval, the interval-censored (Turnbull)
# median, and the median counting a return for a new series as a loss (needs its event count)
MEDIANS = ("relief_median_days", "relief_median_low", "relief_median_high", "relief_interval_median_days")
BOOSTER_MEDIAN = "relief_booster_median_days"
AE_LABELS = ("dimension", "group", "term", "grade", "suppressed")
AE_COUNTS = {"events": "events", "patients": "patients", "needed_intervention": "needed"}
AE_RATIOS = (
    Ratio(("patients_pct", "patients_low", "patients_high"), "patients", "patients"),
    Ratio(("per_100_sessions", "per_100_low", "per_100_high"), "events", "sessions", proportion=False),
)


def classified_summary_columns() -> set[str]:
    """Every summary column this module knows how to show safely: any other is withheld from
    research outputs (a new column needs its place here first)."""
    return (
        set(LABELS)
        | set(COUNTS_SHOWN)
        | {c for r in RATIOS for c in r.columns}
        | set(MEANS)
        | set(MEDIANS)
        | {BOOSTER_MEDIAN}
    )


def classified_ae_columns() -> set[str]:
    return set(AE_LABELS) | set(AE_COUNTS) | {c for r in AE_RATIOS for c in r.columns}


def _complement(name: str) -> str:
    return f"{name}~not"


def _rest(ratio: Ratio) -> str:
    """A proportion's complement cell (named by numerator and denominator: one numerator may
    have several denominators, e.g. responders over evaluable series and over series due)."""
    return _complement(f"{ratio.numerator}/{ratio.denominator}")


def build_cells(
    summary: list[dict[str, Any]],
    counts: Mapping[tuple[str, str], Mapping[str, int]],
    adverse: list[dict[str, Any]],
    small: int,
) -> tuple[Cells, set[Cell]]:
    """The cells and lines of a report's summary and adverse-event rows (unsuppressed), and the
    cells of groups too small to show at all."""
    cells = Cells(small)
    small_groups: set[Cell] = set()
    dims: dict[str, list[str]] = defaultdict(list)
    names: set[str] = set()
    for row in summary:
        dim, group = row["dimension"], row["group"]
        dims[dim].append(group)
        key = (dim, group)
        c = counts[key]
        for name in SUMMARY_COUNTS:
            cells.add(("s", dim, group, name), c[name])
        cells.add(("s", dim, group, "attempted"), c["sessions"] + c["aborted"])
        for ratio in RATIOS:
            if ratio.proportion:
                value = cells.values[("s", dim, group, ratio.denominator)] - c[ratio.numerator]
                cells.add(("s", dim, group, _rest(ratio)), value)
        names = {n[3] for n in cells.values if n[0] == "s"}
        if 0 < c["patients"] < small:
            small_groups |= {("s", dim, group, n) for n in names}
    ae_keys: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for row in adverse:
        dim, group, term, grade = row["dimension"], row["group"], row["term"], row["grade"]
        ae_keys[(dim, group)].append((term, grade))
        base = ("ae", dim, group, term, grade)
        cells.add((*base, "events"), row["events"])
        cells.add((*base, "patients"), row["patients"])
        cells.add((*base, "needed"), row["needed_intervention"])
        cells.add((*base, _complement("patients")), counts[(dim, group)]["patients"] - row["patients"])
        cells.add((*base, _complement("needed")), row["events"] - row["needed_intervention"])
        if ("s", dim, group, "patients") in small_groups:
            small_groups |= {(*base, n) for n in ("events", "patients", "needed")}
    # within a row: a denominator is its numerator and its complement
    for dim, groups in dims.items():
        for group in groups:
            s = ("s", dim, group)
            cells.line((*s, "attempted"), [(*s, "sessions"), (*s, "aborted")])
            for ratio in RATIOS:
                if ratio.proportion:
                    cells.line((*s, ratio.denominator), [(*s, ratio.numerator), (*s, _rest(ratio))])
            for term, grade in ae_keys.get((dim, group), []):
                a = ("ae", dim, group, term, grade)
                cells.line((*s, "patients"), [(*a, "patients"), (*a, _complement("patients"))])
                cells.line((*a, "events"), [(*a, "needed"), (*a, _complement("needed"))])
            # a group's adverse events are the sum of its cells by term and grade
            cells.line(
                (*s, "events"), [("ae", dim, group, t, g, "events") for t, g in ae_keys.get((dim, group), [])]
            )
    # across groups: each dimension's groups add up to the overall figure
    for dim, groups in dims.items():
        if dim == "all":
            continue
        for name in names:
            cells.line(("s", "all", "all", name), [("s", dim, g, name) for g in groups])
        for term, grade in ae_keys.get(("all", "all"), []):
            for name in ("events", "patients", "needed", _complement("patients"), _complement("needed")):
                cells.line(
                    ("ae", "all", "all", term, grade, name),
                    [
                        ("ae", dim, g, term, grade, name)
                        for g in groups
                        if (term, grade) in ae_keys.get((dim, g), [])
                    ],
                )
    return cells, small_groups


def at_risk_cut(timeline: list[float], at_risk: list[int], small: int) -> int:
    """How many points of a Kaplan-Meier curve to show: those before the first with fewer than
    ``small`` at risk."""
    for i, n in enumerate(at_risk):
        if n < small:
            return i
    return len(timeline)


def coded(value: str | None, allowed: Iterable[str] | None = None) -> str:
    """A group label or code as a research output may carry it: a catalogue value (``allowed``)
    or, without a catalogue, a lowercase code; anything else (free text) is "other (not coded)"."""
    if value is None:
        return OTHER
    if allowed is not None:
        return value if value in set(allowed) else OTHER
    return value if CODE.match(value) else OTHER


@dataclass
class Protected:
    summary: list[dict[str, Any]]
    adverse: list[dict[str, Any]]
    curve_points: dict[tuple[str, str], int]  # (dimension, group) -> points of its curve shown
    small_groups: int
    hidden_counts: int  # cells of 1 to small - 1 (the primary suppressions)


def protect(
    summary: list[dict[str, Any]],
    counts: Mapping[tuple[str, str], Mapping[str, int]],
    adverse: list[dict[str, Any]],
    curves: Mapping[tuple[str, str], tuple[list[float], list[int], float | None]],
    small: int,
) -> Protected:
    """The research rows of an unsuppressed report: every column not known to be safe withheld,
    every cell hidden as the module's rules say, shown as ``HIDDEN``. ``curves``: per group
    with a Kaplan-Meier curve, its timeline, the number at risk at each point and its median."""
    cells, small_cells = build_cells(summary, counts, adverse, small)
    cells.solve(small_cells)
    known_summary, known_ae = classified_summary_columns(), classified_ae_columns()
    out_summary, out_ae, cuts = [], [], {}
    small_groups = 0
    for row in summary:
        dim, group = row["dimension"], row["group"]
        s = ("s", dim, group)

        def shown(*names: str, s: Cell = s) -> bool:
            return cells.shown(*((*s, n) for n in names))

        out: dict[str, Any] = {c: (row[c] if c in LABELS else HIDDEN) for c in row}
        for column, name in COUNTS_SHOWN.items():
            if shown(name):
                out[column] = row[column]
        for ratio in RATIOS:
            if shown(ratio.numerator, ratio.denominator):
                out.update({c: row[c] for c in ratio.columns})
        for column, needs in MEANS.items():
            if column in row and shown(*needs):
                out[column] = row[column]
        timeline, at_risk, _ = curves.get((dim, group), ([], [], None))
        cut = at_risk_cut(timeline, at_risk, small) if shown("relief_n", "relief_events") else 0
        cuts[(dim, group)] = cut
        last = timeline[cut - 1] if cut else None
        booster = (BOOSTER_MEDIAN,) if shown("relief_booster_events") else ()
        for column in (*MEDIANS, *booster):
            if column not in row:
                continue
            value = row[column]
            whole_curve = value is None and cut == len(timeline)
            if cut and (whole_curve or (value is not None and last is not None and value <= last)):
                out[column] = value
        for column in row:
            if column not in known_summary:
                out[column] = HIDDEN
        whole = (*s, "patients") in small_cells
        small_groups += int(whole)
        hidden_any = any(out[c] == HIDDEN for c in row if c not in LABELS)
        out["suppressed"] = (
            SMALL_GROUP.format(n=small) if whole else PARTLY.format(m=small - 1) if hidden_any else False
        )
        out_summary.append(out)
    for row in adverse:
        dim, group = row["dimension"], row["group"]
        a = ("ae", dim, group, row["term"], row["grade"])
        s = ("s", dim, group)
        ae_out: dict[str, Any] = {c: (row[c] if c in AE_LABELS else HIDDEN) for c in row}
        for column, name in AE_COUNTS.items():
            if cells.shown((*a, name)):
                ae_out[column] = row[column]
        if cells.shown((*a, "patients"), (*s, "patients")):
            ae_out.update({c: row[c] for c in AE_RATIOS[0].columns})
        if cells.shown((*a, "events"), (*s, "attempted")):
            ae_out.update({c: row[c] for c in AE_RATIOS[1].columns})
        for column in row:
            if column not in known_ae:
                ae_out[column] = HIDDEN
        whole = (*s, "patients") in small_cells
        hidden_any = any(ae_out[c] == HIDDEN for c in row if c not in AE_LABELS)
        ae_out["suppressed"] = (
            SMALL_GROUP.format(n=small) if whole else PARTLY.format(m=small - 1) if hidden_any else False
        )
        out_ae.append(ae_out)
    primary = sum(1 for c, v in cells.values.items() if c[0] != "rest" and cells.sensitive(v))
    return Protected(out_summary, out_ae, cuts, small_groups, primary)


def conditions() -> set[str]:
    """The condition names a plan's indication takes from the catalogue."""
    return {c.name for c in pain_conditions()}


def ae_terms() -> set[str]:
    return {t.key for t in session_rules().ae_terms}


def ae_label(term_key: str) -> str:
    """An adverse event's term as the registry shows it: the catalogue's term for its key; an
    uncoded "other" event (its name typed as free text) only as "other (not coded)"."""
    term = session_rules().ae_term(term_key)
    return OTHER if term is None or term_key == "other" else term.term


def _recode(table: pa.Table, column: str, allowed: set[str] | None, empty_ok: bool = True) -> pa.Table:
    values = [
        v if v is None or (empty_ok and v == "") else coded(v, allowed)
        for v in table.column(column).to_pylist()
    ]
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), pa.array(values, pa.string()))


def coded_columns(cols: Columns) -> Columns:
    """The registry's columns with every label a research output could show made a catalogue
    code: a condition not in the condition catalogue, a route not in the protocol library's
    routes, a protocol key that is not a code, an adverse-event term key not in the catalogue,
    all become "other (not coded)" (and group together)."""
    series = _recode(cols.series, "condition", conditions())
    series = _recode(series, "route", set(ROUTES))
    series = _recode(series, "protocol", None)
    adverse = _recode(cols.adverse_events, "term_key", ae_terms(), empty_ok=False)
    return dataclasses.replace(cols, series=series, adverse_events=adverse)
