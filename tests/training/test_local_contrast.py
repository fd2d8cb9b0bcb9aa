"""The optional local-contrast input step: what it computes, weight compatibility, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train

TINY = {"encoder": "resnet18", "n_masks": 4, "encoder_depth": 3, "decoder_channels": (16, 16, 8)}


def _faint_line(contrast: float, offset: float):
    import torch

    rng = np.random.default_rng(0)
    img = 0.5 + 0.05 * rng.standard_normal((1, 1, 96, 96))
    img[..., 40:42, :] -= 0.1
    return torch.from_numpy((offset + contrast * img).astype(np.float32))


def test_output_does_not_depend_on_grey_level_or_contrast() -> None:
    """A line at 0.4x the contrast on a brighter background gives the same input to the network."""
    from dislotrack.training.model import LocalContrast

    step = LocalContrast(sigma=8.0, floor=1e-4)
    a, b = step(_faint_line(1.0, 0.0)), step(_faint_line(0.4, 0.3))
    assert float((a - b).abs().max()) < 1e-3
    line, rest = a[..., 40:42, 20:76].mean(), a[..., 60:90, 20:76].std()
    assert float(line) < -1.0 and 0.5 < float(rest) < 1.5  # the line stands out in units of local spread


def test_floor_keeps_flat_areas_flat() -> None:
    import torch

    from dislotrack.training.model import LocalContrast

    flat = torch.full((1, 1, 64, 64), 0.3) + 1e-4 * torch.randn(1, 1, 64, 64)
    assert float(LocalContrast(sigma=8.0, floor=0.04)(flat).abs().max()) < 0.05


def test_weights_move_between_networks_with_and_without_it() -> None:
    import torch

    from dislotrack.training.model import ModelConfig, build_model

    torch.manual_seed(0)  # the bf16 bound below depends on the weights: not on earlier tests' draws
    plain = build_model(ModelConfig(**TINY)).eval()
    local = build_model(ModelConfig(**TINY, local_contrast_px=6.0)).eval()
    assert plain.state_dict().keys() == local.state_dict().keys()
    local.load_state_dict(plain.state_dict())
    assert ModelConfig(**TINY).same_weights(ModelConfig(**TINY, local_contrast_px=6.0))
    assert not ModelConfig(**TINY).same_weights(ModelConfig(**{**TINY, "n_masks": 5}))
    x = _faint_line(1.0, 0.0)
    with torch.no_grad():
        assert not torch.allclose(plain(x), local(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = local(x).float()
        assert float((mixed - local(x)).abs().max()) < 0.1


def test_export_keeps_it_inside_the_onnx_graph(tmp_path) -> None:
    import torch

    from dislotrack.training.export import Weights, export_onnx
    from dislotrack.training.model import ModelConfig, build_model

    config = ModelConfig(**TINY, local_contrast_px=6.0)
    torch.manual_seed(0)
    weights = Weights(config, build_model(config).state_dict(), {})
    worst = export_onnx(weights, tmp_path / "local.onnx")
    assert worst <= 1e-4
    plain = Weights(ModelConfig(**TINY), weights.state, {}).network()
    import onnxruntime as ort

    x = _faint_line(1.0, 0.0).numpy()
    (probs,) = ort.InferenceSession(str(tmp_path / "local.onnx")).run(["probs"], {"image": x})
    with torch.no_grad():
        assert np.abs(probs - torch.sigmoid(plain(torch.from_numpy(x))).numpy()).max() > 1e-3
