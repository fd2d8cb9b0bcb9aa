"""onnxruntime inference: explicit providers, metadata-driven normalisation, pad-to-multiple and crop.

Frames are run whole at native resolution (padded by reflection to the model's input multiple, never
resized, so thin lines stay thin) and the probabilities are cropped back to the frame size.
Providers are listed explicitly (TensorRT → CUDA → CPU, as installed) and the one actually used is
reported, because onnxruntime otherwise falls back to the CPU without telling anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dislotrack.runtime.model import METADATA_KEY, ModelFile, ModelMeta, load_model_file

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class InferenceConfig:
    """How to run the model; ``threads=0`` lets onnxruntime use every core."""

    device: str = "auto"
    threads: int = 0
    # intra-op threads busy-waiting between operators steal the cores that decoding, line
    # extraction and tracking need while the CPU also runs the model (scripts/bench_runtime.py)
    spin: bool = False
    trt_cache_dir: Path | None = None  # TensorRT engine cache; None: rebuild engines every run
    # 2 or 4: also run the frame mirrored left-right (and upside down, and both) and hand on every
    # pass's masks, mirrored back, side by side: (B, flips * N, H, W). The passes are stacked, not
    # averaged, because a mirrored frame's lines land in other channels; the line extraction merges
    # the duplicates (Dice rule) and keeps what only one pass found. Costs `flips` network runs.
    flips: int = 1


FLIP_AXES = {1: ((),), 2: ((), (-1,)), 4: ((), (-1,), (-2,), (-2, -1))}
"""Axes of a (B, H, W) batch that each pass mirrors, by ``InferenceConfig.flips``."""


def select_providers(device: str, available: Sequence[str]) -> list[str]:
    """Ordered provider names for ``device``; asking for cuda without a CUDA provider is an error."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU_PROVIDER]
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if device == "cuda" and not gpu:
        raise RuntimeError(
            "device cuda requested but onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu"
        )
    return [*gpu, CPU_PROVIDER]


def _provider_options(name: str, config: InferenceConfig) -> dict[str, str]:
    if name == "TensorrtExecutionProvider" and config.trt_cache_dir is not None:
        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(config.trt_cache_dir)}
    return {}


def max_value(dtype: np.dtype) -> float:
    """Full scale of a decoded frame: integer frames by their type, float frames are taken as [0, 1]."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def frame_batch(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """A (B, H, W) array from one (H, W) frame, a (B, H, W) array or a sequence of frames of one size."""
    batch = np.stack(images) if not isinstance(images, np.ndarray) else images
    return batch[None] if batch.ndim == 2 else batch


def preprocess(images: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """(B, H, W) grey frames -> (B, 1, Hp, Wp) float32 normalised as in training, reflect-padded."""
    if images.ndim != 3:
        raise ValueError(f"expected a (B, H, W) batch of grey frames, got shape {images.shape}")
    _, h, w = images.shape
    hp, wp = padded_size(h, w, meta.input_multiple)
    scale = 1.0 / (max_value(images.dtype) * meta.std)
    x = images.astype(np.float32) * np.float32(scale) - np.float32(meta.mean / meta.std)
    if (hp, wp) != (h, w):
        mode = "reflect" if h > 1 and w > 1 else "edge"
        x = np.pad(x, ((0, 0), (0, hp - h), (0, wp - w)), mode=mode)
    return x[:, None]


class Predictor:
    """One onnxruntime session plus the model's metadata: frames in, per-mask probabilities out."""

    def __init__(self, model: ModelFile | str | Path | None = None, config: InferenceConfig | None = None):
        import onnxruntime as ort

        self.config = config or InferenceConfig()
        if self.config.flips not in FLIP_AXES:
            choices = ", ".join(map(str, FLIP_AXES))
            raise ValueError(f"flips must be one of {choices}, got {self.config.flips}")
        self.model = model if isinstance(model, ModelFile) else load_model_file(model)
        requested = select_providers(self.config.device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.config.spin else "0")
        options.log_severity_level = 3
        providers = [(p, _provider_options(p, self.config)) for p in requested]
        try:
            # from the path, not the bytes, so that ONNX files with external data also load
            self.session = ort.InferenceSession(str(self.model.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unparsable files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            name = self.model.path.name
            raise RuntimeError(f"model {name} is not a loadable ONNX model: {first}") from None
        self.provider = self.session.get_providers()[0]
        if self.config.device == "cuda" and self.provider not in GPU_PROVIDERS:
            raise RuntimeError(f"device cuda requested but onnxruntime fell back to {self.provider}")
        meta_map = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta_map:
            raise ValueError(
                f"model {self.model.path.name} has no '{METADATA_KEY}' metadata; is it a dislotrack export?"
            )
        self.meta = ModelMeta.from_json(meta_map[METADATA_KEY])
        self._check_io()
        log.info("model %s on %s (requested %s)", self.model.name, self.provider, ", ".join(requested))

    def _check_io(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"model {self.model.path.name} must take one (B, 1, H, W) input")
        if not outputs or len(outputs[0].shape) != 4:
            raise ValueError(f"model {self.model.path.name} must output (B, N, H, W) probabilities")
        self._input = inputs[0].name
        self._output = outputs[0].name
        # an fp16 export takes half-precision input; probabilities are always handed on as float32
        self._input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(B, H, W) frames of one size -> (B, N, H, W) float32 probabilities at the frames' size;
        (B, flips * N, H, W) with ``InferenceConfig.flips`` > 1, the plain pass first."""
        batch = frame_batch(images)
        passes = [np.flip(self._run(np.flip(batch, axes)), axes) for axes in FLIP_AXES[self.config.flips]]
        return passes[0] if len(passes) == 1 else np.concatenate(passes, axis=1)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        _, h, w = batch.shape
        x = preprocess(batch, self.meta).astype(self._input_dtype, copy=False)
        (probs,) = self.session.run([self._output], {self._input: x})
        probs = probs.astype(np.float32, copy=False)
        if probs.shape[1] != self.meta.n_masks:
            raise ValueError(
                f"model gave {probs.shape[1]} masks but its metadata says n_masks={self.meta.n_masks}"
            )
        return probs[:, :, :h, :w]
