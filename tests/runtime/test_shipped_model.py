"""The shipped default model through the whole runtime: synthetic video with truth, and the real video.

Slow (CPU inference of a U-Net++); the figures are printed for the README. On a clean pile-up the
issue's acceptance criterion holds with the model in the loop: no ID switch, median spacing error
at most 1 px.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dislotrack.runtime.evaluation import evaluate
from dislotrack.runtime.inference import InferenceConfig, Predictor
from dislotrack.runtime.model import default_model_path
from dislotrack.runtime.pipeline import iter_results
from dislotrack.runtime.results import N_POINTS, Frame
from dislotrack.runtime.synth import clean_pileup, iter_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predictor():
    try:
        default_model_path()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"no shipped model: {exc}")
    return Predictor(None, InferenceConfig(device="cpu"))


def test_card_and_metadata_agree(predictor):
    card = predictor.model.card
    assert card is not None and card["default"] is True and card["sha256"] == predictor.model.sha256
    for key in ("n_masks", "mean", "std", "threshold", "input_multiple"):
        assert card[key] == predictor.meta.raw[key]


def clean_pileup_run(predictor, seed: int):
    """Results on the 30-frame clean pile-up video of ``seed``, and their score against its truth."""
    video = list(iter_video(clean_pileup(n_frames=30, seed=seed)))
    results = list(iter_results([Frame(f.index, f.time_s, f.image) for f in video], model=predictor))
    return results, evaluate([f.lines for f in video], [r.lines for r in results])


def test_shipped_model_on_a_clean_synthetic_pile_up(predictor, load_script):
    results, report = clean_pileup_run(predictor, 11)
    print("shipped model, clean pile-up (30 frames, seed 11):", json.dumps(report.summary()))
    assert len(results) == 30
    assert all(ln.points.shape == (N_POINTS, 2) for r in results for ln in r.lines)
    verdicts = load_script("pileup_check").Criteria().verdicts({11: report.summary()})
    assert all(verdicts.values()), verdicts  # recall > 0.9, no ID switch, spacing error <= 1 px


def test_shipped_model_on_six_clean_pile_ups(predictor, load_script):
    """One video can pass by luck (seed 11 flatters every model measured in session 23, which
    scripts/pileup_check.py showed): over seeds 11-16 the model finds nine lines in ten on the
    whole, four in five of every pile-up, and keeps the spacing within 1 px (the script's
    ``Criteria``, so that a candidate checked with it meets the same bar)."""
    summaries = {seed: clean_pileup_run(predictor, seed)[1].summary() for seed in range(11, 17)}
    print("shipped model, clean pile-ups:", json.dumps(summaries))
    verdicts = load_script("pileup_check").Criteria().verdicts(summaries)
    assert all(verdicts.values()), verdicts


def test_shipped_model_on_the_real_video(predictor, realdata_dir):
    results = list(iter_results(realdata_dir / "tanaka-8um.mp4", model=predictor))
    per_frame = [len(r.lines) for r in results]
    tracks = {ln.track_id for r in results for ln in r.lines}
    spacings = [s.spacing_px for r in results for s in r.spacings]
    print(
        f"shipped model, real video: {len(results)} frames, {np.mean(per_frame):.1f} lines/frame, "
        f"{len(tracks)} tracks, median spacing {np.median(spacings) if spacings else float('nan'):.1f} px"
    )
    assert len(results) == 326
