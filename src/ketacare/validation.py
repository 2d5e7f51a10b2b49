"""Turn pydantic validation errors into ``InvalidInput`` with a message per field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ketacare.errors import InvalidInput

ModelT = TypeVar("ModelT", bound=BaseModel)


def field_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "form"
        if err["type"] == "missing" or (err["loc"] and err.get("input", "") is None):
            message = "This is required."
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        errors.setdefault(name, message)
    return errors


def parse(model: type[ModelT], data: Mapping[str, Any]) -> ModelT:
    """Validate form or JSON data; blank form fields count as missing."""
    cleaned = {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in data.items()}
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        raise InvalidInput(errors=field_errors(exc)) from exc
