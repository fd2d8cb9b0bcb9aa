"""Fixtures for the live-window tests: a synthetic demo video, and a model that knows its truth.

The window is a view over the runtime, so the tests drive the real pipeline (sources, line
extraction, tracking, spacing) on a synthetic video; only the network is replaced by ``TruthModel``,
which answers with the generator's own masks, so that lines, ids and spacings are known to exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dislotrack.runtime.synth.video import clean_pileup, iter_video, write_video

N_MASKS = 20


@dataclass(frozen=True)
class DemoVideo:
    path: Path
    images: np.ndarray  # (T, H, W) uint8 as encoded (before compression)
    labels: np.ndarray  # (T, H, W) track id per pixel


class TruthModel:
    """Stands in for the ONNX network: each frame's probabilities are its true per-track masks.

    The decoded frame is matched to the truth frame it came from (nearest image), because MPEG-4
    compression changes pixels but not which frame it is.
    """

    provider = "TruthModelExecutionProvider"
    threshold = 0.5

    def __init__(self, demo: DemoVideo) -> None:
        self._small = demo.images[:, ::4, ::4].astype(np.float32)
        self._labels = demo.labels
        self.calls = 0

    def _frame_of(self, image: np.ndarray) -> int:
        diff = np.abs(self._small - image[::4, ::4].astype(np.float32)).mean(axis=(1, 2))
        return int(np.argmin(diff))

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        out = np.full((len(images), N_MASKS, *images.shape[1:]), 0.02, np.float32)
        for b, image in enumerate(images):
            labels = self._labels[self._frame_of(image)]
            for track in np.unique(labels[labels > 0]):
                out[b, (int(track) - 1) % N_MASKS][labels == track] = 0.95
        return out


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory) -> DemoVideo:
    """Four seconds of one gliding pile-up, 192 x 256 px, 22 frame/s (generated, never committed)."""
    config = clean_pileup(n_frames=88, size=(192, 256), seed=3)
    paths = write_video(config, tmp_path_factory.mktemp("demo"))
    truth = list(iter_video(config))
    return DemoVideo(
        path=paths.video,
        images=np.stack([t.image for t in truth]),
        labels=np.stack([t.labels for t in truth]),
    )


@pytest.fixture
def truth_model(demo_video) -> TruthModel:
    return TruthModel(demo_video)
