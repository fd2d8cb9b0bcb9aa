"""Settings of one live session, as a dataclass so the CLI, the window and the tests share one shape."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def is_recorded_file(source: str, follow: bool) -> bool:
    """Whether ``source`` is a finished recording, which must be paced to stand in for a camera.

    Cameras, streams (``rtsp://``, ``udp://``, ``/dev/video0``) and files still being written
    (``follow``) already deliver frames at camera speed; pacing them again would only add delay.
    """
    if follow or URL_RE.match(source) or source.startswith("/dev/"):
        return False
    return Path(source).expanduser().exists()


@dataclass(frozen=True)
class LiveSettings:
    """One live session: what to read, which model, and how the window refreshes.

    ``pace``: None decides from the source (see ``is_recorded_file``); ``speed`` scales the pacing
    of recorded files. ``follow_idle_s``: a followed file that has not grown (or has vanished) for
    this long ends the session. ``frame_interval_s``: clock of image stacks, which have none.
    ``refresh_hz``: redraws per second of the coalescing timer (the newest result only).
    ``history_points``: spacing points kept per pair; ``plot_span_s``: seconds the plot shows.
    ``in_flight``: frames being processed at once; 1 gives the lowest latency, 2 lets decoding,
    inference and post-processing overlap. ``flips``: network passes per frame, as ``dislotrack
    process --flips`` (more of each line found, at that many times the network's cost).
    """

    source: str
    model: str | object | None = None  # ONNX path, None (shipped), or a ready model (has .predict)
    device: str = "auto"
    flips: int = 1
    threshold: float | None = None
    follow: bool = False
    follow_idle_s: float = 10.0
    frame_interval_s: float | None = None
    record_dir: Path | None = None
    pace: bool | None = None
    speed: float = 1.0
    in_flight: int = 1
    refresh_hz: float = 15.0
    stats_hz: float = 2.0
    history_points: int = 20_000
    plot_span_s: float = 60.0
    pick_radius_px: float = 12.0

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if not self.follow_idle_s > 0:
            raise ValueError(f"follow idle timeout must be > 0, got {self.follow_idle_s}")
        if not self.plot_span_s > 0:
            raise ValueError(f"plot span must be > 0 s, got {self.plot_span_s}")
        if self.flips not in (1, 2, 4):
            raise ValueError(f"flips must be 1, 2 or 4, got {self.flips}")
        if self.in_flight < 1:
            raise ValueError(f"in-flight frames must be >= 1, got {self.in_flight}")
        if not self.refresh_hz > 0 or not self.stats_hz > 0:
            raise ValueError("refresh and statistics rates must be > 0")

    @property
    def paced(self) -> bool:
        return is_recorded_file(self.source, self.follow) if self.pace is None else self.pace
