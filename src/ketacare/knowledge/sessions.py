"""Treatment-session rules from ``data/sessions.toml``: alarm defaults, plausibility ranges,
pre-check and discharge criteria, the observation schedule, scales and the adverse-event
catalogue. Every value keeps its source and tag; design values are clinic-editable defaults."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from ketacare.knowledge import Sourced, _load


@dataclass(frozen=True)
class AlarmRule:
    key: str
    vital: str  # a vital kind (sbp, hr, spo2...) or a score (moaas, rass)
    kind: str  # above, below, at_or_below, rise_pct, sustained_below
    value: float
    severity: str  # high or medium
    message: str
    sourced: Sourced
    sustain_s: int = 0

    def describe(self, value: float | None = None) -> str:
        return self.message.format(value=self.value if value is None else value, sustain_s=self.sustain_s)


@dataclass(frozen=True)
class Scale:
    key: str
    name: str
    items: tuple[str, ...]
    item_min: int
    item_max: int
    levels: tuple[tuple[int, str], ...]
    note: str
    sourced: Sourced


@dataclass(frozen=True)
class AeTerm:
    key: str
    term: str
    ctcae: str | None


@dataclass(frozen=True)
class SessionRules:
    alarms: tuple[AlarmRule, ...]
    escalation_s: int
    escalation: Sourced
    escalation_range_s: tuple[int, int]
    alarm_mute_s: int
    alarm_mute: Sourced
    plausible: dict[str, tuple[float, float]]
    plausible_sourced: Sourced
    precheck: dict[str, Any]
    observation_vitals: tuple[tuple[int, int], ...]
    observation_scores: tuple[tuple[int, int], ...]
    observations: Sourced
    discharge: dict[str, Any]
    instructions: tuple[str, ...]
    scales: dict[str, Scale]
    ctcae_grades: tuple[tuple[int, str], ...]
    ctcae: Sourced
    review_at_grade: int
    ae_terms: tuple[AeTerm, ...]
    ae_actions: tuple[str, ...]
    ae_outcomes: tuple[str, ...]
    ae_catalogue: Sourced

    def alarm(self, key: str) -> AlarmRule:
        return next(a for a in self.alarms if a.key == key)

    def ae_term(self, key: str) -> AeTerm | None:
        return next((t for t in self.ae_terms if t.key == key), None)


@dataclass(frozen=True)
class ClinicSettingSpec:
    """A design default a clinic may set on its alarm and discharge settings page, stored as an
    AlarmSetting row under ``key``; ``low``..``high`` is the range it may be set to."""

    key: str
    label: str
    unit: str
    default: float
    low: float
    high: float
    sourced: Sourced
    integer: bool = False


@cache
def clinic_setting_specs() -> tuple[ClinicSettingSpec, ...]:
    """The discharge rule and the alarm-sound mute: design defaults, clinic-editable."""
    data = _load("sessions.toml")
    dis, sound = data["discharge"], data["alarm_sound"]
    spo2 = Sourced(dis["spo2_source"], dis["spo2_tag"])
    vitals = Sourced(dis["vitals_source"], dis["vitals_tag"])
    mute = Sourced(sound["source"], sound["tag"])

    def spec(
        key: str, label: str, unit: str, table: dict[str, Any], src: Sourced, *, integer: bool = False
    ) -> ClinicSettingSpec:
        range_key = "mute_range_s" if key == "mute_s" else f"{key}_range"
        low, high = table[range_key]
        return ClinicSettingSpec(key, label, unit, float(table[key]), float(low), float(high), src, integer)

    return (
        spec(
            "vitals_within_pct",
            "Discharge: BP and heart rate back within",
            "% of baseline",
            dis,
            vitals,
        ),
        spec(
            "spo2_drop_points",
            "Discharge: SpO2 at most this far below baseline",
            "points",
            dis,
            spo2,
        ),
        spec("spo2_floor_pct", "Discharge: SpO2 never required above", "%", dis, spo2),
        spec("mute_s", "Alarm sound: one screen's mute lasts", "s", sound, mute, integer=True),
    )


def _pairs(rows: list[list[Any]]) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in rows)


@cache
def session_rules() -> SessionRules:
    data = _load("sessions.toml")
    alarms = tuple(
        AlarmRule(
            key=r["key"],
            vital=r["vital"],
            kind=r["kind"],
            value=float(r["value"]),
            severity=r["severity"],
            message=r["message"],
            sourced=Sourced(r["source"], r["tag"]),
            sustain_s=int(r.get("sustain_s", 0)),
        )
        for r in data["alarm"]
    )
    plaus = data["plausible"]
    scales = {
        s["key"]: Scale(
            key=s["key"],
            name=s["name"],
            items=tuple(s["items"]),
            item_min=int(s["item_min"]),
            item_max=int(s["item_max"]),
            levels=tuple((int(v), str(t)) for v, t in s.get("levels", [])),
            note=s["note"],
            sourced=Sourced(s["source"], s["tag"]),
        )
        for s in data["scale"]
    }
    obs = data["observations"]
    cat = data["ae_catalogue"]
    ctcae = data["ctcae"]
    dis = data["discharge"]
    return SessionRules(
        alarms=alarms,
        escalation_s=int(data["escalation"]["acknowledge_within_s"]),
        escalation=Sourced(data["escalation"]["source"], data["escalation"]["tag"]),
        escalation_range_s=(int(data["escalation"]["range_s"][0]), int(data["escalation"]["range_s"][1])),
        alarm_mute_s=int(data["alarm_sound"]["mute_s"]),
        alarm_mute=Sourced(data["alarm_sound"]["source"], data["alarm_sound"]["tag"]),
        plausible={k: (float(v[0]), float(v[1])) for k, v in plaus.items() if isinstance(v, list)},
        plausible_sourced=Sourced(plaus["source"], plaus["tag"]),
        precheck=dict(data["precheck"]),
        observation_vitals=_pairs(obs["vitals"]),
        observation_scores=_pairs(obs["scores"]),
        observations=Sourced(obs["source"], obs["tag"]),
        discharge=dis,
        instructions=tuple(dis["instructions"]),
        scales=scales,
        ctcae_grades=tuple((int(g), str(t)) for g, t in ctcae["grades"]),
        ctcae=Sourced(ctcae["source"], ctcae["tag"]),
        review_at_grade=int(ctcae["review_at_grade"]),
        ae_terms=tuple(AeTerm(t["key"], t["term"], t.get("ctcae")) for t in data["ae_term"]),
        ae_actions=tuple(cat["actions"]),
        ae_outcomes=tuple(cat["outcomes"]),
        ae_catalogue=Sourced(cat["source"], cat["tag"]),
    )
