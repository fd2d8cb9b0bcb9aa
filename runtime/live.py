"""Live pacing for the monitoring window (and any other live consumer): camera-speed frames, newest wins.

A camera does not wait for the analysis. ``LiveSource`` reads a frame source on its own thread — at
the rate of the frames' timestamps when the source is a recorded file standing in for a camera — and
hands frames to the consumer through a one-slot buffer: a frame that was not picked up before the
next one arrived is replaced and counted as dropped. So when processing is slower than the camera,
the consumer always gets the newest frame and the latency from arrival to display stays bounded
instead of growing with a queue. ``LiveSource`` is an iterable of ``Frame``, so it plugs straight
into ``dislotrack.runtime.pipeline.iter_results``.

Nothing here imports Qt: the GUI worker, the CLI and the benchmark share it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from dislotrack.runtime.results import Frame

T = TypeVar("T")

POLL_S = 0.05  # how often blocked waits look at stop/cancel/pause flags

Clock = Callable[[], float]
Wait = Callable[[float], object]


class SlotClosed(Exception):
    """Raised by ``LatestSlot.take`` once the slot is closed and its last item was taken."""


class LatestSlot(Generic[T]):
    """A one-item hand-off between two threads in which a newer item replaces an untaken one.

    Why not a queue: a bounded queue either blocks the producer (the camera cannot wait) or grows
    the latency by its depth; a single slot keeps only what is worth processing now.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._error: BaseException | None = None
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced an item nobody took (a drop)."""
        with self._cond:
            if self._closed:
                return False
            replaced = self._full
            self.dropped += int(replaced)
            self._item, self._full = item, True
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Newest item; None on timeout; ``SlotClosed`` (or the producer's error) once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if self._full:
                item, self._item, self._full = self._item, None, False
                return item
            if self._error is not None:
                raise self._error
            raise SlotClosed

    def close(self, error: BaseException | None = None) -> None:
        """No more items; a pending item can still be taken, then ``error`` (if any) is raised."""
        with self._cond:
            if not self._closed:
                self._closed, self._error = True, error
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


def paced(
    frames: Iterable[Frame],
    *,
    speed: float = 1.0,
    clock: Clock = time.monotonic,
    wait: Wait = time.sleep,
) -> Iterator[Frame]:
    """Yield each frame no earlier than its timestamp (relative to the first) divided by ``speed``.

    Frames that come late (slow decoding) are yielded at once — pacing never adds a backlog.
    Timestamps that go backwards or are not finite are yielded without waiting.
    """
    if not speed > 0:
        raise ValueError(f"playback speed must be > 0, got {speed}")
    start_wall = start_media = None
    for frame in frames:
        if start_wall is None:
            start_wall, start_media = clock(), frame.time_s
        elif math.isfinite(frame.time_s) and math.isfinite(start_media):
            delay = start_wall + (frame.time_s - start_media) / speed - clock()
            if delay > 0:
                wait(delay)
        yield frame


@dataclass(frozen=True, slots=True)
class LiveStats:
    """Counters since the start, read at ``at_s`` (the live source's clock)."""

    at_s: float
    frames_in: int
    delivered: int
    processed: int
    dropped: int


@dataclass(frozen=True, slots=True)
class LiveRates:
    """Frames per second between two ``LiveStats`` readings — what the status bar shows."""

    frames_in: float
    processed: float
    dropped: float


def rates(before: LiveStats, after: LiveStats) -> LiveRates:
    """Per-second rates of the counters between two readings (zeros when no time has passed)."""
    dt = after.at_s - before.at_s
    if dt <= 0:
        return LiveRates(0.0, 0.0, 0.0)
    return LiveRates(
        (after.frames_in - before.frames_in) / dt,
        (after.processed - before.processed) / dt,
        (after.dropped - before.dropped) / dt,
    )


def latency_summary(latencies_s: Iterable[float]) -> tuple[float, float]:
    """Median and 95th percentile of latencies in seconds (NaN, NaN when there are none)."""
    a = np.fromiter(latencies_s, dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    median, p95 = np.percentile(a, [50, 95])
    return float(median), float(p95)


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """How a source is turned into a live feed.

    ``pace``: wait for each frame's timestamp (a recorded file standing in for a camera); off for
    real cameras, streams and followed files, which already deliver at camera speed.
    ``arrivals_kept``: how many arrival times are remembered for latency lookups (bounded memory).
    ``max_in_flight``: frames handed out whose result has not come back (``mark_processed``) before
    the next one is held back; a pipeline with queues between its stages would otherwise fill them
    with frames that are stale by the time they are processed. None: no limit.
    ``grace_s``: how long ``close`` lets the reader finish its current frame before it closes the
    source under it; ``join_timeout_s``: how long it then waits for the reader thread.
    """

    pace: bool = True
    speed: float = 1.0
    arrivals_kept: int = 4096
    max_in_flight: int | None = None
    grace_s: float = 0.5
    join_timeout_s: float = 5.0


class LiveSource:
    """A frame source read on its own thread at camera speed; iterating yields the newest frame.

    Iterate it, or ``frames(cancel)`` to be able to end one consumer and start another (a pipeline
    restarted with a new threshold); call ``mark_processed(index)`` when a frame's result is used,
    to count it, free its in-flight place and get its arrival time; ``close()`` stops the reader
    thread and closes the wrapped source.
    """

    def __init__(
        self,
        source: Iterable[Frame],
        config: LiveConfig = LiveConfig(),
        *,
        clock: Clock = time.perf_counter,
    ) -> None:
        self._source = source
        self.config = config
        self.clock = clock
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._in_flight = 0
        self._arrivals: OrderedDict[int, float] = OrderedDict()
        self._frames_in = self._delivered = self._processed = 0
        self._newest_time_s = math.nan
        self._discarded = 0
        self._error: BaseException | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._read, name="dislotrack-live-reader", daemon=True)
        self._started = False

    # -- producer side ----------------------------------------------------------------------------
    def start(self) -> LiveSource:
        """Start reading (idempotent); iterating starts it too."""
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
        return self

    def _frames(self) -> Iterator[Frame]:
        if not self.config.pace:
            return iter(self._source)
        return paced(self._source, speed=self.config.speed, clock=self.clock, wait=self._stop.wait)

    def _read(self) -> None:
        frames = self._frames()
        error: BaseException | None = None
        try:
            for frame in frames:
                if self._stop.is_set():
                    break
                self._arrive(frame)
        except Exception as exc:  # the source failed or vanished: the consumer re-raises it
            error = exc
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
            source_close = getattr(self._source, "close", None)
            if source_close is not None:
                source_close()
            with self._lock:
                self._error, self._ended = error, True
            self._slot.close(error)

    def _arrive(self, frame: Frame) -> None:
        with self._lock:
            self._frames_in += 1
            self._newest_time_s = frame.time_s
            self._arrivals[frame.index] = self.clock()
            while len(self._arrivals) > self.config.arrivals_kept:
                self._arrivals.popitem(last=False)
        self._slot.put(frame)

    # -- consumer side ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, cancel: threading.Event | None = None) -> Iterator[Frame]:
        """The newest frames until the source ends, ``close()``, or ``cancel`` is set."""
        self.start()
        return self._consume(cancel or threading.Event())

    def _consume(self, cancel: threading.Event) -> Iterator[Frame]:
        while not (self._stop.is_set() or cancel.is_set()):
            if not self._running.wait(POLL_S) or not self._wait_for_room(POLL_S):
                continue
            try:
                frame = self._slot.take(timeout=POLL_S)
            except SlotClosed:
                return
            if frame is None:
                continue
            if not self._running.is_set():
                with self._lock:
                    self._discarded += 1  # paused while waiting: stale by the time we resume
                continue
            with self._lock:
                self._delivered += 1
                self._in_flight += 1
            yield frame

    def _wait_for_room(self, timeout: float) -> bool:
        limit = self.config.max_in_flight
        if limit is None:
            return True
        with self._room:
            return self._room.wait_for(lambda: self._in_flight < limit, timeout)

    def mark_processed(self, index: int) -> float | None:
        """Count frame ``index`` as processed; its arrival time on ``clock`` (None if forgotten)."""
        with self._room:
            self._processed += 1
            self._in_flight = max(0, self._in_flight - 1)
            self._room.notify_all()
            return self._arrivals.pop(index, None)

    def reset_in_flight(self) -> None:
        """Forget frames handed to a consumer that was ended (their results will never come back)."""
        with self._room:
            self._in_flight = 0
            self._room.notify_all()

    def pause(self) -> None:
        """Stop handing out frames; the reader keeps reading, so frames meanwhile count as dropped."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stats(self) -> LiveStats:
        """Counters now; ``dropped`` counts frames replaced before anyone took them."""
        with self._lock:
            dropped = self._slot.dropped + self._discarded
            return LiveStats(self.clock(), self._frames_in, self._delivered, self._processed, dropped)

    @property
    def newest_time_s(self) -> float:
        """Timestamp of the last frame that arrived (processed or not): "now" on the source's clock."""
        return self._newest_time_s

    @property
    def ended(self) -> bool:
        """True once the wrapped source is exhausted, failed or was closed."""
        return self._ended

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the wrapped source, if it did not end normally."""
        return self._error

    def close(self) -> None:
        """Stop the reader thread and close the wrapped source; safe to call twice."""
        self._stop.set()
        self._running.set()
        self._slot.close()
        if not self._started or self._thread is threading.current_thread():
            return
        self._thread.join(min(self.config.grace_s, self.config.join_timeout_s))
        if self._thread.is_alive():
            # Blocked inside the source (waiting for a followed file to grow, or for the network):
            # closing it from here is what interrupts such a wait.
            source_close = getattr(self._source, "close", None)
            if source_close is not None:
                source_close()
            self._thread.join(self.config.join_timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the reader thread still runs (it may block inside a source that never returns)."""
        return self._thread.is_alive()

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
