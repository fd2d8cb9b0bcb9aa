"""The records that flow one way through the pipeline: decode -> infer -> lines -> tracks -> export/GUI.

They are frozen so that a stage can hand a result to the next (or to another thread) without copies
or locks; a stage that adds information returns ``dataclasses.replace(result, ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

N_POINTS = 50
"""Points sampled equally spaced along every centreline (the papers' definition of spacing uses them)."""


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None and a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: grey image plus its honest timestamp from the container (not index / fps)."""

    index: int
    time_s: float
    image: np.ndarray  # (H, W) uint8 or uint16 grey, original resolution

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", _readonly(self.image))


@dataclass(frozen=True, slots=True)
class Line:
    """One dislocation centreline in one frame, in pixel coordinates of the original frame."""

    points: np.ndarray  # (N_POINTS, 2) float32, columns x, y, ordered from one end to the other
    length_px: float
    mean_prob: float
    curvature: float = 0.0  # mean absolute curvature along the spline, 1/px
    channel: int = -1  # model output mask it came from (-1: none, e.g. stitched or ground truth)
    track_id: int = -1  # persistent identity; -1 until the tracker has seen it

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _readonly(np.asarray(self.points, dtype=np.float32)))


@dataclass(frozen=True, slots=True)
class Spacing:
    """Mean distance between two neighbouring dislocations of a pile-up, over their 50 points."""

    track_a: int
    track_b: int
    spacing_px: float


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Everything known about one frame; the single record that the CLI, batch job and GUI consume."""

    frame: Frame
    lines: tuple[Line, ...] = ()
    spacings: tuple[Spacing, ...] = ()
    labels: np.ndarray | None = None  # (H, W) uint16: 0 background, i + 1 = pixels of lines[i]
    provider: str = ""
    timings_s: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _readonly(self.labels))
        object.__setattr__(self, "timings_s", MappingProxyType(dict(self.timings_s)))

    @property
    def index(self) -> int:
        return self.frame.index

    @property
    def time_s(self) -> float:
        return self.frame.time_s
