"""Who may call the sessions feature's routes: one name per permission, shared by its route modules."""

from __future__ import annotations

from typing import Annotated

from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.web.deps import require

Admin = Annotated[Principal, require(Permission.session_admin)]
AdminSensitive = Annotated[Principal, require(Permission.session_admin, sensitive=True)]
Device = Annotated[Principal, require(Permission.device_vitals)]
Exporter = Annotated[Principal, require(Permission.session_read, sensitive=True)]
Overrider = Annotated[Principal, require(Permission.session_prescriber, sensitive=True)]
Prescriber = Annotated[Principal, require(Permission.session_prescriber)]
Reader = Annotated[Principal, require(Permission.session_read)]
Signer = Annotated[Principal, require(Permission.session_write, sensitive=True)]
Writer = Annotated[Principal, require(Permission.session_write)]
