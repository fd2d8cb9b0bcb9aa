"""Tiny ONNX graphs with dislotrack metadata, built with onnx.helper, for runtime tests.

The graph is one 1x1 convolution + sigmoid applied identically to every output channel, with weights
chosen so that a channel's probability is ``sigmoid(gain * (grey / max - level))`` whatever the
normalisation in the metadata: bright pixels become a mask. That makes pre-processing, padding,
batching and duplicate masks checkable against plain numpy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def metadata(n_masks: int = 4, mean: float = 0.3, std: float = 0.2, **extra: object) -> dict:
    meta = {
        "n_masks": n_masks,
        "mean": mean,
        "std": std,
        "threshold": 0.5,
        "input_multiple": 32,
        "architecture": "test-conv1x1",
        "encoder": "none",
        "preset": "none",
        "metrics": {},
        "code_version": "test",
    }
    meta.update(extra)
    return meta


def build_model(
    meta: dict,
    gain: float = 20.0,
    level: float = 0.5,
    with_metadata: bool = True,
    half_io: bool = False,
    look_right: bool = False,
) -> bytes:
    """Serialised ONNX model computing ``sigmoid(gain * (grey/max - level))`` on every channel.

    ``half_io``: float16 input and output around the float32 graph (as a half-precision export has).
    ``look_right``: each pixel takes the grey of its right-hand neighbour (a 1x3 kernel; the last
    column sees zero padding), so the output is not mirror-symmetric.
    """
    n = int(meta["n_masks"])
    # x = (g - mean) / std  =>  g = x * std + mean; we want gain * (g - level).
    w = np.full((n, 1, 1, 1), gain * meta["std"], dtype=np.float32)
    conv = {}
    if look_right:
        w = np.pad(w, ((0, 0), (0, 0), (0, 0), (2, 0)))
        conv = {"pads": [0, 1, 0, 1]}
    b = np.full((n,), gain * (meta["mean"] - level), dtype=np.float32)
    io_type = TensorProto.FLOAT16 if half_io else TensorProto.FLOAT
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w", "b"], ["logits"], **conv),
        helper.make_node("Sigmoid", ["logits"], ["p"]),
        helper.make_node("Cast", ["p"], ["probs"], to=io_type),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", io_type, ["B", 1, "H", "W"])],
        [helper.make_tensor_value_info("probs", io_type, ["B", n, "H", "W"])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        helper.set_model_props(model, {"dislotrack": json.dumps(meta)})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_model(
    path: Path, meta: dict | None = None, card: bool = True, with_metadata: bool = True, **kw: float
) -> Path:
    """Write ``path`` (.onnx) and, optionally, its card with the sha256 the runtime verifies."""
    meta = meta or metadata()
    data = build_model(meta, with_metadata=with_metadata, **kw)
    path.write_bytes(data)
    if card:
        card_data = {**meta, "sha256": hashlib.sha256(data).hexdigest(), "default": False}
        path.with_suffix(".json").write_text(json.dumps(card_data))
    return path


def expected_probs(images: np.ndarray, gain: float = 20.0, level: float = 0.5) -> np.ndarray:
    full = float(np.iinfo(images.dtype).max) if images.dtype.kind in "ui" else 1.0
    return 1.0 / (1.0 + np.exp(-gain * (images.astype(np.float64) / full - level)))
