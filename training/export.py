"""Export a trained network to the runtime's model-file contract (docs/interfaces.md).

The ONNX graph takes the normalised ``image`` (B, 1, H, W) and returns ``probs`` (B, N, H, W) with the
sigmoid inside; batch, height and width are dynamic. Everything the runtime needs to pre- and
post-process travels in the ``dislotrack`` metadata. The export runs onnxruntime against torch on
random inputs of several shapes and refuses to write a model that differs by more than the tolerance,
so a silently broken exporter can never ship.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dislotrack.training.model import ModelConfig, ProbsModel, build_model, without_trace_channel
from dislotrack.training.train import hardware

METADATA_KEY = "dislotrack"
INPUT_MULTIPLE = 32
PARITY_SHAPES = ((1, 1, 64, 96), (2, 1, 96, 64))


@dataclass(frozen=True)
class Weights:
    """A trained network as it travels between training, export and fine-tuning."""

    model: ModelConfig
    state: dict
    info: dict

    def network(self) -> torch.nn.Module:
        net = build_model(self.model)
        net.load_state_dict(self.state)
        return net.eval()

    def masks_only(self) -> Weights:
        """These weights without the trace channel, if they were trained with one: what is shipped."""
        model, state = without_trace_channel(self.model, self.state)
        return self if model is self.model else Weights(model, state, self.info)

    @property
    def preset(self) -> str:
        """The generator preset the weights were trained on ('' when unknown): a checkpoint keeps
        it in its training config, an exported model in its card."""
        return self.info.get("train", {}).get("data", {}).get("preset") or self.info.get("preset", "")


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (absent from a wheel)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("dislotrack")
    except PackageNotFoundError:
        v = "unknown"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return v
    return f"{v}+g{rev}" if rev else v


def load_weights(path: str | Path) -> Weights:
    """Weights from a training checkpoint (``.pt``), a run folder (its ``best.pt``), a ``.safetensors``
    file, or an ``.onnx`` file with its ``.safetensors`` sibling (how users fine-tune a shipped model)."""
    path = weights_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if METADATA_KEY not in meta:
            raise ValueError(f"{path.name} has no '{METADATA_KEY}' metadata; is it a dislotrack export?")
        info = json.loads(meta[METADATA_KEY])
        return Weights(ModelConfig.from_dict(info["model"]), load_file(str(path)), info)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a dislotrack training checkpoint")
    info = {"train": ckpt["config"], "state": ckpt.get("state", {})}
    return Weights(ModelConfig.from_dict(ckpt["config"]["model"]), ckpt["model"], info)


def validation_figures(weights: Weights) -> dict:
    """The checkpoint's own validation figures (best.pt: the best epoch's, last.pt: the last epoch's) and
    what they were measured on."""
    train = weights.info.get("train", {})
    state = weights.info.get("state", {})
    best = state.get("summary", state.get("best_summary"))
    if not train or not best:
        return weights.info.get("metrics", {}).get("validation", {})
    where = {
        "preset": train.get("data", {}).get("preset"),
        "seed": train.get("val_seed"),
        "size": train.get("val_size"),
        "instances": "raw masks",
    }
    return {**best, "data": where}


def model_metadata(weights: Weights, extra: dict | None = None) -> dict:
    """The ``dislotrack`` metadata JSON of the contract (plus training provenance)."""
    m = weights.model
    meta = {
        "n_masks": m.n_masks,
        "mean": m.mean,
        "std": m.std,
        "threshold": 0.5,
        "input_multiple": INPUT_MULTIPLE,
        "architecture": "UnetPlusPlus",
        "encoder": m.encoder,
        "decoder_channels": list(m.decoder_channels),
        "model": m.to_dict(),
        "preset": weights.preset,
        "metrics": {"validation": validation_figures(weights)},
        "code_version": code_version(),
    }
    meta.update(extra or {})
    return meta


class HalfProbsModel(torch.nn.Module):
    """fp16 weights and activations behind float32 input/output, so the file contract is unchanged."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).half()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image.half())).float()


def _export_graph(net: torch.nn.Module, path: Path, half: bool = False) -> None:
    batch, height, width = (torch.export.Dim(n, min=1, max=8192) for n in ("batch", "height", "width"))
    example = torch.zeros(1, 1, 64, 64)
    wrapper = HalfProbsModel(net) if half else ProbsModel(net)
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            wrapper.eval(),
            (example,),
            str(path),
            input_names=["image"],
            output_names=["probs"],
            dynamic_shapes=({0: batch, 2: height, 3: width},),
            opset_version=18,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def parity(onnx_path: Path, net: torch.nn.Module, seed: int = 0) -> float:
    """Max |ONNX Runtime - torch| of the probabilities over random inputs of several shapes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = ProbsModel(net).eval()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for shape in PARITY_SHAPES:
        x = rng.normal(0.0, 1.0, shape).astype(np.float32)
        (ort_probs,) = session.run(["probs"], {"image": x})
        with torch.no_grad():
            torch_probs = model(torch.from_numpy(x)).numpy()
        if ort_probs.shape != torch_probs.shape:
            raise RuntimeError(f"ONNX output shape {ort_probs.shape} != torch {torch_probs.shape}")
        worst = max(worst, float(np.abs(ort_probs - torch_probs).max()))
    return worst


def _add_metadata(path: Path, meta: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_onnx(
    weights: Weights,
    out: str | Path,
    *,
    extra_meta: dict | None = None,
    tolerance: float = 1e-4,
    half: bool = False,
) -> float:
    """Write ``out`` (ONNX with metadata) only if onnxruntime matches torch; returns the max |Δ|.

    The reference is always the float32 torch model, also for ``half`` (fp16, for GPUs). A trace
    channel is cut off first (``Weights.masks_only``)."""
    out = Path(out)
    weights = weights.masks_only()
    net = weights.network()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        _export_graph(net, tmp_path, half)
        _add_metadata(tmp_path, model_metadata(weights, extra_meta))
        delta = parity(tmp_path, net)
        if not delta <= tolerance:
            raise RuntimeError(
                f"ONNX export differs from torch by {delta:.2e} > {tolerance:.0e}; not written"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(tmp_path.read_bytes())
    return delta


def save_safetensors(weights: Weights, out: str | Path, meta: dict) -> None:
    """Torch weights plus the metadata needed to rebuild the network, for fine-tuning and resuming."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in weights.state.items()}
    save_file(state, str(out), metadata={METADATA_KEY: json.dumps(meta)})


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def training_card(weights: Weights) -> dict:
    """Card fields that describe how the weights were trained (from the checkpoint)."""
    train = weights.info.get("train", {})
    state = weights.info.get("state", {})
    if not train:
        return {k: weights.info[k] for k in ("training",) if k in weights.info}
    data = train.get("data", {})
    steps = int(state.get("step", 0))
    crops = steps * int(train.get("batch_size", 0))
    # a fine-tune draws each crop from its labelled frames or, with this probability, a synthetic image
    labelled = train.get("labelled")
    share = float(data.get("synthetic_share", 0.0)) if labelled else 1.0
    return {
        "training": {
            "data": {
                "preset": data.get("preset"),
                "generated_size": data.get("gen_size"),
                "crop": data.get("crop"),
                "crops_per_image": data.get("crops_per_image"),
                "crops_seen": crops,
                "synthetic_images": round(share * crops / max(int(data.get("crops_per_image", 1)), 1)),
                "seed": data.get("seed"),
                "validation_seed": train.get("val_seed"),
                **({"synthetic_share": share} if labelled else {}),
                **distractor_band_record(data),
            },
            "epochs": int(state.get("epoch", 0)),
            "steps": steps,
            "batch_size": train.get("batch_size"),
            "loss": train.get("loss"),
            "lr": train.get("lr"),
            "bf16": train.get("bf16", False),
            **({"frozen_encoder": True} if train.get("freeze_encoder") else {}),
            "wall_time_s": round(float(state.get("wall_s", 0))),
            "hardware": state.get("hardware") or hardware(),
            **({"initialised_from": train["init"]} if train.get("init") else {}),
            **({"fine_tuned_on": labelled} if labelled else {}),
        }
    }


def distractor_band_record(data: dict) -> dict:
    """The distractor band's widths, when a loss term (``loss.BAND_TERMS``) read one."""
    from dislotrack.training.data import band_margin_px

    px = int(data.get("distractor_px") or 0)
    if px <= 0:
        return {}
    return {"distractor_px": px, "distractor_margin_px": band_margin_px(px, data.get("distractor_margin_px"))}


def weights_path(path: str | Path) -> Path:
    """The file ``load_weights`` reads for ``path`` (a run folder's best.pt, an .onnx file's .safetensors)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return path / "best.pt"
    return path.with_suffix(".safetensors") if path.suffix == ".onnx" else path


def init_record(path: str | Path, weights: Weights) -> dict:
    """Provenance of the weights a run starts from, kept in its config and the exported card."""
    file = weights_path(path)
    return {
        "file": file.name,
        "sha256": sha256_file(file),
        **training_card(weights),
    }


def ship(
    weights: Weights,
    models_dir: str | Path,
    name: str,
    *,
    default: bool = True,
    tolerance: float = 1e-4,
    fp16_tolerance: float | None = None,
) -> dict:
    """Write ``<name>.onnx``, ``<name>.safetensors`` and the ``<name>.json`` card; returns the card.

    With ``fp16_tolerance`` also ``<name>.fp16.onnx`` (GPU deployment), recorded in the card. All
    three hold the N-mask network only: a trace channel is cut off (the card's loss still says it
    was trained with one)."""
    weights = weights.masks_only()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = models_dir / f"{name}.onnx"
    delta = export_onnx(weights, onnx_path, tolerance=tolerance)
    meta = model_metadata(weights)
    train_card = training_card(weights)
    save_safetensors(weights, models_dir / f"{name}.safetensors", {**meta, **train_card})
    card_path = models_dir / f"{name}.json"
    card = {
        "name": name,
        **meta,
        **train_card,
        "sha256": sha256_file(onnx_path),
        "onnx_bytes": onnx_path.stat().st_size,
        "export_parity_max_abs": delta,
        "default": default,
    }
    if fp16_tolerance is not None:
        half_path = models_dir / f"{name}.fp16.onnx"
        half_delta = export_onnx(
            weights, half_path, tolerance=fp16_tolerance, half=True, extra_meta={"fp16": True}
        )
        card["fp16"] = {
            "file": half_path.name,
            "sha256": sha256_file(half_path),
            "parity_max_abs": half_delta,
        }
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    return card
