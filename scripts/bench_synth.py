"""Benchmark of the synthetic generator: images/s per core (target >= 50 at 512x512 for m2) and video frame/s.

Runs on one core (BLAS threads pinned to 1 before numpy loads). Prints wall-clock and CPU-time rates; on
a busy machine the CPU-time rate is the fairer per-core figure. Usage:

    python scripts/bench_synth.py [--n 100] [--size 512] [--frames 100]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from dislotrack.runtime.synth import VideoConfig, iter_video, load_preset, write_video  # noqa: E402
from dislotrack.runtime.synth.generator import render  # noqa: E402


def _rate(n: int, wall: float, cpu: float) -> str:
    return (
        f"{n / wall:7.1f} /s wall ({1e3 * wall / n:6.2f} ms), {n / cpu:7.1f} /s CPU ({1e3 * cpu / n:6.2f} ms)"
    )


TARGET_PER_CORE = 50.0  # m2 images/s per core at 512 x 512 (issue 3)


def bench_images(preset: str, n: int, size: tuple[int, int]) -> float:
    """Render ``n`` samples; print the rates and return the CPU-time rate (images/s on one core)."""
    cfg = load_preset(preset)
    for i in range(3):  # warm-up (imports, caches)
        render(cfg, [99, i], size)
    w0, c0 = time.perf_counter(), time.process_time()
    lines = 0
    for i in range(n):
        lines += len(render(cfg, [0, i], size).lines)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(f"images {preset} {size[0]}x{size[1]}: {_rate(n, wall, cpu)}  ({lines / n:.1f} lines/img)")
    return n / cpu


def bench_video(frames: int, size: tuple[int, int]) -> None:
    cfg = VideoConfig(n_frames=frames, size=size)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in iter_video(cfg):
        pass
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(f"video frames {size[0]}x{size[1]} (render only): {_rate(frames, wall, cpu)}")
    with tempfile.TemporaryDirectory() as tmp:
        w0, c0 = time.perf_counter(), time.process_time()
        paths = write_video(cfg, tmp)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        mb = paths.video.stat().st_size / 1e6
    what = f"video frames {size[0]}x{size[1]} (render + MPEG-4 + truth files)"
    print(f"{what}: {_rate(frames, wall, cpu)}  ({mb:.1f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images per preset")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    size = (args.size, args.size)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}, one core")
    rates = {preset: bench_images(preset, args.n, size) for preset in ("m2", "m1")}
    if size == (512, 512):
        verdict = "met" if rates["m2"] >= TARGET_PER_CORE else "NOT met"
        rate = rates["m2"]
        print(f"target >= {TARGET_PER_CORE:.0f} m2 images/s per core (CPU time): {verdict} ({rate:.1f} /s)")
    bench_video(args.frames, size)


if __name__ == "__main__":
    main()
