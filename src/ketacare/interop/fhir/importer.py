"""FHIR NDJSON import: Patient, Condition, Observation and MedicationStatement lines into a clinic's
record, with a per-line report.

Each line is read on its own (streamed; a line longer than ``MAX_LINE_BYTES`` is refused without
holding it), parsed, validated with the ``fhir.resources`` R4B model of its type, then checked
against KetaCare's own rules, and written through the patients feature's use-cases inside a
SAVEPOINT of its own: a rejected line leaves nothing behind, the accepted ones are committed with
the caller's transaction (or every ``commit_every`` lines by the command).

Two passes over the files: every Patient line first, then the rest, so a Condition may come
before its Patient in a file, or in an earlier file.

Idempotency: ``fhir_import_links`` remembers, per clinic and source system, each source resource
(its ``id``, or the SHA-256 of its canonical JSON when it has none), the row it became and the
SHA-256 of its content (``meta`` left out: a re-export with a new ``lastUpdated`` is the same
resource). The source system is required: without it one hospital's Patient/1 would be taken
for another's. The same line again is *unchanged*; a changed Patient updates demographics, unless
both its family name and birth date differ (another person: refused as a conflict); any other
changed resource is refused (the record may have been edited in KetaCare since).

A ``subject`` is a reference to a Patient imported from the same source, or an identifier in this
clinic's record-number system (``base.record_number_system``), matched exactly.

A value no check foresaw (a ValueError, OverflowError or TypeError while storing a line) rejects
that line only, and is logged with its traceback.

What is understood (codes from clinical-facts.md section 7.1 and ``hl7v2.codes``):

- Observation: body weight 29463-7 and height 8302-2 go to the measurements (kg/cm; g, [lb_av],
  m, [in_i] converted); the LOINC vital signs of ``hl7v2.codes`` (heart rate, systolic, diastolic,
  mean BP, SpO2, respiratory rate, temperature, end-tidal CO2) with its UCUM units and the sessions
  feature's plausibility ranges; the BP panels 85354-9 and 96607-7 with systolic and diastolic
  components; pain NRS 72514-3 (an integer within the NRS scale of ``sessions.toml``). These are
  kept as observations recorded elsewhere, with their original code.
- Condition: an ICD-10-CM coding is required (SNOMED or text only is refused); current conditions
  only (clinicalStatus active, recurrence or relapse; not refuted or entered in error).
- MedicationStatement: current (status active) medications named by
  ``medicationCodeableConcept``. The drug class comes from a ``urn:ketacare:drug-class`` coding
  (what KetaCare's own export writes) or, for opioids, from the exact names of the MME table
  (never a fragment: dihydrocodeine is not codeine); a medication whose class cannot be told is
  refused (calling it "other" could hide a benzodiazepine or an MAOI from the interaction checks).
  An opioid with a CDC factor needs what its MME needs: a dose in mg and doses per day (fentanyl:
  mcg/h); one without a factor (buprenorphine) is kept and its MME shown as not computed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import InvalidInput, KetaCareError
from ketacare.interop.fhir.models import FhirImportLink
from ketacare.interop.fhir.resources.base import (
    ICD10CM,
    LOINC,
    SNOMED,
    UCUM,
    record_number_system,
    table,
)
from ketacare.interop.fhir.resources.observation_parts import display_of
from ketacare.interop.hl7v2 import codes as hl7_codes
from ketacare.knowledge.contraindications import opioid_for
from ketacare.knowledge.sessions import session_rules
from ketacare.patients import service as patients
from ketacare.patients.schemas import (
    ConditionCreate,
    DrugClass,
    ExternalObservationCreate,
    MeasurementCreate,
    MedicationCreate,
    ObservationPart,
    PatientCreate,
    PatientUpdate,
)
from ketacare.sessions.device import VITAL_UNITS

log = logging.getLogger(__name__)
Resource = dict[str, Any]
SUPPORTED_TYPES = ("Patient", "Condition", "Observation", "MedicationStatement")
MAX_LINE_BYTES = 1_000_000  # one resource; a Patient or an Observation is a few kB
DRUG_CLASS_SYSTEM = "urn:ketacare:drug-class"  # the local coding KetaCare's MedicationStatement carries

# LOINC codes (clinical-facts.md 7.1, all tagged V).
BODY_WEIGHT = "29463-7"
BODY_HEIGHT = "8302-2"
BP_PANELS = ("85354-9", "96607-7")  # the BP panel; 96607-7 is also in the US Core value set
PAIN_NRS = "72514-3"  # its display is the knowledge data's (fhir_observation_codes.toml)
SCORE_UNIT = "{score}"

# Units (UCUM codes and the spellings senders use) and their factor to what KetaCare stores.
# The avoirdupois pound (0.45359237 kg) and the inch (2.54 cm) are exact by definition.
_WEIGHT_TO_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237}
_HEIGHT_TO_CM = {"cm": 1.0, "mm": 0.1, "m": 100.0, "[in_i]": 2.54}
_UNIT_SPELLINGS = {
    "kilogram": "kg",
    "kgs": "kg",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "pound": "[lb_av]",
    "in": "[in_i]",
    "inch": "[in_i]",
    "inches": "[in_i]",
}
# Dose units as KetaCare's medication list (and its MME arithmetic) spells them.
_DOSE_UNITS = {"mg": "mg", "ug": "mcg", "mcg": "mcg", "ug/h": "mcg/h", "mcg/h": "mcg/h", "ug/hr": "mcg/h"}
_PER_DAY = {"h": 24.0, "d": 1.0, "wk": 1 / 7}

_CURRENT_CONDITION = frozenset({"active", "recurrence", "relapse"})
_NOT_A_CONDITION = frozenset({"refuted", "entered-in-error"})
_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})

# Where the patients schema's field names come from in a FHIR Patient (for reasons people read).
_PATIENT_FIELDS = {
    "given_name": "Patient.name.given",
    "family_name": "Patient.name.family",
    "date_of_birth": "Patient.birthDate",
    "sex": "Patient.gender",
    "email": "Patient.telecom (email)",
    "phone": "Patient.telecom (phone)",
    "address_line": "Patient.address.line",
    "city": "Patient.address.city",
    "state": "Patient.address.state",
    "postal_code": "Patient.address.postalCode",
}


class Rejected(Exception):
    """A line refused, with the reason people read. ``code`` is the OperationOutcome issue type:
    invalid (not well-formed or not valid FHIR), processing (valid, but against KetaCare's rules),
    not-found (a reference that resolves to nothing in this clinic)."""

    def __init__(self, reason: str, code: str = "processing") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class NdjsonFile:
    name: str
    stream: IO[bytes]  # seekable: it is read twice (Patients first)


@dataclass(frozen=True)
class LineResult:
    file: str
    line: int
    resource_type: str | None
    source_id: str | None
    outcome: str  # accepted | unchanged | rejected
    local: str | None = None  # what it became: "patients/12", "patient_conditions/4" ...
    reason: str | None = None  # why it was rejected, or what an accepted change did
    issue_code: str | None = None  # for a rejected line: invalid | processing | not-found


@dataclass
class ImportReport:
    source_system: str
    files: list[str]
    lines: list[LineResult]

    def totals(self) -> dict[str, int]:
        counts = Counter(r.outcome for r in self.lines)
        return {
            "lines": len(self.lines),
            "accepted": counts["accepted"],
            "unchanged": counts["unchanged"],
            "rejected": counts["rejected"],
        }

    @property
    def rejected(self) -> list[LineResult]:
        return [r for r in self.lines if r.outcome == "rejected"]

    def summary(self) -> str:
        t = self.totals()
        return (
            f"{t['lines']} lines: {t['accepted']} accepted, {t['unchanged']} unchanged, "
            f"{t['rejected']} rejected"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source_system,
            "files": self.files,
            "totals": self.totals(),
            "lines": [asdict(r) for r in self.lines],
        }


# --- reading and checking one line ---------------------------------------------------------------


def read_lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) from the start of ``stream``; ``None`` for a line longer than
    ``limit``, which is skipped without being held in memory."""
    stream.seek(0)
    number = 0
    while chunk := stream.readline(limit + 1):
        number += 1
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            while (rest := stream.readline(64 * 1024)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        yield number, chunk


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_line(raw: bytes | None, limit: int = MAX_LINE_BYTES) -> Resource:
    """The resource on one line, or ``Rejected`` saying what is wrong with the line itself."""
    if raw is None:
        raise Rejected(f"the line is longer than {limit:,} bytes; nothing of it was read", "invalid")
    if b"\x00" in raw:
        raise Rejected("the line holds a NUL character (byte 0)", "invalid")
    try:
        text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"the line is not UTF-8 text (byte {exc.start + 1})", "invalid") from exc
    if not text.strip():
        raise Rejected("empty line: NDJSON holds one resource on every line", "invalid")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise Rejected(f"not JSON: {exc.msg} at column {exc.colno}", "invalid") from exc
    except (ValueError, RecursionError) as exc:
        raise Rejected(f"not JSON a FHIR server accepts: {exc}", "invalid") from exc
    if not isinstance(value, dict):
        shape = "an array" if isinstance(value, list) else f"a {type(value).__name__}"
        raise Rejected(f"the line is {shape}, not one FHIR resource (a JSON object)", "invalid")
    if "\\u0000" in text:
        raise Rejected("the line holds a NUL character (\\u0000)", "invalid")
    kind: Any = value.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise Rejected("resourceType is missing", "invalid")
    if kind not in SUPPORTED_TYPES:
        raise Rejected(
            f"resourceType {kind[:60]!r} is not imported; this import takes " + ", ".join(SUPPORTED_TYPES),
            "not-supported",
        )
    return value


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _messages(exc: ValidationError, prefix: str = "", names: dict[str, str] | None = None) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = _location(error["loc"])
        where = (names or {}).get(loc) or (f"{prefix}.{loc}" if prefix and loc else loc or prefix)
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def validate_fhir(resource: Resource) -> None:
    """The ``fhir.resources`` R4B model of the resource's type must accept it."""
    kind = resource["resourceType"]
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        raise Rejected(f"not valid FHIR R4: {_messages(exc, kind)}", "invalid") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise Rejected(f"not valid FHIR R4: {exc}", "invalid") from exc


def canonical(resource: Resource) -> bytes:
    """The resource as sorted, compact JSON without ``meta`` (what a re-export rewrites)."""
    content = {k: v for k, v in resource.items() if k != "meta"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def source_id_of(resource: Resource) -> str:
    given = resource.get("id")
    if isinstance(given, str) and given:
        return given
    return hashlib.sha256(canonical(resource)).hexdigest()


# --- small readers of FHIR JSON --------------------------------------------------------------------


def _codings(concept: Any, system: str) -> list[Resource]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if c.get("system") == system and c.get("code")]


def _status_code(concept: Any) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if coding.get("code"):
            return str(coding["code"])
    return None


def _instant(value: str, where: str) -> dt.datetime:
    """A FHIR dateTime with a time of day (FHIR then requires its offset), in UTC."""
    if len(value) <= 10:
        raise Rejected(
            f"{where} {value!r} has no time of day; KetaCare keeps when it was observed", "processing"
        )
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:
        # OverflowError: 0001-01-01T00:30:00+01:00 is before the first instant UTC can hold.
        raise Rejected(f"{where} {value[:40]!r} is not an instant KetaCare can keep ({exc})") from exc


def _day(value: str, where: str) -> dt.date:
    """The calendar date of a FHIR date or dateTime, as written (in the sender's own offset)."""
    if len(value) < 10:
        raise Rejected(f"{where} {value!r} is not a full date (year-month-day)", "processing")
    try:
        return dt.date.fromisoformat(value[:10])
    except (ValueError, OverflowError) as exc:
        raise Rejected(f"{where} {value[:40]!r} is not a calendar date ({exc})") from exc


def _float(value: Any, where: str) -> float:
    """A FHIR decimal as a float; an integer too large for one (10**400) is refused, not a crash."""
    try:
        number = float(value)
    except (ValueError, OverflowError, TypeError) as exc:
        raise Rejected(f"{where} {str(value)[:40]} is not a number KetaCare can keep") from exc
    if not math.isfinite(number):  # 1e999 reads as infinity
        raise Rejected(f"{where} {str(value)[:40]} is not a finite number")
    return number


def _quantity(resource: Resource, where: str) -> tuple[float, list[str]]:
    """The value of a valueQuantity and the unit spellings it gives (UCUM code first)."""
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        raise Rejected(f"{where}.valueQuantity is missing: a number with its unit is needed", "processing")
    units = [str(quantity[k]) for k in ("code", "unit") if quantity.get(k)]
    if quantity.get("code") and quantity.get("system") not in (None, UCUM):
        units = [str(quantity["unit"])] if quantity.get("unit") else []
    return _float(quantity["value"], f"{where}.valueQuantity.value"), units


def _convert(value: float, units: list[str], factors: dict[str, float], what: str, where: str) -> float:
    if not units:
        raise Rejected(f"{where}.valueQuantity has no unit; {what} needs one of " + ", ".join(factors))
    for unit in units:
        code = _UNIT_SPELLINGS.get(unit.strip().lower(), unit.strip())
        if code in factors:
            return value * factors[code]
    raise Rejected(
        f"{where}.valueQuantity unit {units[0]!r} cannot be converted for {what}; use one of "
        + ", ".join(factors)
    )


# --- the import --------------------------------------------------------------------------------------


Handler = Callable[[Resource], tuple[str, int, int]]  # -> (local table, local row id, patient id)

SOURCE_REQUIRED = (
    "Name the system the records come from (e.g. old-clinic-ehr): ids are only unique within "
    "one system, so without it one hospital's Patient/1 would be taken for another's."
)


def check_source(source_system: str | None) -> str:
    """The source system's name, stripped; ``InvalidInput`` (field ``source``) when it is
    missing, blank, longer than 100 characters or holds a control character."""
    name = (source_system or "").strip()
    if not name:
        raise InvalidInput(errors={"source": SOURCE_REQUIRED})
    if len(name) > 100 or not name.isprintable():
        raise InvalidInput(errors={"source": "Up to 100 printable characters naming the source system."})
    return name


class Importer:
    """One import run for one clinic (the actor's), from one source system."""

    def __init__(
        self,
        db: Session,
        actor: Principal,
        *,
        source_system: str,
        commit_every: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.actor = actor
        # Required: links are kept per (clinic, source system, type, id).
        self.source_system = check_source(source_system)
        self._record_number_system: str | None = None
        self.commit_every = commit_every
        self.progress = progress
        self._since_commit = 0
        self._handlers: dict[str, Handler] = {
            "Patient": self._new_patient,
            "Condition": self._condition,
            "Observation": self._observation,
            "MedicationStatement": self._medication,
        }

    # -- the run ----------------------------------------------------------------------------------

    def run(self, files: Sequence[NdjsonFile]) -> ImportReport:
        found: list[tuple[int, LineResult]] = []
        for patients_pass in (True, False):
            for index, source in enumerate(files):
                for number, raw in read_lines(source.stream):
                    result = self._line(source.name, number, raw, patients_pass)
                    if result is not None:
                        found.append((index, result))
                    if self.progress is not None:
                        self.progress(1)
        found.sort(key=lambda item: (item[0], item[1].line))
        report = ImportReport(self.source_system, [f.name for f in files], [r for _, r in found])
        audit.record(
            self.db,
            self.actor,
            "fhir.import",
            "fhir",
            detail=f"{', '.join(report.files)[:200]} (source {self.source_system}): " + report.summary(),
        )
        return report

    def _line(self, name: str, number: int, raw: bytes | None, patients_pass: bool) -> LineResult | None:
        try:
            resource = parse_line(raw)
        except Rejected as exc:
            if not patients_pass:
                return None  # reported in the first pass
            return LineResult(name, number, None, None, "rejected", reason=exc.reason, issue_code=exc.code)
        kind = resource["resourceType"]
        if (kind == "Patient") != patients_pass:
            return None
        source_id = resource.get("id") if isinstance(resource.get("id"), str) else None
        try:
            validate_fhir(resource)
            source_id = source_id_of(resource)
            outcome, local, note = self._store(kind, source_id, resource)
        except Rejected as exc:
            return LineResult(
                name, number, kind, source_id, "rejected", reason=exc.reason, issue_code=exc.code
            )
        except ValidationError as exc:
            names = _PATIENT_FIELDS if kind == "Patient" else None
            reason = _messages(exc, kind, names)
            return LineResult(
                name, number, kind, source_id, "rejected", reason=reason, issue_code="processing"
            )
        except InvalidInput as exc:
            reason = "; ".join(f"{_PATIENT_FIELDS.get(k, k)}: {v}" for k, v in exc.errors.items()) or str(exc)
            return LineResult(
                name, number, kind, source_id, "rejected", reason=reason, issue_code="processing"
            )
        except KetaCareError as exc:
            return LineResult(
                name, number, kind, source_id, "rejected", reason=str(exc), issue_code="processing"
            )
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            reason = f"the database refused a value ({type(cause).__name__}); nothing of it was stored"
            return LineResult(
                name, number, kind, source_id, "rejected", reason=reason, issue_code="processing"
            )
        except (ValueError, OverflowError, TypeError) as exc:
            # The last resort: a value no check above foresaw. The savepoint took back whatever
            # the line wrote; the rest of the import goes on. Logged with its traceback, since it
            # may be a bug rather than bad input.
            log.exception(
                "FHIR import: %s line %d (%s/%s) failed unexpectedly", name, number, kind, source_id
            )
            reason = (
                f"KetaCare could not take a value of this line ({type(exc).__name__}: {str(exc)[:120]}); "
                "nothing of it was stored"
            )
            return LineResult(
                name, number, kind, source_id, "rejected", reason=reason, issue_code="exception"
            )
        if outcome == "accepted" and self.commit_every:
            self._since_commit += 1
            if self._since_commit >= self.commit_every:
                self.db.commit()
                self._since_commit = 0
        return LineResult(name, number, kind, source_id, outcome, local=local, reason=note)

    def _link(self, kind: str, source_id: str) -> FhirImportLink | None:
        return self.db.execute(
            select(FhirImportLink).where(
                FhirImportLink.clinic_id == self.actor.clinic_id,
                FhirImportLink.source_system == self.source_system,
                FhirImportLink.resource_type == kind,
                FhirImportLink.source_id == source_id,
            )
        ).scalar_one_or_none()

    def _store(self, kind: str, source_id: str, resource: Resource) -> tuple[str, str, str | None]:
        digest = hashlib.sha256(canonical(resource)).hexdigest()
        link = self._link(kind, source_id)
        if link is not None:
            local = f"{link.local_table}/{link.local_id}"
            if link.content_sha256 == digest:
                return "unchanged", local, None
            if kind != "Patient":
                raise Rejected(
                    f"{kind}/{source_id} changed since it was imported on {link.imported_at:%Y-%m-%d}; "
                    "edit it in KetaCare"
                )
            with self.db.begin_nested():
                changed = self._update_patient(link.patient_id, source_id, resource)
                link.content_sha256 = digest
                link.updated_at = utcnow()
                self.db.flush()
            return "accepted", local, "demographics updated: " + (", ".join(changed) or "nothing")
        with self.db.begin_nested():
            table, local_id, patient_id = self._handlers[kind](resource)
            self.db.add(
                FhirImportLink(
                    clinic_id=self.actor.clinic_id,
                    source_system=self.source_system,
                    resource_type=kind,
                    source_id=source_id,
                    local_table=table,
                    local_id=local_id,
                    patient_id=patient_id,
                    content_sha256=digest,
                    imported_by_id=self.actor.user_id,
                )
            )
            self.db.flush()
        return "accepted", f"{table}/{local_id}", None

    # -- Patient ----------------------------------------------------------------------------------

    def _new_patient(self, resource: Resource) -> tuple[str, int, int]:
        patient = patients.create(self.db, self.actor, PatientCreate(**patient_fields(resource)))
        return "patients", patient.id, patient.id

    def _update_patient(self, patient_id: int, source_id: str, resource: Resource) -> list[str]:
        fields = patient_fields(resource)
        before = patients.visible_patient(self.db, self.actor, patient_id, "patient.update")
        same_family = (
            str(before.family_name).strip().casefold() == str(fields["family_name"]).strip().casefold()
        )
        if not same_family and before.date_of_birth != fields["date_of_birth"]:
            raise Rejected(
                f"conflict: Patient/{source_id} from {self.source_system} was imported as "
                f"patients/{patient_id}, and this line gives another family name and another date of "
                "birth: another person, not a correction. Nothing was changed; check the source "
                "system's name and the id, or correct the patient in KetaCare",
                "conflict",
            )
        changed = [
            _PATIENT_FIELDS[k].removeprefix("Patient.") for k, v in fields.items() if getattr(before, k) != v
        ]
        patients.update_demographics(self.db, self.actor, patient_id, PatientUpdate(**fields))
        return changed

    def _patient_of(self, resource: Resource) -> int:
        kind = resource["resourceType"]
        subject = resource.get("subject")
        if not isinstance(subject, dict):
            raise Rejected(f"{kind}.subject is missing: it must name the patient", "invalid")
        reference = subject.get("reference")
        if isinstance(reference, str) and reference:
            parts = reference.rstrip("/").split("/")
            if len(parts) < 2 or parts[-2] != "Patient":
                raise Rejected(f"{kind}.subject {reference[:80]!r} is not a Patient reference", "invalid")
            link = self._link("Patient", parts[-1])
            if link is None:
                raise Rejected(
                    f"{kind}.subject {reference[:80]} is not a patient imported into this clinic"
                    f" from {self.source_system}"
                    ": import its Patient line first (in these files or an earlier import)",
                    "not-found",
                )
            return link.patient_id
        identifier = subject.get("identifier")
        value = identifier.get("value") if isinstance(identifier, dict) else None
        if isinstance(identifier, dict) and isinstance(value, str) and value.strip():
            return self._patient_by_record_number(kind, identifier.get("system"), value)
        raise Rejected(f"{kind}.subject has neither a reference nor an identifier", "invalid")

    def _patient_by_record_number(self, kind: str, system: Any, value: str) -> int:
        """A subject.identifier is a record number only in this clinic's record-number system (what
        KetaCare's Patient export carries), and only as written: another system's "MRN 12" is
        another hospital's patient, whatever its value."""
        expected = self._own_record_number_system()
        if system != expected:
            given = f"system {str(system)[:80]!r}" if isinstance(system, str) and system else "no system"
            raise Rejected(
                f"{kind}.subject.identifier has {given}: only this clinic's record numbers "
                f"(system {expected}) are matched; give the patient as a reference to an imported "
                "Patient instead",
                "not-found",
            )
        p = table("patients")
        found = self.db.execute(
            select(p.c.id).where(p.c.clinic_id == self.actor.clinic_id, p.c.record_number == value)
        ).scalar_one_or_none()
        if found is None:
            raise Rejected(
                f"{kind}.subject.identifier {value[:40]!r} is not a record number of this clinic "
                f"(system {expected})",
                "not-found",
            )
        return int(found)

    def _own_record_number_system(self) -> str:
        if self._record_number_system is None:
            c = table("clinics")
            slug = self.db.execute(select(c.c.slug).where(c.c.id == self.actor.clinic_id)).scalar_one()
            self._record_number_system = record_number_system(str(slug))
        return self._record_number_system

    # -- Condition --------------------------------------------------------------------------------

    def _condition(self, resource: Resource) -> tuple[str, int, int]:
        clinical = _status_code(resource.get("clinicalStatus"))
        if clinical is not None and clinical not in _CURRENT_CONDITION:
            raise Rejected(
                f"Condition.clinicalStatus {clinical!r}: KetaCare's record holds current conditions only"
            )
        verification = _status_code(resource.get("verificationStatus"))
        if verification in _NOT_A_CONDITION:
            raise Rejected(f"Condition.verificationStatus {verification!r}: not a condition of the patient")
        code = resource.get("code")
        icd = _codings(code, ICD10CM)
        if not icd:
            snomed = _codings(code, SNOMED)
            has = f"only SNOMED CT {snomed[0]['code']}" if snomed else "no ICD-10-CM coding"
            raise Rejected(
                f"Condition.code has {has}; KetaCare's record needs an ICD-10-CM coding (system {ICD10CM})"
            )
        onset = None
        if isinstance(resource.get("onsetDateTime"), str):
            onset = _day(resource["onsetDateTime"], "Condition.onsetDateTime")
        elif isinstance(resource.get("onsetPeriod"), dict) and resource["onsetPeriod"].get("start"):
            onset = _day(resource["onsetPeriod"]["start"], "Condition.onsetPeriod.start")
        else:
            other = next((k for k in resource if k.startswith("onset")), None)
            if other is not None:
                raise Rejected(f"Condition.{other}: KetaCare keeps the onset as a date (onsetDateTime)")
        display = icd[0].get("display") or (code or {}).get("text") or None
        try:
            data = ConditionCreate(icd10_code=icd[0]["code"], display=display, onset_date=onset)
        except ValidationError as exc:
            raise Rejected(
                _messages(
                    exc, "", {"icd10_code": "Condition.code (ICD-10-CM)", "onset_date": "Condition.onset"}
                )
            ) from exc
        patient_id = self._patient_of(resource)
        row = patients.add_condition(self.db, self.actor, patient_id, data)
        return "patient_conditions", row.id, patient_id

    # -- Observation ------------------------------------------------------------------------------

    def _observation(self, resource: Resource) -> tuple[str, int, int]:
        status = resource.get("status")
        if status not in _OBSERVATION_STATUSES:
            raise Rejected(
                f"Observation.status {status!r}: only final, amended, corrected or preliminary "
                "observations are imported"
            )
        loinc = _codings(resource.get("code"), LOINC)
        understood = [c for c in loinc if _understood(c["code"])]
        if not understood:
            given = ", ".join(
                f"{c.get('system', '?')}|{c.get('code', '?')}" for c in (resource["code"].get("coding") or [])
            )
            raise Rejected(
                f"Observation.code {given or repr(resource['code'].get('text', ''))} is not one "
                "KetaCare imports: "
                "LOINC body weight, height, the vital signs, the BP panel and pain NRS 72514-3",
                "not-supported",
            )
        code = understood[0]["code"]
        patient_id = self._patient_of(resource)
        effective = _effective(resource)
        if code in (BODY_WEIGHT, BODY_HEIGHT):
            value, units = _quantity(resource, "Observation")
            try:
                if code == BODY_WEIGHT:
                    kg = _convert(value, units, _WEIGHT_TO_KG, "a body weight", "Observation")
                    data = MeasurementCreate(
                        weight_kg=round(kg, 2), measured_on=_day(effective, "Observation.effective")
                    )
                else:
                    cm = _convert(value, units, _HEIGHT_TO_CM, "a body height", "Observation")
                    data = MeasurementCreate(
                        height_cm=round(cm, 1), measured_on=_day(effective, "Observation.effective")
                    )
            except ValidationError as exc:
                raise Rejected(
                    _messages(
                        exc,
                        "",
                        {
                            "weight_kg": "Observation.valueQuantity",
                            "height_cm": "Observation.valueQuantity",
                            "measured_on": "Observation.effective",
                        },
                    )
                ) from exc
            measurement = patients.add_measurement(self.db, self.actor, patient_id, data)
            return "patient_measurements", measurement.id, patient_id
        at = _instant(effective, "Observation.effective")
        source = f"FHIR import from {self.source_system}: Observation/{source_id_of(resource)}"[:200]
        if code in BP_PANELS:
            parts = _bp_components(resource)
            display = understood[0].get("display") or resource["code"].get("text") or "Blood pressure panel"
            observation = ExternalObservationCreate(
                code_system=LOINC,
                code=code,
                display=str(display)[:200],
                category="vital-signs",
                components=parts,
                effective_at=at,
                source=source,
            )
        elif code == PAIN_NRS:
            observation = ExternalObservationCreate(
                code_system=LOINC,
                code=code,
                display=display_of(LOINC, PAIN_NRS) or "Pain NRS",
                category="survey",
                value=_nrs(resource),
                unit=SCORE_UNIT,
                effective_at=at,
                source=source,
            )
        else:
            known = hl7_codes.lookup(code, "", hl7_codes.LOINC)
            assert known is not None
            value, units = _quantity(resource, "Observation")
            observation = ExternalObservationCreate(
                code_system=LOINC,
                code=code,
                display=known.name,
                category="vital-signs",
                value=_vital(known, value, units, "Observation"),
                unit=VITAL_UNITS[known.kind],
                effective_at=at,
                source=source,
            )
        row = patients.add_external_observation(self.db, self.actor, patient_id, observation)
        return "patient_observations", row.id, patient_id

    # -- MedicationStatement ----------------------------------------------------------------------

    def _medication(self, resource: Resource) -> tuple[str, int, int]:
        status = resource.get("status")
        if status != "active":
            raise Rejected(
                f"MedicationStatement.status {status!r}: KetaCare's medication list holds current "
                "(active) medications"
            )
        if "medicationReference" in resource:
            raise Rejected(
                "MedicationStatement.medicationReference is not followed; give the medication as "
                "medicationCodeableConcept"
            )
        concept = resource.get("medicationCodeableConcept") or {}
        name = concept.get("text") or next(
            (c.get("display") for c in concept.get("coding") or [] if c.get("display")), None
        )
        if not name:
            raise Rejected(
                "MedicationStatement.medicationCodeableConcept has no text or display: the "
                "medication's name is needed"
            )
        drug_class = _drug_class(str(name), concept)
        dosages = resource.get("dosage") or []
        if len(dosages) > 1:
            raise Rejected(
                "MedicationStatement.dosage has several instructions; KetaCare keeps one per medication"
            )
        dosage = dosages[0] if dosages else {}
        amount, unit = _dose(dosage)
        per_day = _doses_per_day(dosage)
        route = dosage.get("route") or {}
        route_text = route.get("text") or next(
            (c.get("display") for c in route.get("coding") or [] if c.get("display")), None
        )
        started = None
        if isinstance(resource.get("effectiveDateTime"), str):
            started = _day(resource["effectiveDateTime"], "MedicationStatement.effectiveDateTime")
        elif isinstance(resource.get("effectivePeriod"), dict) and resource["effectivePeriod"].get("start"):
            started = _day(resource["effectivePeriod"]["start"], "MedicationStatement.effectivePeriod.start")
        if drug_class == DrugClass.opioid:
            _check_opioid(str(name), amount, unit, per_day)
        try:
            data = MedicationCreate(
                name=str(name)[:120],
                drug_class=drug_class,
                dose_amount=amount,
                dose_unit=unit,
                doses_per_day=per_day,
                route=route_text[:30] if route_text else None,
                started_on=started,
            )
        except ValidationError as exc:
            raise Rejected(
                _messages(
                    exc,
                    "",
                    {
                        "dose_amount": "MedicationStatement.dosage.doseAndRate.doseQuantity",
                        "doses_per_day": "MedicationStatement.dosage.timing",
                        "started_on": "MedicationStatement.effective",
                        "name": "MedicationStatement.medicationCodeableConcept",
                    },
                )
            ) from exc
        patient_id = self._patient_of(resource)
        row = patients.add_medication(self.db, self.actor, patient_id, data)
        return "patient_medications", row.id, patient_id


def patient_fields(resource: Resource) -> dict[str, Any]:
    """A FHIR Patient as the patients feature's fields (validated by its schemas)."""
    names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if name is None:
        raise Rejected("Patient.name is missing: KetaCare needs a family and a given name")
    family = name.get("family")
    given = " ".join(g for g in name.get("given") or [] if g)
    if not family:
        raise Rejected("Patient.name.family is missing")
    if not given:
        raise Rejected("Patient.name.given is missing")
    birth = resource.get("birthDate")
    if not birth:
        raise Rejected("Patient.birthDate is missing: KetaCare needs the date of birth")
    telecom = [t for t in resource.get("telecom") or [] if isinstance(t, dict) and t.get("value")]
    addresses = [a for a in resource.get("address") or [] if isinstance(a, dict)]
    address = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    return {
        "given_name": given,
        "family_name": family,
        "date_of_birth": _day(birth, "Patient.birthDate"),
        "sex": resource.get("gender") or "unknown",
        "email": next((t["value"] for t in telecom if t.get("system") == "email"), None),
        "phone": next((t["value"] for t in telecom if t.get("system") == "phone"), None),
        "address_line": ", ".join(address.get("line") or []) or None,
        "city": address.get("city"),
        "state": address.get("state"),
        "postal_code": address.get("postalCode"),
    }


def _understood(code: str) -> bool:
    if code in (BODY_WEIGHT, BODY_HEIGHT, PAIN_NRS) or code in BP_PANELS:
        return True
    return hl7_codes.lookup(code, "", hl7_codes.LOINC) is not None


def _effective(resource: Resource) -> str:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and period.get("start"):
        return str(period["start"])
    raise Rejected("Observation.effective[x] is missing: KetaCare keeps when it was observed")


def _vital(known: hl7_codes.ObservationCode, value: float, units: list[str], where: str) -> float:
    if not units:
        raise Rejected(
            f"{where}.valueQuantity has no unit; {known.name} is stored in {VITAL_UNITS[known.kind]}"
        )
    try:
        stored = hl7_codes.to_stored_unit(known.kind, value, units)
    except hl7_codes.UnitNotUnderstood as exc:
        raise Rejected(
            f"{where}.valueQuantity unit {units[0]!r} cannot be converted to "
            f"{VITAL_UNITS[known.kind]} for {known.name}"
        ) from exc
    low, high = session_rules().plausible[known.kind]
    if not low <= stored <= high:
        raise Rejected(
            f"{where}.valueQuantity {value:g} {units[0]} for {known.name} is outside the plausible range "
            f"{low:g}-{high:g} {VITAL_UNITS[known.kind]}"
        )
    return round(stored, 2)


def _bp_components(resource: Resource) -> list[ObservationPart]:
    if resource.get("valueQuantity") is not None:
        raise Rejected("Observation.valueQuantity: a blood-pressure panel carries its values in components")
    parts: dict[str, ObservationPart] = {}
    for i, component in enumerate(resource.get("component") or []):
        where = f"Observation.component[{i}]"
        codes = _codings(component.get("code"), LOINC)
        known = next((k for c in codes if (k := hl7_codes.lookup(c["code"], "", hl7_codes.LOINC))), None)
        if known is None or known.kind not in ("sbp", "dbp", "map"):
            given = ", ".join(c["code"] for c in codes) or "no LOINC code"
            raise Rejected(f"{where}.code {given} is not a blood-pressure component KetaCare understands")
        value, units = _quantity(component, where)
        stored = _vital(known, value, units, where)
        parts[known.kind] = ObservationPart(
            code_system=LOINC, code=known.code, display=known.name, value=stored, unit=VITAL_UNITS[known.kind]
        )
    missing = [
        label
        for kind, label in (("sbp", "systolic 8480-6"), ("dbp", "diastolic 8462-4"))
        if kind not in parts
    ]
    if missing:
        raise Rejected("Observation.component: the blood-pressure panel lacks " + " and ".join(missing))
    if parts["sbp"].value <= parts["dbp"].value:
        raise Rejected(
            f"Observation.component: systolic {parts['sbp'].value:g} is not above "
            f"diastolic {parts['dbp'].value:g}"
        )
    return [parts[k] for k in ("sbp", "dbp", "map") if k in parts]


def _nrs(resource: Resource) -> float:
    scale = session_rules().scales["nrs"]
    if isinstance(resource.get("valueInteger"), int):
        value: float = resource["valueInteger"]
    else:
        value, units = _quantity(resource, "Observation")
        if any(u not in (SCORE_UNIT, "score", "1") for u in units):
            raise Rejected(
                f"Observation.valueQuantity unit {units[0]!r}: a pain score has no unit ({SCORE_UNIT})"
            )
    if value != int(value) or not scale.item_min <= value <= scale.item_max:
        raise Rejected(
            f"Observation.value {value:g} is not a pain NRS score "
            f"(a whole number {scale.item_min}-{scale.item_max})"
        )
    return float(value)


def _drug_class(name: str, concept: Resource) -> DrugClass:
    found = opioid_for(name)  # the exact name table of the MME rule, never a fragment
    opioid = found.key if found else None
    coded = _codings(concept, DRUG_CLASS_SYSTEM)
    if coded:
        try:
            stated = DrugClass(coded[0]["code"])
        except ValueError:
            raise Rejected(
                f"MedicationStatement.medicationCodeableConcept {DRUG_CLASS_SYSTEM} "
                f"code {coded[0]['code']!r} "
                "is not a KetaCare drug class (" + ", ".join(c.value for c in DrugClass) + ")"
            ) from None
        if opioid and stated != DrugClass.opioid:
            raise Rejected(
                f"MedicationStatement: {name!r} is named like an opioid ({opioid}) "
                f"but coded as {stated.value}; "
                "an opioid must keep its MME"
            )
        return stated
    if opioid:
        return DrugClass.opioid
    raise Rejected(
        f"MedicationStatement: the drug class of {name!r} cannot be told from its name "
        f"or a {DRUG_CLASS_SYSTEM} "
        "coding; KetaCare needs it for the interaction and MME checks (add the coding, or enter it by hand)"
    )


def _dose(dosage: Resource) -> tuple[float | None, str | None]:
    rates = dosage.get("doseAndRate") or []
    if not rates:
        return None, None
    quantity = rates[0].get("doseQuantity") or rates[0].get("rateQuantity")
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return None, None
    unit = quantity.get("code") or quantity.get("unit")
    spelled = _DOSE_UNITS.get(str(unit).strip().lower(), str(unit).strip()) if unit else None
    return _float(quantity["value"], "MedicationStatement.dosage.doseAndRate.doseQuantity.value"), spelled


def _doses_per_day(dosage: Resource) -> float | None:
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    if not repeat.get("period"):
        return None
    unit = repeat.get("periodUnit")
    if unit not in _PER_DAY:
        raise Rejected(
            f"MedicationStatement.dosage.timing.repeat.periodUnit {unit!r} cannot be counted "
            "per day (use h, d or wk)"
        )
    where = "MedicationStatement.dosage.timing.repeat"
    frequency = _float(repeat.get("frequency") or 1, f"{where}.frequency")
    per_day = frequency * _PER_DAY[unit] / _float(repeat["period"], f"{where}.period")
    return round(per_day, 3)


def _check_opioid(name: str, amount: float | None, unit: str | None, per_day: float | None) -> None:
    """An opioid with a CDC factor needs what the MME arithmetic needs (screening.eligibility.
    mme_per_day): its dose in the factor's unit and, per mg, the doses per day. One the CDC gives
    no factor (buprenorphine) or that is not in the table is kept as it is: its MME is shown as
    not computed, never as 0."""
    where = "MedicationStatement.dosage.doseAndRate"
    opioid = opioid_for(name)
    if opioid is None or opioid.factor is None:
        return
    if amount is None:
        raise Rejected(f"{where}.doseQuantity is missing: {name!r} is an opioid and its MME needs the dose")
    if opioid.unit == "mcg/h":
        if unit != "mcg/h":
            raise Rejected(f"{where}: fentanyl's MME needs its dose in mcg/h (ug/h), not {unit!r}")
        return
    if unit is None:
        raise Rejected(
            f"{where}.doseQuantity has no unit: {name!r} is an opioid and its MME needs the dose in mg"
        )
    if unit != "mg":
        raise Rejected(
            f"{where}.doseQuantity unit {unit!r}: {name!r} is an opioid and its MME needs the dose in mg"
        )
    if per_day is None:
        raise Rejected(
            f"MedicationStatement.dosage.timing is missing: {name!r} is an opioid and its MME "
            "needs the doses per day"
        )
