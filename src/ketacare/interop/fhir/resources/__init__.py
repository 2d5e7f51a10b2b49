"""The resource types the FHIR API serves: every module here that defines ``MAPPER``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from ketacare.interop.fhir.resources.base import Mapper


@cache
def mappers() -> dict[str, Mapper]:
    """Resource type -> its mapper, discovered from this package's modules."""
    found: dict[str, Mapper] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        mapper = getattr(module, "MAPPER", None)
        if isinstance(mapper, Mapper):
            found[mapper.resource_type] = mapper
    return dict(sorted(found.items()))
