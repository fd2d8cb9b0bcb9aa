"""The pipeline worker: a QObject living on its own QThread that turns a live source into results.

The GUI thread never decodes, infers or writes files: this worker runs the runtime's one results
generator (``iter_results``) over a ``LiveSource`` (camera-speed frames, newest wins) and emits each
result by a queued signal. The window only keeps the newest result and redraws on a timer.
Controls from the GUI thread (pause, threshold, model, recording, stop) are thread-safe method calls:
the worker's thread is busy in its loop and has no event loop to deliver queued calls to it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from dislotrack.gui.recording import Recorder
from dislotrack.gui.settings import LiveSettings
from dislotrack.runtime.live import LiveConfig, LiveSource, LiveStats
from dislotrack.runtime.results import FrameResult

log = logging.getLogger(__name__)

RECORDING_CLOSE_TIMEOUT_S = 60.0  # a recording's last writes (parquet footer, figure) on a slow disk


@dataclass(frozen=True, slots=True)
class LiveResult:
    """A result plus when its frame arrived (``LiveSource.clock``), for latency to display."""

    result: FrameResult
    arrival_s: float | None
    generation: int


class Outcome:
    """Why the worker stopped: the window words its message from this."""

    ENDED = "ended"
    STOPPED = "stopped"
    OPEN_FAILED = "open_failed"
    VANISHED = "vanished"
    FAILED = "failed"


def model_name(model: object) -> str:
    """What the status bar calls the model: file name, "shipped default", or a ready model's class."""
    if model is None:
        return "shipped default"
    if isinstance(model, (str, Path)):
        return Path(model).name
    return type(model).__name__


class PipelineWorker(QObject):
    """Reads the source, runs ``iter_results`` and emits results; see the module docstring."""

    resultReady = Signal(object)  # LiveResult
    restarted = Signal(int, str)  # generation, a problem with the new settings ("" if none)
    recording = Signal(str)  # folder that recording started into
    # folder whose files are complete, error ("" if none); emitted from the recording thread, so
    # connect a QObject's slot (a plain function would be queued to this busy worker thread)
    recordingEnded = Signal(str, str)
    modelLoaded = Signal(str, str)  # model name, onnxruntime provider
    finished = Signal(str, str)  # Outcome, message for the user

    def __init__(self, settings: LiveSettings) -> None:
        super().__init__()
        self._settings = settings
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._live: LiveSource | None = None
        self._cancel_feed = threading.Event()
        self._source = None
        self._model = None
        self._record_lock = threading.Lock()
        self._recorder: Recorder | None = None
        self._recorders: list[Recorder] = []
        self._generation = 0
        self._frames_out = 0
        self._paused = False

    # -- called from the GUI thread ---------------------------------------------------------------
    @property
    def settings(self) -> LiveSettings:
        with self._lock:
            return self._settings

    def stats(self) -> LiveStats | None:
        live = self._live
        return None if live is None else live.stats()

    def newest_time_s(self) -> float:
        """Source time of the newest frame that arrived: "now", which results trail by the latency."""
        live = self._live
        return live.newest_time_s if live is not None else math.nan

    def clock(self) -> float:
        """The clock that arrival times are measured on."""
        live = self._live
        return live.clock() if live is not None else time.perf_counter()

    def set_paused(self, paused: bool) -> None:
        """Pause processing; the camera goes on, so frames meanwhile count as dropped."""
        with self._lock:
            self._paused = paused
            live = self._live
        if live is not None:
            (live.pause if paused else live.resume)()

    def set_threshold(self, threshold: float | None) -> None:
        self._reconfigure(threshold=threshold)

    def set_model(self, model: str | object | None) -> None:
        self._reconfigure(model=model)

    def _reconfigure(self, **changes: object) -> None:
        with self._lock:
            self._settings = replace(self._settings, **changes)
            cancel = self._cancel_feed
        self._restart.set()
        cancel.set()  # the running pipeline sees its source end and winds down

    def start_recording(self, out_dir: Path) -> Path:
        """Write every following result to ``out_dir``: the files of ``dislotrack process``."""
        if self._source is None or self._model is None:
            raise RuntimeError("nothing to record: the source is not open")
        recorder = Recorder(Path(out_dir), self._recording_info, self._recording_done)
        with self._record_lock:
            old, self._recorder = self._recorder, recorder
            self._recorders.append(recorder)
        if old is not None:
            old.close()
        self.recording.emit(str(out_dir))
        return Path(out_dir)

    def stop_recording(self) -> None:
        """Complete the recording's files (on the recording thread; ``recordingEnded`` says when)."""
        with self._record_lock:
            old, self._recorder = self._recorder, None
        if old is not None:
            old.close()

    def request_stop(self) -> None:
        """Ask the loop to end; unblocks a wait for the next frame. Returns at once."""
        self._stop.set()
        live = self._live
        if live is not None:
            live.close()

    # -- runs on the worker thread ----------------------------------------------------------------
    def _recording_info(self) -> dict[str, Any]:
        """``run.json``'s header, as ``dislotrack process`` writes it (runs on the recording thread)."""
        from dislotrack.runtime.batch import ProcessOptions, run_info, source_fingerprint
        from dislotrack.runtime.inference import Predictor

        s, source, model = self.settings, self._source, self._model
        options = ProcessOptions(
            device=s.device, flips=s.flips, threshold=s.threshold, follow=s.follow,
            frame_interval_s=s.frame_interval_s, batch_size=1, progress=False,
        )
        if isinstance(model, Predictor):
            info = run_info(source, model, options)
        else:  # a ready model object that is not an ONNX session has no file to describe
            info = {"source": {**source.describe(), **source_fingerprint(source.spec)},
                    "model": {"name": model_name(model)}, "provider": getattr(model, "provider", "")}
        live = {"paced": s.paced, "speed": s.speed, "in_flight": s.in_flight}
        return {**info, "live": live}

    def _recording_done(self, out_dir: Path, error: str) -> None:
        self.recordingEnded.emit(str(out_dir), error)

    @Slot()
    def run(self) -> None:
        outcome, message = Outcome.FAILED, ""
        try:
            outcome, message = self._run()
        except Exception as exc:  # anything unexpected still ends with a message, never a silent stop
            outcome, message = Outcome.FAILED, f"Processing stopped: {exc}"
        finally:
            self._close()
            self.finished.emit(outcome, message)

    def _run(self) -> tuple[str, str]:
        from dislotrack.runtime.sources import FollowConfig, open_source

        s = self.settings
        try:
            source = open_source(
                s.source,
                follow=s.follow,
                frame_interval_s=s.frame_interval_s,
                follow_config=FollowConfig(idle_timeout_s=s.follow_idle_s),
            )
        except Exception as exc:
            return Outcome.OPEN_FAILED, f"Cannot open source {s.source}: {exc}"
        live = LiveSource(source, LiveConfig(pace=s.paced, speed=s.speed, max_in_flight=s.in_flight))
        with self._lock:
            self._live, self._source = live, source
            paused = self._paused
        if paused:
            live.pause()
        model, model_spec = None, None
        while not self._stop.is_set():
            s = self.settings
            try:
                model, model_spec, problem = self._ensure_model(model, model_spec, s)
            except Exception as exc:
                return Outcome.FAILED, f"Cannot load model {model_name(s.model)}: {exc}"
            s = self.settings
            try:
                self._process(live, model, s, problem)
            except Exception as exc:
                if live.error is not None:
                    return Outcome.VANISHED, self._vanished(live)
                return Outcome.FAILED, f"Processing stopped: {exc}"
            live.reset_in_flight()
            if self._restart.is_set():
                continue
            if self._stop.is_set():
                break
            if live.error is not None:
                return Outcome.VANISHED, self._vanished(live)
            if s.follow and not Path(s.source).expanduser().exists():
                return Outcome.VANISHED, f"Source vanished: the followed file {s.source} no longer exists."
            return Outcome.ENDED, f"Source ended after {self._frames_out} processed frames."
        return Outcome.STOPPED, "Stopped."

    def _ensure_model(self, model: Any, model_spec: Any, s: LiveSettings) -> tuple[Any, Any, str]:
        """The model the settings ask for, loaded if they changed; a model that fails to load while
        another one runs leaves the running one in place and returns the problem to show."""
        if model is not None and s.model == model_spec:
            return model, model_spec, ""
        try:
            loaded = self._load_model(s)
        except Exception as exc:
            if model is None:
                raise
            self._reconfigure(model=model_spec)
            kept = model_name(model_spec)
            return model, model_spec, f"Cannot load model {model_name(s.model)}: {exc} — still using {kept}."
        self._model = loaded
        if s.record_dir is not None and not self._recorders:
            self.start_recording(s.record_dir)
        return loaded, s.model, ""

    def _vanished(self, live: LiveSource) -> str:
        return f"Source vanished after {self._frames_out} processed frames: {live.error}"

    def _load_model(self, s: LiveSettings):
        """An onnxruntime session, loaded once and reused when only the threshold changes."""
        from dislotrack.runtime.pipeline import resolve_model

        model = resolve_model(s.model, s.device, s.flips)
        model_file = getattr(model, "model", None)  # a Predictor names its ONNX file (also the default)
        name = f"{model_file.name}" if s.model is None and model_file is not None else model_name(s.model)
        self.modelLoaded.emit(name, getattr(model, "provider", ""))
        return model

    def _process(self, live: LiveSource, model, s: LiveSettings, problem: str = "") -> None:
        """One run of the results generator, until the source ends, a stop, or a new setting."""
        from dislotrack.runtime.pipeline import PipelineConfig, iter_results

        self._restart.clear()
        cancel = threading.Event()
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._cancel_feed = cancel
        if generation > 1:
            self.restarted.emit(generation, problem)
        # batch 1 and one-frame queues: in live mode a frame waiting in a queue is a frame grown stale
        config = PipelineConfig(batch_size=1, queue_frames=1)
        results = iter_results(
            live.frames(cancel), model=model, threshold=s.threshold, stop=self._stop, config=config
        )
        try:
            for result in results:
                arrival = live.mark_processed(result.index)
                self._frames_out += 1
                self._record(result)
                self.resultReady.emit(LiveResult(result, arrival, generation))
                if self._stop.is_set() or self._restart.is_set():
                    break
        finally:
            cancel.set()
            results.close()

    def _record(self, result: FrameResult) -> None:
        with self._record_lock:
            recorder = self._recorder
        if recorder is not None:
            recorder.write(result)

    def _close(self) -> None:
        """Close the source and any recording, so files on disk are complete whatever happened."""
        live = self._live
        if live is not None:
            live.close()
        self.stop_recording()
        for recorder in self._recorders:
            if not recorder.wait(RECORDING_CLOSE_TIMEOUT_S):
                log.error("recording to %s did not complete in time", recorder.out_dir)


class LiveController(QObject):
    """Owns the worker and its QThread; ``stop()`` leaves no thread behind."""

    def __init__(self, settings: LiveSettings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = PipelineWorker(settings)
        self.thread = QThread()
        self.thread.setObjectName("dislotrack-live-worker")
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        # direct: quit from the worker thread itself, even while the GUI thread waits in stop()
        self.worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the worker and wait for its thread; True when it has ended.

        The default outlasts the 10 s that opening a stream may block (PyAV's open timeout), the
        one step that cannot be interrupted.
        """
        self.worker.request_stop()
        if self.thread.isRunning():
            self.thread.quit()
            return self.thread.wait(int(timeout_s * 1000))
        return True
