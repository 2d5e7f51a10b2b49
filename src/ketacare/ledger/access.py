"""Who may call the ledger feature's routes: one name per permission, shared by its route modules."""

from __future__ import annotations

from typing import Annotated

from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.web.deps import require

Admin = Annotated[Principal, require(Permission.ledger_admin)]
AdminSensitive = Annotated[Principal, require(Permission.ledger_admin, sensitive=True)]
Reader = Annotated[Principal, require(Permission.ledger_read)]
Writer = Annotated[Principal, require(Permission.ledger_write)]
WriterSensitive = Annotated[Principal, require(Permission.ledger_write, sensitive=True)]
