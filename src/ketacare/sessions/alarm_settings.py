"""The clinic's alarm rules and session settings in force (its own values, else the knowledge
defaults), and saving them.
Each function runs in the caller's transaction and never commits; people's actions are audited."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import InvalidInput
from ketacare.knowledge.sessions import (
    AlarmRule,
    ClinicSettingSpec,
    SessionRules,
    clinic_setting_specs,
    session_rules,
)
from ketacare.sessions.models import AlarmSetting
from ketacare.sessions.schemas import AlarmSettingsIn


@dataclass(frozen=True)
class AlarmRuleInForce:
    rule: AlarmRule
    default: AlarmRule
    enabled: bool
    own: bool  # the clinic changed it


def alarm_rules_in_force(db: Session, clinic_id: int) -> tuple[list[AlarmRuleInForce], int]:
    knowledge = session_rules()
    own = {
        s.rule_key: s
        for s in db.execute(select(AlarmSetting).where(AlarmSetting.clinic_id == clinic_id)).scalars()
    }
    out = []
    for default in knowledge.alarms:
        s = own.get(default.key)
        rule = dataclasses.replace(default, value=s.value) if s is not None else default
        out.append(AlarmRuleInForce(rule, default, s.enabled if s is not None else True, s is not None))
    esc = own.get("escalation_s")
    return out, int(esc.value) if esc is not None else knowledge.escalation_s


@dataclass(frozen=True)
class ClinicSettingInForce:
    spec: ClinicSettingSpec
    value: float
    own: bool  # the clinic set it


def clinic_settings_in_force(db: Session, clinic_id: int) -> list[ClinicSettingInForce]:
    """The discharge rule and the alarm-sound mute as the clinic set them (else the defaults)."""
    specs = clinic_setting_specs()
    own = {
        s.rule_key: s.value
        for s in db.execute(
            select(AlarmSetting).where(
                AlarmSetting.clinic_id == clinic_id, AlarmSetting.rule_key.in_([s.key for s in specs])
            )
        ).scalars()
    }
    return [ClinicSettingInForce(s, own.get(s.key, s.default), s.key in own) for s in specs]


def clinic_session_values(db: Session, clinic_id: int) -> dict[str, float]:
    return {c.spec.key: c.value for c in clinic_settings_in_force(db, clinic_id)}


def rules_for_clinic(db: Session, clinic_id: int) -> SessionRules:
    """The session rules with the clinic's own discharge values in place of the defaults."""
    knowledge = session_rules()
    values = clinic_session_values(db, clinic_id)
    discharge = {**knowledge.discharge, **{k: v for k, v in values.items() if k in knowledge.discharge}}
    return dataclasses.replace(knowledge, discharge=discharge, alarm_mute_s=int(values["mute_s"]))


def _active_rules(db: Session, clinic_id: int) -> tuple[list[AlarmRule], int]:
    in_force, escalation_s = alarm_rules_in_force(db, clinic_id)
    return [r.rule for r in in_force if r.enabled], escalation_s


def save_alarm_settings(db: Session, actor: Principal, data: AlarmSettingsIn) -> None:
    knowledge = session_rules()
    keys = {a.key: a for a in knowledge.alarms}
    errors: dict[str, str] = {}
    for s in data.settings:
        rule = keys.get(s.rule_key)
        if rule is None:
            errors[s.rule_key] = "No such alarm rule."
            continue
        low, high = _setting_range(rule)
        if not low <= s.value <= high:
            errors[s.rule_key] = f"Choose a value between {low:g} and {high:g}."
    extra: list[tuple[str, float, bool]] = []
    for spec in clinic_setting_specs():
        value = getattr(data, spec.key)
        if value is None:
            continue
        if not spec.low <= value <= spec.high or (spec.integer and value != int(value)):
            whole = "whole " if spec.integer else ""
            errors[spec.key] = f"Choose a {whole}value between {spec.low:g} and {spec.high:g} {spec.unit}."
        else:
            extra.append((spec.key, float(value), True))
    if errors:
        raise InvalidInput(errors=errors)
    own = {
        s.rule_key: s
        for s in db.execute(select(AlarmSetting).where(AlarmSetting.clinic_id == actor.clinic_id)).scalars()
    }
    changes = []
    now = utcnow()
    items = [(s.rule_key, s.value, s.enabled) for s in data.settings]
    if data.escalation_s is not None:
        items.append(("escalation_s", float(data.escalation_s), True))
    items += extra
    for key, value, enabled in items:
        row = own.get(key)
        if row is None:
            row = AlarmSetting(clinic_id=actor.clinic_id, rule_key=key, value=value, enabled=enabled)
            db.add(row)
        elif row.value == value and row.enabled == enabled:
            continue
        row.value, row.enabled, row.updated_by_id, row.updated_at = value, enabled, actor.user_id, now
        changes.append(f"{key}={value:g}{'' if enabled else ' (off)'}")
    if changes:
        audit.record(
            db,
            actor,
            "session.alarm_settings",
            "clinic",
            resource_id=actor.clinic_id,
            detail="; ".join(changes),
        )


def _setting_range(rule: AlarmRule) -> tuple[float, float]:
    if rule.kind == "rise_pct":
        return 5.0, 100.0
    if rule.vital in ("moaas", "rass"):
        return (0.0, 5.0) if rule.vital == "moaas" else (-5.0, 4.0)
    return session_rules().plausible.get(rule.vital, (0.0, 400.0))
