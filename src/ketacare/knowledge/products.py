"""Stocked ketamine products from ``data/products.toml``: the coded ingredient (ketamine or
esketamine) and the dosage form from a fixed list, each form with the routes it may be given by.

``fit_problem`` is the one rule of "the right product for the route": every place a lot is drawn
for an administration (the session's lot picker, the ledger's administration entry) asks it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ketacare.knowledge import Sourced, _load

ROUTE_LABELS = {
    "iv_infusion": "IV infusion",
    "iv_bolus": "IV bolus",
    "im": "intramuscular",
    "oral": "oral",
    "sublingual": "sublingual",
    "intranasal": "intranasal",
    "topical": "topical",
    "esketamine_nasal": "esketamine nasal spray",
}


@dataclass(frozen=True)
class Ingredient:
    key: str
    label: str
    sourced: Sourced


@dataclass(frozen=True)
class DosageForm:
    key: str
    label: str
    routes: tuple[str, ...]
    sourced: Sourced


@cache
def ingredients() -> dict[str, Ingredient]:
    return {
        str(r["key"]): Ingredient(str(r["key"]), str(r["label"]), Sourced(r["source"], r["tag"]))
        for r in _load("products.toml")["ingredient"]
    }


@cache
def dosage_forms() -> dict[str, DosageForm]:
    return {
        str(r["key"]): DosageForm(
            str(r["key"]), str(r["label"]), tuple(str(x) for x in r["routes"]), Sourced(r["source"], r["tag"])
        )
        for r in _load("products.toml")["form"]
    }


def route_label(route: str) -> str:
    return ROUTE_LABELS.get(route, route)


def coding_problem(ingredient: str | None, dosage_form: str) -> str | None:
    """Why a product cannot be drawn for any administration until an admin codes it, or None."""
    if ingredient is None or ingredient not in ingredients():
        return "Its drug (ketamine or esketamine) is not coded: an admin must code the product first."
    if dosage_form not in dosage_forms():
        return (
            f"Its dosage form {dosage_form!r} is not one of the coded forms: an admin must code the "
            "product first."
        )
    return None


def fit_problem(ingredient: str | None, dosage_form: str, drug: str, route: str) -> str | None:
    """Why a product of ``ingredient`` in ``dosage_form`` cannot be given as ``drug`` by ``route``,
    or None when it fits (knowledge: products.toml, each form's routes with their source)."""
    if problem := coding_problem(ingredient, dosage_form):
        return problem
    form = dosage_forms()[dosage_form]
    if ingredient != drug:
        return f"It is {ingredient}; this administration gives {drug}."
    if route not in form.routes:
        allowed = ", ".join(route_label(r) for r in form.routes)
        return f"A {form.key} is given by {allowed} ({form.sourced.source}), not by {route_label(route)}."
    return None
