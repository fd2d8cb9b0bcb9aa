"""Real labelled frames load as instances, in frame order (the fine-tuning split relies on it)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.train


def test_real_frames_load_in_frame_order_with_instances(realdata_dir):
    from dislotrack.training.evaluate import load_labelled

    labelled = realdata_dir / "labelled"
    frames = load_labelled(str(labelled / "images"), str(labelled / "masks"), None)
    numbers = [int(f.name.rsplit("_", 1)[1]) for f in frames]
    assert len(frames) == 59 and numbers == sorted(numbers)
    assert all(f.image.ndim == 2 and f.masks.shape[1:] == f.image.shape for f in frames)
    assert all(len(f.masks) > 0 for f in frames)
