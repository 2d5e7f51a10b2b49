"""The plug-in point for electronic prescribing of controlled substances (EPCS).

Sending a Schedule III prescription electronically needs a certified EPCS intermediary (a
vendor audited for DEA's EPCS rules, with identity-proofed two-factor signing by the
prescriber). KetaCare ships none: :class:`NotConfigured` refuses, clearly, and the prescriber
prints the prescription and signs it by hand. A vendor integration implements :class:`EpcsGateway`
and is installed with :func:`install` when the application starts.
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass

from ketacare.errors import Conflict
from ketacare.knowledge.prescribing import prescribing_rules


@dataclass(frozen=True)
class OutgoingPrescription:
    """What a gateway is given: the signed prescription as it was signed."""

    prescription_id: int
    content_sha256: str
    patient_name: str
    patient_date_of_birth: dt.date
    patient_address: str
    prescriber_name: str
    prescriber_dea: str
    prescriber_npi: str | None
    drug: str
    product_name: str
    strength: str
    dosage_form: str
    quantity: str
    days_supply: int
    directions: str
    refills: int
    issued_on: dt.date


@dataclass(frozen=True)
class Receipt:
    gateway: str
    reference: str
    sent_at: dt.datetime


class EpcsNotConfigured(Conflict):
    title = "Electronic prescribing of controlled substances is not configured"
    slug = "epcs-not-configured"


class EpcsGateway(abc.ABC):
    """A certified EPCS intermediary. ``send`` transmits one signed prescription or raises."""

    name: str = "gateway"

    @abc.abstractmethod
    def send(self, prescription: OutgoingPrescription) -> Receipt: ...


class NotConfigured(EpcsGateway):
    name = "not configured"

    def send(self, prescription: OutgoingPrescription) -> Receipt:
        raise EpcsNotConfigured(
            f"Prescription #{prescription.prescription_id} was not sent. {prescribing_rules().epcs.text}"
        )


_installed: list[EpcsGateway] = [NotConfigured()]


def install(gateway: EpcsGateway) -> None:
    """Use ``gateway`` from now on (a vendor integration calls this at start-up)."""
    _installed[0] = gateway


def gateway() -> EpcsGateway:
    return _installed[0]
