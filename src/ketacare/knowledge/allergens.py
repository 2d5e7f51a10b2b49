"""Coded allergens from ``data/allergens.toml``: ingredients and brands, each with the ingredient
it contains. An allergy matches on the ingredient, never on a fragment of a name: "Ketalar" and
"Spravato" are ketamine and esketamine; "esketamine" is not matched because it contains
"ketamine" but because it is in the table."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class Allergen:
    key: str
    display: str
    kind: str  # ingredient or brand
    ingredient: str
    names: tuple[str, ...]
    rxnorm: str | None
    sourced: Sourced


@dataclass(frozen=True)
class HypersensitivityRule:
    ingredients: frozenset[str]
    sourced: Sourced
    ignored_words: frozenset[str]


@cache
def allergens() -> dict[str, Allergen]:
    return {
        str(r["key"]): Allergen(
            str(r["key"]),
            str(r["display"]),
            str(r["kind"]),
            str(r["ingredient"]),
            tuple(str(n) for n in r["names"]),
            str(r["rxnorm"]) if "rxnorm" in r else None,
            Sourced(r["source"], r["tag"]),
        )
        for r in _load("allergens.toml")["allergen"]
    }


@cache
def hypersensitivity_rule() -> HypersensitivityRule:
    d = _load("allergens.toml")
    return HypersensitivityRule(
        frozenset(d["hypersensitivity_ingredients"]),
        Sourced(d["hypersensitivity_source"], d["hypersensitivity_tag"]),
        frozenset(d["ignored_words"]),
    )


def normalised(name: str) -> str:
    """Lower case, whitespace collapsed, the table's ignored whole words dropped."""
    ignored = hypersensitivity_rule().ignored_words
    spaced = name.replace("®", " ® ").strip().lower()
    return " ".join(w for w in spaced.split() if w not in ignored)


@cache
def _by_name() -> dict[str, Allergen]:
    return {normalised(n): a for a in allergens().values() for n in (*a.names, a.display)}


def allergen_for(text: str) -> Allergen | None:
    """The coded allergen a free-text substance is by its exact normalised name, or None."""
    return _by_name().get(normalised(text))


def ingredient_of(code: str | None, text: str) -> str | None:
    """The ingredient of an allergy: its code when it has one, else its text by exact name."""
    if code is not None and code in allergens():
        return allergens()[code].ingredient
    found = allergen_for(text)
    return found.ingredient if found else None
