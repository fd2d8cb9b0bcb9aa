"""The one results generator behind ``dislotrack process``, the batch job and the live window.

Three stages overlap so that neither the accelerator nor the CPU waits: a reader thread decodes
frames, an inference thread batches them through onnxruntime and hands each frame's probabilities to
a post-processing pool (line extraction), and the consumer's thread links tracks and measures
spacings in frame order (tracking is sequential by nature). Bounded queues keep memory flat and make
a slow stage throttle the ones before it. onnxruntime, PyAV and most of numpy release the GIL, which
is what lets threads overlap here.

Closing the generator (or setting ``stop``) stops every thread; nothing is left running.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dislotrack.runtime.inference import GPU_PROVIDERS, InferenceConfig, Predictor
from dislotrack.runtime.lines import LineConfig, extract_lines
from dislotrack.runtime.model import ModelFile
from dislotrack.runtime.results import Frame, FrameResult, Line
from dislotrack.runtime.sources import FrameSource, open_source
from dislotrack.runtime.spacing import SpacingConfig, frame_spacings
from dislotrack.runtime.tiling import TileConfig, halved, is_saturated, needs_tiling, predict_lines_tiled
from dislotrack.runtime.tracking import Linker, TrackerConfig

log = logging.getLogger(__name__)

_POLL_S = 0.05


class ProbabilityModel(Protocol):
    """What the pipeline needs from a model: ``Predictor`` is one; tests may pass their own."""

    provider: str

    @property
    def threshold(self) -> float: ...

    def predict(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PipelineConfig:
    """Everything after the model: batching, queues, post-processing, tracking, spacing, tiling."""

    batch_size: int = 4
    queue_frames: int = 8  # frames in flight between two stages (bounds memory)
    post_workers: int | None = None  # line-extraction threads (frames stay in order); None: by provider
    with_labels: bool = True  # label image per frame (the GUI shows it; export does not need it)
    lines: LineConfig = field(default_factory=LineConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    spacing: SpacingConfig = field(default_factory=SpacingConfig)
    tiling: TileConfig = field(default_factory=TileConfig)


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_END = object()


def _put(q: queue.Queue, item: Any, halt: threading.Event) -> bool:
    """Put unless the pipeline is halting (a full queue must never block shutdown)."""
    while not halt.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, halt: threading.Event, stop: threading.Event | None = None) -> Any:
    while not halt.is_set() and not (stop is not None and stop.is_set()):
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


def _read(source: Iterable[Frame], out: queue.Queue, halt: threading.Event) -> None:
    """Reader thread: frames with the time spent decoding each."""
    try:
        it = iter(source)
        while not halt.is_set():
            t0 = time.perf_counter()
            frame = next(it, None)
            if frame is None:
                break
            if not _put(out, (frame, time.perf_counter() - t0), halt):
                return
        _put(out, _END, halt)
    except BaseException as exc:
        _put(out, _Failure(exc), halt)


def post_process(
    frame: Frame,
    probs: np.ndarray,
    threshold: float,
    config: PipelineConfig,
    model: ProbabilityModel | None = None,
) -> tuple[tuple[Line, ...], np.ndarray | None, float]:
    """Lines (and label image) of one frame from its (N, H, W) probabilities, with the time taken.

    When nearly every mask holds a distinct line the frame may hold more dislocations than the model
    has masks; then (given the model) it is run again as tiles of half its size and stitched. (Masks,
    not lines, are counted: one mask broken into many pieces is not a crowded frame.)
    """
    t0 = time.perf_counter()
    lines, labels = extract_lines(probs, threshold, config.lines, config.with_labels)
    channels = {line.channel for line in lines}
    if model is not None and is_saturated(len(channels), probs.shape[0], config.tiling):
        smaller = halved(frame.image.shape, config.tiling)
        if smaller is not None:
            log.debug("frame %d: %d lines in %d masks, retiling", frame.index, len(lines), probs.shape[0])
            lines, labels = predict_lines_tiled(
                model, frame.image, threshold, config.lines, smaller, config.with_labels
            )
    return lines, labels, time.perf_counter() - t0


def _ends_batch(item: Any, first: tuple[Frame, float]) -> bool:
    """End of stream, an error or a frame of another size closes the batch being gathered."""
    return item is _END or isinstance(item, _Failure) or item[0].image.shape != first[0].image.shape


class _Inference:
    """Inference thread: greedy batches of same-size frames, post-processing handed to a pool."""

    def __init__(
        self, model: ProbabilityModel, threshold: float, config: PipelineConfig, pool: ThreadPoolExecutor
    ):
        self.model, self.threshold, self.config, self.pool = model, threshold, config, pool

    def run(self, inq: queue.Queue, out: queue.Queue, halt: threading.Event) -> None:
        held: Any = None
        try:
            while not halt.is_set():
                first = held if held is not None else _get(inq, halt)
                held = None
                if first is _END or isinstance(first, _Failure):
                    _put(out, first, halt)
                    return
                batch = [first]
                while len(batch) < self.config.batch_size:
                    try:
                        item = inq.get_nowait()
                    except queue.Empty:
                        break
                    if _ends_batch(item, first):
                        held = item
                        break
                    batch.append(item)
                for job in self._run_batch(batch):
                    if not _put(out, job, halt):
                        return
        except BaseException as exc:
            _put(out, _Failure(exc), halt)

    def _run_batch(self, batch: list[tuple[Frame, float]]) -> list[tuple[Frame, float, float, Future]]:
        if needs_tiling(batch[0][0].image.shape, self.config.tiling):
            return [self._run_tiled(frame, decode_s) for frame, decode_s in batch]
        t0 = time.perf_counter()
        probs = self.model.predict(np.stack([f.image for f, _ in batch]))
        infer_s = (time.perf_counter() - t0) / len(batch)
        jobs = []
        for i, (frame, decode_s) in enumerate(batch):
            job = self.pool.submit(post_process, frame, probs[i], self.threshold, self.config, self.model)
            jobs.append((frame, decode_s, infer_s, job))
        return jobs

    def _run_tiled(self, frame: Frame, decode_s: float) -> tuple[Frame, float, float, Future]:
        """A large frame: tiles through the model and stitched lines, timed as one inference."""
        t0 = time.perf_counter()
        cfg = self.config
        lines, labels = predict_lines_tiled(
            self.model, frame.image, self.threshold, cfg.lines, cfg.tiling, cfg.with_labels
        )
        done: Future = Future()
        done.set_result((lines, labels, 0.0))
        return frame, decode_s, time.perf_counter() - t0, done


def resolve_model(
    model: ProbabilityModel | ModelFile | str | Path | None, device: str, flips: int = 1
) -> ProbabilityModel:
    """A ready model: an object with ``predict`` as given, else an onnxruntime ``Predictor``."""
    if model is not None and hasattr(model, "predict"):
        return model  # type: ignore[return-value]
    return Predictor(model, InferenceConfig(device=device, flips=flips))  # type: ignore[arg-type]


class Analyser:
    """The sequential part after line extraction: track IDs and neighbour spacings, frame by frame."""

    def __init__(self, config: PipelineConfig, track: bool = True, drift: bool = False) -> None:
        self.track = track
        self.linker = Linker(replace(config.tracker, drift=drift or config.tracker.drift)) if track else None
        self.spacing = config.spacing

    def __call__(self, frame: Frame, lines: tuple[Line, ...]) -> tuple[tuple[Line, ...], tuple, float]:
        t0 = time.perf_counter()
        if self.linker is None:
            return lines, (), 0.0
        lines = self.linker.update(frame.index, lines, frame.image)
        return lines, frame_spacings(lines, self.spacing), time.perf_counter() - t0


def default_post_workers(provider: str, cpu_count: int | None = None) -> int:
    """One line-extraction thread when the CPU also runs the model (it needs the cores); with a GPU
    the CPU only post-processes, which is then the bottleneck: use the cores but two (decode, GPU
    feeding)."""
    if provider not in GPU_PROVIDERS:
        return 1
    return max(1, min(8, (cpu_count or os.cpu_count() or 1) - 2))


def resolve_config(config: PipelineConfig | None, batch_size: int | None) -> PipelineConfig:
    """The config to run: ``batch_size``, when given, overrides the config's."""
    config = config or PipelineConfig()
    if batch_size is not None:
        config = replace(config, batch_size=batch_size)
    if config.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {config.batch_size}")
    return config


def iter_results(
    source: FrameSource | Iterable[Frame] | str | Path,
    *,
    model: ProbabilityModel | ModelFile | str | Path | None = None,
    device: str = "auto",
    flips: int = 1,
    threshold: float | None = None,
    track: bool = True,
    drift: bool = False,
    batch_size: int | None = None,
    stop: threading.Event | None = None,
    config: PipelineConfig | None = None,
) -> Iterator[FrameResult]:
    """Results of every frame of ``source`` in order: lines, track IDs, spacings, label image.

    ``source`` is anything ``open_source`` accepts (then it is opened and closed here) or an iterable
    of ``Frame`` owned by the caller. ``model``: None for the shipped default, a path, or a ready
    ``Predictor``; ``flips``: network passes per frame when the model is loaded here
    (``InferenceConfig.flips``). ``threshold``: None for the model's own. ``batch_size``: None for
    the config's (default 4). ``stop`` is checked between frames.
    Spacings need track IDs, so they are empty when ``track`` is False.
    """
    config = resolve_config(config, batch_size)
    ready = resolve_model(model, device, flips)
    thr = float(ready.threshold if threshold is None else threshold)
    if not 0.0 < thr < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {thr}")
    owned = isinstance(source, (str, Path))
    frames = open_source(source) if owned else source
    return _generate(frames, owned, ready, thr, Analyser(config, track, drift), config, stop)


def _generate(
    frames: Iterable[Frame],
    owned: bool,
    model: ProbabilityModel,
    threshold: float,
    analyse: Analyser,
    config: PipelineConfig,
    stop: threading.Event | None,
) -> Iterator[FrameResult]:
    halt = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=config.queue_frames)
    inferred: queue.Queue = queue.Queue(maxsize=config.queue_frames)
    workers = config.post_workers or default_post_workers(getattr(model, "provider", ""))
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="dislotrack-post")
    threads = [
        threading.Thread(target=_read, args=(frames, decoded, halt), name="dislotrack-read", daemon=True),
        threading.Thread(
            target=_Inference(model, threshold, config, pool).run,
            args=(decoded, inferred, halt),
            name="dislotrack-infer",
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    provider = getattr(model, "provider", "")
    try:
        while stop is None or not stop.is_set():
            item = _get(inferred, halt, stop)
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            frame, decode_s, infer_s, future = item
            lines, labels, post_s = future.result()
            lines, spacings, track_s = analyse(frame, lines)
            timings = {"decode": decode_s, "infer": infer_s, "post": post_s, "track": track_s}
            yield FrameResult(frame, lines, spacings, labels, provider, timings)
    finally:
        _shutdown(halt, threads, pool, (decoded, inferred), 10.0 if owned else 0.5)
        if owned:
            close = getattr(frames, "close", None)
            if close is not None:
                close()


def _shutdown(
    halt: threading.Event,
    threads: list[threading.Thread],
    pool: ThreadPoolExecutor,
    queues: Iterable[queue.Queue],
    reader_wait_s: float,
) -> None:
    """Halt every stage, unblock their queues and wait for them.

    A caller-owned source (the live window's) may keep the reader inside ``next()`` until the caller
    closes it, so the reader gets only a short wait; it is a daemon and ends when that source ends.
    """
    halt.set()
    for q in queues:
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
    for t in threads:
        t.join(timeout=reader_wait_s if t.name == "dislotrack-read" else 10.0)
        if t.is_alive():
            log.debug("pipeline thread %s still running after shutdown (its source is blocking)", t.name)
    pool.shutdown(wait=True, cancel_futures=True)
