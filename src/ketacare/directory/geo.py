"""US ZIP centroids and great-circle distance.

``data/us_zip_centroids.csv.gz``: GeoNames US postal-code coordinates (CC BY 4.0), taken from
the dataset shipped in the PyPI package ``zipcodes`` 3.0.0 (MIT); see ``data/ZIP_SOURCE.md``.
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "data" / "us_zip_centroids.csv.gz"
ATTRIBUTION = "ZIP coordinates © GeoNames (geonames.org), CC BY 4.0"
EARTH_RADIUS_MILES = 3958.8  # mean Earth radius (IUGG), 6371.0 km


@dataclass(frozen=True)
class ZipPlace:
    zip: str
    lat: float
    lon: float
    city: str
    state: str


@cache
def zip_table() -> dict[str, ZipPlace]:
    with gzip.open(DATA_FILE, "rt", newline="") as handle:
        return {
            row["zip"]: ZipPlace(row["zip"], float(row["lat"]), float(row["lon"]), row["city"], row["state"])
            for row in csv.DictReader(handle)
        }


def lookup(zip_code: str) -> ZipPlace | None:
    return zip_table().get(zip_code.strip()[:5])


def haversine_miles(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a sphere (the haversine formula)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * math.asin(min(1.0, math.sqrt(a)))
