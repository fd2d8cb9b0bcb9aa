"""Model loading and onnxruntime inference against tiny ONNX graphs whose output numpy can predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx_models import build_model, expected_probs, metadata, write_model

from dislotrack.runtime.inference import InferenceConfig, Predictor, padded_size, select_providers
from dislotrack.runtime.model import ModelMeta, load_model_file


@pytest.fixture
def tiny(tmp_path):
    return write_model(tmp_path / "tiny.onnx", metadata(n_masks=3))


def test_select_providers_orders_gpu_first_and_refuses_missing_cuda():
    avail = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert select_providers("auto", avail) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert select_providers("cpu", avail) == ["CPUExecutionProvider"]
    assert select_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="cuda"):
        select_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="unknown device"):
        select_providers("tpu", avail)


def test_padded_size():
    assert padded_size(362, 700, 32) == (384, 704)
    assert padded_size(512, 512, 32) == (512, 512)


@pytest.mark.parametrize("shape", [(2, 64, 96), (3, 50, 77), (1, 362, 700)])
def test_predict_crops_back_and_matches_numpy(tiny, shape):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pred = Predictor(tiny, InferenceConfig(device="cpu"))
    probs = pred.predict(images)
    assert probs.shape == (shape[0], 3, shape[1], shape[2])
    assert probs.dtype == np.float32
    want = expected_probs(images)
    np.testing.assert_allclose(probs, np.broadcast_to(want[:, None], probs.shape), atol=1e-4)
    assert pred.provider == "CPUExecutionProvider"
    assert pred.meta.n_masks == 3 and pred.threshold == 0.5


def test_uint16_frames_are_normalised_by_their_full_scale(tiny):
    images = np.array([[[0, 65535], [30000, 40000]]], dtype=np.uint16)
    probs = Predictor(tiny, InferenceConfig(device="cpu")).predict(images)
    np.testing.assert_allclose(probs[0, 0], expected_probs(images)[0], atol=1e-4)


def test_batched_equals_single(tiny):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 40, 40), dtype=np.uint8)
    pred = Predictor(tiny, InferenceConfig(device="cpu"))
    batched = pred.predict(images)
    singles = np.concatenate([pred.predict(im[None]) for im in images])
    np.testing.assert_allclose(batched, singles, atol=1e-6)


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf at all" * 10)
    with pytest.raises(RuntimeError, match="not a loadable ONNX model"):
        Predictor(bad, InferenceConfig(device="cpu"))


def test_sha_mismatch_against_card_is_refused(tiny):
    card = json.loads(tiny.with_suffix(".json").read_text())
    card["sha256"] = "0" * 64
    tiny.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="does not match its card"):
        load_model_file(tiny)


def test_model_without_metadata_is_refused(tmp_path):
    path = write_model(tmp_path / "plain.onnx", metadata(), with_metadata=False)
    with pytest.raises(ValueError, match="no 'dislotrack' metadata"):
        Predictor(path, InferenceConfig(device="cpu"))


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model_file(tmp_path / "nope.onnx")


def test_metadata_validation():
    with pytest.raises(ValueError, match="lacks"):
        ModelMeta.from_json(json.dumps({"n_masks": 3}))
    with pytest.raises(ValueError, match="invalid"):
        ModelMeta.from_json(json.dumps(metadata(std=0.0)))


def _package(tmp_path, monkeypatch, cards: dict[str, bool]):
    from dislotrack.runtime import model as model_module

    for name, default in cards.items():
        path = write_model(tmp_path / f"{name}.onnx", metadata(n_masks=2))
        card = json.loads(path.with_suffix(".json").read_text())
        path.with_suffix(".json").write_text(json.dumps({**card, "default": default}))
    monkeypatch.setattr(model_module.resources, "files", lambda package: tmp_path)


def test_default_model_is_the_card_marked_default(tmp_path, monkeypatch):
    from dislotrack.runtime.model import default_model_path

    _package(tmp_path, monkeypatch, {"old": False, "new": True})
    assert default_model_path() == tmp_path / "new.onnx"
    pred = Predictor(None, InferenceConfig(device="cpu"))
    assert pred.model.name == "new" and pred.model.card["default"] is True


def test_no_or_two_default_cards_are_errors(tmp_path, monkeypatch):
    from dislotrack.runtime.model import default_model_path

    _package(tmp_path, monkeypatch, {"a": False})
    with pytest.raises(FileNotFoundError, match="no shipped default model"):
        default_model_path()
    _package(tmp_path, monkeypatch, {"a": True, "b": True})
    with pytest.raises(RuntimeError, match="more than one"):
        default_model_path()


def test_half_precision_io_models_take_float16_and_give_float32(tmp_path):
    meta = metadata(n_masks=2)
    path = tmp_path / "half.onnx"
    path.write_bytes(build_model(meta, half_io=True))
    images = np.random.default_rng(3).integers(0, 256, size=(2, 40, 48), dtype=np.uint8)
    probs = Predictor(path, InferenceConfig(device="cpu")).predict(images)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs[:, 0], expected_probs(images), atol=2e-3)


def test_flip_passes_are_mirrored_back_and_stacked_after_the_plain_pass(tmp_path):
    """A model that reads each pixel's right-hand neighbour reads the left-hand one on a frame mirrored
    left-right; mirrored back, that pass must line up with the frame, not with its mirror image."""
    model = write_model(tmp_path / "right.onnx", metadata(n_masks=2), look_right=True)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(1, 64, 64), dtype=np.uint8)
    grey = expected_probs(image)[0]  # what a pointwise model gives at each pixel
    plain = Predictor(model, InferenceConfig(device="cpu")).predict(image)
    assert plain.shape == (1, 2, 64, 64)
    np.testing.assert_allclose(plain[0, :, :, :-1], np.broadcast_to(grey[:, 1:], (2, 64, 63)), atol=1e-4)
    two = Predictor(model, InferenceConfig(device="cpu", flips=2)).predict(image)
    assert two.shape == (1, 4, 64, 64)
    np.testing.assert_array_equal(two[:, :2], plain)
    np.testing.assert_allclose(two[0, 2:, :, 1:], np.broadcast_to(grey[:, :-1], (2, 64, 63)), atol=1e-4)
    four = Predictor(model, InferenceConfig(device="cpu", flips=4)).predict(np.concatenate([image, image]))
    assert four.shape == (2, 8, 64, 64)
    np.testing.assert_allclose(four[:, :4], np.concatenate([two, two]), atol=1e-6)
    np.testing.assert_allclose(four[:, 4:], four[:, :4], atol=1e-6)  # upside down: rows play no part
    with pytest.raises(ValueError, match="flips"):
        Predictor(model, InferenceConfig(device="cpu", flips=3))
