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
    assert all(report["criteria"].values())
    ends = report["tracking"][3]
    assert 0.9 <= ends["length_ratio"] <= 1.05 and ends["stray_px"] <= 2.0
    assert len(report["coverage"]) == len(check.DARKNESS_BANDS) * len(check.THICKNESS_BANDS)
    assert min(report["coverage"].values()) >= 0.9


def test_a_blind_model_scores_zero(check, monkeypatch) -> None:
    monkeypatch.setattr(check, "clean_pileup", lambda **kw: clean_pileup(size=SIZE, **kw))
    report = check.run(LookupModel(_videos(check, 3, 2), blind=True), [3], frames=2)
    assert report["mean"]["recall"] == 0.0
    failed = [k for k, ok in report["criteria"].items() if not ok]
    assert len(failed) == 3 and not any(k.startswith("ID switches") for k in failed)  # none to switch
    assert np.isnan(report["tracking"][3]["length_ratio"])
    assert max(report["coverage"].values()) == 0.0


def test_criteria_fail_each_on_its_own_figure(check) -> None:
    good = {"recall": 0.95, "id_switches": 0, "median_spacing_error_px": 0.3}
    criteria = check.Criteria()
    assert all(criteria.verdicts({11: good, 12: good}).values())
    assert len(criteria.verdicts({11: good, 12: good})) == 5  # seed 11 is the criterion video
    assert len(criteria.verdicts({12: good, 13: good})) == 4
    for change in ({"recall": 0.79}, {"id_switches": 5}, {"median_spacing_error_px": 1.25}):
        verdicts = criteria.verdicts({11: good, 12: {**good, **change}})
        assert list(verdicts.values()).count(False) >= 1, change
    spacing = criteria.verdicts({11: good, 12: {**good, "median_spacing_error_px": 1.25}})
    assert [k for k, ok in spacing.items() if not ok] == ["every seed's median spacing error <= 1 px"]
    seed_11 = criteria.verdicts({11: {**good, "recall": 0.88}, 12: good})
    assert [k for k, ok in seed_11.items() if not ok] == ["seed 11: recall > 0.9, at most 0 ID switches"]
