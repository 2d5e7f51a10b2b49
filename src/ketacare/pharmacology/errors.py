"""Exceptions and warnings of the pharmacology engine."""

from dataclasses import dataclass


class PharmacologyInputError(ValueError):
    """Input that cannot be simulated (negative dose, unknown route, ...).

    The message is one line, fit to show a user as it is.
    """


@dataclass(frozen=True)
class ModelWarning:
    """A model used outside what it was built on; returned as data for the UI to show.

    ``code`` is stable for programs (``age_below_range``, ``weight_above_range``,
    ``borrowed_iiv``, ``route_data``, ...), ``message`` is for people and ``source``
    names the fact behind it.
    """

    code: str
    message: str
    source: str
