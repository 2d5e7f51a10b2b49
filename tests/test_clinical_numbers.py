"""Every clinical number sourced or a visible clinic setting (issue 14, item 9).

The rules modules hold no bare clinical number: a threshold, cut-off or bound comes from the
knowledge data (src/ketacare/knowledge/data/*.toml, each with a source and tag) or from a clinic
setting. This AST scan fails on a new numeric literal in a rules module unless it is 0 or 1, a
unit conversion (minutes, seconds, percent), the digits of ``round``, or on the explicit,
justified allow-list below. House rule: "NEVER invent a clinical number"."""

from __future__ import annotations

import ast
import re
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


# --- input bounds in schemas.py ------------------------------------------------------------
# A clinical input (a weight, a height, a vital sign) is bounded by one sourced table: the adult
# outer bounds in dose_limits.toml [adult], the plausibility ranges in sessions.toml [plausible].
# A numeric literal as the bound of such a field, or as a module constant named after one, fails.
SCHEMA_MODULES = sorted(p.relative_to(SRC).as_posix() for p in SRC.glob("**/schemas.py"))
CLINICAL_FIELD = re.compile(
    r"^(weight(_kg)?|height(_cm)?|bmi|sbp(_mmhg)?|dbp(_mmhg)?|map|hr|heart_rate|spo2|rr|temp(_c)?|etco2)$",
    re.IGNORECASE,
)
CLINICAL_CONSTANT = re.compile(r"(WEIGHT|HEIGHT|SBP|DBP|SPO2|BMI|TEMP)", re.IGNORECASE)
BOUNDS = {"ge", "gt", "le", "lt"}


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    is_constant = isinstance(node, ast.Constant) and not isinstance(node.value, bool)
    return is_constant and isinstance(node.value, (int, float))


def bare_schema_bounds(rel: str, source: str) -> list[str]:
    tree = ast.parse(source, filename=rel)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if not CLINICAL_FIELD.match(node.target.id) or not isinstance(node.value, ast.Call):
                continue
            for kw in node.value.keywords:
                if kw.arg in BOUNDS and _is_number(kw.value):
                    found.append(f"{rel}:{node.lineno}: {node.target.id} {kw.arg}={ast.unparse(kw.value)}")
        elif isinstance(node, ast.Assign) and node.col_offset == 0:
            names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            values = [v for v in ast.walk(node.value) if _is_number(v)]
            if any(CLINICAL_CONSTANT.search(n) for n in names) and values:
                found.append(f"{rel}:{node.lineno}: {', '.join(names)} = {ast.unparse(node.value)}")
    return found


def test_no_bare_clinical_bound_in_a_schema() -> None:
    offences = [o for rel in SCHEMA_MODULES for o in bare_schema_bounds(rel, (SRC / rel).read_text())]
    assert not offences, (
        "bound a clinical input from the knowledge data (dose_limits.toml [adult], sessions.toml "
        "[plausible]):\n" + "\n".join(offences)
    )


@pytest.mark.parametrize(
    ("snippet", "caught"),
    [
        ("class A:\n    weight_kg: float = Field(gt=20, le=350)\n", 2),  # the old pre-check bound
        ("class A:\n    sbp_mmhg: float | None = Field(default=None, ge=50, le=300)\n", 2),
        ("WEIGHT_KG_MIN, WEIGHT_KG_MAX = 25.0, 350.0\n", 1),
        ("class A:\n    sbp: float = Field(ge=_P['sbp'][0], le=_P['sbp'][1])\n", 0),
        ("class A:\n    quantity: float = Field(gt=0, le=100)\n", 0),  # not a clinical field
    ],
)
def test_the_schema_scan_catches_a_bare_bound(snippet: str, caught: int) -> None:
    assert len(bare_schema_bounds("x/schemas.py", snippet)) == caught


def test_schema_bounds_follow_the_knowledge_tables() -> None:
    from pydantic import ValidationError

    from ketacare.knowledge.dose_limits import adult_bounds
    from ketacare.knowledge.sessions import session_rules
    from ketacare.screening.schemas import ScreeningIn
    from ketacare.sessions.schemas import PrecheckIn

    adult, plaus = adult_bounds(), session_rules().plausible
    fields = PrecheckIn.model_fields
    for name, (lo, hi) in {
        "weight_kg": (adult.weight_outer_min_kg, adult.weight_outer_max_kg),
        "sbp": plaus["sbp"],
        "dbp": plaus["dbp"],
        "hr": plaus["hr"],
        "spo2": plaus["spo2"],
        "rr": plaus["rr"],
    }.items():
        metadata = {type(m).__name__: m for m in fields[name].metadata}
        assert (metadata["Ge"].ge, metadata["Le"].le) == (lo, hi), name
    base = {"answers": {}, "prior_therapies": []}
    for field, (lo, hi) in (("sbp_mmhg", plaus["sbp"]), ("dbp_mmhg", plaus["dbp"])):
        ScreeningIn(**base, **{field: lo})
        ScreeningIn(**base, **{field: hi})
        for bad in (lo - 1, hi + 1):
            with pytest.raises(ValidationError):
                ScreeningIn(**base, **{field: bad})


def test_pd_thresholds_come_from_a_sourced_table() -> None:
    """Each endpoint value in pharmacology/endpoints.toml has its source and tag; the module
    reads them (no literal left in effects.py: the bare-number scan above covers it)."""
    import tomllib

    from ketacare.pharmacology import effects

    data = tomllib.loads((SRC / "pharmacology" / "endpoints.toml").read_text())
    rows = data["endpoint"]
    for row in rows:
        for part in ("threshold", "ke0"):
            assert row[f"{part}_source"] and row[f"{part}_tag"] in ("V", "V*", "M", "design"), row
    loaded = {(e.name, e.threshold_ng_per_ml, e.t_half_ke0_min) for e in effects.RACEMIC_ENDPOINTS}
    assert loaded == {
        (r["name"], r["threshold_ng_per_ml"], r["t_half_ke0_min"]) for r in rows if r["drug"] == "racemic"
    }
    assert effects.NK_WEIGHT_ONE_THIRD == 1.0 / 3.0
    assert data["norketamine"]["potency_tag"] == "V"


# --- internal wording never shown to users ---------------------------------------------------
INTERNAL_WORDING = re.compile(
    r"not in the facts|facts file|\bthe facts\b|clinical-facts|facts'|\bfacts (sections? )?\d", re.IGNORECASE
)
DATA_DIRS = ("knowledge/data", "pharmacology")


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}[{i}]")]
    return []


def internal_wording(rel: str, text: str) -> list[str]:
    import tomllib

    strings = _strings(tomllib.loads(text), "")
    return [f"{rel}{path}: {s}" for path, s in strings if INTERNAL_WORDING.search(s)]


def test_no_internal_wording_in_user_visible_data() -> None:
    """Every string value of the knowledge and pharmacology data can reach a page: it cites the
    public source, never our own research notes ("Not in the facts", "the facts file")."""
    offences = [
        o
        for folder in DATA_DIRS
        for path in sorted((SRC / folder).rglob("*.toml"))
        for o in internal_wording(path.relative_to(SRC).as_posix(), path.read_text())
    ]
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize(
    ("text", "caught"),
    [
        ('source = "Not in the facts: a clinic default (design)"\n', 1),
        ('sampling = "not stated in the facts file"\n', 1),
        ('[a]\nx = ["Clinic defaults near the facts\' examples"]\n', 1),
        ('# the facts say so (a comment is not shown)\nsource = "ASRA 2018 (V)"\n', 0),
        ('reason = "no plasma data (facts sections 2 and 7)"\n', 1),
        ('citation = "Domino 1984 [M] (facts 1.1, 1.4)"\n', 1),
        ('source = "No published source gives this number: a clinic default (design)"\n', 0),
    ],
)
def test_the_wording_scan_catches_internal_phrases(text: str, caught: int) -> None:
    assert len(internal_wording("x.toml", text)) == caught


def _code_strings(source: str) -> list[tuple[int, str]]:
    """The string literals of a module that can reach a person: not docstrings (comments are not
    strings at all)."""
    tree = ast.parse(source)
    docstrings = {  # a bare string statement: a docstring, also after an attribute
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_internal_wording_in_code_strings_or_templates() -> None:
    """Messages, sources and labels written in the code or the templates cite the public source
    too (the same class of defect as in the data files)."""
    offences = [
        f"{path.relative_to(SRC).as_posix()}:{line}: {text[:120]}"
        for path in sorted(SRC.rglob("*.py"))
        for line, text in _code_strings(path.read_text())
        if INTERNAL_WORDING.search(text)
    ]
    offences += [
        f"{path.relative_to(SRC).as_posix()}: {match.group(0)}"
        for path in sorted(SRC.rglob("*.html"))
        for match in INTERNAL_WORDING.finditer(re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S))
    ]
    assert not offences, "\n".join(offences)
