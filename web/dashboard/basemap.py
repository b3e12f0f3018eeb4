"""The map's background: web tiles when a tile server is configured and answers, else the world's
land outline from Natural Earth 1:110m (npm package world-atlas, fetched by ``make install`` into
.maps/), so the map is readable without internet. Coordinates are Web Mercator metres."""

from __future__ import annotations

import json
import math
import urllib.request
from functools import lru_cache
from pathlib import Path

R = 6378137.0
MAX_LAT = 85.05


def mercator(lon: float, lat: float) -> tuple[float, float]:
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    return R * math.radians(lon), R * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def decode_topojson(topology: dict, name: str) -> list[list[tuple[float, float]]]:
    """Every ring of the object ``name`` as (lon, lat) points (quantized, delta-encoded arcs)."""
    scale, translate = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * scale[0] + translate[0], y * scale[1] + translate[1]))
        arcs.append(points)

    def ring(indexes: list[int]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for i in indexes:
            points = arcs[i] if i >= 0 else arcs[~i][::-1]
            out.extend(points if not out else points[1:])
        return out

    rings = []
    for geometry in topology["objects"][name]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for polygon in polygons:
            rings.extend(ring(r) for r in polygon)
    return rings


@lru_cache(maxsize=1)
def land_outline(path: str) -> tuple[list[list[float]], list[list[float]]] | None:
    """(xs, ys) of the land rings in Web Mercator, for Bokeh ``patches``; None if the file is missing."""
    file = Path(path)
    if not file.is_file():
        return None
    rings = decode_topojson(json.loads(file.read_text()), "land")
    xs, ys = [], []
    for r in rings:
        if max(lat for _, lat in r) < -55:  # Antarctica: its ring runs along the pole, off this map
            continue
        x, y = [], []
        for i, (lon, lat) in enumerate(r):
            if i and abs(lon - r[i - 1][0]) > 180:  # crossing the antimeridian: break the outline there
                x.append(math.nan)
                y.append(math.nan)
            mx, my = mercator(lon, lat)
            x.append(mx)
            y.append(my)
        xs.append(x)
        ys.append(y)
    return xs, ys


def tiles_reachable(url_template: str, timeout_s: float = 2.0) -> bool:
    """Whether the tile server answers one tile (z=0)."""
    if not url_template:
        return False
    url = url_template.replace("{z}", "0").replace("{x}", "0").replace("{y}", "0").replace("{Z}", "0")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False
