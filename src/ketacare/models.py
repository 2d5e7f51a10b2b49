"""Every table, imported in one place so Alembic and the tests see the whole schema."""

import importlib
from importlib.util import find_spec

from ketacare.db import Base
from ketacare.features import FEATURES

for _feature in FEATURES:
    if find_spec(f"ketacare.{_feature}.models") is not None:
        importlib.import_module(f"ketacare.{_feature}.models")

metadata = Base.metadata
