"""A tiny model trained for two steps and exported once per session, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training steps on 64² synthetic crops with a shallow resnet18 U-Net++ (cheap to export)."""
    from dislotrack.training.data import DataConfig
    from dislotrack.training.model import ModelConfig
    from dislotrack.training.train import TrainConfig, train

    config = TrainConfig(
        model=ModelConfig(encoder="resnet18", n_masks=4, encoder_depth=3, decoder_channels=(16, 16, 8)),
        data=DataConfig(gen_size=(128, 128), crop=(64, 64), max_masks=4),
        batch_size=2,
        epochs=1,
        steps_per_epoch=2,
        warmup_steps=1,
        val_images=2,
        val_size=(64, 64),
        workers=0,
        out_dir=str(tmp_path_factory.mktemp("run")),
    )
    return train(config)


@pytest.fixture(scope="session")
def tiny_model(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported like a shipped model: NAME.onnx, NAME.safetensors, NAME.json."""
    from dislotrack.training.export import load_weights, ship

    out = tmp_path_factory.mktemp("models")
    ship(load_weights(tiny_run), out, "tiny")
    return out / "tiny.onnx"


def write_labelled(
    folder: Path, n: int, size: tuple[int, int] = (64, 96), seed: int = 5
) -> tuple[Path, Path]:
    """``n`` synthetic frames written as a user's labelled folders: images/ and masks/ (PNG, same stems)."""
    import numpy as np
    from skimage.io import imsave

    from dislotrack.runtime.synth import iter_samples

    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    stream = iter_samples(seed=seed, size=size)
    for i in range(n):
        s = next(stream)
        imsave(images / f"img_{i:03d}.png", (s.image * 255).astype(np.uint8), check_contrast=False)
        imsave(masks / f"img_{i:03d}.png", (s.masks.any(0) * 255).astype(np.uint8), check_contrast=False)
    return images, masks


@pytest.fixture
def labelled_folder(tmp_path: Path):
    """Writes synthetic labelled folders under ``tmp_path``: ``labelled_folder(n) -> (images, masks)``."""
    return lambda n: write_labelled(tmp_path, n)
