"""QuestionnaireResponse: one per outcome follow-up the patient answered (logical id = the
follow-up id, which Observation.derivedFrom of the outcome scores points at).

- ``status``: completed once sent in (answers from ``outcome_answers``); ``in-progress`` for a
  saved draft not yet sent (answers from the follow-up's draft); ``stopped`` for a cancelled
  follow-up that holds a draft. A follow-up with neither answers nor a draft is no response.
- ``questionnaire``: our ``follow-up`` Questionnaire (``urn:ketacare:questionnaire:follow-up``);
  each instrument of the follow-up is a group (linkId = the key) of its answered items
  (linkId ``<instrument>.<item>``): ``valueInteger`` on a 0-10 scale, ``valueCoding`` for the
  PGIC and the bladder screen (codes of the Questionnaire's answerOptions).
- ``authored``: when it was sent in (or the draft saved); ``source``: the patient.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    Mapper,
    Resource,
    Scope,
    SearchParam,
    changed_since,
    instant,
    latest,
    meta,
    narrowed,
    prune,
    reference,
    table,
)
from ketacare.interop.fhir.resources.questionnaire import FOLLOW_UP, answer_coding, canonical, options
from ketacare.knowledge.outcomes import instruments
from ketacare.outcomes import rules


def status(row: Any) -> str | None:
    if row.status == "completed":
        return "completed"
    if row.draft:
        return "stopped" if row.status == "cancelled" else "in-progress"
    return None


def answer(key: str, value: int) -> dict[str, Any]:
    inst = instruments()[key]
    if options(inst):
        found = answer_coding(inst, value)
        if found is not None:
            return {"valueCoding": found}
    return {"valueInteger": value}


def groups(keys: list[str], values: Mapping[str, int]) -> list[dict[str, Any]]:
    catalogue = instruments()
    out = []
    for key in keys:
        inst = catalogue.get(key)
        if inst is None:
            continue
        answered = []
        for item, text in inst.items:
            name = rules.field_name(key, item)
            if name in values:
                answered.append({"linkId": name, "text": text, "answer": [answer(key, values[name])]})
        if answered:
            out.append({"linkId": key, "text": inst.label, "item": answered})
    return out


def to_fhir(row: Any, answers: Mapping[str, int]) -> Resource | None:
    state = status(row)
    if state is None:
        return None
    completed = state == "completed"
    values = answers if completed else {k: int(v) for k, v in row.draft.items() if v is not None}
    authored = row.completed_at if completed else row.draft_saved_at
    return prune(
        {
            "resourceType": "QuestionnaireResponse",
            "id": str(row.id),
            "meta": meta(latest(row.completed_at, row.draft_saved_at)),
            "questionnaire": canonical(FOLLOW_UP),
            "status": state,
            "subject": reference("Patient", row.patient_id),
            "authored": instant(authored),
            "source": reference("Patient", row.patient_id),
            "item": groups(list(row.instruments), values),
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    fu, ans = table("outcome_follow_ups"), table("outcome_answers")
    query = (
        select(fu)
        .where(
            fu.c.clinic_id == scope.clinic_id,
            (fu.c.status == "completed") | (fu.c.draft_saved_at.is_not(None)),
        )
        .order_by(fu.c.id)
    )
    query = narrowed(query, scope, fu.c.patient_id, fu.c.id)
    rows = [r for r in db.execute(query) if changed_since(scope, latest(r.completed_at, r.draft_saved_at))]
    answers: dict[int, dict[str, int]] = defaultdict(dict)
    completed = [r.id for r in rows if r.status == "completed"]
    for start in range(0, len(completed), 500):
        chunk = completed[start : start + 500]
        for a in db.execute(select(ans).where(ans.c.follow_up_id.in_(chunk)).order_by(ans.c.id)):
            answers[a.follow_up_id][rules.field_name(a.instrument, a.item)] = a.value
    for row in rows:
        resource = to_fhir(row, answers[row.id])
        if resource is not None:
            yield resource


MAPPER = Mapper(
    resource_type="QuestionnaireResponse",
    read=read,
    search_params=(
        SearchParam("status", "token", ("status",)),
        SearchParam("authored", "date", ("authored",)),
    ),
    patient_paths=("subject",),
    documentation=(
        "Outcome follow-ups the patient answered (id = follow-up id): completed, or in-progress for a "
        "saved draft; one group per instrument of the follow-up Questionnaire."
    ),
)
