"""An exported model's torch weights run in place of onnxruntime, with the runtime's pre-processing.

A GPU machine without onnxruntime-gpu would score a large network on its CPU for minutes. The
``.safetensors`` beside the ``.onnx`` hold the same network (the export checks the two agree to 1e-4),
so on CUDA they give the same probabilities in seconds. Everything else (padding, normalisation from
the model's metadata, threshold, line extraction) stays the runtime's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dislotrack.runtime.inference import frame_batch, preprocess
from dislotrack.runtime.model import ModelFile, ModelMeta, load_model_file
from dislotrack.training.export import load_weights
from dislotrack.training.model import ProbsModel
from dislotrack.training.train import resolve_device

PRECISIONS = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchPredictor:
    """The ``Predictor`` interface (``model``, ``meta``, ``provider``, ``threshold``, ``predict``)
    over the ``.safetensors`` sibling of an exported ``.onnx`` model.

    ``precision`` ``float16``/``bfloat16`` runs the network under autocast on CUDA (what an fp16
    export would do there); probabilities are always handed on as float32."""

    def __init__(
        self, model: ModelFile | str | Path | None = None, device: str = "auto", precision: str = "float32"
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
        self.model = model if isinstance(model, ModelFile) else load_model_file(model)
        weights = load_weights(self.model.path)
        self.meta = ModelMeta.from_json(json.dumps(weights.info))
        self.device = resolve_device(device)
        self.net = ProbsModel(weights.network()).to(self.device).eval()
        self.autocast = PRECISIONS[precision]
        if self.autocast is not None and self.device.type != "cuda":
            raise ValueError(f"precision {precision} needs CUDA; on the CPU use float32")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # frames of one size: pick the fastest kernels once
        self.provider = f"torch-{self.device.type}" + ("" if self.autocast is None else f"-{precision}")

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    @torch.no_grad()
    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(B, H, W) frames of one size -> (B, N, H, W) float32 probabilities at the frames' size."""
        batch = frame_batch(images)
        _, h, w = batch.shape
        x = torch.from_numpy(preprocess(batch, self.meta)).to(self.device)
        if self.autocast is None:
            probs = self.net(x)
        else:
            with torch.autocast("cuda", dtype=self.autocast):
                probs = self.net(x)
        probs = probs.float().cpu().numpy()
        return probs[:, :, :h, :w]
