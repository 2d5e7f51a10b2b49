"""Every clinical number sourced or a visible clinic setting (issue 14, item 9).

The rules modules hold no bare clinical number: a threshold, cut-off or bound comes from the
knowledge data (src/ketacare/knowledge/data/*.toml, each with a source and tag) or from a clinic
setting. This AST scan fails on a new numeric literal in a rules module unless it is 0 or 1, a
unit conversion (minutes, seconds, percent), the digits of ``round``, or on the explicit,
justified allow-list below. House rule: "NEVER invent a clinical number"."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ketacare

SRC = Path(ketacare.__file__).resolve().parent

# The modules whose decisions are clinical: every feature's rules.py, and the pure rule modules
# that have another name.
RULE_MODULES = sorted(
    {p.relative_to(SRC).as_posix() for p in SRC.glob("*/rules.py")}
    | {
        "planning/costing.py",  # billing cut-offs
        "screening/eligibility.py",
        "safety/monitoring.py",
        "pharmacology/effects.py",  # PD thresholds used by the app
    }
)

ALWAYS = {0, 1}
UNIT_CONVERSIONS = {60, 3600, 100}  # minutes in an hour, seconds in an hour, percent

# (module, value) -> why the literal is not a clinical number, or where its source is shown.
ALLOWED: dict[tuple[str, float], str] = {
    ("ledger/rules.py", 1000): "micrograms per milligram (a unit conversion)",
    ("ledger/rules.py", 8): "the position of a DEA number's check digit (format, not clinical)",
    ("ledger/rules.py", 2): "the first two letters of a DEA number (format, not clinical)",
    ("ledger/rules.py", 5): "weekday() < 5: Monday to Friday (calendar)",
    ("ledger/rules.py", 12): "months in a year (calendar)",
    ("prescribing/rules.py", 12): "months in a year (calendar)",
    ("pharmacology/effects.py", 2): "log(2): a half-life to a rate constant (mathematics)",
    ("pharmacology/effects.py", 1e-300): "a numerical floor against log(0) (mathematics)",
    ("sessions/rules.py", 1e-09): "floating-point tolerance when comparing a dose to a limit (mathematics)",
    ("sessions/rules.py", 1e-06): "floating-point tolerance when comparing mg totals (mathematics)",
    # PD thresholds: each Endpoint carries its literature source in ``source``, shown with the
    # value wherever the app shows an endpoint (Hornik 2018, Zanos 2018, Idvall 1979, Olofsen 2022).
    (
        "pharmacology/effects.py",
        3.0,
    ): "norketamine one third of ketamine's potency, sourced inline (Fanta 2015)",
    ("pharmacology/effects.py", 100.0): "analgesia 100 ng/mL, sourced inline (Hornik 2018)",
    ("pharmacology/effects.py", 150.0): "psychotomimetic 150 ng/mL, sourced inline (Zanos 2018)",
    ("pharmacology/effects.py", 640.0): "awakening 0.64 ug/mL, sourced inline (Idvall 1979)",
    ("pharmacology/effects.py", 121.0): "S-ketamine C50 121 ng/mL, sourced inline (Olofsen 2022)",
    ("pharmacology/effects.py", 8.3): "t1/2ke0 8.3 min, sourced inline (Olofsen 2022)",
    ("pharmacology/effects.py", 0.25): "hypnosis t1/2ke0 0.25 min, sourced inline (design, facts 4)",
    # The range a clinic may set a safety interval to (the defaults themselves are in
    # safety.toml with their sources): bounds on a setting's input, shown on the settings page.
    ("safety/monitoring.py", 7): "the shortest liver/bladder interval a clinic may set (input bound, design)",
    ("safety/monitoring.py", 365): "the longest liver-test interval a clinic may set (input bound, design)",
    (
        "safety/monitoring.py",
        180,
    ): "the longest bladder-screen interval a clinic may set (input bound, design)",
    (
        "safety/monitoring.py",
        2,
    ): "the fewest sessions that count as repeated a clinic may set (input bound, design)",
    (
        "safety/monitoring.py",
        20,
    ): "the most sessions that count as repeated a clinic may set (input bound, design)",
    (
        "screening/eligibility.py",
        10,
    ): "the shortest override reason in characters (design: a sentence, not a tick)",
}


def _round_digits(tree: ast.Module) -> set[int]:
    """ids of the literals that are the ``ndigits`` of a round() call."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        is_round = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "round"
        if is_round and isinstance(node, ast.Call) and len(node.args) == 2:
            ids.add(id(node.args[1]))
    return ids


def bare_numbers(rel: str, source: str) -> list[tuple[int, float]]:
    tree = ast.parse(source, filename=rel)
    digits = _round_digits(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
            continue
        if not isinstance(node.value, (int, float)) or id(node) in digits:
            continue
        value = node.value
        if value in ALWAYS or value in UNIT_CONVERSIONS or (rel, value) in ALLOWED:
            continue
        found.append((node.lineno, value))
    return found


def test_no_bare_clinical_number_in_a_rules_module() -> None:
    offences = [
        f"{rel}:{line}: {value!r}"
        for rel in RULE_MODULES
        for line, value in bare_numbers(rel, (SRC / rel).read_text())
    ]
    assert not offences, (
        "move the number into knowledge/data/*.toml with its source and tag (or a clinic setting), "
        "or justify it in ALLOWED:\n" + "\n".join(offences)
    )


@pytest.mark.parametrize(
    ("snippet", "caught"),
    [
        ("def ok(spo2, base):\n    return spo2 < min(base - 2, 94)\n", [2, 94]),  # the old discharge rule
        ("def ok(x):\n    return round(x * 60 / 100, 2)\n", []),  # unit conversions and digits
        ("LIMIT = 0.35\n", [0.35]),
        ("def ok(x):\n    return x > 1\n", []),
    ],
)
def test_the_scan_catches_a_bare_number(snippet: str, caught: list[float]) -> None:
    assert sorted(v for _, v in bare_numbers("sessions/rules.py", snippet)) == caught


def test_every_allowed_entry_is_still_used() -> None:
    """An allow-list entry whose number left the module is removed, so the list stays honest."""
    used = set()
    for rel in RULE_MODULES:
        tree = ast.parse((SRC / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
                used.add((rel, node.value))
    assert set(ALLOWED) <= used, sorted(set(ALLOWED) - used)


def test_the_discharge_spo2_rule_and_billing_cut_offs_come_from_knowledge() -> None:
    from ketacare.knowledge.billing import billing_cutoffs
    from ketacare.knowledge.sessions import session_rules

    d = session_rules().discharge
    assert (d["spo2_drop_points"], d["spo2_floor_pct"], d["spo2_tag"]) == (2.0, 94.0, "design")
    cut = billing_cutoffs()
    assert (cut.push_max_min, cut.initial_hour_min, cut.add_on_grace_min, cut.esketamine_low_max_mg) == (
        15,
        60,
        30,
        56.0,
    )
    assert "clinical-facts" not in d["spo2_source"] and "clinical-facts" not in cut.sourced.source
