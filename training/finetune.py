"""Fine-tuning a trained model on a few labelled real frames (the paper used 10).

The labelled frames are cycled endlessly through the same random crops and augmentations as the
synthetic data. With so few frames there is no honest held-out set inside the command, so the
checkpoint kept as ``best.pt`` is chosen on the training frames themselves; the figures worth
reporting come from ``dislotrack evaluate`` on frames the fine-tuning never saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dislotrack.training.data import DataConfig, Sample, cycled, training_samples
from dislotrack.training.evaluate import Labelled
from dislotrack.training.export import Weights
from dislotrack.training.train import TrainConfig

MULTIPLE = 32


def as_sample(frame: Labelled) -> Sample:
    """Grey frame scaled to [0, 1] by its type's full scale, as the runtime does."""
    img = frame.image
    scale = float(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else 1.0
    return (img.astype(np.float32) / scale, frame.masks)


def crop_to_multiple(sample: Sample, multiple: int = MULTIPLE) -> Sample:
    """Top-left crop to a size the network accepts without padding (validation on whole frames)."""
    image, masks = sample
    h, w = (image.shape[0] // multiple) * multiple, (image.shape[1] // multiple) * multiple
    if h == 0 or w == 0:
        raise ValueError(f"frame {image.shape} is smaller than {multiple} px")
    masks = masks[:, :h, :w]
    return image[:h, :w], masks[masks.reshape(len(masks), -1).any(1)] if len(masks) else masks


@dataclass
class LabelledSamples:
    """Picklable factory of augmented crops cycled over a small labelled set."""

    samples: Sequence[Sample]
    data: DataConfig

    def __call__(self, seed: int) -> Iterator[Sample]:
        rng = np.random.default_rng([seed, 0xF1E])
        return training_samples(cycled(self.samples, rng), self.data, seed)


def finetune(config: TrainConfig, weights: Weights, frames: Sequence[Labelled], *, resume: bool = False):
    """Train ``weights`` further on ``frames``; ``config.data`` sets crops and augmentation."""
    from dislotrack.training.train import train

    if not frames:
        raise ValueError("no labelled frames to fine-tune on")
    samples = [as_sample(f) for f in frames]
    val = [crop_to_multiple(s) for s in samples]
    return train(
        config,
        resume=resume,
        init_weights=None if resume else weights.state,
        make_samples=LabelledSamples(samples, config.data),
        val_samples=val,
    )
