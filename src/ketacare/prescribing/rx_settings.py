"""The clinic's prescribing settings: its own values over the knowledge defaults, saving them
(one audit entry per change) and the table the settings page shows. Never commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.clinic_settings import Value, shown
from ketacare.db import utcnow
from ketacare.errors import InvalidInput
from ketacare.knowledge.prescribing import prescribing_rules
from ketacare.prescribing.models import (
    RxSettingsRow,
)
from ketacare.prescribing.schemas import (
    RxSettingsIn,
)
from ketacare.prescribing.settings import SPECS, RxSettings, resolve


def _settings_row(db: Session, clinic_id: int) -> RxSettingsRow | None:
    return db.execute(select(RxSettingsRow).where(RxSettingsRow.clinic_id == clinic_id)).scalar_one_or_none()


def settings_overrides(db: Session, clinic_id: int) -> dict[str, Value]:
    row = _settings_row(db, clinic_id)
    return {s.key: (getattr(row, s.key) if row is not None else None) for s in SPECS}


def settings_in_force(db: Session, clinic_id: int) -> RxSettings:
    return resolve(settings_overrides(db, clinic_id))


def save_settings(db: Session, actor: Principal, data: RxSettingsIn) -> RxSettings:
    """Set the fields present (null resets to the knowledge default); one audit entry per change."""
    legal_end = prescribing_rules().flexibility_end
    if data.flexibility_end is not None and data.flexibility_end > legal_end:
        # A clinic may stop relying on the DEA flexibility earlier, never later than the rule
        # in force; when DEA extends it, the knowledge file changes.
        raise InvalidInput(
            errors={"flexibility_end": f"The DEA flexibility runs to {legal_end.isoformat()} at the latest."}
        )
    row = _settings_row(db, actor.clinic_id)
    if row is None:
        row = RxSettingsRow(clinic_id=actor.clinic_id)
        db.add(row)
    changes = []
    for spec in SPECS:
        if spec.key not in data.model_fields_set:
            continue
        new = getattr(data, spec.key)
        old = getattr(row, spec.key, None)
        if old == new:
            continue
        setattr(row, spec.key, new)
        was = shown(old) if old is not None else f"default ({shown(spec.knowledge_value)})"
        now = shown(new) if new is not None else f"default ({shown(spec.knowledge_value)})"
        changes.append(f"{spec.key}: {was} -> {now}")
    row.updated_by_id, row.updated_at = actor.user_id, utcnow()
    db.flush()
    audit.record_many(
        db,
        actor,
        [audit.AuditEvent("prescribing.settings.save", "rx_settings", row.id, detail=c) for c in changes],
    )
    return settings_in_force(db, actor.clinic_id)


@dataclass(frozen=True)
class SettingRow:
    key: str
    label: str
    unit: str
    value: str
    origin: str
    knowledge_value: str
    source: str
    tag: str
    range_label: str
    used_by: str
    kind: str
    own_value: str


def settings_table(db: Session, clinic_id: int) -> list[SettingRow]:
    overrides = settings_overrides(db, clinic_id)
    in_force = resolve(overrides)
    return [
        SettingRow(
            key=s.key,
            label=s.label,
            unit=s.unit,
            value=shown(getattr(in_force, s.key)),
            origin=in_force.origin(s.key),
            knowledge_value=shown(s.knowledge_value),
            source=s.source(),
            tag=s.tag(),
            range_label=s.range_label(),
            used_by=s.used_by,
            kind=s.kind,
            own_value="" if overrides[s.key] is None else shown(overrides[s.key]),
        )
        for s in SPECS
    ]
