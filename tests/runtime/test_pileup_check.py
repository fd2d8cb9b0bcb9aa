"""scripts/pileup_check.py: its figures for a model that sees every line and for one that sees none."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dislotrack.runtime.evaluation import truth_probabilities
from dislotrack.runtime.synth import clean_pileup, iter_video

SIZE = (192, 192)


@pytest.fixture(scope="module")
def check(load_script):
    return load_script("pileup_check")


class LookupModel:
    """Returns the truth maps of frames it was shown beforehand (and zeros when ``blind``)."""

    provider = "truth"
    threshold = 0.5

    def __init__(self, videos, blind: bool = False):
        rng = np.random.default_rng(0)
        self.blind = blind
        self.maps = {
            f.image.tobytes(): truth_probabilities(f.labels, sorted(f.lines), 20, rng)
            for config in videos
            for f in iter_video(config)
        }

    def predict(self, images: np.ndarray) -> np.ndarray:
        maps = np.stack([self.maps[im.tobytes()] for im in images])
        return np.zeros_like(maps) if self.blind else maps


def _videos(check, seed: int, frames: int):
    base = clean_pileup(n_frames=frames, seed=seed, size=SIZE)
    bands = [(d, t) for d in check.DARKNESS_BANDS for t in check.THICKNESS_BANDS]
    return [base, *(replace(check.banded(base, d, t), n_frames=1) for d, t in bands)]


def test_seed_lists(check) -> None:
    assert check.seed_list("11-13") == [11, 12, 13]
    assert check.seed_list("4,7-8") == [4, 7, 8]


def test_a_model_that_sees_every_line_tracks_and_covers_them(check, monkeypatch) -> None:
    monkeypatch.setattr(check, "clean_pileup", lambda **kw: clean_pileup(size=SIZE, **kw))
    model = LookupModel(_videos(check, 3, 4))
    report = check.run(model, [3], frames=4)
    assert report["mean"]["recall"] >= 0.97 and report["mean"]["id_switches"] == 0
    assert len(report["coverage"]) == len(check.DARKNESS_BANDS) * len(check.THICKNESS_BANDS)
    assert min(report["coverage"].values()) >= 0.9


def test_a_blind_model_scores_zero(check, monkeypatch) -> None:
    monkeypatch.setattr(check, "clean_pileup", lambda **kw: clean_pileup(size=SIZE, **kw))
    report = check.run(LookupModel(_videos(check, 3, 2), blind=True), [3], frames=2)
    assert report["mean"]["recall"] == 0.0
    assert max(report["coverage"].values()) == 0.0
