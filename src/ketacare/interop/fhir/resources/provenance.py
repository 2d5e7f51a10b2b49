"""Provenance: the signatures KetaCare records.

- A session report (logical id ``session-<session id>``): target the session's Encounter; the
  nurse signs as author, the prescriber as verifier, both over the same SHA-256 of the record.
- A signed prescription (``prescription-<prescription id>``): target its MedicationRequest;
  the prescriber signs as author over the SHA-256 of what the prescription says.

Each signature carries its type (ASTM E1762-95 author's / verification signature), when, who
and, as ``data``, the stored SHA-256 (the 32 bytes in base64; ``sigFormat`` says so). It is a
digest the signer approved, not a cryptographic signature: KetaCare holds no signing keys.

R4 Provenance has no patient element; the patient is named in a KetaCare extension
(``urn:ketacare:fhir:provenance-patient``) so that these resources are audited and found as the
patient's data, as every other record about them is.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.interop.fhir.resources.base import (
    KETACARE_SYSTEM,
    Mapper,
    Resource,
    Scope,
    SearchParam,
    changed_since,
    coding,
    instant,
    latest,
    meta,
    narrowed,
    prune,
    reference,
    table,
)

SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
AUTHOR_SIGNATURE = coding(SIGNATURE_TYPE, "1.2.840.10065.1.12.1.1", "Author's Signature")
VERIFICATION_SIGNATURE = coding(SIGNATURE_TYPE, "1.2.840.10065.1.12.1.5", "Verification Signature")
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
PATIENT_EXTENSION = f"{KETACARE_SYSTEM}:fhir:provenance-patient"
SIG_FORMAT = "application/octet-stream"  # the raw SHA-256 digest
SESSION_PREFIX, PRESCRIPTION_PREFIX = "session-", "prescription-"


def digest_data(digest: str | None) -> str | None:
    return base64.b64encode(bytes.fromhex(digest)).decode("ascii") if digest else None


def signer(
    role: str, signature_type: dict[str, str], user_id: int, at: Any, digest: str | None
) -> tuple[Any, ...]:
    who = reference("Practitioner", user_id)
    agent = {
        "type": {"coding": [coding(PARTICIPANT, role, role.capitalize())], "text": role.capitalize()},
        "who": who,
    }
    signature = {
        "type": [signature_type],
        "when": instant(at),
        "who": who,
        "sigFormat": SIG_FORMAT if digest else None,
        "data": digest_data(digest),
    }
    return agent, signature


def provenance(
    logical_id: str,
    target: dict[str, str],
    patient_id: int,
    signers: list[tuple[Any, ...]],
    recorded: Any,
    reason: str,
) -> Resource:
    return prune(
        {
            "resourceType": "Provenance",
            "id": logical_id,
            "meta": meta(recorded),
            "extension": [{"url": PATIENT_EXTENSION, "valueReference": reference("Patient", patient_id)}],
            "target": [target],
            "recorded": instant(recorded),
            "reason": [{"text": reason}],
            "activity": {"text": "Signature"},
            "agent": [a for a, _ in signers],
            "signature": [s for _, s in signers],
        }
    )


def session_to_fhir(row: Any) -> Resource:
    signers = []
    if row.nurse_signed_at is not None and row.nurse_signed_by_id is not None:
        signers.append(
            signer("author", AUTHOR_SIGNATURE, row.nurse_signed_by_id, row.nurse_signed_at, row.report_sha256)
        )
    if row.prescriber_signed_at is not None and row.prescriber_signed_by_id is not None:
        signers.append(
            signer(
                "verifier",
                VERIFICATION_SIGNATURE,
                row.prescriber_signed_by_id,
                row.prescriber_signed_at,
                row.report_sha256,
            )
        )
    return provenance(
        f"{SESSION_PREFIX}{row.id}",
        reference("Encounter", row.id),
        row.patient_id,
        signers,
        latest(row.nurse_signed_at, row.prescriber_signed_at),
        "Session report signed by the nurse and the prescriber",
    )


def prescription_to_fhir(row: Any) -> Resource:
    return provenance(
        f"{PRESCRIPTION_PREFIX}{row.id}",
        reference("MedicationRequest", row.id),
        row.patient_id,
        [signer("author", AUTHOR_SIGNATURE, row.signed_by_id, row.signed_at, row.content_sha256)],
        latest(row.signed_at),
        "Prescription signed by the prescriber",
    )


def _sessions(db: Session, scope: Scope) -> Iterator[Resource]:
    s = table("treatment_sessions")
    query = (
        select(s)
        .where(
            s.c.clinic_id == scope.clinic_id,
            (s.c.nurse_signed_at.is_not(None)) | (s.c.prescriber_signed_at.is_not(None)),
        )
        .order_by(s.c.id)
    )
    query = narrowed(query, scope, s.c.patient_id, s.c.id, SESSION_PREFIX)
    for row in db.execute(query):
        if changed_since(scope, latest(row.nurse_signed_at, row.prescriber_signed_at)):
            yield session_to_fhir(row)


def _prescriptions(db: Session, scope: Scope) -> Iterator[Resource]:
    rx = table("prescriptions")
    query = (
        select(rx)
        .where(rx.c.clinic_id == scope.clinic_id, rx.c.signed_at.is_not(None), rx.c.signed_by_id.is_not(None))
        .order_by(rx.c.id)
    )
    query = narrowed(query, scope, rx.c.patient_id, rx.c.id, PRESCRIPTION_PREFIX)
    for row in db.execute(query):
        if changed_since(scope, latest(row.signed_at)):
            yield prescription_to_fhir(row)


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    yield from _sessions(db, scope)
    yield from _prescriptions(db, scope)


MAPPER = Mapper(
    resource_type="Provenance",
    read=read,
    search_params=(
        SearchParam("target", "reference", ("target",)),
        SearchParam("recorded", "date", ("recorded",)),
        SearchParam("agent", "reference", ("agent.who",)),
    ),
    patient_paths=("extension.valueReference",),
    documentation=(
        "Signatures: session reports (nurse as author, prescriber as verifier; id session-<id>, target "
        "Encounter) and signed prescriptions (id prescription-<id>, target MedicationRequest), with "
        "the signed SHA-256 as signature data."
    ),
)
