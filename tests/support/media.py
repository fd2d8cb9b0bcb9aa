"""Small videos and image stacks written with PyAV/tifffile/Pillow for source and pipeline tests."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    codec: str = "mpeg4",
    pts_ms: Sequence[int] | None = None,
    rgb: bool = False,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode grey (or RGB) uint8 frames; ``pts_ms`` gives each frame's timestamp (variable rate)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=22)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.bit_rate = 20_000_000
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24" if rgb else "gray")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ramp_frames(n: int, shape: tuple[int, int] = (64, 96)) -> list[np.ndarray]:
    """Frames whose mean grey level encodes their index (robust to lossy coding)."""
    return [np.full(shape, 20 + 8 * i, dtype=np.uint8) for i in range(n)]
