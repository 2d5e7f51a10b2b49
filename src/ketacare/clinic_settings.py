"""Clinic settings over sourced defaults, once: a setting's spec (its knowledge default with tag
and source, the range a clinic may choose), the values in force and how a message names them.

Used by the clinical defaults of planning and the prescribing settings; each keeps its own table
and its typed view of the values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

OWN, KNOWLEDGE = "clinic", "knowledge"
Value = dt.date | float | None
Kind = Literal["int", "float", "date"]


@dataclass(frozen=True)
class Spec:
    """One clinic-editable value: its knowledge default, tag and source, and the range a clinic
    may set (none for a date)."""

    key: str
    label: str
    unit: str
    kind: Kind
    minimum: float | None
    maximum: float | None
    knowledge: Callable[[], Value]
    tag: Callable[[], str]
    source: Callable[[], str]
    used_by: str

    @property
    def knowledge_value(self) -> Value:
        return self.knowledge()

    def bounds(self) -> tuple[float, float]:
        if self.minimum is None or self.maximum is None:
            raise ValueError(f"{self.key} has no numeric range")
        return self.minimum, self.maximum

    def range_label(self) -> str:
        if self.minimum is None or self.maximum is None:
            return ""
        return f"{self.minimum:g}-{self.maximum:g} {self.unit}".strip()

    def coerce(self, value: Value) -> Value:
        """A stored or submitted value as this setting's kind."""
        if value is None or self.kind == "date":
            return value
        assert not isinstance(value, dt.date)
        return int(value) if self.kind == "int" else float(value)


def shown(value: Value) -> str:
    if value is None:
        return "none"
    if isinstance(value, dt.date):
        return value.isoformat()
    return f"{value:g}"


def in_force(
    specs: Iterable[Spec], overrides: Mapping[str, Value]
) -> tuple[dict[str, Value], frozenset[str]]:
    """The values in force (the clinic's where set, else the knowledge default) and which keys
    are the clinic's own."""
    values: dict[str, Value] = {}
    own: set[str] = set()
    for spec in specs:
        value = overrides.get(spec.key)
        if value is None:
            values[spec.key] = spec.knowledge_value
        else:
            values[spec.key] = value
            own.add(spec.key)
    return values, frozenset(own)


def note(spec: Spec, own: bool) -> str:
    """How a message names the value: the clinic's own setting or the knowledge default."""
    if own:
        return f"clinic's own setting; knowledge default {shown(spec.knowledge_value)} [{spec.tag()}]"
    return f"knowledge default [{spec.tag()}], clinic-editable"


def number(value: Value) -> float:
    assert isinstance(value, int | float)
    return float(value)
