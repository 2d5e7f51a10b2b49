"""Who may call the planning feature's routes: one name per permission, shared by its route modules."""

from __future__ import annotations

from typing import Annotated

from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.web.deps import require

Admin = Annotated[Principal, require(Permission.planning_admin)]
CareWriter = Annotated[Principal, require(Permission.careplan_write)]
ClinicalAdmin = Annotated[Principal, require(Permission.planning_admin, sensitive=True)]
Patient_ = Annotated[Principal, require(Permission.consent_sign)]
Reader = Annotated[Principal, require(Permission.plan_read)]
Signer = Annotated[Principal, require(Permission.consent_sign, sensitive=True)]
Writer = Annotated[Principal, require(Permission.plan_write)]
