"""Dislocation shapes from labelme annotations: polylines become support-point templates.

A polyline is expressed in the frame of its own chord (first to last point): ``u`` along the chord and
``v`` across it, both in chord lengths. A pile-up then maps the template onto its chord from one slip trace
to the other, so the first and last support points lie exactly on the traces whatever shape was drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LINE_TYPES = ("linestrip", "line")


def normalise(points: np.ndarray) -> list[list[float]] | None:
    """(u, v) template of a polyline, or None when it has fewer than two distinct points."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 2:
        return None
    chord = pts[-1] - pts[0]
    length2 = float(chord @ chord)
    if length2 < 1e-6:
        return None
    normal = np.array([-chord[1], chord[0]])
    rel = pts - pts[0]
    uv = np.column_stack([rel @ chord, rel @ normal]) / length2
    uv[0] = (0.0, 0.0)
    uv[-1] = (1.0, 0.0)
    return uv.tolist()


def load_shapes(source: str | Path) -> list[list[list[float]]]:
    """Templates of every ``linestrip``/``line`` shape in a labelme JSON file or a folder of them."""
    src = Path(source)
    files = sorted(src.glob("*.json")) if src.is_dir() else [src]
    if not files or not all(f.is_file() for f in files):
        raise ValueError(f"invalid synth parameters: no labelme JSON at {src}")
    shapes = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"invalid synth parameters: cannot read labelme file {f}: {exc}") from None
        for shape in data.get("shapes", []) if isinstance(data, dict) else []:
            if shape.get("shape_type", "linestrip") in LINE_TYPES:
                uv = normalise(np.asarray(shape.get("points", []), dtype=np.float64).reshape(-1, 2))
                if uv is not None:
                    shapes.append(uv)
    if not shapes:
        raise ValueError(f"invalid synth parameters: no polylines (linestrip/line) in labelme data at {src}")
    return shapes
