"""Every permission, and which role (or API-token scope) holds it: the one declarative place.

Routes name the permission they need with ``require(Permission.X)``; a test walks every
route and fails if one declares none. Public routes are listed in ``PUBLIC_ROUTES``.
"""

from __future__ import annotations

import enum

from ketacare.auth.roles import Role


class Permission(enum.StrEnum):
    dashboard = "dashboard:view"
    account = "account:self"
    patient_read = "patient:read"
    patient_write = "patient:write"
    patient_self = "patient:self"
    user_manage = "user:manage"
    token_manage = "token:manage"  # noqa: S105 (a permission name, not a secret)
    audit_read = "audit:read"
    audit_export = "audit:export"
    research_read = "research:read"
    screening_write = "screening:write"
    eligibility_override = "eligibility:override"
    plan_read = "plan:read"
    plan_write = "plan:write"
    careplan_write = "careplan:write"
    consent_sign = "consent:sign"
    planning_admin = "planning:admin"
    directory_manage = "directory:manage"
    bookings_read = "bookings:read"
    review_write = "review:write"
    session_read = "session:read"
    session_write = "session:write"
    session_prescriber = "session:prescriber"
    session_admin = "session:admin"
    device_vitals = "device:vitals"
    ledger_read = "ledger:read"
    ledger_write = "ledger:write"
    ledger_admin = "ledger:admin"
    credential_read = "credential:read"
    credential_manage = "credential:manage"
    rx_read = "prescription:read"
    rx_write = "prescription:write"
    safety_read = "safety:read"
    safety_write = "safety:write"
    outcome_read = "outcome:read"
    outcome_write = "outcome:write"
    registry_read = "registry:read"
    # FHIR R4 (interop/fhir): SMART-style names, so a system client's token reads as it would
    # elsewhere. ``system/<Type>.read`` token scopes narrow fhir_read to some resource types.
    fhir_read = "system/*.read"
    fhir_write = "system/*.write"


_STAFF_COMMON = {Permission.dashboard, Permission.account}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.clinic_admin: frozenset(
        _STAFF_COMMON
        | {
            Permission.patient_read,
            Permission.patient_write,
            Permission.user_manage,
            Permission.token_manage,
            Permission.plan_read,
            Permission.planning_admin,
            Permission.directory_manage,
            Permission.bookings_read,
            Permission.session_read,
            Permission.session_admin,
            Permission.ledger_read,
            Permission.ledger_write,
            Permission.ledger_admin,
            Permission.credential_read,
            Permission.credential_manage,
            Permission.rx_read,
            Permission.outcome_read,
            Permission.registry_read,
            Permission.fhir_read,
            Permission.fhir_write,
        }
    ),
    Role.prescriber: frozenset(
        _STAFF_COMMON
        | {
            Permission.patient_read,
            Permission.patient_write,
            Permission.screening_write,
            Permission.eligibility_override,
            Permission.plan_read,
            Permission.plan_write,
            Permission.careplan_write,
            Permission.bookings_read,
            Permission.session_read,
            Permission.session_write,
            Permission.session_prescriber,
            Permission.ledger_read,
            Permission.ledger_write,
            Permission.credential_read,
            Permission.rx_read,
            Permission.rx_write,
            Permission.safety_read,
            Permission.safety_write,
            Permission.outcome_read,
            Permission.outcome_write,
            Permission.registry_read,
            Permission.fhir_read,
        }
    ),
    Role.nurse: frozenset(
        _STAFF_COMMON
        | {
            Permission.patient_read,
            Permission.patient_write,
            Permission.screening_write,
            Permission.plan_read,
            Permission.careplan_write,
            Permission.bookings_read,
            Permission.session_read,
            Permission.session_write,
            Permission.ledger_read,
            Permission.ledger_write,
            Permission.credential_read,
            Permission.rx_read,
            Permission.safety_read,
            Permission.safety_write,
            Permission.outcome_read,
            Permission.outcome_write,
            Permission.fhir_read,
        }
    ),
    Role.patient: frozenset(
        _STAFF_COMMON | {Permission.patient_self, Permission.consent_sign, Permission.review_write}
    ),
    Role.researcher: frozenset(_STAFF_COMMON | {Permission.research_read}),
    Role.auditor: frozenset(
        # fhir_read: the FHIR AuditEvent only (interop/fhir/service.may_read refuses the clinical types).
        _STAFF_COMMON
        | {Permission.audit_read, Permission.audit_export, Permission.ledger_read, Permission.fhir_read}
    ),
}

# What a device or another system may be granted; never user or audit administration.
TOKEN_SCOPES: frozenset[Permission] = frozenset(
    {
        Permission.patient_read,
        Permission.patient_write,
        Permission.research_read,
        Permission.device_vitals,
        Permission.fhir_read,
        Permission.fhir_write,
    }
)

# The FHIR resource types a token may be limited to with ``system/<Type>.read`` (SMART v1
# scope syntax); kept here, not in interop/fhir, so auth imports nothing of the features (a test
# checks it against the served types). AuditEvent is not among them: the audit trail is read by
# auditors in person, never through a token (tokens never reach audit administration).
FHIR_RESOURCE_TYPES: tuple[str, ...] = (
    "AdverseEvent",
    "CarePlan",
    "Condition",
    "Consent",
    "Encounter",
    "Group",
    "Location",
    "MedicationAdministration",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
)


def fhir_type_scope(resource_type: str) -> str:
    return f"system/{resource_type}.read"


def token_scope_names() -> list[str]:
    """Every scope a token may be given: the permissions above and the per-type FHIR reads."""
    return sorted({s.value for s in TOKEN_SCOPES} | {fhir_type_scope(t) for t in FHIR_RESOURCE_TYPES})


# Roles that must use TOTP two-factor authentication (issue 2: prescribers and admins).
MFA_REQUIRED_ROLES = frozenset({Role.prescriber, Role.clinic_admin})

# Routes anyone may call, by path. Everything else must declare a permission.
PUBLIC_ROUTES = frozenset(
    {
        "/healthz",
        "/login",
        "/logout",
        "/static",
        "/api/docs",
        "/api/openapi.json",
        "/vendor/plotly.min.js",
        # directory: the public front door
        "/start",
        "/learn",
        "/learn/{slug}",
        "/assess",
        "/clinics",
        "/clinics/search",
        "/clinics/{slug}",
        "/clinics/{slug}/estimate",
        "/clinics/{slug}/book",
        "/bookings/cancel/{token}",
        "/api/v1/learn",
        "/api/v1/assessment",
        "/api/v1/clinics/search",
        "/api/v1/clinics/{slug}",
        "/api/v1/clinics/{slug}/estimate",
        "/api/v1/clinics/{slug}/bookings",
        "/api/v1/bookings/cancel",
        # outcomes: the single-use questionnaire link (the token is the credential)
        "/q/{token}",
        # FHIR: the CapabilityStatement is public, as clients read it before they authenticate
        "/fhir/R4/metadata",
    }
)


def role_has(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
