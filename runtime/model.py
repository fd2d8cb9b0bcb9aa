"""Finding, verifying and describing the ONNX model the runtime runs.

The model file is the contract between training and runtime: everything the runtime needs to pre- and
post-process (number of masks, normalisation, threshold, input multiple) travels inside the ONNX file as
the ``dislotrack`` metadata JSON, so a model can never be run with someone else's settings.
The shipped default is found through ``importlib.resources`` so that it also works from a wheel.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

METADATA_KEY = "dislotrack"
REQUIRED_KEYS = ("n_masks", "mean", "std", "threshold", "input_multiple")
MODELS_PACKAGE = "dislotrack.models"


@dataclass(frozen=True)
class ModelMeta:
    """The part of the model's metadata that drives pre- and post-processing."""

    n_masks: int
    mean: float
    std: float
    threshold: float = 0.5
    input_multiple: int = 32
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        """Parse the ``dislotrack`` metadata; a missing key is a broken export, so say which."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model metadata '{METADATA_KEY}' is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"model metadata '{METADATA_KEY}' must be a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in raw]
        if missing:
            raise ValueError(f"model metadata '{METADATA_KEY}' lacks {', '.join(missing)}")
        meta = cls(
            n_masks=int(raw["n_masks"]),
            mean=float(raw["mean"]),
            std=float(raw["std"]),
            threshold=float(raw["threshold"]),
            input_multiple=int(raw["input_multiple"]),
            raw=raw,
        )
        if meta.n_masks < 1 or meta.std <= 0 or meta.input_multiple < 1 or not 0 < meta.threshold < 1:
            raise ValueError(f"model metadata '{METADATA_KEY}' has invalid values: {text[:200]}")
        return meta


@dataclass(frozen=True)
class ModelFile:
    """An ONNX model read from disk and checked against its card (when it has one)."""

    path: Path
    data: bytes = field(repr=False)
    sha256: str
    card: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.stem


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _card_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"model card {path} is unreadable: {exc}") from None
    if not isinstance(card, dict):
        raise ValueError(f"model card {path} must be a JSON object")
    return card


def default_model_path() -> Path:
    """The ONNX file whose card says ``"default": true`` among the package's shipped models."""
    root = resources.files(MODELS_PACKAGE)
    defaults = []
    for entry in root.iterdir():
        if entry.name.endswith(".json"):
            card = json.loads(entry.read_text(encoding="utf-8"))
            if isinstance(card, dict) and card.get("default") is True:
                defaults.append(entry)
    if not defaults:
        raise FileNotFoundError(
            f'no shipped default model: no card with "default": true in package {MODELS_PACKAGE}'
        )
    if len(defaults) > 1:
        names = ", ".join(sorted(e.name for e in defaults))
        raise RuntimeError(f'more than one shipped model card says "default": true ({names})')
    onnx = Path(str(defaults[0])).with_suffix(".onnx")
    if not onnx.is_file():
        raise FileNotFoundError(f"the default model card {defaults[0].name} has no ONNX file next to it")
    return onnx


def load_model_file(spec: str | Path | None = None) -> ModelFile:
    """Read an ONNX model (default: the shipped one) and verify its sha256 against its card.

    A card next to the file (same stem, ``.json``) with a ``sha256`` must match: a mismatch means a
    truncated download or a model swapped without its card, which would silently change results.
    """
    path = default_model_path() if spec is None else Path(spec).expanduser()
    if path.is_dir():
        raise ValueError(f"model {path} is a folder; give the .onnx file")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OSError(f"model file {path} is unreadable: {exc.strerror}") from None
    digest = sha256_bytes(data)
    card_path = _card_path(path)
    card = _read_card(card_path) if card_path.is_file() and card_path != path else None
    expected = (card or {}).get("sha256")
    if expected and expected.lower() != digest:
        raise ValueError(
            f"model file {path.name} does not match its card (sha256 {digest[:12]}… != {expected[:12]}…)"
        )
    return ModelFile(path=path, data=data, sha256=digest, card=card)
