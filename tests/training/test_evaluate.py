"""Labelled-frame loading (masks, labelme) and the evaluate command on an exported model."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.train


def test_mask_instances_splits_connected_lines_and_drops_specks():
    from dislotrack.training.evaluate import mask_instances

    mask = np.zeros((40, 60), np.uint8)
    mask[5:8, 5:50] = 255
    mask[20:35, 30:33] = 255
    mask[38, 58] = 255
    inst = mask_instances(mask)
    assert inst.shape == (2, 40, 60)
    assert sorted(int(m.sum()) for m in inst) == [45, 135]


def test_labelme_polylines_become_one_instance_each(tmp_path):
    from skimage.io import imsave

    from dislotrack.training.evaluate import load_labelled

    imsave(tmp_path / "f.png", np.full((50, 80), 200, np.uint8), check_contrast=False)
    doc = {
        "imagePath": "f.png",
        "shapes": [
            {"label": "d", "shape_type": "linestrip", "points": [[5, 5], [40, 5], [70, 30]]},
            {"label": "d", "shape_type": "line", "points": [[10, 40], [60, 40]]},
            {"label": "box", "shape_type": "rectangle", "points": [[0, 0], [4, 4]]},
        ],
    }
    (tmp_path / "f.json").write_text(json.dumps(doc))
    (frame,) = load_labelled(None, None, str(tmp_path), width=3)
    assert frame.image.dtype == np.uint8 and frame.masks.shape == (2, 50, 80)
    assert frame.masks[0, 5, 20] and frame.masks[1, 40, 35] and not frame.masks[1, 5, 20]


def test_evaluate_scores_labelled_frames_and_updates_the_card(tiny_model, tmp_path, labelled_folder):
    from dislotrack.cli.main import main

    images, masks = labelled_folder(3)
    per_image = tmp_path / "per_image.csv"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_model),
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--skip-first",
            "1",
            "--per-image",
            str(per_image),
            "--card-key",
            "test_frames",
        ]
    )
    assert code == 0
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    figures = card["metrics"]["test_frames"]
    assert figures["n_images"] == 2 and figures["data"]["first_image"] == "img_001"
    assert figures["data"]["frames_with_repeated_labels"] == 0
    for key in ("centreline_recall", "instance_recall", "lar", "length_metric"):
        assert np.isnan(figures[key]) or 0.0 <= figures[key] <= 1.0
    assert len(per_image.read_text().strip().splitlines()) == 3
    assert card["sha256"] == figures["sha256"]


def test_frames_whose_labels_repeat_an_earlier_frame_are_named():
    from dislotrack.training.evaluate import Labelled, repeated_labels

    image = np.zeros((20, 30), np.uint8)
    a, b = np.zeros((1, 20, 30), bool), np.zeros((2, 20, 30), bool)
    a[0, 5, 2:28] = True
    b[0, 12, 2:28] = True
    b[1, 5, 2:28] = True
    frames = [Labelled("f0", image, a), Labelled("f1", image + 1, b), Labelled("f2", image + 2, a.copy())]
    frames.append(Labelled("f3", image, b[::-1].copy()))  # the same pixels, instances in another order
    assert repeated_labels(frames) == {"f2": "f0", "f3": "f1"}
    assert repeated_labels(frames[:2]) == {}


def test_runtime_masks_removes_duplicate_channels():
    from dislotrack.training.evaluate import runtime_masks

    probs = np.zeros((4, 40, 60), np.float32)
    probs[0, 10:13, 5:55] = 0.9
    probs[2, 10:13, 6:55] = 0.8  # the same line again: Dice loss < 0.5
    probs[3, 25:28, 5:55] = 0.7
    masks = runtime_masks(probs, 0.5)
    assert masks.shape == (2, 40, 60)


def test_runtime_masks_join_a_line_split_over_channels_unless_told_not_to():
    from dislotrack.runtime.lines import LineConfig
    from dislotrack.training.evaluate import runtime_masks

    probs = np.zeros((4, 40, 90), np.float32)
    probs[0, 18:21, 5:45] = 0.9  # one straight line, its halves in two channels
    probs[1, 18:21, 44:85] = 0.9
    joined, split = runtime_masks(probs, 0.5), runtime_masks(probs, 0.5, LineConfig(join_gap_px=0.0))
    assert joined.shape == (1, 40, 90) and np.array_equal(joined[0], probs.max(axis=0) > 0.5)
    assert split.shape == (2, 40, 90)


def test_evaluate_on_held_out_synthetic_images(tiny_model, capsys):
    from dislotrack.cli.main import main

    args = ["evaluate", "--model", str(tiny_model), "--synthetic", "2", "--size", "64x96", "--raw-masks"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_images"] == 2 and out["data"]["synthetic"]["seed"] == 999_999_937
    assert out["n_true"] > 0 and out["settings"]["instances"] == "raw masks"
    assert 0.0 <= out["distractors_marked"]["slip_traces"] <= 1.0  # known on synthetic images only


def test_update_card_can_write_into_another_models_card(tiny_model, tmp_path):
    from dislotrack.training.evaluate import update_card

    other = tmp_path / "shipped.json"
    other.write_text(json.dumps({"name": "shipped", "metrics": {"validation": {}}}))
    update_card(str(tiny_model), "finetune", {"lar": 0.5}, card=str(other))
    assert json.loads(other.read_text())["metrics"] == {"validation": {}, "finetune": {"lar": 0.5}}
    assert "finetune" not in json.loads(tiny_model.with_suffix(".json").read_text())["metrics"]


def test_torch_predictor_matches_onnxruntime_on_an_unpadded_frame(tiny_model):
    from dislotrack.runtime.inference import Predictor
    from dislotrack.training.torch_inference import TorchPredictor

    frames = np.random.default_rng(3).integers(0, 256, (2, 50, 70), dtype=np.uint8)
    ours = TorchPredictor(tiny_model, "cpu")
    assert ours.provider == "torch-cpu" and ours.threshold == Predictor(tiny_model).threshold
    expected = Predictor(tiny_model).predict(frames)
    got = ours.predict(frames)
    assert got.shape == expected.shape == (2, 4, 50, 70)
    assert np.abs(got - expected).max() <= 1e-4


def test_evaluate_with_torch_reports_its_provider(tiny_model, capsys):
    from dislotrack.cli.main import main

    args = ["evaluate", "--model", str(tiny_model), "--synthetic", "2", "--size", "64x96", "--torch", "cpu"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["provider"] == "torch-cpu" and out["n_images"] == 2


def test_evaluate_records_flip_passes_and_refuses_them_with_torch(tiny_model, capsys):
    from dislotrack.cli.main import main

    args = ["evaluate", "--model", str(tiny_model), "--synthetic", "2", "--size", "64x96", "--flips", "2"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["flips"] == 2
    assert main([*args, "--torch", "cpu"]) != 0
    assert "onnxruntime only" in capsys.readouterr().err


def test_training_refuses_cuda_without_a_gpu(monkeypatch):
    import torch

    from dislotrack.training.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")
