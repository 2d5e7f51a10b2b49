"""FHIR search parameters: parse the query string, then match resources against it.

Pure: no database, no clock. The common parameters (``_id``, ``patient``/``subject``,
``_lastUpdated``, ``_count``, ``_offset``) narrow the read itself; the rest (``code``,
``category``, ``date`` with its prefixes, ...) are matched on the FHIR JSON through each
resource type's declared paths, so a parameter means the same thing for every type.
Several values in one parameter (``code=a,b``) are OR; a parameter given twice is AND.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ketacare.errors import InvalidInput
from ketacare.interop.fhir.resources.base import Mapper, Resource, SearchParam, row_id

DEFAULT_COUNT = 50
MAX_COUNT = 1000
# Paging re-reads from the start, so deep pages cost; past this, a Bulk Data export is the way.
MAX_OFFSET = 100_000
# Parameters every type takes; the paging and format ones are not filters.
COMMON = frozenset({"_id", "_lastUpdated", "_count", "_offset", "_format"})
PATIENT_PARAMS = frozenset({"patient", "subject"})
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True)
class Interval:
    """A half-open UTC interval [start, end): what a date of some precision stands for."""

    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class Criterion:
    param: SearchParam
    values: tuple[str, ...]  # OR'd
    modifier: str | None = None


@dataclass(frozen=True)
class SearchRequest:
    ids: tuple[str, ...] | None = None
    patient_ids: tuple[int, ...] | None = None
    last_updated: tuple[tuple[str, Interval], ...] = ()
    criteria: tuple[Criterion, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0
    params: tuple[tuple[str, str], ...] = field(default=())  # as given, for the paging links


def parse_date(text: str) -> Interval:
    """``2026``, ``2026-11``, ``2026-11-30``, ``2026-11-30T10:00:00Z``: the interval each covers.
    A time without an offset is taken as UTC."""
    m = _DATE.match(text.strip())
    if not m:
        raise ValueError(
            f"{text!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz)"
        )
    y, mo, d = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
    try:
        if m["H"] is not None:
            tz = dt.UTC
            if m["tz"] and m["tz"] != "Z":
                sign = 1 if m["tz"][0] == "+" else -1
                hours, minutes = int(m["tz"][1:3]), int(m["tz"][4:6])
                tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
            start = dt.datetime(y, mo, d, int(m["H"]), int(m["M"]), int(m["S"] or 0), tzinfo=tz)
            step = dt.timedelta(seconds=1) if m["S"] is not None else dt.timedelta(minutes=1)
            return Interval(start.astimezone(dt.UTC), (start + step).astimezone(dt.UTC))
        start = dt.datetime(y, mo, d, tzinfo=dt.UTC)
        if m["d"] is not None:
            end = start + dt.timedelta(days=1)
        elif m["m"] is not None:
            end = dt.datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=dt.UTC)
        else:
            end = dt.datetime(y + 1, 1, 1, tzinfo=dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{text!r} is not a date this server can search on: {exc}") from exc
    return Interval(start, end)


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in DATE_PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def date_matches(prefix: str, wanted: Interval, target: Interval) -> bool:
    """FHIR R4 search, section 3.1.1.4.2 (prefixes) on intervals."""
    contains = wanted.start <= target.start and target.end <= wanted.end
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":
        return target.end > wanted.end
    if prefix == "lt":
        return target.start < wanted.start
    if prefix == "ge":
        return contains or target.end > wanted.end
    if prefix == "le":
        return contains or target.start < wanted.start
    if prefix == "sa":
        return target.start >= wanted.end
    if prefix == "eb":
        return target.end <= wanted.start
    # ap: approximately. Overlap with the wanted interval widened by 10% of its span either side.
    pad = (wanted.end - wanted.start) / 10
    return target.start < wanted.end + pad and target.end > wanted.start - pad


def _bad(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"Search parameter {param}: {message}", errors={param: message})


def _patient_id(param: str, value: str) -> int:
    found = row_id(value.removeprefix("Patient/"))
    if found is None:
        raise _bad(param, f"{value!r} is not a Patient reference (Patient/123 or 123)")
    return found


def parse(mapper: Mapper, query: Sequence[tuple[str, str]]) -> SearchRequest:
    """The search a query string asks of ``mapper``'s type; an unknown parameter, modifier,
    prefix or malformed value is a 422 naming it (nothing is guessed)."""
    by_name = {p.name: p for p in mapper.search_params}
    ids: list[str] | None = None
    patients: set[int] | None = None
    last_updated: list[tuple[str, Interval]] = []
    criteria: list[Criterion] = []
    count, offset = DEFAULT_COUNT, 0
    for raw_name, value in query:
        name, _, modifier = raw_name.partition(":")
        if value == "":
            raise _bad(raw_name, "has no value")
        if name == "_count":
            count = _bounded_int(raw_name, value, 0, MAX_COUNT)
        elif name == "_offset":
            offset = _bounded_int(raw_name, value, 0, MAX_OFFSET)
        elif name == "_format":
            if value not in ("json", "application/json", "application/fhir+json"):
                raise _bad(name, "only JSON is served (json, application/fhir+json)")
        elif name == "_id":
            wanted = [v for v in value.split(",") if v]
            ids = wanted if ids is None else [i for i in ids if i in wanted]
        elif name == "_lastUpdated":
            last_updated.append(_date_value(name, value))
        elif name in PATIENT_PARAMS and mapper.patient_data and name not in by_name:
            wanted_ids = {_patient_id(name, v) for v in value.split(",") if v}
            patients = wanted_ids if patients is None else patients & wanted_ids
        elif name in by_name:
            param = by_name[name]
            if modifier and not (
                (param.kind == "string" and modifier in ("exact", "contains"))
                or (param.kind == "token" and modifier == "text")
            ):
                raise _bad(raw_name, f"the modifier :{modifier} is not supported here")
            values = tuple(v for v in value.split(",") if v)
            if param.kind == "date":
                for v in values:
                    _date_value(name, v)
            criteria.append(Criterion(param, values, modifier or None))
        else:
            supported = sorted(COMMON | by_name.keys() | (PATIENT_PARAMS if mapper.patient_data else set()))
            raise _bad(
                raw_name,
                f"not supported for {mapper.resource_type}; supported: {', '.join(supported)}",
            )
    return SearchRequest(
        ids=tuple(ids) if ids is not None else None,
        patient_ids=tuple(sorted(patients)) if patients is not None else None,
        last_updated=tuple(last_updated),
        criteria=tuple(criteria),
        count=count,
        offset=offset,
        params=tuple((k, v) for k, v in query if k not in ("_offset",)),
    )


def _bounded_int(name: str, value: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or not low <= int(value) <= high:
        raise _bad(name, f"must be a whole number from {low} to {high}")
    return int(value)


def _date_value(name: str, value: str) -> tuple[str, Interval]:
    prefix, text = split_prefix(value)
    try:
        return prefix, parse_date(text)
    except ValueError as exc:
        raise _bad(name, str(exc)) from exc


# --- matching -------------------------------------------------------------------------------


def values_at(resource: Any, path: str) -> list[Any]:
    """Every value at a dotted path, walking lists on the way."""
    current: list[Any] = [resource]
    for part in path.split("."):
        step: list[Any] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                value = item[part]
                step.extend(value if isinstance(value, list) else [value])
        current = step
    return current


def interval_of(value: Any) -> Interval | None:
    """A date, dateTime, instant or Period as the interval it covers."""
    if isinstance(value, str):
        try:
            return parse_date(value)
        except ValueError:
            return None
    if isinstance(value, dict) and ("start" in value or "end" in value):
        start = (
            parse_date(value["start"]).start if value.get("start") else dt.datetime.min.replace(tzinfo=dt.UTC)
        )
        end = parse_date(value["end"]).end if value.get("end") else dt.datetime.max.replace(tzinfo=dt.UTC)
        return Interval(start, end)
    return None


def _codings(value: Any) -> Iterable[tuple[str | None, str | None, str]]:
    """(system, code, text) triples a token value offers."""
    if isinstance(value, str):
        yield None, value, value
    elif isinstance(value, bool):
        yield None, str(value).lower(), str(value).lower()
    elif isinstance(value, dict):
        if "coding" in value or "text" in value:
            for c in value.get("coding", []):
                yield c.get("system"), c.get("code"), c.get("display", "")
            if value.get("text"):
                yield None, None, value["text"]
        elif "value" in value and "system" in value:  # Identifier
            yield value.get("system"), value.get("value"), value.get("value", "")
        elif "code" in value:  # Coding
            yield value.get("system"), value.get("code"), value.get("display", "")


def token_matches(wanted: str, value: Any, modifier: str | None = None) -> bool:
    if modifier == "text":
        return any(wanted.lower() in text.lower() for _, _, text in _codings(value))
    system, sep, code = wanted.rpartition("|")
    for have_system, have_code, _ in _codings(value):
        if have_code is None:
            continue
        if not sep:
            if have_code == code:
                return True
        elif (system == "" and have_system is None and have_code == code) or (
            system and have_system == system and (code == "" or have_code == code)
        ):
            return True
    return False


def _string_matches(wanted: str, value: Any, modifier: str | None) -> bool:
    if not isinstance(value, str):
        return False
    if modifier == "exact":
        return value == wanted
    if modifier == "contains":
        return wanted.casefold() in value.casefold()
    return value.casefold().startswith(wanted.casefold())


def _criterion_matches(criterion: Criterion, resource: Resource) -> bool:
    found = [v for path in criterion.param.paths for v in values_at(resource, path)]
    kind = criterion.param.kind
    for wanted in criterion.values:
        if kind == "token" and any(token_matches(wanted, v, criterion.modifier) for v in found):
            return True
        if kind == "string" and any(_string_matches(wanted, v, criterion.modifier) for v in found):
            return True
        if kind == "reference" and any(
            isinstance(v, dict) and v.get("reference") in (wanted, wanted.split("/")[-1]) for v in found
        ):
            return True
        if kind == "reference" and any(
            isinstance(v, dict) and str(v.get("reference", "")).endswith("/" + wanted) for v in found
        ):
            return True
        if kind == "date":
            prefix, interval = _date_value(criterion.param.name, wanted)
            if any((t := interval_of(v)) is not None and date_matches(prefix, interval, t) for v in found):
                return True
    return False


def matches(request: SearchRequest, resource: Resource) -> bool:
    """Whether a resource read within the request's scope meets its remaining criteria."""
    if request.last_updated:
        stamp = interval_of(resource.get("meta", {}).get("lastUpdated"))
        if stamp is None or not all(date_matches(p, i, stamp) for p, i in request.last_updated):
            return False
    return all(_criterion_matches(c, resource) for c in request.criteria)


def since_bound(request: SearchRequest) -> dt.datetime | None:
    """The earliest change a ``_lastUpdated`` of ge/gt/eq/sa can match: read no older rows."""
    starts = [i.start for p, i in request.last_updated if p in ("ge", "gt", "eq", "sa")]
    return max(starts) if starts else None
