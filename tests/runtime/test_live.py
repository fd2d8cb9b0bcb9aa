"""Live pacing: the one-slot newest-wins hand-off, timestamp pacing, counters, pause and clean stop."""

from __future__ import annotations

import itertools
import math
import threading
import time

import numpy as np
import pytest

from dislotrack.runtime.live import (
    LatestSlot,
    LiveConfig,
    LiveSource,
    LiveStats,
    SlotClosed,
    latency_summary,
    paced,
    rates,
)
from dislotrack.runtime.results import Frame

IMAGE = np.zeros((4, 4), np.uint8)


def frames(n: int, fps: float) -> list[Frame]:
    return [Frame(i, i / fps, IMAGE) for i in range(n)]


class FakeClock:
    """A clock that only moves when the code under test waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class ClosableSource:
    """An endless (or failing) frame source that records whether it was closed."""

    def __init__(self, fps: float, fail_after: int | None = None) -> None:
        self.fps, self.fail_after, self.closed = fps, fail_after, False

    def __iter__(self):
        for i in itertools.count():
            if self.fail_after is not None and i == self.fail_after:
                raise OSError("stream vanished")
            time.sleep(1 / self.fps)
            yield Frame(i, i / self.fps, IMAGE)

    def close(self) -> None:
        self.closed = True


def wait_until(condition, timeout_s: float = 10.0) -> None:
    """Poll instead of sleeping a fixed time, so a loaded machine cannot make the test flaky."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_slot_newest_wins_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.dropped == 2
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0.01) is None


def test_slot_hands_out_last_item_then_the_error():
    slot: LatestSlot[int] = LatestSlot()
    slot.put(7)
    slot.close(OSError("gone"))
    assert slot.put(8) is False
    assert slot.take() == 7
    with pytest.raises(OSError, match="gone"):
        slot.take()


def test_slot_closed_without_error_raises_slot_closed():
    slot: LatestSlot[int] = LatestSlot()
    slot.close()
    with pytest.raises(SlotClosed):
        slot.take(timeout=1)


def test_paced_waits_for_timestamps_relative_to_first_frame():
    clock = FakeClock()
    out = []
    for frame in paced(frames(5, fps=20.0), speed=2.0, clock=clock, wait=clock.wait):
        out.append((frame.index, clock.now - 100.0))
    assert [i for i, _ in out] == [0, 1, 2, 3, 4]
    # at 2x speed a 20 frame/s file plays at 40 frame/s
    assert [t for _, t in out] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])


def test_paced_does_not_wait_for_late_or_backward_frames():
    clock = FakeClock()
    stamps = [0.0, 0.05, 0.01, math.nan, 0.06]
    src = [Frame(i, t, IMAGE) for i, t in enumerate(stamps)]

    def slow_source():
        for f in src:
            clock.now += 0.2  # decoding is slower than the timestamps
            yield f

    assert [f.index for f in paced(slow_source(), clock=clock, wait=clock.wait)] == [0, 1, 2, 3, 4]
    assert clock.waits == []


def test_paced_rejects_non_positive_speed():
    with pytest.raises(ValueError, match="speed"):
        list(paced(frames(2, 10.0), speed=0))


def test_fast_consumer_gets_every_frame_in_order():
    live = LiveSource(frames(12, fps=25.0))  # 40 ms to pick each frame up: ample even on a busy CPU
    assert math.isnan(live.newest_time_s)
    got = [f.index for f in live]
    live.close()
    assert got == list(range(12))
    assert live.newest_time_s == pytest.approx(11 / 25.0)
    stats = live.stats()
    assert (stats.frames_in, stats.delivered, stats.dropped) == (12, 12, 0)
    assert live.ended and live.error is None


def test_slow_consumer_drops_and_latency_stays_bounded():
    """Processing at ~1/4 of the camera rate: frames are dropped, never queued, newest frame wins."""
    fps, work_s = 100.0, 0.04
    live = LiveSource(frames(80, fps=fps))
    got, latencies = [], []
    for frame in live:
        time.sleep(work_s)
        got.append(frame.index)
        arrival = live.mark_processed(frame.index)
        latencies.append(live.clock() - arrival)
    live.close()
    stats = live.stats()
    assert stats.frames_in == 80
    assert stats.delivered == stats.processed == len(got)
    assert stats.dropped > 0
    assert stats.delivered + stats.dropped == stats.frames_in
    assert got == sorted(got) and got[-1] == 79
    # a queue would make the latency grow to ~ (80 - len(got)) / fps; the slot keeps it near one work time
    assert max(latencies) < work_s + 0.5 * (80 - len(got)) / fps


def test_source_error_is_raised_to_the_consumer_and_source_closed():
    src = ClosableSource(fps=500.0, fail_after=5)
    live = LiveSource(src, LiveConfig(pace=False))
    got = []
    with pytest.raises(OSError, match="vanished"):
        for frame in live:
            got.append(frame.index)
    live.close()
    assert got and got[-1] == 4
    assert isinstance(live.error, OSError) and live.ended and src.closed


def test_close_stops_reader_of_endless_source():
    src = ClosableSource(fps=200.0)
    live = LiveSource(src, LiveConfig(pace=False))
    it = iter(live)
    assert next(it).index >= 0
    live.close()
    assert list(it) == []
    assert not live.alive
    assert src.closed
    assert "dislotrack-live-reader" not in {t.name for t in threading.enumerate()}


def test_pause_holds_frames_back_and_counts_them_dropped():
    src = ClosableSource(fps=200.0)
    live = LiveSource(src, LiveConfig(pace=False))
    it = iter(live)
    next(it)
    live.pause()
    held = live.stats()
    wait_until(lambda: live.stats().frames_in > held.frames_in + 10)
    during = live.stats()
    assert during.delivered <= held.delivered + 1  # at most the frame already being taken
    live.resume()
    resumed = next(it)
    assert resumed.index >= during.frames_in - 1  # newest, not the first frame held back
    live.close()
    final = live.stats()
    assert final.delivered + final.dropped <= final.frames_in
    assert final.dropped >= during.frames_in - held.frames_in - 2


def test_rates_and_latency_summary():
    a = LiveStats(10.0, frames_in=0, delivered=0, processed=0, dropped=0)
    b = LiveStats(12.0, frames_in=44, delivered=30, processed=30, dropped=14)
    r = rates(a, b)
    assert (r.frames_in, r.processed, r.dropped) == (22.0, 15.0, 7.0)
    assert rates(b, b).frames_in == 0.0
    median, p95 = latency_summary([0.1] * 19 + [2.1])
    assert median == pytest.approx(0.1) and 0.1 < p95 < 2.1
    assert all(math.isnan(v) for v in latency_summary([]))


class BlockingSource:
    """Yields one frame, then blocks like a followed file that stopped growing, until closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self):
        yield Frame(0, 0.0, IMAGE)
        self.closed.wait()

    def close(self) -> None:
        self.closed.set()


def test_close_interrupts_a_source_blocked_waiting_for_data():
    src = BlockingSource()
    live = LiveSource(src, LiveConfig(pace=False, grace_s=0.05, join_timeout_s=2.0))
    it = iter(live)
    assert next(it).index == 0
    t0 = time.monotonic()
    live.close()
    assert time.monotonic() - t0 < 1.5
    assert not live.alive and src.closed.is_set()


def test_in_flight_limit_holds_frames_back_until_results_return():
    """A consumer that prefetches (like a pipeline with queues) only ever holds the allowed frames."""
    src = ClosableSource(fps=200.0)
    live = LiveSource(src, LiveConfig(pace=False, max_in_flight=2))
    it = live.frames()
    first, second = next(it), next(it)
    got: list[Frame] = []
    taker = threading.Thread(target=lambda: got.append(next(it)))
    taker.start()
    wait_until(lambda: live.stats().frames_in > second.index + 12)
    assert got == []  # two frames out, none back: the third is held back
    assert live.stats().delivered == 2
    live.mark_processed(first.index)
    taker.join(2.0)
    assert len(got) == 1 and got[0].index > second.index + 10  # the newest frame, not the next one
    live.close()


def test_cancel_ends_one_consumer_and_a_new_one_continues():
    src = ClosableSource(fps=200.0)
    live = LiveSource(src, LiveConfig(pace=False, max_in_flight=1))
    cancel = threading.Event()
    old = live.frames(cancel)
    last = next(old)
    cancel.set()
    assert list(old) == []
    live.reset_in_flight()  # the old consumer's frame will never be marked processed
    new = live.frames()
    assert next(new).index > last.index
    live.close()
