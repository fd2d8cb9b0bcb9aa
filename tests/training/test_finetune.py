"""Fine-tuning on a few labelled frames, optionally mixed with the model's synthetic stream."""

from __future__ import annotations

import json
from itertools import islice

import numpy as np
import pytest

from dislotrack.training.data import AugmentConfig, DataConfig


def _flat_frames(n: int, shape=(64, 64)):
    """Labelled samples whose image is one flat grey: no synthetic image looks like that."""
    masks = np.zeros((1, *shape), bool)
    masks[0, shape[0] // 2, 4:-4] = True
    return [(np.full(shape, 0.5, np.float32), masks) for _ in range(n)]


def test_mixed_draws_the_given_share_from_the_second_stream():
    from itertools import repeat

    from dislotrack.training.finetune import mixed

    got = list(islice(mixed(repeat("real"), repeat("synthetic"), 0.3, np.random.default_rng(0)), 2000))
    assert 0.26 < got.count("synthetic") / len(got) < 0.34


def test_labelled_samples_mix_in_synthetic_crops_only_when_asked():
    from dislotrack.training.finetune import LabelledSamples

    data = DataConfig(gen_size=(64, 64), crop=(32, 32), augment=AugmentConfig.off())
    alone = list(islice(LabelledSamples(_flat_frames(3), data)(seed=1), 40))
    assert all(np.ptp(img) == 0 for img, _ in alone)
    share = DataConfig(gen_size=(64, 64), crop=(32, 32), augment=AugmentConfig.off(), synthetic_share=0.5)
    both = list(islice(LabelledSamples(_flat_frames(3), share)(seed=1), 40))
    synthetic = sum(np.ptp(img) > 0 for img, _ in both)
    assert 8 <= synthetic <= 32
    assert all(img.shape == (32, 32) and m.shape[1:] == (32, 32) for img, m in both)


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match="synthetic_share"):
        DataConfig(synthetic_share=share)


def test_weights_know_their_preset_from_the_card_or_the_checkpoint():
    from dislotrack.training.export import Weights
    from dislotrack.training.model import ModelConfig

    model = ModelConfig()
    assert Weights(model, {}, {"preset": "m2-tem"}).preset == "m2-tem"
    assert Weights(model, {}, {"train": {"data": {"preset": "m2-wide"}}}).preset == "m2-wide"
    assert Weights(model, {}, {}).preset == ""


@pytest.mark.train
def test_finetune_records_its_recipe_and_trains(tiny_model, tmp_path, monkeypatch):
    from PIL import Image

    from dislotrack.cli.main import main
    from dislotrack.runtime import model as model_module

    # without --from it starts from the package's default model: here the tiny one
    monkeypatch.setattr(model_module.resources, "files", lambda package: tiny_model.parent)

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(2)
    for i in range(2):
        img = rng.integers(90, 160, (64, 96), dtype=np.uint8)
        mask = np.zeros((64, 96), np.uint8)
        mask[30:33, 10:80] = 255
        img[mask > 0] = 40
        Image.fromarray(img).save(images / f"f{i}.png")
        Image.fromarray(mask).save(masks / f"f{i}.png")
    out = tmp_path / "ft"
    args = ["train", "finetune", "--images", str(images), "--masks", str(masks)]
    args += ["--out", str(out), "--crop", "64", "--epochs", "1", "--steps-per-epoch", "2"]
    args += ["--batch-size", "2", "--warmup-steps", "1", "--workers", "0", "--threads", "1"]
    args += ["--synthetic-share", "0.5"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    data = config["data"]
    assert data["synthetic_share"] == 0.5 and data["preset"] == "m2"  # the tiny model's preset
    assert config["loss"]["union_weight"] == 4.0 and config["loss"]["ignore_beyond_px"] == 12
    assert config["val_lines"] is True and config["val_iou_tolerance_px"] == 2  # as `evaluate` scores
    assert (out / "last.pt").is_file() and (out / "history.csv").read_text().count("\n") == 2
    # the run ends with a model the runtime can use, exported from last.pt and not marked default
    card = json.loads((out / "finetuned.json").read_text())
    assert card["default"] is False and (out / "finetuned.safetensors").is_file()
    training = card["training"]
    assert training["data"]["synthetic_share"] == 0.5 and training["data"]["synthetic_images"] == 2  # of 4
    assert training["fine_tuned_on"]["frames"] == ["f0", "f1"] and training["fine_tuned_on"]["lines"] == 2
    assert training["initialised_from"]["file"] == tiny_model.with_suffix(".safetensors").name


def test_validation_through_the_runtime_lines_credits_a_line_split_across_two_channels():
    import torch

    from dislotrack.training.model import ModelConfig
    from dislotrack.training.train import TrainConfig, validate

    class Fixed(torch.nn.Module):
        """Logits of one horizontal line whose left third is in channel 0 and the rest in channel 1."""

        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))  # predict_probs reads its device
            self.logits = torch.full((1, 4, 64, 128), -20.0)
            self.logits[0, 0, 30:33, 10:50] = 20.0
            self.logits[0, 1, 30:33, 50:118] = 20.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits.expand(len(x), -1, -1, -1) + 0 * self.anchor

    truth = np.zeros((1, 64, 128), bool)
    truth[0, 30:33, 10:118] = True
    samples = [(np.full((64, 128), 0.5, np.float32), truth)]
    config = TrainConfig(model=ModelConfig(n_masks=4))
    _, raw = validate(Fixed(), samples, config)
    _, lines = validate(Fixed(), samples, TrainConfig(model=ModelConfig(n_masks=4), val_lines=True))
    assert raw.lar < 0.7  # the longer piece alone
    assert lines.lar > 0.95  # the runtime joins the two pieces into one line
