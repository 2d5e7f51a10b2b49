"""Roles and prescriber kinds: plain enums, importable anywhere without touching tables."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    clinic_admin = "clinic_admin"
    prescriber = "prescriber"
    nurse = "nurse"
    patient = "patient"
    researcher = "researcher"
    auditor = "auditor"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.clinic_admin: "Clinic admin",
    Role.prescriber: "Prescriber",
    Role.nurse: "Nurse",
    Role.patient: "Patient",
    Role.researcher: "Researcher",
    Role.auditor: "Auditor",
}


class PrescriberKind(enum.StrEnum):
    physician = "physician"
    nurse_practitioner = "nurse_practitioner"
