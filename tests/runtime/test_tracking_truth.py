"""Lines + tracking + spacing on synthetic in-situ videos with known truth, through ``iter_results``.

The "model" here turns each frame's true label image into model-like probability maps (blurred
masks in shuffled channels, plus weaker duplicate and fragment masks as spare channels produce: the
paper's rule keeps the more confident of two duplicates, so a fragment is made less confident), so
the test measures everything after the network, independent of how good a trained model is.
"""

from __future__ import annotations

import numpy as np
import pytest

from dislotrack.runtime.evaluation import evaluate, truth_probabilities
from dislotrack.runtime.pipeline import iter_results
from dislotrack.runtime.results import Frame
from dislotrack.runtime.synth import VideoConfig, clean_pileup, iter_video

N_MASKS = 20


class TruthModel:
    """Stands in for the network: looks each frame up by its pixels and returns its truth maps."""

    provider = "truth"
    threshold = 0.5

    def __init__(self, frames, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.maps = {
            f.image.tobytes(): truth_probabilities(f.labels, sorted(f.lines), N_MASKS, rng) for f in frames
        }

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.maps[im.tobytes()] for im in images])


def run(config: VideoConfig, drift: bool = False):
    frames = list(iter_video(config))
    model = TruthModel(frames, seed=config.seed)
    source = [Frame(f.index, f.time_s, f.image) for f in frames]
    results = list(iter_results(source, model=model, drift=drift, batch_size=4))
    assert [r.index for r in results] == [f.index for f in frames]
    return evaluate([f.lines for f in frames], [r.lines for r in results]), results


@pytest.mark.parametrize("seed", [0, 1])
def test_clean_pile_up_has_no_id_switch_and_subpixel_spacing(seed):
    report, results = run(clean_pileup(n_frames=40, seed=seed))
    print(f"clean pile-up seed {seed}: {report.summary()}")
    assert report.id_switches == 0
    assert report.fragmentation == 0
    assert report.median_spacing_error_px <= 1.0
    assert report.recall >= 0.97 and report.precision >= 0.97
    assert report.spacing_coverage >= 0.9
    assert all(r.spacings for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("drift", [False, True])
def test_harder_video_with_entries_exits_and_drift_is_reported(drift):
    report, _ = run(VideoConfig(n_frames=80, seed=3, drift=0.3), drift=drift)
    print(f"default video, drift 0.3 px/frame, compensation {drift}: {report.summary()}")
    assert report.recall >= 0.9
    assert report.median_spacing_error_px <= 1.5
    assert report.id_switches <= 0.02 * report.matched
