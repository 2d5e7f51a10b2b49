"""AuditEvent: the clinic's audit trail (``audit_entries``; logical id = the entry's ``seq``).

People need the audit permission to read these (auditors hold it, clinic admins, prescribers
and nurses do not); no token reads them, whatever its scopes. Every read is itself audited.

- ``type`` / ``subtype``: the action's feature (``session``) and the whole action
  (``session.vitals``) as local codes (``urn:ketacare:audit-type``, ``urn:ketacare:audit-action``).
- ``action``: C/R/U/D/E from the action's verb (read and view are R; searches, lists and
  exports are E, as FHIR files queries).
- ``outcome``: 0 success; 4 minor failure for a denied, throttled, failed or MFA-pending
  attempt; the stored outcome word stays in ``outcomeDesc``.
- ``agent``: the user (Practitioner/<user id> for staff; an identifier otherwise), the username
  as ``altId``, the role, ``requestor`` true, the network address (type 2 when it is an IP).
- ``source``: KetaCare as an application server; ``entity``: the patient where the entry names
  one, and the object acted on with the entry's detail and its place in the hash chain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.auth.permissions import Permission
from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    aware,
    coding,
    instant,
    meta,
    narrowed,
    prune,
    reference,
    table,
)

TYPE_SYSTEM = f"{KETACARE_SYSTEM}:audit-type"
ACTION_SYSTEM = f"{KETACARE_SYSTEM}:audit-action"
USER_SYSTEM = f"{KETACARE_SYSTEM}:username"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PRACTITIONER_ROLES = frozenset({"prescriber", "nurse"})  # the roles the Practitioner mapper serves
FAILED = frozenset({"denied", "throttled", "failure", "mfa_pending"})
VERBS = {
    "C": frozenset({"create", "add", "enter", "schedule", "book", "receipt", "import", "generate", "issue"}),
    "R": frozenset({"read", "view", "print", "download", "pdf", "report"}),
    "U": frozenset({"update", "set", "edit", "change", "sign", "acknowledge", "resolve", "review"}),
    "D": frozenset({"delete", "cancel", "discard", "revoke", "remove", "deactivate"}),
}


def action_code(action: str) -> str:
    verb = action.rsplit(".", 1)[-1]
    for code, verbs in VERBS.items():
        if verb in verbs:
            return code
    return "E"


def outcome_code(outcome: str) -> str:
    return "4" if outcome in FAILED else "0"


def network(address: str | None) -> dict[str, str] | None:
    if not address:
        return None
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"address": address}
    return {"address": address, "type": "2"}


def agent(row: Any) -> dict[str, Any]:
    if row.user_id is not None and row.role in PRACTITIONER_ROLES:
        who: dict[str, Any] = reference("Practitioner", row.user_id, row.full_name)
    else:
        who = {"display": row.full_name or row.username or "system"}
        if row.username:
            who["identifier"] = {"system": USER_SYSTEM, "value": row.username}
    return {
        "type": {"text": row.role} if row.role else None,
        "who": who,
        "altId": row.username,
        "name": row.full_name or row.username,
        "requestor": True,
        "network": network(row.client_addr),
    }


def entities(row: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if row.patient_id is not None:
        found.append({"what": reference("Patient", row.patient_id), "name": "patient"})
    found.append(
        {
            "what": (
                {"identifier": {"system": f"{KETACARE_SYSTEM}:{row.resource_type}", "value": row.resource_id}}
                if row.resource_id
                else None
            ),
            "name": row.resource_type,
            "description": row.detail or None,
            "detail": [
                {"type": "prev_hash", "valueString": row.prev_hash},
                {"type": "entry_hash", "valueString": row.entry_hash},
            ],
        }
    )
    return found


def to_fhir(row: Any) -> Resource:
    feature = row.action.split(".", 1)[0]
    return prune(
        {
            "resourceType": "AuditEvent",
            "id": str(row.seq),
            "meta": meta(row.at),
            "type": coding(TYPE_SYSTEM, feature, feature),
            "subtype": [coding(ACTION_SYSTEM, row.action, row.action)],
            "action": action_code(row.action),
            "recorded": instant(row.at),
            "outcome": outcome_code(row.outcome),
            "outcomeDesc": row.outcome,
            "agent": [agent(row)],
            "source": {
                "site": row.clinic_slug,
                "observer": {"display": "KetaCare"},
                "type": [coding(SOURCE_TYPE, "4", "Application Server")],
            },
            "entity": entities(row),
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    audit, users, clinics = table("audit_entries"), table("users"), table("clinics")
    query = (
        select(audit, users.c.full_name, clinics.c.slug.label("clinic_slug"))
        .outerjoin(users, users.c.id == audit.c.user_id)
        .outerjoin(clinics, clinics.c.id == audit.c.clinic_id)
        .where(audit.c.clinic_id == scope.clinic_id)
        .order_by(audit.c.seq)
    )
    query = narrowed(query, scope, audit.c.patient_id, audit.c.seq)
    since = aware(scope.since)
    if since is not None:
        query = query.where(audit.c.at >= since)
    for row in db.execute(query.execution_options(yield_per=1000)):
        yield to_fhir(row)


MAPPER = Mapper(
    resource_type="AuditEvent",
    read=read,
    search_params=(
        SearchParam("date", "date", ("recorded",)),
        SearchParam("action", "token", ("action",)),
        SearchParam("type", "token", ("type",)),
        SearchParam("subtype", "token", ("subtype",)),
        SearchParam("outcome", "token", ("outcome",)),
        SearchParam("patient", "reference", ("entity.what",)),
        SearchParam("entity", "reference", ("entity.what",)),
        SearchParam("agent", "reference", ("agent.who",)),
        SearchParam("altid", "token", ("agent.altId",)),
        SearchParam("agent-name", "string", ("agent.name",)),
    ),
    patient_paths=(),
    permission=Permission.audit_read,
    documentation=(
        "The clinic's audit trail (id = the entry's sequence number); readers need the audit "
        "permission. Search by date, action (C/R/U/D/E), subtype (the KetaCare action), patient, "
        "agent or altid (username)."
    ),
)
