"""scripts/bench_runtime.py: its target verdicts, and one tiny run of every stage."""

from __future__ import annotations

import argparse

import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_runtime")


def _report(post_ms: float, decode_fps: float, ratio: float, gpu_fps: float | None = None) -> dict:
    report = {
        "post": {"ms_per_frame": post_ms},
        "decode": {"frame_per_s": decode_fps},
        "cpu": {"end_to_end_over_inference": ratio},
    }
    if gpu_fps is not None:
        report["cuda"] = {"end_to_end": {"frame_per_s": gpu_fps}}
    return report


def test_targets_compare_each_figure_with_its_limit(bench) -> None:
    met = bench.targets(_report(7.9, 1200.0, 0.85))
    assert {k: v["met"] for k, v in met.items()} == {
        "post_ms_per_frame_le_8": True,
        "decode_frame_per_s_ge_1000": True,
        "cpu_end_to_end_over_inference_ge_0.8": True,
    }
    missed = bench.targets(_report(8.1, 999.0, 0.79, gpu_fps=390.0))
    assert [v["met"] for v in missed.values()] == [False, False, False, False]
    assert missed["gpu_end_to_end_frame_per_s_ge_400"]["measured"] == 390.0


@pytest.mark.slow
def test_a_tiny_run_reports_every_stage(bench) -> None:
    args = argparse.Namespace(model=None, frames=4, batch=2, model_frames=2, seed=0, json=None)
    report = bench.run(args)
    for stage in ("decode", "post", "tracking", "export", "ceiling"):
        assert report[stage]["frame_per_s"] > 0
    assert report["post"]["passes"] == 5
    assert report["ceiling"]["frames"] == 4 and report["ceiling"]["post_workers"] >= 1
    assert report["post"]["best_pass_ms_per_frame"] <= report["post"]["ms_per_frame"]
    assert report["post"]["ms_per_frame"] <= report["post"]["worst_pass_ms_per_frame"]
    cpu = report["cpu"]
    assert cpu["provider"] == "CPUExecutionProvider"
    assert cpu["end_to_end"]["frames"] == 4 and cpu["end_to_end_over_inference"] > 0
    assert set(bench.targets(report)) >= {"post_ms_per_frame_le_8", "decode_frame_per_s_ge_1000"}
