"""Demo prescribing, through the prescribing use-cases as the clinic admin and the prescriber
would: credentials for the demo prescribers and the nurse (DEA and NPI numbers made with their
check digits; the nurse practitioner's licence expiring soon), and take-home prescriptions: one
signed, one draft still blocked because no PDMP check is on record.

Everything here is demo content (design): the numbers are well formed and belong to no one.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.patients import service as patients
from ketacare.patients.schemas import PatientUpdate
from ketacare.prescribing import credentials, encounters, prescriptions
from ketacare.prescribing.identifiers import dea_check_digit, last_name, npi_check_digit
from ketacare.prescribing.rules import add_months
from ketacare.prescribing.schemas import (
    BoardIn,
    DeaIn,
    DraftUpdateIn,
    EncounterIn,
    LicenceIn,
    NpiIn,
    PdmpIn,
    PrescriptionIn,
    SignIn,
)
from ketacare.screening.demo_data import DemoClinic

LICENCE_YEARS = 2  # (design) demo licences and registrations run two more years
EXPIRING_SOON_DAYS = 30  # (design) inside the 60-day credential alert window
ACK = (
    "FDA warning on compounded ketamine discussed; patient keeps a dose diary, a caregiver is present "
    "for the first doses, bladder and liver checks are scheduled."
)


def _principal(user: Any, role: Role) -> Principal:
    return Principal(
        user_id=user.id, username=user.username, role=role, clinic_id=user.clinic_id, client_addr="demo"
    )


def dea_number(rng: random.Random, first: str, full_name: str) -> str:
    six = "".join(str(rng.randrange(10)) for _ in range(6))
    return f"{first}{last_name(full_name)[0].upper()}{six}{dea_check_digit(six)}"


def npi_number(rng: random.Random) -> str:
    nine = "1" + "".join(str(rng.randrange(10)) for _ in range(8))
    return f"{nine}{npi_check_digit(nine)}"


def seed(db: Session, rng: random.Random, clinic: DemoClinic, patient_ids: list[int]) -> None:
    own = random.Random(f"{rng.getstate()!r}/prescribing/{clinic.slug}")
    admin = _principal(auth.user_by_username(db, f"admin.{clinic.slug}"), Role.clinic_admin)
    dr_user = auth.user_by_username(db, f"dr.{clinic.slug}")
    np_user = auth.user_by_username(db, f"np.{clinic.slug}")
    nurse_user = auth.user_by_username(db, f"nurse.{clinic.slug}")
    state = patients.visible_patient(db, admin, patient_ids[0], "demo.seed").state or "NY"
    today = clinic_time.today(db, clinic.id)
    later = add_months(today, 12 * LICENCE_YEARS)
    for user, first, profession, licence_until in (
        (dr_user, "B", "Medicine", later),
        (np_user, "M", "Nurse practitioner", today + dt.timedelta(days=EXPIRING_SOON_DAYS)),
    ):
        credentials.add_licence(
            db,
            admin,
            user.id,
            LicenceIn(
                state=state,
                number=f"{state}-{own.randrange(100000, 999999)}",
                profession=profession,
                expires_on=licence_until,
            ),
        )
        credentials.add_dea(
            db,
            admin,
            user.id,
            DeaIn(number=dea_number(own, first, user.full_name), state=state, expires_on=later),
        )
        credentials.set_npi(db, admin, user.id, NpiIn(npi=npi_number(own)))
    credentials.add_board(
        db, admin, dr_user.id, BoardIn(board="American Board of Anesthesiology", specialty="Pain medicine")
    )
    credentials.add_licence(
        db,
        admin,
        nurse_user.id,
        LicenceIn(
            state=state,
            number=f"RN-{own.randrange(100000, 999999)}",
            profession="Registered nursing",
            expires_on=later,
        ),
    )
    _prescriptions(db, _principal(dr_user, Role.prescriber), admin, patient_ids[:2], state, today)


def _prescriptions(
    db: Session, dr: Principal, admin: Principal, patient_ids: list[int], state: str, today: dt.date
) -> None:
    for pid in patient_ids:
        patients.update_demographics(
            db, admin, pid, PatientUpdate(address_line="12 Demo Street", city="Springfield")
        )
    signed_for, blocked_for = patient_ids
    # Signed: an in-person evaluation and a PDMP check today, a 30-day sublingual supply.
    encounter = encounters.record_encounter(
        db,
        dr,
        signed_for,
        EncounterIn(kind="in_person", modality="in_person", occurred_on=today, patient_state=state),
    )
    encounters.record_pdmp(db, dr, signed_for, PdmpIn(checked_on=today, state=state))
    rx = prescriptions.create_draft(
        db,
        dr,
        signed_for,
        PrescriptionIn(
            product_key="ketamine_sl_lozenge_50",
            quantity=30,
            days_supply=30,
            directions="Dissolve one lozenge under the tongue once daily for breakthrough pain.",
            refills=1,
            encounter_id=encounter.id,
            compounded_ack=ACK,
        ),
    )
    _justify_mme(db, dr, rx.id)
    prescriptions.sign(db, dr, rx.id, SignIn(acknowledge_warnings=True))
    # Draft: a telehealth visit (audio and video) but no PDMP check on record, so it is blocked.
    visit = encounters.record_encounter(
        db,
        dr,
        blocked_for,
        EncounterIn(kind="telehealth", modality="audio_video", occurred_on=today, patient_state=state),
    )
    blocked = prescriptions.create_draft(
        db,
        dr,
        blocked_for,
        PrescriptionIn(
            product_key="ketamine_nasal_spray_10",
            quantity=60,
            days_supply=30,
            directions="One spray in one nostril up to twice daily for breakthrough pain.",
            refills=0,
            encounter_id=visit.id,
            compounded_ack=ACK,
        ),
    )
    _justify_mme(db, dr, blocked.id)


def _justify_mme(db: Session, dr: Principal, rx_id: int) -> None:
    """A demo patient's random opioids can reach 90 MME/day: document why, as a prescriber would."""
    if "mme" in {c.key for c in prescriptions.view(db, dr, rx_id).evaluation.blocks}:
        justification = "Opioid taper agreed with the pain team; naloxone at home."
        prescriptions.update_draft(db, dr, rx_id, DraftUpdateIn(mme_justification=justification))
