"""Incremental output files of one processed source: what was processed is always valid on disk.

- ``lines.csv`` (flushed every frame) and ``lines.parquet`` (row groups; its footer is written on
  close, which also happens on errors and Ctrl-C): long format, one row per point of a line;
- ``spacing.csv`` (flushed every frame): one row per neighbour pair per frame;
- ``tracks.csv``: one row per track, rewritten atomically every ``tracks_every`` frames and on close;
- ``run.json``: written at the start (status ``running``) and atomically replaced on close;
- optional ``overlay.mp4`` (lines and IDs drawn on the frames) and ``spacing.png`` (needs matplotlib).
Memory stays bounded: only per-track aggregates and one parquet row group are held.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dislotrack.runtime.results import FrameResult

log = logging.getLogger(__name__)

LINE_COLUMNS = (
    "frame",
    "time_s",
    "track_id",
    "point",
    "x",
    "y",
    "line",
    "length_px",
    "mean_prob",
    "curvature",
    "channel",
)
SPACING_COLUMNS = ("frame", "time_s", "track_a", "track_b", "spacing_px")
TRACK_COLUMNS = (
    "track_id",
    "first_frame",
    "last_frame",
    "first_time_s",
    "last_time_s",
    "frames_seen",
    "mean_length_px",
    "mean_prob",
    "start_x",
    "start_y",
    "end_x",
    "end_y",
    "path_px",
)


@dataclass(frozen=True)
class ExportConfig:
    """Which optional outputs to write and how often the incremental ones are completed."""

    parquet: bool = True
    overlay: bool = False
    spacing_png: bool = True
    row_group_frames: int = 256
    tracks_every: int = 100
    overlay_max_side: int = 1024  # larger frames are drawn at reduced size in overlay.mp4


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write to a temporary file and rename, so a reader never sees half a JSON document."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: unknown or unbounded numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _num(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.9g}"


def line_rows(result: FrameResult) -> dict[str, np.ndarray]:
    """Columns of ``lines.csv`` for one frame (one row per point of every line)."""
    lines = result.lines
    n_pts = lines[0].points.shape[0] if lines else 0
    n = len(lines) * n_pts

    def per_line(values: list[float], dtype: Any) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=dtype), n_pts)

    pts = np.concatenate([ln.points for ln in lines]) if lines else np.zeros((0, 2), np.float32)
    return {
        "frame": np.full(n, result.index, dtype=np.int64),
        "time_s": np.full(n, result.time_s, dtype=np.float64),
        "track_id": per_line([ln.track_id for ln in lines], np.int64),
        "point": np.tile(np.arange(n_pts, dtype=np.int16), len(lines)),
        "x": pts[:, 0].astype(np.float32),
        "y": pts[:, 1].astype(np.float32),
        "line": per_line(list(range(len(lines))), np.int16),
        "length_px": per_line([ln.length_px for ln in lines], np.float32),
        "mean_prob": per_line([ln.mean_prob for ln in lines], np.float32),
        "curvature": per_line([ln.curvature for ln in lines], np.float32),
        "channel": per_line([ln.channel for ln in lines], np.int16),
    }


@dataclass
class TrackStats:
    """Running aggregates of one track (bounded memory whatever the video length)."""

    track_id: int
    first_frame: int
    first_time_s: float
    start: np.ndarray
    last_frame: int = 0
    last_time_s: float = math.nan
    frames_seen: int = 0
    length_sum: float = 0.0
    prob_sum: float = 0.0
    end: np.ndarray = field(default_factory=lambda: np.zeros(2))
    path_px: float = 0.0

    def add(self, frame: int, time_s: float, centre: np.ndarray, length: float, prob: float) -> None:
        if self.frames_seen:
            self.path_px += float(np.hypot(*(centre - self.end)))
        self.last_frame, self.last_time_s, self.end = frame, time_s, centre
        self.frames_seen += 1
        self.length_sum += length
        self.prob_sum += prob

    def row(self) -> list[Any]:
        k = max(self.frames_seen, 1)
        return [
            self.track_id,
            self.first_frame,
            self.last_frame,
            _num(self.first_time_s),
            _num(self.last_time_s),
            self.frames_seen,
            _num(self.length_sum / k),
            _num(self.prob_sum / k),
            _num(float(self.start[0])),
            _num(float(self.start[1])),
            _num(float(self.end[0])),
            _num(float(self.end[1])),
            _num(self.path_px),
        ]


class RunWriter:
    """All outputs of one source; use as a context manager so files are completed on any exit."""

    def __init__(
        self, out_dir: str | Path, run_info: Mapping[str, Any], config: ExportConfig | None = None
    ) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.config = config or ExportConfig()
        self.info = dict(run_info)
        self.frames = 0
        self.n_lines = 0
        self.n_spacings = 0
        self.timings = {"decode": 0.0, "infer": 0.0, "post": 0.0, "track": 0.0, "export": 0.0}
        self.tracks: dict[int, TrackStats] = {}
        self._closed = False
        self._lines_fh = (self.out / "lines.csv").open("w", newline="")
        self._lines_fh.write(",".join(LINE_COLUMNS) + "\n")
        self._spacing_fh = (self.out / "spacing.csv").open("w", newline="")
        self._spacing = csv.writer(self._spacing_fh)
        self._spacing.writerow(SPACING_COLUMNS)
        self._parquet: Any = None
        self._pending: list[dict[str, np.ndarray]] = []
        self._overlay: Any = None
        self._write_tracks()
        write_json_atomic(self.out / "run.json", {**self.info, "status": "running"})

    # -- per frame ---------------------------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        t0 = time.perf_counter()
        rows = line_rows(result)
        self._write_lines_csv(rows)
        if self.config.parquet:
            self._pending.append(rows)
            if len(self._pending) >= self.config.row_group_frames:
                self._flush_parquet()
        for s in result.spacings:
            self._spacing.writerow(
                [result.index, _num(result.time_s), s.track_a, s.track_b, f"{s.spacing_px:.4f}"]
            )
        self._spacing_fh.flush()
        self._update_tracks(result)
        if self.config.overlay:
            self._draw_overlay(result)
        self.frames += 1
        self.n_lines += len(result.lines)
        self.n_spacings += len(result.spacings)
        for k, v in result.timings_s.items():
            self.timings[k] = self.timings.get(k, 0.0) + float(v)
        if self.frames % self.config.tracks_every == 0:
            self._write_tracks()
        self.timings["export"] += time.perf_counter() - t0

    def _write_lines_csv(self, rows: dict[str, np.ndarray]) -> None:
        t = _num(float(rows["time_s"][0])) if len(rows["time_s"]) else ""
        cols = [rows[c].tolist() for c in LINE_COLUMNS if c != "time_s"]
        self._lines_fh.writelines(
            f"{f},{t},{tid},{p},{x:.3f},{y:.3f},{i},{length:.3f},{prob:.4f},{curv:.6f},{ch}\n"
            for f, tid, p, x, y, i, length, prob, curv, ch in zip(*cols, strict=True)
        )
        self._lines_fh.flush()

    def _flush_parquet(self) -> None:
        if not self._pending:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {c: np.concatenate([r[c] for r in self._pending]) for c in LINE_COLUMNS}
        table = pa.table(cols)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.out / "lines.parquet", table.schema)
        self._parquet.write_table(table)
        self._pending = []

    def _update_tracks(self, result: FrameResult) -> None:
        for ln in result.lines:
            if ln.track_id < 0:
                continue
            centre = ln.points.mean(axis=0).astype(np.float64)
            stats = self.tracks.get(ln.track_id)
            if stats is None:
                stats = self.tracks[ln.track_id] = TrackStats(
                    ln.track_id, result.index, result.time_s, centre
                )
            stats.add(result.index, result.time_s, centre, ln.length_px, ln.mean_prob)

    def _write_tracks(self) -> None:
        tmp = self.out / "tracks.csv.tmp"
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(TRACK_COLUMNS)
            for tid in sorted(self.tracks):
                w.writerow(self.tracks[tid].row())
        os.replace(tmp, self.out / "tracks.csv")

    def _draw_overlay(self, result: FrameResult) -> None:
        from dislotrack.runtime.overlay import OverlayWriter, draw_overlay

        image = draw_overlay(result, self.config.overlay_max_side)
        if self._overlay is None:
            self._overlay = OverlayWriter(self.out / "overlay.mp4", image.shape[1], image.shape[0])
        self._overlay.write(image, result.time_s)

    # -- end -----------------------------------------------------------------------------------------
    def close(
        self, status: str = "complete", error: str | None = None, extra: Mapping[str, Any] = ()
    ) -> None:
        """Complete every file; safe to call more than once (the first call wins)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._flush_parquet()
            if self._parquet is not None:
                self._parquet.close()
            if self._overlay is not None:
                self._overlay.close()
        finally:
            self._lines_fh.close()
            self._spacing_fh.close()
            self._write_tracks()
            if self.config.spacing_png and self.n_spacings:
                self._plot_spacing()
            write_json_atomic(
                self.out / "run.json", {**self.info, **dict(extra), **self.summary(status, error)}
            )

    def summary(self, status: str, error: str | None = None) -> dict[str, Any]:
        return {
            "status": status,
            "error": error,
            "frames": self.frames,
            "lines": self.n_lines,
            "lines_per_frame": round(self.n_lines / self.frames, 3) if self.frames else 0.0,
            "tracks": len(self.tracks),
            "spacings": self.n_spacings,
            "stage_seconds": {k: round(v, 4) for k, v in self.timings.items()},
            "outputs": sorted(p.name for p in self.out.iterdir() if not p.name.endswith(".tmp")),
        }

    def _plot_spacing(self) -> None:
        try:
            from dislotrack.runtime.plots import plot_spacing
        except ImportError:
            return
        try:
            plot_spacing(self.out / "spacing.csv", self.out / "spacing.png")
        except ImportError:
            log.info("matplotlib not installed: no spacing.png")

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close("complete")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted", "interrupted by the user")
        else:
            self.close("failed", str(exc))
