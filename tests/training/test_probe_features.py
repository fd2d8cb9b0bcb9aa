"""scripts/probe_features.py: the AUC, the probe's fit, which pixels it compares, and a whole run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def probe(load_script):
    return load_script("probe_features")


def test_auc_orders_lines_above_traces(probe) -> None:
    assert probe.auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert probe.auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert probe.auc(np.ones(5), np.ones(7)) == 0.5
    assert probe.auc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5


def test_the_fit_finds_a_direction_that_separates_and_none_in_noise(probe) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5))
    y = (x[:, 2] - 0.5 * x[:, 4] > 0).astype(float)
    score = probe.fit_logistic(x[:300], y[:300])(x[300:])
    assert probe.auc(score[y[300:] == 1], score[y[300:] == 0]) > 0.99
    noise = rng.integers(0, 2, 600).astype(float)
    score = probe.fit_logistic(x[:300], noise[:300])(x[300:])
    assert abs(probe.auc(score[noise[300:] == 1], score[noise[300:] == 0]) - 0.5) < 0.1


def test_probe_pixels_are_line_pixels_and_dark_trace_axes_away_from_lines(probe) -> None:
    from dislotrack.runtime.synth import iter_samples
    from dislotrack.runtime.synth.scene import distractor_axes

    rng = np.random.default_rng(1)
    for sample in iter_samples(preset="m2-trace", seed=5, size=(256, 256)):
        ys, xs, is_line = probe.probe_pixels(sample, 0.1, 50, rng)
        if is_line.sum() and (1 - is_line).sum():
            break
    lines = sample.masks.any(0)
    assert lines[ys[is_line == 1], xs[is_line == 1]].all()
    d = sample.params["sampled"]["distractors"]
    dark = dict(d, traces=[t for t in d["traces"] if t["contrast"] <= -0.1])
    axis = distractor_axes(dark, sample.image.shape)["slip_traces"]
    t = is_line == 0
    assert axis[ys[t], xs[t]].all()
    near = ndimage.maximum_filter(lines, size=2 * probe.LINE_MARGIN_PX + 1)
    assert not near[ys[t], xs[t]].any()
    background = ndimage.median_filter(sample.image, 21)
    assert np.median(background[ys[t], xs[t]] - sample.image[ys[t], xs[t]]) > 0.01  # dark, not light
    assert is_line.sum() <= 50 and t.sum() <= 50


def test_a_whole_probe_of_a_tiny_model(probe, tiny_model, tmp_path, capsys) -> None:
    out = tmp_path / "probe.json"
    args = [str(tiny_model), "--images", "2", "--size", "128", "--pixels", "40", "--json", str(out)]
    assert probe.main(args) == 0
    figures = json.loads(out.read_text())
    groups = [k for k in figures if k not in ("model", "preset")]
    assert len(groups) == 5 and any("decoder.x_0_2" in k for k in groups)
    assert all(0.0 <= figures[k]["auc"] <= 1.0 for k in groups)
    assert "AUC" in capsys.readouterr().out


def test_a_trace_channel_is_scored_as_it_stands(probe, tiny_model, tmp_path) -> None:
    from dataclasses import replace

    from dislotrack.training.export import Weights, load_weights, save_safetensors
    from dislotrack.training.model import build_model

    plain = load_weights(tiny_model).model
    traced = replace(plain, trace_channel=True)
    path = tmp_path / "traced.safetensors"
    save_safetensors(Weights(traced, build_model(traced).state_dict(), {}), path, {"model": traced.to_dict()})
    out = tmp_path / "probe.json"
    assert (
        probe.main([str(path), "--images", "2", "--size", "128", "--pixels", "40", "--json", str(out)]) == 0
    )
    figures = json.loads(out.read_text())
    assert figures["trace channel (negated, no fit)"]["channels"] == 0
    assert len([k for k in figures if k not in ("model", "preset")]) == 6
