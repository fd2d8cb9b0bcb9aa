"""The live monitoring window: current frame with tracked centrelines, spacing plot, controls, status.

Results arrive from the worker thread by a queued signal; the slot stores the newest result and
appends its spacings to the history (cheap), and draws it at once only if nothing was drawn for
1 / ``refresh_hz``. Otherwise a QTimer draws the newest result at its next tick, so a burst of
results never queues redraws and the GUI thread stays responsive.
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from dislotrack.gui.settings import LiveSettings
from dislotrack.gui.viewmodel import (
    KeyColours,
    SpacingHistory,
    TrackColours,
    label_positions,
    line_at,
    mask_rgba,
    robust_levels,
    selected_pileup,
)
from dislotrack.gui.worker import LiveController, LiveResult, Outcome
from dislotrack.runtime.live import LiveStats, latency_summary, rates
from dislotrack.runtime.results import FrameResult, Line

BANNER_STYLES = {
    "info": "background:#17324d; color:#d8ecff; padding:6px; font-weight:bold;",
    "error": "background:#5c1a1a; color:#ffe1e1; padding:6px; font-weight:bold;",
}
FEW_POINTS = 30  # curves with fewer points also get point markers
PIXEL_CENTRE = 0.5  # ImageItem pixel j spans [j, j + 1]; line points are in pixel-centre coordinates


class LineOverlay:
    """A reusable pool of centreline curves and id labels on the image view (no item churn per frame)."""

    def __init__(self, view: pg.ViewBox) -> None:
        self._view = view
        self._curves: list[pg.PlotCurveItem] = []
        self._labels: list[pg.TextItem] = []
        self.visible_count = 0
        self.show_ids = True
        self._font = QFont()
        self._font.setPointSize(11)
        self._font.setBold(True)

    def _grow(self, n: int) -> None:
        while len(self._curves) < n:
            curve = pg.PlotCurveItem()
            label = pg.TextItem(anchor=(0.5, 0.5))
            label.setFont(self._font)
            curve.setZValue(10)
            label.setZValue(11)
            self._view.addItem(curve)
            self._view.addItem(label)
            self._curves.append(curve)
            self._labels.append(label)

    def show(self, lines: tuple[Line, ...], colours: list[tuple[int, int, int]]) -> None:
        self._grow(len(lines))
        positions = label_positions(lines)
        for i, (line, colour) in enumerate(zip(lines, colours, strict=True)):
            xy = line.points + PIXEL_CENTRE
            self._curves[i].setData(xy[:, 0], xy[:, 1], pen=pg.mkPen(colour, width=2))
            self._labels[i].setText("?" if line.track_id < 0 else str(line.track_id), color=colour)
            x, y = positions[i]
            self._labels[i].setPos(x + PIXEL_CENTRE, y + PIXEL_CENTRE)
            self._curves[i].setVisible(True)
            self._labels[i].setVisible(self.show_ids)
        for i in range(len(lines), len(self._curves)):
            self._curves[i].setVisible(False)
            self._labels[i].setVisible(False)
        self.visible_count = len(lines)

    def set_ids_visible(self, on: bool) -> None:
        """ID labels on or off (a crowded frame reads better without them)."""
        self.show_ids = on
        for i in range(self.visible_count):
            self._labels[i].setVisible(on)

    def labels(self) -> list[str]:
        """Texts of the id labels on screen (what a user reads)."""
        return [label.toPlainText() for label in self._labels[: self.visible_count] if label.isVisible()]


class LiveWindow(QMainWindow):
    """Frame + overlay on the left, spacing of the selected pile-up on the right, status below."""

    frameDrawn = Signal(int)  # frame index, after each redraw (tests and benchmark hook on it)
    recordingComplete = Signal(str, str)  # folder, error ("" if none): its files are complete on disk

    def __init__(self, settings: LiveSettings, *, start: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.controller = LiveController(settings, self)
        self.worker = self.controller.worker
        self.history = SpacingHistory(settings.history_points)
        self.colours = TrackColours()
        self.pair_colours = KeyColours()
        self.latest: LiveResult | None = None
        self.displayed: LiveResult | None = None
        self.anchor_track: int | None = None
        self.outcome: str | None = None
        self.recording_dir: Path | None = None
        self.generation = 1
        self.levels: tuple[float, float] | None = None
        self.latencies_s: deque[float] = deque(maxlen=200)
        self.frame_refreshes = 0
        self.plot_refreshes = 0
        self._stats_log: deque[LiveStats] = deque(maxlen=8)
        self._dirty = False
        self._now_s = math.nan
        self._last_draw_s = -math.inf
        self._curves: dict[tuple[int, int], pg.PlotDataItem] = {}

        self.setWindowTitle(f"dislotrack live — {settings.source}")
        self._build_toolbar()
        self._build_central()
        self._build_status()
        self._connect_worker()

        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(max(1, round(1000 / settings.refresh_hz)))
        self._redraw_timer.timeout.connect(self._refresh)
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(max(1, round(1000 / settings.stats_hz)))
        self._stats_timer.timeout.connect(self._update_status)
        if start:
            self.start()

    # -- construction -----------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QToolBar("Controls", self)
        bar.setMovable(False)
        self.addToolBar(bar)
        self.pause_action = QAction("Pause", self, checkable=True)
        self.pause_action.setShortcut("Space")
        self.pause_action.toggled.connect(self.set_paused)
        bar.addAction(self.pause_action)
        bar.addSeparator()
        bar.addWidget(QLabel(" Threshold "))
        self.threshold_box = QDoubleSpinBox(self)
        self.threshold_box.setRange(0.05, 0.95)
        self.threshold_box.setSingleStep(0.05)
        self.threshold_box.setDecimals(2)
        self.threshold_box.setValue(self.settings.threshold or 0.5)
        self.threshold_box.setToolTip("Mask probability threshold; applying it restarts tracking")
        self._threshold_timer = QTimer(self, singleShot=True, interval=500)
        self._threshold_timer.timeout.connect(lambda: self.set_threshold(self.threshold_box.value()))
        self.threshold_box.valueChanged.connect(lambda _v: self._threshold_timer.start())
        bar.addWidget(self.threshold_box)
        self.model_action = QAction("Model…", self)
        self.model_action.triggered.connect(self._choose_model)
        bar.addAction(self.model_action)
        bar.addSeparator()
        self.ids_box = QCheckBox("IDs", self)
        self.ids_box.setChecked(True)
        self.ids_box.toggled.connect(lambda on: self.overlay.set_ids_visible(on))
        bar.addWidget(self.ids_box)
        self.masks_box = QCheckBox("Masks", self)
        self.masks_box.toggled.connect(self._toggle_masks)
        bar.addWidget(self.masks_box)
        self.levels_action = QAction("Auto levels", self)
        self.levels_action.triggered.connect(self.reset_levels)
        bar.addAction(self.levels_action)
        bar.addSeparator()
        self.record_action = QAction("Record…", self, checkable=True)
        self.record_action.triggered.connect(self._toggle_recording)
        bar.addAction(self.record_action)
        self.export_action = QAction("Export PNG…", self)
        self.export_action.triggered.connect(self._choose_export)
        bar.addAction(self.export_action)

    def _build_central(self) -> None:
        self.banner = QLabel(self)
        self.banner.setWordWrap(True)
        self.banner.hide()

        self.image_widget = pg.GraphicsLayoutWidget(self)
        self.view = self.image_widget.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item.setZValue(5)
        self.mask_item.setVisible(False)
        self.view.addItem(self.image_item)
        self.view.addItem(self.mask_item)
        self.overlay = LineOverlay(self.view)
        self.image_widget.scene().sigMouseClicked.connect(self._on_click)

        self.plot_widget = pg.PlotWidget(self)
        self.plot_widget.setLabel("bottom", "time", units="s")
        self.plot_widget.setLabel("left", "spacing", units="px")
        self.plot_widget.showGrid(x=True, y=True, alpha=0.3)
        self.plot_widget.addLegend(offset=(-10, 10))
        self.plot_widget.setTitle("Spacing of neighbouring dislocations")
        self.plot_widget.getPlotItem().setAutoVisible(y=True)  # y fits the data in the visible time span
        now_pen = pg.mkPen((200, 200, 200), style=Qt.PenStyle.DashLine)
        self.now_line = pg.InfiniteLine(angle=90, movable=False, pen=now_pen)
        self.now_line.hide()
        self.plot_widget.addItem(self.now_line, ignoreBounds=True)
        self.pileup_label = QLabel("Pile-up: waiting for dislocations; click one to choose its pile-up.")
        self.pileup_label.setWordWrap(True)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.pileup_label)
        right_layout.addWidget(self.plot_widget, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.image_widget)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([600, 400])  # proportions; the splitter scales them to the window
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(central)

    def _build_status(self) -> None:
        self.source_label = QLabel(f"source: {Path(self.settings.source).name or self.settings.source}")
        self.source_label.setToolTip(self.settings.source)
        self.rates_label = QLabel("in — / processed — / dropped — frame/s")
        self.model_label = QLabel("model: loading…")
        self.provider_label = QLabel("provider: —")
        self.latency_label = QLabel("latency: —")
        bar = self.statusBar()
        for label in (self.source_label, self.model_label, self.rates_label):
            bar.addPermanentWidget(label)
        for label in (self.provider_label, self.latency_label):
            bar.addPermanentWidget(label)

    def _connect_worker(self) -> None:
        self.worker.resultReady.connect(self._on_result)
        self.worker.restarted.connect(self._on_restarted)
        self.worker.recording.connect(self._on_recording)
        self.worker.recordingEnded.connect(self._on_recording_ended)
        self.worker.finished.connect(self._on_finished)
        self.worker.modelLoaded.connect(self._on_model_loaded)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.controller.start()
        self._redraw_timer.start()
        self._stats_timer.start()

    def stop(self) -> bool:
        """Stop the worker and its thread; True when nothing is left running."""
        self._redraw_timer.stop()
        self._stats_timer.stop()
        return self.controller.stop()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop()
        super().closeEvent(event)

    # -- results ------------------------------------------------------------------------------------
    def _on_result(self, live: LiveResult) -> None:
        if live.generation != self.generation:
            return  # a result computed with the previous settings, still in flight
        self.latest = live
        self.history.add(live.result)
        self._dirty = True
        if time.perf_counter() - self._last_draw_s >= 1.0 / self.settings.refresh_hz:
            self._refresh()  # the display is idle: show it now rather than at the next tick

    def _on_restarted(self, generation: int, problem: str) -> None:
        self.generation = generation
        self.history.clear()
        self.colours.clear()
        self.pair_colours.clear()
        self.anchor_track = None
        if problem:
            self.show_message("error", problem)
        else:
            self.show_message("info", "New settings applied: tracking restarted, track ids start afresh.")

    def _refresh(self) -> None:
        """Timer tick: draw the newest result only (if any is new); move the plot's "now" line."""
        if self.pause_action.isChecked():
            return
        changed = False
        if self._dirty and self.latest is not None:
            self._dirty = False
            self._last_draw_s = time.perf_counter()
            self._draw(self.latest)
            self._draw_plot(self.latest.result)
            changed = True
        now = self.worker.newest_time_s()
        if math.isfinite(now) and now != self._now_s:
            self._now_s = now
            self._scroll_plot(now)
            changed = True
        self.plot_refreshes += int(changed)

    def _scroll_plot(self, now: float) -> None:
        """The last ``plot_span_s`` seconds up to the newest frame; the gap to the data is the latency."""
        self.now_line.setPos(now)
        self.now_line.show()
        span = self.settings.plot_span_s
        self.plot_widget.setXRange(max(0.0, now - span), max(now, 1e-3), padding=0.02)

    def _draw(self, live: LiveResult) -> None:
        result = live.result
        image = result.frame.image
        if self.levels is None:
            self.levels = robust_levels(image)
        self.image_item.setImage(image, autoLevels=False, levels=self.levels)
        colours = self.colours.for_lines(result.lines)
        self.overlay.show(result.lines, colours)
        if self.masks_box.isChecked():
            self._draw_masks(result)
        self.displayed = live
        self.frame_refreshes += 1
        if live.arrival_s is not None:
            self.latencies_s.append(self.worker.clock() - live.arrival_s)
        if result.provider:
            self.provider_label.setText(f"provider: {provider_name(result.provider)}")
        self.frameDrawn.emit(result.index)

    def _draw_masks(self, result: FrameResult) -> None:
        if result.labels is None:
            self.mask_item.clear()
            return
        colours = self.colours.for_lines(result.lines)
        self.mask_item.setImage(mask_rgba(result.labels, colours), autoLevels=False)

    def _draw_plot(self, result: FrameResult) -> None:
        group = selected_pileup(result.spacings, self.anchor_track, self.history.points_within)
        pairs = self.history.pairs_within(group)
        for pair in set(self._curves) - set(pairs):
            self.plot_widget.removeItem(self._curves.pop(pair))
        for pair, colour in zip(pairs, self.pair_colours.for_keys(pairs), strict=True):
            t, d = self.history.series(pair)
            curve = self._curves.get(pair)
            if curve is None:
                pen = pg.mkPen(colour, width=2)
                curve = self.plot_widget.plot(name=f"{pair[0]}–{pair[1]}", pen=pen, connect="finite")
                curve.setDownsampling(auto=True, method="peak")
                curve.setClipToView(True)
                self._curves[pair] = curve
            # a pair seen in a few frames only would be invisible as a line: mark its points
            few = len(t) < FEW_POINTS
            curve.setData(t, d, symbol="o" if few else None, symbolSize=5, symbolPen=None,
                          symbolBrush=curve.opts["pen"].color())
        self.pileup_label.setText(pileup_caption(group, self.anchor_track))

    def plotted_pairs(self) -> dict[tuple[int, int], int]:
        """Pairs on the plot and how many points each curve has."""
        return {pair: len(curve.getData()[0] if curve.getData()[0] is not None else ())
                for pair, curve in self._curves.items()}

    # -- controls -----------------------------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        """Freeze the display and processing; resuming shows the live frame, not a backlog."""
        if self.pause_action.isChecked() != paused:
            self.pause_action.setChecked(paused)  # re-enters through toggled
            return
        self.pause_action.setText("Resume" if paused else "Pause")
        self._dirty = False  # a result that finished during the pause is stale: wait for a fresh one
        self.worker.set_paused(paused)

    def set_threshold(self, threshold: float) -> None:
        self.worker.set_threshold(float(threshold))

    def load_model(self, path: str | Path) -> None:
        """Switch to another ONNX model; tracking restarts with it (the old one stays if it fails)."""
        self.worker.set_model(str(path))
        self.model_label.setToolTip(str(path))

    def start_recording(self, out_dir: str | Path) -> Path:
        """Record results from now on into ``out_dir`` (the files of ``dislotrack process``)."""
        try:
            return self.worker.start_recording(Path(out_dir))
        except RuntimeError as exc:
            self.record_action.setChecked(False)
            self.show_message("error", f"Cannot record to {out_dir}: {exc}")
            raise

    def stop_recording(self) -> None:
        """Complete the recording's files; ``worker.recordingEnded`` tells when they are on disk."""
        self.worker.stop_recording()

    def export_png(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Save what is on screen — frame with overlay, and the spacing plot — as two PNG files."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        index = self.displayed.result.index if self.displayed is not None else 0
        frame_png, plot_png = out / f"frame_{index:06d}.png", out / f"spacing_{index:06d}.png"
        for widget, path in ((self.image_widget, frame_png), (self.plot_widget, plot_png)):
            if not widget.grab().save(str(path), "PNG"):
                raise OSError(f"could not write {path}")
        self.statusBar().showMessage(f"exported {frame_png.name} and {plot_png.name} to {out}", 5000)
        return frame_png, plot_png

    def reset_levels(self) -> None:
        """Recompute display levels from the frame on screen (after the illumination changed)."""
        if self.displayed is not None:
            self.levels = robust_levels(self.displayed.result.frame.image)
            self.image_item.setLevels(self.levels)

    def select_at(self, x: float, y: float) -> int | None:
        """Choose the pile-up of the dislocation nearest (x, y) in image pixels; background clears it."""
        shown = self.displayed.result.lines if self.displayed is not None else ()
        line = line_at(shown, x - PIXEL_CENTRE, y - PIXEL_CENTRE, self.settings.pick_radius_px)
        self.anchor_track = None if line is None or line.track_id < 0 else line.track_id
        if self.displayed is not None:
            self._draw_plot(self.displayed.result)
        return self.anchor_track

    def _on_click(self, event) -> None:
        pos = self.view.mapSceneToView(QPointF(event.scenePos()))
        self.select_at(pos.x(), pos.y())

    def _toggle_masks(self, on: bool) -> None:
        self.mask_item.setVisible(on)
        if on and self.displayed is not None:
            self._draw_masks(self.displayed.result)

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "ONNX model", "", "ONNX models (*.onnx)")
        if path:
            self.load_model(path)

    def _toggle_recording(self, on: bool) -> None:
        if not on:
            self.stop_recording()
            return
        folder = QFileDialog.getExistingDirectory(self, "Record results to folder")
        if not folder:
            self.record_action.setChecked(False)
            return
        try:
            self.start_recording(folder)
        except RuntimeError:
            return

    def _choose_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export frame and plot as PNG to folder")
        if folder:
            try:
                self.export_png(folder)
            except OSError as exc:
                self.show_message("error", str(exc))

    # -- messages and status ------------------------------------------------------------------------
    def show_message(self, level: str, text: str) -> None:
        self.banner.setStyleSheet(BANNER_STYLES[level])
        self.banner.setText(text)
        self.banner.show()

    def _on_model_loaded(self, name: str, provider: str) -> None:
        self.model_label.setText(f"model: {name}")
        self.provider_label.setText(f"provider: {provider_name(provider)}")

    def _on_recording(self, folder: str) -> None:
        self.recording_dir = Path(folder)
        self.record_action.setChecked(True)
        self.record_action.setText("Stop recording")
        self.statusBar().showMessage(f"recording to {folder}", 5000)

    def _on_recording_ended(self, folder: str, error: str) -> None:
        if self.recording_dir is not None and Path(folder) == self.recording_dir:
            self.record_action.setChecked(False)
            self.record_action.setText("Record…")
        if error:
            self.show_message("error", f"{error} What was written before is kept.")
        else:
            self.statusBar().showMessage(f"recording complete in {folder}", 8000)
        self.recordingComplete.emit(folder, error)

    def _on_finished(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        self._stats_timer.stop()
        stats = self.worker.stats()
        if stats is not None:
            self.rates_label.setText(
                f"{outcome}: {stats.frames_in} in / {stats.processed} processed / {stats.dropped} dropped"
            )
        if outcome == Outcome.STOPPED:
            return
        if self.recording_dir is not None:
            message += f" Recorded results are kept in {self.recording_dir}."
        self.show_message("info" if outcome == Outcome.ENDED else "error", message)
        self.pause_action.setEnabled(False)

    def _update_status(self) -> None:
        stats = self.worker.stats()
        if stats is not None:
            self._stats_log.append(stats)
            r = rates(self._stats_log[0], stats)
            self.rates_label.setText(
                f"in {r.frames_in:.1f} / processed {r.processed:.1f} / dropped {r.dropped:.1f} frame/s"
            )
        if self.latencies_s:
            median, p95 = latency_summary(self.latencies_s)
            self.latency_label.setText(f"latency {median * 1000:.0f} ms (p95 {p95 * 1000:.0f})")


def pileup_caption(group: frozenset[int], anchor: int | None) -> str:
    """One line telling which pile-up the plot shows and how to choose another."""
    if not group:
        return "Pile-up: no neighbouring dislocations in this frame."
    ids = ", ".join(map(str, sorted(group)))
    how = f"of dislocation {anchor}" if anchor in group else "longest history; click a dislocation to choose"
    return f"Pile-up ({how}): dislocations {ids}"


def provider_name(provider: str) -> str:
    """Short name of an onnxruntime provider for the status bar (CUDAExecutionProvider -> CUDA)."""
    return provider.removesuffix("ExecutionProvider") or provider
