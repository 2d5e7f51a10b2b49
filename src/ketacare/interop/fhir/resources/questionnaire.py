"""Questionnaire: the outcome instruments the clinic offers, built from the knowledge data
(``knowledge/data/outcomes.toml``; the bladder screen's items are the safety screen's).

One Questionnaire per instrument (logical id = the instrument key: ``nrs``, ``peg``, ``pgic``,
``bladder``; ``bpi-sf`` for ``bpi_sf``, as FHIR ids allow no underscore, and only where the
clinic records a BPI licence), and ``follow-up``: every
instrument the clinic offers as a group (linkId = the key) holding the same items. A follow-up
sends several instruments at once, so its QuestionnaireResponse answers ``follow-up``.

Items: linkId ``<instrument>.<item>`` (the outcomes feature's field names), the item text, type
``integer`` with the scale's bounds (core extensions minValue / maxValue) for 0-10 scales,
``choice`` with ``answerOption`` codings (``urn:ketacare:questionnaire:<key>``, code = the
stored value) for the PGIC and the yes/no bladder screen. The NRS items carry LOINC 72514-3
(pain severity 0-10 verbal numeric rating, clinical-facts 7.1 [V]); the PEG LOINC codes are
tagged [M] in the facts and are not sent. These are definitions, not patient data; they carry
no change date, so a ``_since`` read returns none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    LOINC,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    coding,
    prune,
    table,
)
from ketacare.knowledge.outcomes import Instrument
from ketacare.outcomes import rules

CANONICAL = f"{KETACARE_SYSTEM}:questionnaire:"
FOLLOW_UP = "follow-up"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
NRS_LOINC = coding(LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")
YES_NO = ((rules.YES, "Yes"), (rules.NO, "No"))


def logical_id(key: str) -> str:
    """An instrument key as a FHIR id (ids allow no underscore: ``bpi_sf`` is ``bpi-sf``)."""
    return key.replace("_", "-")


def canonical(key: str) -> str:
    return f"{CANONICAL}{logical_id(key)}"


def answer_system(key: str) -> str:
    return f"{CANONICAL}{key}:answer"


def options(inst: Instrument) -> tuple[tuple[int, str], ...]:
    """The answer choices of a choice instrument; empty for a numeric scale."""
    if inst.choices:
        return inst.choices
    if (inst.low, inst.high) == (0, 1):
        return YES_NO
    return ()


def answer_coding(inst: Instrument, value: int) -> dict[str, str] | None:
    label = dict(options(inst)).get(value)
    return coding(answer_system(inst.key), str(value), label) if label is not None else None


def items(inst: Instrument) -> list[dict[str, Any]]:
    choices = options(inst)
    out = []
    for item, text in inst.items:
        entry: dict[str, Any] = {
            "linkId": rules.field_name(inst.key, item),
            "code": [NRS_LOINC] if inst.key == "nrs" else [],
            "text": text,
            "type": "choice" if choices else "integer",
            "required": True,
        }
        if choices:
            entry["answerOption"] = [{"valueCoding": answer_coding(inst, v)} for v, _ in choices]
        else:
            entry["extension"] = [
                {"url": MIN_VALUE, "valueInteger": inst.low},
                {"url": MAX_VALUE, "valueInteger": inst.high},
            ]
        out.append(entry)
    return out


def _name(key: str) -> str:
    return "KetaCare" + "".join(part.capitalize() for part in key.replace("-", "_").split("_"))


def instrument_to_fhir(inst: Instrument, licence: str | None) -> Resource:
    anchors = "; ".join(inst.anchors)
    return prune(
        {
            "resourceType": "Questionnaire",
            "id": logical_id(inst.key),
            "url": canonical(inst.key),
            "name": _name(inst.key),
            "title": inst.label,
            "status": "active",
            "subjectType": ["Patient"],
            "publisher": "KetaCare",
            "description": f"{anchors}. Source: {inst.sourced.source} [{inst.sourced.tag}]"
            if anchors
            else f"Source: {inst.sourced.source} [{inst.sourced.tag}]",
            "copyright": f"Used under the clinic's licence: {licence}" if inst.licensed and licence else None,
            "item": items(inst),
        }
    )


def follow_up_to_fhir(offered: list[Instrument]) -> Resource:
    return prune(
        {
            "resourceType": "Questionnaire",
            "id": FOLLOW_UP,
            "url": canonical(FOLLOW_UP),
            "name": _name(FOLLOW_UP),
            "title": "KetaCare follow-up questionnaire",
            "status": "active",
            "subjectType": ["Patient"],
            "publisher": "KetaCare",
            "description": "A follow-up sends some of these instruments; each is a group of its items.",
            "item": [
                {
                    "linkId": inst.key,
                    "definition": canonical(inst.key),
                    "text": inst.label,
                    "type": "group",
                    "item": items(inst),
                }
                for inst in offered
            ],
        }
    )


def licence_of(db: Session, clinic_id: int) -> str | None:
    settings = table("outcome_settings")
    found: str | None = db.execute(
        select(settings.c.bpi_licence).where(settings.c.clinic_id == clinic_id)
    ).scalar_one_or_none()
    return found or None


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    if scope.since is not None:
        return
    licence = licence_of(db, scope.clinic_id)
    offered = rules.available(bool(licence))
    wanted = set(scope.ids) if scope.ids is not None else None
    if wanted is None or FOLLOW_UP in wanted:
        yield follow_up_to_fhir(offered)
    for inst in offered:
        if wanted is None or logical_id(inst.key) in wanted:
            yield instrument_to_fhir(inst, licence)


def questionnaire_id(canonical_url: str) -> str | None:
    """The logical id of one of our Questionnaires from its canonical URL."""
    return canonical_url[len(CANONICAL) :] if canonical_url.startswith(CANONICAL) else None


MAPPER = Mapper(
    resource_type="Questionnaire",
    read=read,
    search_params=(
        SearchParam("url", "token", ("url",)),
        SearchParam("status", "token", ("status",)),
        SearchParam("title", "string", ("title",)),
        SearchParam("code", "token", ("item.code", "item.item.code")),
    ),
    documentation=(
        "The outcome instruments the clinic offers (NRS, PEG-3, PGIC, bladder screen; BPI-SF with a "
        "licence), id = the instrument key, and 'follow-up' holding them all as groups."
    ),
)
