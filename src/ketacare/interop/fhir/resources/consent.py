"""Consent: the off-label treatment consent of a plan (``plan_consents``; logical id = its id).

- ``status``: proposed until the patient signs, active once signed, inactive when the plan it
  covers was cancelled (a signed consent is never edited or deleted).
- ``scope`` treatment (consentscope); ``category`` is text only: the facts give no LOINC code
  for a consent document.
- ``policyRule`` is text (the clinic's off-label consent); ``performer`` the patient, the
  ``organization`` the clinic.
- ``sourceAttachment`` holds the generated text (base64) and its hash. FHIR R4 defines
  ``Attachment.hash`` as SHA-1; KetaCare keeps a SHA-256 of the text, and sends that (base64 of
  the 32 bytes): a receiver must not check it as SHA-1. The signature's own SHA-256 (text plus
  signature) is in ``identifier`` (``urn:ketacare:consent-signature-sha256``, hex).
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

SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
SIGNATURE_SYSTEM = f"{KETACARE_SYSTEM}:consent-signature-sha256"


def hex_to_base64(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(digest)).decode("ascii")


def status(row: Any) -> str:
    if row.signed_at is None:
        return "proposed"
    return "inactive" if row.plan_status == "cancelled" else "active"


def to_fhir(row: Any) -> Resource:
    return prune(
        {
            "resourceType": "Consent",
            "id": str(row.id),
            "meta": meta(latest(row.generated_at, row.signed_at)),
            "identifier": (
                [{"system": SIGNATURE_SYSTEM, "value": row.signature_sha256}] if row.signature_sha256 else []
            ),
            "status": status(row),
            "scope": {"coding": [coding(SCOPE, "treatment", "Treatment")], "text": "Treatment"},
            "category": [{"text": "Informed consent to off-label ketamine treatment"}],
            "patient": reference("Patient", row.patient_id),
            "dateTime": instant(row.signed_at or row.generated_at),
            "performer": [reference("Patient", row.patient_id, row.signed_name)],
            "organization": [reference("Organization", row.clinic_id)],
            "sourceAttachment": {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode(row.text.encode("utf-8")).decode("ascii"),
                "hash": hex_to_base64(row.content_sha256),
                "title": "Consent to off-label ketamine treatment",
                "creation": instant(row.generated_at),
            },
            "policyRule": {"text": "KetaCare off-label ketamine treatment consent"},
            "provision": {
                "type": "permit",
                "period": {"start": row.signed_on.isoformat()} if row.signed_on else None,
                "data": [{"meaning": "related", "reference": reference("CarePlan", row.plan_id)}],
            },
        }
    )


def read(db: Session, scope: Scope) -> Iterator[Resource]:
    consents, plans = table("plan_consents"), table("treatment_plans")
    query = (
        select(consents, plans.c.clinic_id, plans.c.status.label("plan_status"))
        .join(plans, plans.c.id == consents.c.plan_id)
        .where(plans.c.clinic_id == scope.clinic_id)
        .order_by(consents.c.id)
    )
    query = narrowed(query, scope, consents.c.patient_id, consents.c.id)
    for row in db.execute(query):
        if changed_since(scope, latest(row.generated_at, row.signed_at)):
            yield to_fhir(row)


MAPPER = Mapper(
    resource_type="Consent",
    read=read,
    search_params=(
        SearchParam("status", "token", ("status",)),
        SearchParam("scope", "token", ("scope",)),
        SearchParam("date", "date", ("dateTime",)),
    ),
    patient_paths=("patient",),
    documentation=(
        "Off-label treatment consents of treatment plans: proposed until signed, active once signed; "
        "the text as an attachment with its SHA-256 (base64)."
    ),
)
