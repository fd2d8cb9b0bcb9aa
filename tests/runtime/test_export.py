"""RunWriter: files valid while a run is in progress and after any kind of end."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from drawing import curve

from dislotrack.runtime.export import ExportConfig, RunWriter
from dislotrack.runtime.results import N_POINTS, Frame, FrameResult, Line, Spacing


def _result(i: int, time_s: float = math.nan) -> FrameResult:
    lines = tuple(
        Line(curve(10, y + i, 90, y + 5 + i, n=N_POINTS), 80.0 + k, 0.9, 0.01, k, track_id=k)
        for k, y in enumerate((20, 40))
    )
    return FrameResult(Frame(i, time_s, np.zeros((64, 100), np.uint8)), lines, (Spacing(0, 1, 20.0),))


def _csv(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_files_are_valid_during_the_run_and_complete_after(tmp_path):
    with RunWriter(tmp_path, {"source": "test"}, ExportConfig(tracks_every=3, spacing_png=False)) as w:
        for i in range(5):
            w.write(_result(i, i / 22))
        assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
        assert len(_csv(tmp_path / "lines.csv")) == 5 * 2 * N_POINTS
        assert len(_csv(tmp_path / "spacing.csv")) == 5
        assert [t["frames_seen"] for t in _csv(tmp_path / "tracks.csv")] == ["3", "3"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "complete" and run["frames"] == 5 and run["source"] == "test"
    tracks = _csv(tmp_path / "tracks.csv")
    assert [(t["first_frame"], t["last_frame"], t["frames_seen"]) for t in tracks] == [("0", "4", "5")] * 2
    assert float(tracks[0]["path_px"]) == pytest.approx(4.0, abs=1e-3)  # moved 1 px per frame
    assert pq.read_table(tmp_path / "lines.parquet").num_rows == 5 * 2 * N_POINTS


def test_an_error_or_interrupt_still_completes_the_files(tmp_path):
    with (
        pytest.raises(KeyboardInterrupt),
        RunWriter(tmp_path / "a", {}, ExportConfig(spacing_png=False)) as w,
    ):
        w.write(_result(0))
        raise KeyboardInterrupt
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["status"] == "interrupted" and run["frames"] == 1
    assert pq.read_table(tmp_path / "a" / "lines.parquet").num_rows == 2 * N_POINTS
    with pytest.raises(RuntimeError), RunWriter(tmp_path / "b", {}, ExportConfig(spacing_png=False)) as w:
        w.write(_result(0))
        raise RuntimeError("decoder exploded")
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "decoder exploded"


def test_unknown_times_are_empty_not_nan(tmp_path):
    with RunWriter(tmp_path, {"limit": float("inf")}, ExportConfig(spacing_png=False)) as w:
        w.write(_result(0))
    assert {r["time_s"] for r in _csv(tmp_path / "lines.csv")} == {""}
    assert json.loads((tmp_path / "run.json").read_text())["limit"] is None
