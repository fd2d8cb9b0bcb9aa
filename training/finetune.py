"""Fine-tuning a trained model on a few labelled real frames (the paper used 10).

The labelled frames are cycled endlessly through the same random crops and augmentations as the
synthetic data; a share of the crops may come from the synthetic stream the model was trained on,
so that a few frames from one video refine the model rather than replace what it knew. With so few
frames there is no honest held-out set inside the command, so the checkpoint kept as ``best.pt`` is
chosen on the training frames themselves; the figures worth reporting come from
``dislotrack evaluate`` on frames the fine-tuning never saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dislotrack.training.data import DataConfig, Sample, cycled, synthetic_images, training_samples
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


def mixed(
    labelled: Iterator[Sample], synthetic: Iterator[Sample], share: float, rng: np.random.Generator
) -> Iterator[Sample]:
    """Each sample from ``synthetic`` with probability ``share``, else from ``labelled``."""
    while True:
        yield next(synthetic) if rng.random() < share else next(labelled)


@dataclass
class LabelledSamples:
    """Picklable factory of augmented crops cycled over a small labelled set; ``data.synthetic_share``
    of them drawn instead from the synthetic stream of ``data.preset``."""

    samples: Sequence[Sample]
    data: DataConfig

    def __call__(self, seed: int) -> Iterator[Sample]:
        rng = np.random.default_rng([seed, 0xF1E])
        source = cycled(self.samples, rng)
        if self.data.synthetic_share > 0:
            source = mixed(source, synthetic_images(self.data, seed), self.data.synthetic_share, rng)
        return training_samples(source, self.data, seed)


def finetune(
    config: TrainConfig, weights: Weights, frames: Sequence[Labelled], *, resume: bool = False
) -> Path:
    """Train ``weights`` further on ``frames``; ``config.data`` sets crops, augmentation and the share
    (and preset) of synthetic crops mixed in."""
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
