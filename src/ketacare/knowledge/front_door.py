"""Knowledge for the public front door from ``data/front_door.toml`` and ``data/education.toml``:
sources, self-assessment rules, evidence statements, education pages, vetting defaults and
insurance facts. Every sentence and rule names a source key; every source carries its tag."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from ketacare.knowledge import _load


@dataclass(frozen=True)
class Source:
    key: str
    label: str
    url: str
    tag: str


@dataclass(frozen=True)
class AssessmentRule:
    key: str
    question: str
    level: str  # "stop" or "review"
    reason: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Sentence:
    text: str
    source: str


@dataclass(frozen=True)
class Section:
    heading: str
    sentences: tuple[Sentence, ...]


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    summary: str
    sections: tuple[Section, ...]
    route_table: bool
    estimate_link: bool

    def source_keys(self) -> tuple[str, ...]:
        """The page's sources in order of first citation (footnote numbering)."""
        seen: dict[str, None] = {}
        for section in self.sections:
            for sentence in section.sentences:
                seen.setdefault(sentence.source, None)
        return tuple(seen)


@dataclass(frozen=True)
class VettingDefaults:
    experience_points: int
    reputation_points: int
    credentials_points: int
    setting_points: int
    safety_points: int
    equipment: tuple[tuple[str, str], ...]
    equipment_sources: tuple[str, ...]
    acls_sources: tuple[str, ...]
    pulse_oximeter_sources: tuple[str, ...]
    ae_reporting_min_sessions: int


def _front() -> dict[str, Any]:
    return _load("front_door.toml")


@cache
def sources() -> dict[str, Source]:
    return {r["key"]: Source(r["key"], r["label"], r["url"], r["tag"]) for r in _front()["source"]}


@cache
def assessment_rules() -> dict[str, AssessmentRule]:
    return {
        r["key"]: AssessmentRule(r["key"], r["question"], r["level"], r["reason"], tuple(r["sources"]))
        for r in _front()["rule"]
    }


@cache
def minimum_treatments_tried() -> int:
    return int(next(r for r in _front()["rule"] if r["key"] == "not_first_line")["minimum_tried"])


@cache
def evidence_statements() -> tuple[Statement, ...]:
    return tuple(Statement(r["text"], tuple(r["sources"])) for r in _front()["evidence"])


@cache
def insurance_facts() -> tuple[Statement, ...]:
    return tuple(Statement(r["text"], tuple(r["sources"])) for r in _front()["insurance"])


@cache
def treatment_options() -> tuple[tuple[str, str], ...]:
    return tuple((k, label) for k, label in _front()["treatments"])


@cache
def vetting_defaults() -> VettingDefaults:
    v = _front()["vetting"]
    return VettingDefaults(
        experience_points=int(v["experience_points"]),
        reputation_points=int(v["reputation_points"]),
        credentials_points=int(v["credentials_points"]),
        setting_points=int(v["setting_points"]),
        safety_points=int(v["safety_points"]),
        equipment=tuple((k, label) for k, label in v["equipment"]),
        equipment_sources=tuple(v["equipment_sources"]),
        acls_sources=tuple(v["acls_sources"]),
        pulse_oximeter_sources=tuple(v["pulse_oximeter_sources"]),
        ae_reporting_min_sessions=int(v["ae_reporting_min_sessions"]),
    )


@cache
def education_pages() -> tuple[Page, ...]:
    return tuple(
        Page(
            slug=p["slug"],
            title=p["title"],
            summary=p["summary"],
            sections=tuple(
                Section(s["heading"], tuple(Sentence(x["text"], x["source"]) for x in s["sentences"]))
                for s in p["section"]
            ),
            route_table=bool(p.get("route_table", False)),
            estimate_link=bool(p.get("estimate_link", False)),
        )
        for p in _load("education.toml")["page"]
    )
