"""Overlay frames: the grey frame with each tracked line drawn in its track's colour and labelled.

Pillow (a dependency of scikit-image) draws; PyAV encodes ``overlay.mp4`` with the frames' own
timestamps, so the overlay plays at the recording's pace.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from dislotrack.runtime.results import FrameResult

# 20 well separated colours (matplotlib's tab20), so neighbouring track IDs differ visibly.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (174, 199, 232),
    (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148),
    (247, 182, 210), (219, 219, 141), (158, 218, 229), (127, 127, 127), (199, 199, 199),
)  # fmt: skip


def track_colour(track_id: int) -> tuple[int, int, int]:
    return PALETTE[track_id % len(PALETTE)] if track_id >= 0 else (255, 255, 255)


def to_display(image: np.ndarray) -> np.ndarray:
    """8-bit grey for display: 16-bit frames are stretched between their 0.5 and 99.5 percentiles."""
    if image.dtype == np.uint8:
        return image
    lo, hi = np.percentile(image, [0.5, 99.5])
    scaled = (image.astype(np.float32) - lo) / max(float(hi - lo), 1e-9)
    return np.clip(scaled * 255, 0, 255).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def draw_overlay(result: FrameResult, max_side: int = 1024) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame with lines and track IDs, even-sized for yuv420p video."""
    from PIL import Image, ImageDraw

    grey = to_display(result.frame.image)
    h, w = grey.shape
    scale = min(1.0, max_side / max(h, w))
    img = Image.fromarray(grey).convert("RGB")
    if scale < 1.0:
        img = img.resize((max(2, round(w * scale)), max(2, round(h * scale))))
    draw = ImageDraw.Draw(img)
    width = max(1, round(2 * max(scale, 0.5)))
    font = _font(max(10, round(min(img.size) / 32)))
    for line in result.lines:
        pts = [(float(x) * scale, float(y) * scale) for x, y in line.points]
        colour = track_colour(line.track_id)
        draw.line(pts, fill=colour, width=width)
        label = str(line.track_id) if line.track_id >= 0 else "?"
        x, y = pts[len(pts) // 2]
        draw.text((x + 4, y - 4), label, fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    caption = f"frame {result.index}  {result.time_s:.3f} s  {len(result.lines)} lines"
    draw.text((4, 4), caption, fill=(255, 255, 0), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    rgb = np.asarray(img)
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


class OverlayWriter:
    """``overlay.mp4`` (MPEG-4 Part 2, playable everywhere) with pts from the frames' timestamps."""

    def __init__(self, path: Path, width: int, height: int, time_base: Fraction = Fraction(1, 1000)) -> None:
        import av

        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream("mpeg4", rate=22)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.codec_context.time_base = self._stream.time_base = time_base
        self._stream.codec_context.qscale = 3
        self._time_base = time_base
        self._last_pts = -1

    def write(self, rgb: np.ndarray, time_s: float) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        pts = round(time_s / self._time_base) if np.isfinite(time_s) else self._last_pts + 45
        pts = max(int(pts), self._last_pts + 1)
        frame.pts, frame.time_base, self._last_pts = pts, self._time_base, pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
