"""Where a photo was taken: its EXIF GPS position, named offline.

Positions come from the photo's EXIF GPS tags (read from the header only: no decode). Names
come from ``reverse-geocode``, which ships GeoNames' cities (population 1000 and up) with
their region and country inside its wheel: no network at run time. A photo is named after
the nearest city of 100,000 people when one lies within BIG_CITY_KM (the Lisbon a person
types, not the parish the nearest GeoNames point is in), else after the nearest town.

Malformed tags (a missing reference, NaN, out of range, a zero denominator) are ignored
for that photo with a logged reason, never a failure.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from search.errors import InputError

log = logging.getLogger(__name__)

GPS_IFD = 0x8825
# GPS IFD tags (EXIF 2.3): latitude ref/value, longitude ref/value, altitude ref/value.
LAT_REF, LAT, LON_REF, LON, ALT_REF, ALT = 1, 2, 3, 4, 5, 6
BIG_CITY_KM = 20.0
BIG_CITY = 100_000
TOWN = 1000
EARTH_KM = 6371.0088
DEFAULT_NEAR_KM = 5.0


def source() -> str:
    """The geocoder data the names came from: stored per photo, so new data re-names."""
    try:
        return f"reverse-geocode {importlib.metadata.version('reverse-geocode')}"
    except importlib.metadata.PackageNotFoundError:
        return "none"


@dataclass
class Position:
    latitude: float
    longitude: float
    altitude: float | None = None


def _number(value) -> float:
    """An EXIF rational (Pillow's IFDRational or a (num, den) pair) as a float."""
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        if not den:
            raise ValueError("a zero denominator")
        return float(num) / float(den)
    if getattr(value, "denominator", 1) == 0:
        raise ValueError("a zero denominator")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{result} is not a number")
    return result


def _degrees(dms, ref: str, negative: str, limit: float) -> float:
    parts = [_number(p) for p in (dms if isinstance(dms, tuple | list) else (dms,))]
    parts += [0.0] * (3 - len(parts))
    value = parts[0] + parts[1] / 60 + parts[2] / 3600
    if not 0 <= value <= limit:
        raise ValueError(f"{value} is out of range")
    return -value if ref == negative else value


def read_position(path: str | Path) -> Position | None:
    """The photo's GPS position, or None (no tags, or malformed ones: logged)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            gps = im.getexif().get_ifd(GPS_IFD)
    except Exception as exc:  # noqa: BLE001 - an unreadable header just has no place
        log.debug("no EXIF GPS in %s: %s", path, exc)
        return None
    if not gps or LAT not in gps or LON not in gps:
        return None
    try:
        lat_ref = str(gps.get(LAT_REF, "")).strip("\x00 ").upper()
        lon_ref = str(gps.get(LON_REF, "")).strip("\x00 ").upper()
        if lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
            raise ValueError(f"a missing or odd reference ({lat_ref!r}, {lon_ref!r})")
        lat = _degrees(gps[LAT], lat_ref, "S", 90.0)
        lon = _degrees(gps[LON], lon_ref, "W", 180.0)
        alt = None
        if ALT in gps:
            try:
                alt = _number(gps[ALT])
                below = gps.get(ALT_REF, 0)
                below = below[0] if isinstance(below, bytes) and below else below
                alt = -alt if below == 1 else alt
            except (ValueError, TypeError, ZeroDivisionError):
                alt = None  # a bad altitude does not cost the position
    except (ValueError, TypeError, ZeroDivisionError, KeyError) as exc:
        log.info("ignoring the GPS tags of %s: %s", path, exc)
        return None
    return Position(lat, lon, alt)


def normalise(name: str) -> str:
    """Lower case without accents, for matching: "Montréal" and "montreal" are one."""
    flat = unicodedata.normalize("NFKD", name)
    return "".join(c for c in flat if not unicodedata.combining(c)).lower().strip()


def _city(name: str) -> str:
    """"Lyon 03" -> "Lyon": GeoNames names some cities by their districts."""
    return re.sub(r"\s+\d{1,2}$", "", name).strip()


def name(position: Position) -> dict:
    """City, area, region, country and country code of a position, offline."""
    import reverse_geocode

    coord = (position.latitude, position.longitude)
    big = reverse_geocode.get(coord, min_population=BIG_CITY)
    near = big if distance_km(coord, (big["latitude"], big["longitude"])) <= BIG_CITY_KM else (
        reverse_geocode.get(coord, min_population=TOWN)
    )
    return {
        "city": _city(near.get("city") or "") or None,
        "area": near.get("county") or None,
        "region": near.get("state") or None,
        "country": near.get("country") or None,
        "country_code": near.get("country_code") or None,
    }


def place_key(names: dict) -> str:
    """Every name of a place, normalised, between bars: what ``--place`` matches whole."""
    parts = [names.get(k) for k in ("city", "area", "region", "country", "country_code")]
    return "|" + "|".join(normalise(p) for p in parts if p) + "|"


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def parse_near(raw: str) -> tuple[float, float, float]:
    """``LAT,LON[,KM]`` (KM defaults to DEFAULT_NEAR_KM) or an InputError saying why."""
    parts = [p.strip() for p in str(raw).split(",")]
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        lat, lon = float(parts[0]), float(parts[1])
        km = float(parts[2]) if len(parts) == 3 else DEFAULT_NEAR_KM
    except ValueError:
        raise InputError(f"near: give LAT,LON or LAT,LON,KM in degrees and kilometres "
                         f"(e.g. 38.72,-9.14,10), not {raw!r}") from None
    if not (math.isfinite(lat) and -90 <= lat <= 90 and math.isfinite(lon)
            and -180 <= lon <= 180):
        raise InputError(f"near: latitude must be -90 to 90 and longitude -180 to 180, "
                         f"not {raw!r}")
    if not (math.isfinite(km) and 0 < km <= 20_000):
        raise InputError(f"near: the distance must be above 0 and at most 20000 km, not {raw!r}")
    return lat, lon, km


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, float, float]:
    """(lat_min, lat_max, lon_min, lon_max) around a circle: a cheap SQL prefilter (the
    exact distance is checked after). Near a pole or the date line it widens to all
    longitudes."""
    dlat = math.degrees(km / EARTH_KM)
    cos = math.cos(math.radians(lat))
    dlon = 180.0 if cos < 1e-6 else math.degrees(km / (EARTH_KM * cos))
    if dlon >= 180 or abs(lon) + dlon > 180:
        return max(-90.0, lat - dlat), min(90.0, lat + dlat), -180.0, 180.0
    return max(-90.0, lat - dlat), min(90.0, lat + dlat), lon - dlon, lon + dlon
