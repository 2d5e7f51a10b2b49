"""Clinic-editable clinical defaults: the values tagged [M] or design in the knowledge files that a
clinic may set for itself. Pure: the specs, the validated ranges and the values in force.

Guideline limits tagged [V] (bolus 0.35 mg/kg, infusion 0.5-2 mg/kg/h, ...) are never here: they
are hard limits in ``planning.dosing``. The absolute ceilings (design) of every setting (day
visit, inpatient, ICU) are here, editable only below their outer bound; the adult weight bounds
(design) within theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ketacare.clinic_settings import KNOWLEDGE, OWN, Spec, in_force, note, number
from ketacare.knowledge.contraindications import prior_therapy_rule
from ketacare.knowledge.dose_limits import adult_bounds, ceiling_for, planning_defaults

SPECS: tuple[Spec, ...] = (
    Spec(
        "weight_max_age_days",
        "Planning weight valid for",
        "days",
        "int",
        1,
        180,
        lambda: planning_defaults().weight_max_age_days,
        lambda: planning_defaults().weight_max_age_days_tag,
        lambda: "Design default: ASRA/AAPM/ASA 2018 doses from a measured weight and gives no number of days",
        "dose rules: an older weight blocks the plan",
    ),
    Spec(
        "pump_increment_ml_per_h",
        "Pump rate increment",
        "mL/h",
        "float",
        0.01,
        1.0,
        lambda: planning_defaults().pump_increment_ml_per_h,
        lambda: planning_defaults().increments_tag,
        lambda: "dose_limits.toml: what the clinic's pumps can deliver (no fact)",
        "dose rules: pump mL/h is rounded to this",
    ),
    Spec(
        "syringe_increment_ml",
        "Syringe volume increment",
        "mL",
        "float",
        0.01,
        1.0,
        lambda: planning_defaults().syringe_increment_ml,
        lambda: planning_defaults().increments_tag,
        lambda: "dose_limits.toml: what the clinic's syringes can measure (no fact)",
        "dose rules: syringe mL is rounded to this",
    ),
    Spec(
        "prior_therapies_minimum",
        "Prior therapies tried (not first line)",
        "therapies",
        "int",
        1,
        len(prior_therapy_rule().options),
        lambda: prior_therapy_rule().minimum,
        lambda: prior_therapy_rule().sourced.tag,
        lambda: prior_therapy_rule().sourced.source,
        "eligibility: fewer documented prior therapies is a relative caution",
    ),
    Spec(
        "psychotomimetic_long_min",
        "Long time above the psychotomimetic band",
        "min",
        "float",
        1,
        240,
        lambda: planning_defaults().psychotomimetic_long_min,
        lambda: "design",
        lambda: "dose_limits.toml: PK warning threshold (no fact)",
        "PK check: a session above the band for longer is warned about",
    ),
    Spec(
        "high_frequency_sessions",
        "High-dose, high-frequency series from",
        "sessions",
        "int",
        2,
        30,
        lambda: planning_defaults().high_frequency_sessions,
        lambda: "design",
        lambda: (
            "Design default: ASRA/AAPM/ASA 2018 asks for liver tests with high doses at frequent "
            "intervals and gives no number"
        ),
        "eligibility: such a series needs liver tests on file",
    ),
)


def _ceiling_value(setting: str, name: str) -> float:
    value = getattr(ceiling_for(setting), name)
    assert value is not None  # each editable ceiling is set in its row (a test checks)
    return float(value)


def _day_visit(name: str) -> float:
    return _ceiling_value("outpatient", name)


_ASRA_FLOOR_MG = 80.0  # ASRA/AAPM/ASA 2018 session floor: a ceiling may not go below it (dose_limits.toml)


def _ceiling_spec(
    key: str, label: str, unit: str, minimum: float, used_by: str, setting: str = "outpatient"
) -> Spec:
    """A ceiling a clinic may only lower: its knowledge value is the hard outer bound.
    ``key`` is ``<setting>_<column>`` for the inpatient and ICU rows, the column for day visits."""
    column = key.removeprefix(f"{setting}_")
    return Spec(
        key,
        label,
        unit,
        "float",
        minimum,
        _ceiling_value(setting, column),
        lambda: _ceiling_value(setting, column),
        lambda: ceiling_for(setting).sourced.tag,
        lambda: ceiling_for(setting).sourced.source + " (the hard outer bound: a clinic may only lower it)",
        used_by,
    )


SPECS = (
    *SPECS,
    _ceiling_spec(
        "session_max_mg",
        "Most ketamine in one outpatient or home session",
        "mg",
        _ASRA_FLOOR_MG,
        "dose rules and the administration record: a plan or entry above it is refused",
    ),
    _ceiling_spec(
        "session_max_mg_per_kg",
        "Most ketamine per kg in one outpatient or home session",
        "mg/kg",
        0.5,
        "dose rules and the administration record: a plan or entry above it is refused",
    ),
    _ceiling_spec(
        "day_max_mg",
        "Most ketamine in one day (outpatient or home)",
        "mg",
        _ASRA_FLOOR_MG,
        "dose rules and the administration record, across the patient's sessions that day",
    ),
    _ceiling_spec(
        "day_max_mg_per_kg",
        "Most ketamine per kg in one day (outpatient or home)",
        "mg/kg",
        0.5,
        "dose rules and the administration record, across the patient's sessions that day",
    ),
    _ceiling_spec(
        "inpatient_day_max_mg",
        "Most ketamine in one day of an inpatient infusion",
        "mg",
        _ASRA_FLOOR_MG,
        "dose rules and the administration record of inpatient protocols: above it is refused",
        "inpatient",
    ),
    _ceiling_spec(
        "inpatient_day_max_mg_per_kg",
        "Most ketamine per kg in one day of an inpatient infusion",
        "mg/kg",
        0.5,
        "dose rules and the administration record of inpatient protocols: above it is refused",
        "inpatient",
    ),
    _ceiling_spec(
        "icu_day_max_mg_per_kg",
        "Most ketamine per kg in one day of an ICU infusion",
        "mg/kg",
        0.5,
        "dose rules and the administration record of ICU protocols: above it is refused",
        "icu",
    ),
    Spec(
        "adult_weight_min_kg",
        "Lowest adult weight KetaCare doses",
        "kg",
        "float",
        adult_bounds().weight_outer_min_kg,
        adult_bounds().weight_max_kg,
        lambda: adult_bounds().weight_min_kg,
        lambda: adult_bounds().weight.tag,
        lambda: adult_bounds().weight.source,
        "dose rules and the administration record: a lighter weight is refused, not dosed",
    ),
    Spec(
        "adult_weight_max_kg",
        "Highest adult weight KetaCare doses",
        "kg",
        "float",
        adult_bounds().weight_min_kg,
        adult_bounds().weight_outer_max_kg,
        lambda: adult_bounds().weight_max_kg,
        lambda: adult_bounds().weight.tag,
        lambda: adult_bounds().weight.source,
        "dose rules and the administration record: a heavier weight is refused, not dosed",
    ),
)
SPEC_BY_KEY = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class ClinicalDefaults:
    """The values in force for one clinic, and which of them are the clinic's own."""

    weight_max_age_days: int
    pump_increment_ml_per_h: float
    syringe_increment_ml: float
    prior_therapies_minimum: int
    psychotomimetic_long_min: float
    high_frequency_sessions: int
    session_max_mg: float
    session_max_mg_per_kg: float
    day_max_mg: float
    day_max_mg_per_kg: float
    inpatient_day_max_mg: float
    inpatient_day_max_mg_per_kg: float
    icu_day_max_mg_per_kg: float
    adult_weight_min_kg: float
    adult_weight_max_kg: float
    own: frozenset[str] = field(default_factory=frozenset)

    def origin(self, key: str) -> str:
        return OWN if key in self.own else KNOWLEDGE

    def note(self, key: str) -> str:
        """How a message names the value: the clinic's own setting or the knowledge default."""
        return note(SPEC_BY_KEY[key], key in self.own)


def resolve(overrides: Mapping[str, float | None]) -> ClinicalDefaults:
    """The values in force: the clinic's override where set, else the knowledge default."""
    found, own = in_force(SPECS, overrides)
    values = {key: number(value) for key, value in found.items()}
    return ClinicalDefaults(
        weight_max_age_days=int(values["weight_max_age_days"]),
        pump_increment_ml_per_h=float(values["pump_increment_ml_per_h"]),
        syringe_increment_ml=float(values["syringe_increment_ml"]),
        prior_therapies_minimum=int(values["prior_therapies_minimum"]),
        psychotomimetic_long_min=float(values["psychotomimetic_long_min"]),
        high_frequency_sessions=int(values["high_frequency_sessions"]),
        session_max_mg=float(values["session_max_mg"]),
        session_max_mg_per_kg=float(values["session_max_mg_per_kg"]),
        day_max_mg=float(values["day_max_mg"]),
        day_max_mg_per_kg=float(values["day_max_mg_per_kg"]),
        inpatient_day_max_mg=float(values["inpatient_day_max_mg"]),
        inpatient_day_max_mg_per_kg=float(values["inpatient_day_max_mg_per_kg"]),
        icu_day_max_mg_per_kg=float(values["icu_day_max_mg_per_kg"]),
        adult_weight_min_kg=float(values["adult_weight_min_kg"]),
        adult_weight_max_kg=float(values["adult_weight_max_kg"]),
        own=own,
    )


def knowledge_defaults() -> ClinicalDefaults:
    return resolve({})


def value_of(defaults: ClinicalDefaults, key: str) -> float:
    value: float = getattr(defaults, key)
    return value
