"""The live window driven offscreen on a synthetic video through the real runtime pipeline."""

from __future__ import annotations

import csv
import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from onnx_models import metadata, write_model
from PySide6.QtGui import QImage

from dislotrack.gui.settings import LiveSettings
from dislotrack.gui.window import LiveWindow
from dislotrack.gui.worker import Outcome

pytestmark = pytest.mark.gui

WAIT_MS = 20_000


def python_threads() -> set[str]:
    """Threads started from Python (Qt's own threads show up as 'Dummy' entries that never go away)."""
    return {t.name for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


@pytest.fixture
def open_window(qtbot):
    windows: list[LiveWindow] = []

    def factory(**kw) -> LiveWindow:
        window = LiveWindow(LiveSettings(**kw))
        qtbot.addWidget(window)
        window.resize(1200, 700)
        window.show()
        windows.append(window)
        return window

    yield factory
    for window in windows:
        window.stop()


def curve_points(window: LiveWindow) -> int:
    return sum(window.plotted_pairs().values())


def test_frames_arrive_with_tracked_overlay_and_a_growing_spacing_curve(
    qtbot, open_window, demo_video, truth_model
):
    window = open_window(source=str(demo_video.path), model=truth_model)
    qtbot.waitUntil(
        lambda: window.frame_refreshes >= 3 and window.overlay.visible_count >= 2, timeout=WAIT_MS
    )
    shown = window.displayed.result
    assert window.overlay.visible_count == len(shown.lines) >= 2
    assert sorted(window.overlay.labels()) == sorted(str(line.track_id) for line in shown.lines)
    window.ids_box.setChecked(False)
    assert window.overlay.labels() == []
    window.ids_box.setChecked(True)
    assert window.image_item.image.shape == demo_video.images.shape[1:]

    qtbot.waitUntil(lambda: curve_points(window) >= 2, timeout=WAIT_MS)
    first = curve_points(window)
    qtbot.waitUntil(lambda: curve_points(window) > first + 2, timeout=WAIT_MS)
    assert len(window.plotted_pairs()) >= 1
    # the dashed "now" line marks the newest frame that arrived; results trail it
    assert window.now_line.isVisible() and window.now_line.value() >= window.displayed.result.time_s
    x_min, x_max = window.plot_widget.getPlotItem().viewRange()[0]
    assert x_min <= window.displayed.result.time_s <= window.now_line.value() <= x_max
    assert "TruthModel" in window.provider_label.text()
    assert "processed" in window.rates_label.text() and "latency" in window.latency_label.text()


def test_masks_overlay_follows_the_label_image(qtbot, open_window, demo_video, truth_model):
    window = open_window(source=str(demo_video.path), model=truth_model)
    qtbot.waitUntil(lambda: window.overlay.visible_count >= 2, timeout=WAIT_MS)
    window.masks_box.setChecked(True)
    qtbot.waitUntil(lambda: window.mask_item.image is not None, timeout=WAIT_MS)
    rgba = window.mask_item.image
    labels = window.displayed.result.labels
    assert rgba.shape == (*labels.shape, 4)
    assert np.array_equal(rgba[..., 3] > 0, labels > 0)
    window.masks_box.setChecked(False)
    assert not window.mask_item.isVisible()


def test_pause_stops_updates_and_resume_shows_the_live_frame(qtbot, open_window, demo_video, truth_model):
    window = open_window(source=str(demo_video.path), model=truth_model, speed=0.5)
    qtbot.waitUntil(lambda: window.frame_refreshes >= 2, timeout=WAIT_MS)
    window.set_paused(True)
    qtbot.wait(300)  # results already in flight may still arrive, but are not drawn
    refreshes, index = window.frame_refreshes, window.displayed.result.index
    before = window.worker.stats()
    qtbot.wait(1000)
    assert window.frame_refreshes == refreshes and window.displayed.result.index == index
    assert window.pause_action.text() == "Resume"
    during = window.worker.stats()
    assert during.frames_in > before.frames_in  # the camera goes on
    assert during.dropped > before.dropped
    window.set_paused(False)
    qtbot.waitUntil(lambda: window.frame_refreshes > refreshes, timeout=WAIT_MS)
    assert window.displayed.result.index >= during.frames_in - 1


def test_missing_source_is_reported_in_the_window(qtbot, open_window, tmp_path):
    window = open_window(source=str(tmp_path / "no_such_video.mp4"))
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome == Outcome.OPEN_FAILED
    assert window.banner.isVisible()
    assert "Cannot open source" in window.banner.text() and "no_such_video.mp4" in window.banner.text()


def test_end_of_source_is_reported(qtbot, open_window, demo_video, truth_model):
    window = open_window(source=str(demo_video.path), model=truth_model, speed=4.0)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome == Outcome.ENDED
    assert "ended" in window.banner.text()
    assert window.frame_refreshes >= 1
    assert not window.pause_action.isEnabled()


def test_vanished_followed_file_is_reported_and_the_recording_kept(
    qtbot, open_window, demo_video, truth_model, tmp_path
):
    growing, out = tmp_path / "recording.mp4", tmp_path / "results"
    shutil.copy(demo_video.path, growing)
    window = open_window(
        source=str(growing), model=truth_model, follow=True, follow_idle_s=1.0, record_dir=out
    )
    qtbot.waitUntil(lambda: window.frame_refreshes >= 1, timeout=WAIT_MS)
    growing.unlink()
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome == Outcome.VANISHED
    assert "vanished" in window.banner.text() and "recording.mp4" in window.banner.text()
    assert f"kept in {out}" in window.banner.text()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["frames"] == window.worker.stats().processed >= 1


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_recording_writes_the_outputs_of_dislotrack_process(
    qtbot, open_window, demo_video, truth_model, tmp_path
):
    out = tmp_path / "rec"
    window = open_window(source=str(demo_video.path), model=truth_model, speed=4.0, record_dir=out)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome == Outcome.ENDED and f"kept in {out}" in window.banner.text()
    processed = window.worker.stats().processed
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["frames"] == processed
    assert run["live"]["paced"] is True and run["source"]["sha256"]
    lines = read_csv(out / "lines.csv")
    assert len({row["frame"] for row in lines}) == len({r["frame"] for r in lines}) > 0
    assert len(lines) == 50 * run["lines"]
    assert {"frame", "time_s", "track_id", "point", "x", "y"} <= set(lines[0])
    spacing = read_csv(out / "spacing.csv")
    assert len(spacing) == run["spacings"] > 0
    assert (out / "tracks.csv").is_file() and (out / "lines.parquet").is_file()


def test_recording_can_be_started_and_stopped_while_running(
    qtbot, open_window, demo_video, truth_model, tmp_path
):
    out = tmp_path / "clip"
    window = open_window(source=str(demo_video.path), model=truth_model, speed=0.5)
    qtbot.waitUntil(lambda: window.frame_refreshes >= 1, timeout=WAIT_MS)
    window.start_recording(out)
    qtbot.waitUntil(lambda: window.record_action.isChecked(), timeout=WAIT_MS)
    refreshes = window.frame_refreshes
    # refreshes <= results, and at most one result drawn after this was computed before the start
    qtbot.waitUntil(lambda: window.frame_refreshes >= refreshes + 4, timeout=WAIT_MS)
    with qtbot.waitSignal(window.recordingComplete, timeout=WAIT_MS) as ended:
        window.stop_recording()
    assert ended.args == [str(out), ""]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["frames"] >= 3
    qtbot.waitUntil(lambda: not window.record_action.isChecked(), timeout=WAIT_MS)
    assert window.outcome is None  # the live view goes on


def test_closing_the_window_stops_the_worker_and_leaves_no_thread(qtbot, demo_video, truth_model):
    before = python_threads()
    window = LiveWindow(LiveSettings(source=str(demo_video.path), model=truth_model))
    window.show()
    qtbot.waitUntil(lambda: window.frame_refreshes >= 2, timeout=WAIT_MS)
    assert window.controller.thread.isRunning()
    assert len(python_threads() - before) >= 2  # live reader + pipeline stages are running
    window.close()
    assert not window.controller.thread.isRunning()
    assert python_threads() <= before
    assert multiprocessing.active_children() == []
    window.deleteLater()


def test_click_chooses_the_pileup_of_a_dislocation(qtbot, open_window, demo_video, truth_model):
    window = open_window(source=str(demo_video.path), model=truth_model)

    def tracked_lines():
        shown = window.displayed.result.lines if window.displayed else ()
        return [line for line in shown if line.track_id >= 0]

    qtbot.waitUntil(lambda: len(tracked_lines()) > 0, timeout=WAIT_MS)
    line = tracked_lines()[0]
    x, y = line.points[25] + 0.5
    assert window.select_at(float(x), float(y)) == line.track_id
    assert f"of dislocation {line.track_id}" in window.pileup_label.text()
    assert window.select_at(-50.0, -50.0) is None
    assert "longest history" in window.pileup_label.text()


def test_export_writes_the_frame_and_the_plot_as_png(qtbot, open_window, demo_video, truth_model, tmp_path):
    window = open_window(source=str(demo_video.path), model=truth_model)
    qtbot.waitUntil(lambda: window.frame_refreshes >= 1, timeout=WAIT_MS)
    frame_png, plot_png = window.export_png(tmp_path / "export")
    for path, widget in ((frame_png, window.image_widget), (plot_png, window.plot_widget)):
        image = QImage(str(path))
        assert not image.isNull()
        assert (image.width(), image.height()) == (widget.width(), widget.height())
    assert frame_png.name.startswith("frame_") and plot_png.name.startswith("spacing_")


def test_new_threshold_restarts_tracking_and_frames_keep_coming(qtbot, open_window, demo_video, truth_model):
    window = open_window(source=str(demo_video.path), model=truth_model, speed=0.5)
    qtbot.waitUntil(lambda: window.frame_refreshes >= 2, timeout=WAIT_MS)
    with qtbot.waitSignal(window.worker.restarted, timeout=WAIT_MS):
        window.set_threshold(0.6)
    assert window.worker.settings.threshold == pytest.approx(0.6)
    refreshes = window.frame_refreshes
    qtbot.waitUntil(lambda: window.frame_refreshes > refreshes + 1, timeout=WAIT_MS)
    assert window.displayed.generation == window.generation == 2
    assert "restarted" in window.banner.text()


def test_a_model_file_can_be_loaded_while_running(qtbot, open_window, demo_video, truth_model, tmp_path):
    tiny = write_model(tmp_path / "tiny.onnx", metadata(n_masks=4), gain=-25.0, level=0.4)
    window = open_window(source=str(demo_video.path), model=truth_model, speed=0.5, flips=2)
    qtbot.waitUntil(lambda: window.frame_refreshes >= 1, timeout=WAIT_MS)
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WAIT_MS) as loaded:
        window.load_model(tiny)
    assert loaded.args == ["tiny.onnx", "CPUExecutionProvider"]
    qtbot.waitUntil(lambda: window.model_label.text() == "model: tiny.onnx", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.displayed.generation == 2, timeout=WAIT_MS)
    assert window.displayed.result.provider == "CPUExecutionProvider"
    assert window.worker._model.config.flips == 2  # the session's flip passes apply to a loaded file


def test_a_broken_model_file_keeps_the_working_model(qtbot, open_window, demo_video, truth_model, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    window = open_window(source=str(demo_video.path), model=truth_model, speed=0.5)
    qtbot.waitUntil(lambda: window.frame_refreshes >= 1, timeout=WAIT_MS)
    window.load_model(broken)
    qtbot.waitUntil(lambda: "Cannot load model broken.onnx" in window.banner.text(), timeout=WAIT_MS)
    refreshes = window.frame_refreshes
    qtbot.waitUntil(lambda: window.frame_refreshes > refreshes, timeout=WAIT_MS)
    assert window.outcome is None
    assert window.displayed.result.provider == truth_model.provider
