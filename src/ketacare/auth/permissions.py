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


_STAFF_COMMON = {Permission.dashboard, Permission.account}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.clinic_admin: frozenset(
        _STAFF_COMMON
        | {
            Permission.patient_read,
            Permission.patient_write,
            Permission.user_manage,
            Permission.token_manage,
        }
    ),
    Role.prescriber: frozenset(_STAFF_COMMON | {Permission.patient_read, Permission.patient_write}),
    Role.nurse: frozenset(_STAFF_COMMON | {Permission.patient_read, Permission.patient_write}),
    Role.patient: frozenset(_STAFF_COMMON | {Permission.patient_self}),
    Role.researcher: frozenset(_STAFF_COMMON | {Permission.research_read}),
    Role.auditor: frozenset(_STAFF_COMMON | {Permission.audit_read, Permission.audit_export}),
}

# What a device or another system may be granted; never user or audit administration.
TOKEN_SCOPES: frozenset[Permission] = frozenset(
    {Permission.patient_read, Permission.patient_write, Permission.research_read}
)

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
    }
)


def role_has(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
