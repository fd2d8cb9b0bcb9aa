"""Benchmark of the live window: a video played at its own frame rate through the real window, offscreen.

Prints what a user at the microscope would feel: frames arriving / processed / dropped per second,
latency from a frame's arrival to its display (median, p95), display and plot refreshes per second,
and how long the GUI thread was ever busy. All from the first drawn frame to the end of the video
(loading the model is not live time). By default it generates the README's synthetic demo video (one
pile-up, 22 frame/s, 512 x 512, 20 s) and uses the shipped model on the CPU.

    QT_QPA_PLATFORM=offscreen python scripts/bench_live.py [--seconds 20] [--model M] [--video V]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@dataclass(frozen=True)
class LiveBench:
    video: str
    frame_size: tuple[int, int]
    wall_s: float
    frames_in_per_s: float
    processed_per_s: float
    dropped_per_s: float
    latency_median_s: float
    latency_p95_s: float
    frame_refreshes_per_s: float
    plot_refreshes_per_s: float
    gui_max_stall_s: float
    gui_p99_stall_s: float
    provider: str
    model: str
    in_flight: int


def demo_video(seconds: float, size: int, busy: bool, out_dir: Path) -> Path:
    """The README demo's synthetic pile-up (``busy``: three pile-ups, entering and leaving)."""
    from dislotrack.runtime.synth.video import VideoConfig, clean_pileup, write_video

    frames, shape = round(seconds * 22.0), (size, size)
    config = VideoConfig(n_frames=frames, size=shape) if busy else clean_pileup(n_frames=frames, size=shape)
    return write_video(config, out_dir).video


class Probe:
    """Collects what the window does, from its first drawn frame (model loading is not live time) to
    the last frame that arrived (after it the pipeline only drains, which a camera never does)."""

    def __init__(self) -> None:
        self.first = self.last_arrival = None
        self.first_refreshes = self.last_refreshes = (0, 0)
        self.latencies: list[float] = []
        self.gaps_ms: list[int] = []

    def drawn(self, window) -> None:
        if self.first is None:
            self.first = self.last_arrival = window.worker.stats()
            self.first_refreshes = self.last_refreshes = (window.frame_refreshes, window.plot_refreshes)
        self.latencies.append(window.latencies_s[-1])

    def beat(self, gap_ms: int, window) -> None:
        if self.first is None:
            return
        self.gaps_ms.append(gap_ms)
        stats = window.worker.stats()
        if stats.frames_in > self.last_arrival.frames_in:
            self.last_arrival = stats
            self.last_refreshes = (window.frame_refreshes, window.plot_refreshes)


def run(video: Path, model: str | None, device: str, in_flight: int, refresh_hz: float) -> LiveBench:
    """Play ``video`` through the window until it ends; measure from the window's own counters."""
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from dislotrack.gui.settings import LiveSettings
    from dislotrack.gui.window import LiveWindow
    from dislotrack.runtime.live import latency_summary, rates

    app = QApplication.instance() or QApplication([])
    settings = LiveSettings(
        str(video), model=model, device=device, in_flight=in_flight, refresh_hz=refresh_hz
    )
    window = LiveWindow(settings, start=False)
    window.resize(1500, 850)
    window.show()
    probe = Probe()
    window.frameDrawn.connect(lambda _i: probe.drawn(window))
    clock = QElapsedTimer()
    heartbeat = QTimer()  # a 10 ms tick: the gaps between ticks show how long the GUI thread was busy
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(lambda: probe.beat(clock.restart(), window))
    done = QTimer()  # quit from the GUI thread once the window has seen the source end
    done.timeout.connect(lambda: app.quit() if window.outcome is not None else None)
    done.start(100)
    clock.start()
    heartbeat.start()
    window.start()
    app.exec()
    heartbeat.stop()
    if window.outcome != "ended" or probe.first is None:
        raise RuntimeError(f"the live session did not run to the end: {window.banner.text()}")
    first, last = probe.first, probe.last_arrival
    wall = last.at_s - first.at_s
    r = rates(first, last)
    (frames0, plots0), (frames1, plots1) = probe.first_refreshes, probe.last_refreshes
    median, p95 = latency_summary(probe.latencies[1:])
    shown = window.displayed.result
    result = LiveBench(
        video=video.name,
        frame_size=tuple(shown.frame.image.shape),
        wall_s=wall,
        frames_in_per_s=r.frames_in,
        processed_per_s=r.processed,
        dropped_per_s=r.dropped,
        latency_median_s=median,
        latency_p95_s=p95,
        frame_refreshes_per_s=(frames1 - frames0) / wall,
        plot_refreshes_per_s=(plots1 - plots0) / wall,
        gui_max_stall_s=max(probe.gaps_ms, default=0) / 1000.0,
        gui_p99_stall_s=float(np.percentile(probe.gaps_ms, 99)) / 1000.0 if probe.gaps_ms else 0.0,
        provider=shown.provider,
        model=window.model_label.text().removeprefix("model: "),
        in_flight=in_flight,
    )
    window.stop()
    window.close()
    return result


def report(b: LiveBench) -> str:
    cpu = platform.processor() or platform.machine()
    ms = 1000.0
    return "\n".join(
        [
            f"live window benchmark — {b.video} {b.frame_size[1]}x{b.frame_size[0]}, model {b.model}, "
            f"provider {b.provider}, {b.in_flight} frame(s) in flight, {cpu}, {os.cpu_count()} CPUs",
            f"  frames in        {b.frames_in_per_s:6.1f} frame/s  (paced by timestamps, {b.wall_s:.1f} s)",
            f"  processed        {b.processed_per_s:6.1f} frame/s",
            f"  dropped          {b.dropped_per_s:6.1f} frame/s  (newest frame wins)",
            f"  latency arrival→display  median {b.latency_median_s * ms:5.0f} ms   "
            f"p95 {b.latency_p95_s * ms:5.0f} ms   (target median <= 500 ms)",
            f"  display refresh  {b.frame_refreshes_per_s:6.1f} /s   "
            f"plot refresh {b.plot_refreshes_per_s:6.1f} /s   (target plot >= 5 /s)",
            f"  GUI thread busy: max {b.gui_max_stall_s * ms:.0f} ms, p99 {b.gui_p99_stall_s * ms:.0f} ms",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=None, help="video to play (default: generate a demo)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the generated demo video")
    parser.add_argument("--size", type=int, default=512, help="frame size of the generated demo video")
    parser.add_argument("--busy", action="store_true", help="demo with three pile-ups instead of one")
    parser.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--in-flight", type=int, default=1, help="frames processed at once")
    parser.add_argument("--refresh-hz", type=float, default=15.0, help="display refreshes per second")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dislotrack-bench-live-") as tmp:
        video = args.video or demo_video(args.seconds, args.size, args.busy, Path(tmp))
        bench = run(video, args.model, args.device, args.in_flight, args.refresh_hz)
    print(report(bench))
    if args.json:
        print(json.dumps(asdict(bench)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
