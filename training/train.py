"""The training loop: streamed samples, matched Dice loss, per-epoch validation, resumable checkpoints.

An "epoch" is a fixed number of steps on an endless stream (synthetic data never runs out). After each
epoch the model is scored on a fixed validation set with the length metric; the best checkpoint by that
metric is kept beside the last one, and a CSV row plus a PNG plot record the curve.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dislotrack.training.data import DataConfig, Sample, collate, collate_avoid, training_samples
from dislotrack.training.loss import BAND_TERMS, LossConfig, matched_dice_loss
from dislotrack.training.metrics import MetricConfig, Summary, binarise, score_masks, summarise
from dislotrack.training.model import ModelConfig, build_model, load_matching

log = logging.getLogger(__name__)

HISTORY_FIELDS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_length_metric",
    "val_lar",
    "val_instance_recall",
    "val_centreline_recall",
    "val_centreline_precision",
    "val_traces_marked",
    "wall_s",
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``max_minutes`` stops cleanly after the epoch that crosses it.

    ``bf16``: bfloat16 autocast with channels-last tensors for the training steps (validation stays
    float32); about 1.5-2x faster on CPUs with AMX/AVX512-BF16, slower on CPUs without them, and the
    usual choice on GPUs. ``device``: ``auto`` trains on CUDA when torch sees a GPU, else on the CPU.
    ``val_lines``: score validation images through the runtime's lines (threshold, split, join), as
    ``dislotrack evaluate`` does, instead of the raw output channels (the papers' protocol), with
    ``val_iou_tolerance_px`` as its IoU tolerance. ``freeze_encoder``: train the decoder and head
    only, the encoder's weights and normalisation statistics kept as they were (fine-tuning on a few
    frames: less to overfit, no encoder gradients)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    epochs: int = 20
    steps_per_epoch: int = 200
    val_images: int = 32
    val_seed: int = 999_999_937
    val_size: tuple[int, int] = (256, 256)
    val_lines: bool = False
    val_iou_tolerance_px: int = 0
    threads: int = 2
    bf16: bool = False
    workers: int = 1
    max_minutes: float = 0.0
    device: str = "auto"
    freeze_encoder: bool = False
    out_dir: str = "runs/train"
    init: dict | None = None  # the weights training started from (file, sha256, their training), if any
    init_partial: bool = False  # start from the init weights that fit the network, the rest as built
    labelled: dict | None = None  # the real frames a fine-tune trains on (folder, names, lines), if any

    def __post_init__(self) -> None:
        if self.needs_band and self.data.distractor_px <= 0:
            terms = [f"loss.{n}" for n in BAND_TERMS if getattr(self.loss, n) > 0]
            raise ValueError(f"{' and '.join(terms)} > 0 needs data.distractor_px > 0 (the pixels it reads)")
        if self.model.trace_channel != (self.loss.trace_weight > 0):
            raise ValueError(
                "model.trace_channel and loss.trace_weight > 0 go together (the channel and its loss)"
            )

    @property
    def needs_band(self) -> bool:
        """Whether the loss reads the samples' distractor pixels."""
        return any(getattr(self.loss, n) > 0 for n in BAND_TERMS)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        from dislotrack.training.data import AugmentConfig

        data = dict(d.get("data", {}))
        augment = dict(data.get("augment", {}))
        if augment and "blur_prob" not in augment:  # saved before blur existed: that run had none
            augment["blur_prob"] = 0.0
        data["augment"] = AugmentConfig(**{k: _tuple(v) for k, v in augment.items()})
        data = DataConfig(**{k: _tuple(v) for k, v in data.items()})
        top = {k: _tuple(v) for k, v in d.items() if k not in ("model", "loss", "data")}
        return cls(
            model=ModelConfig.from_dict(d.get("model", {})),
            loss=LossConfig(**d.get("loss", {})),
            data=data,
            **top,
        )


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


class _Batches(torch.utils.data.IterableDataset):
    """Collated batches from a sample factory, run in a DataLoader worker so generation overlaps compute.

    ``make_samples(seed)`` must be picklable and return an endless iterator of prepared samples; each
    worker gets its own seed so workers never produce the same stream.
    """

    def __init__(
        self, make_samples: Callable[[int], Iterator[Sample]], seed: int, batch_size: int, n_masks: int
    ) -> None:
        self.make_samples = make_samples
        self.seed = seed
        self.batch_size = batch_size
        self.n_masks = n_masks

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        torch.set_num_threads(1)
        samples = self.make_samples(self.seed + 7919 * worker)
        while True:
            batch = [next(samples) for _ in range(self.batch_size)]
            images, masks, counts = collate(batch, self.n_masks)
            out = (
                torch.from_numpy(images),
                torch.from_numpy(np.packbits(masks, axis=-1)),
                torch.from_numpy(counts),
            )
            avoid = collate_avoid(batch)
            yield out if avoid is None else (*out, torch.from_numpy(np.packbits(avoid, axis=-1)))


def unpack_masks(packed: torch.Tensor, width: int) -> torch.Tensor:
    """Boolean masks (..., H, ``width``) from the bits ``np.packbits(masks, axis=-1)`` stored.

    Batches carry their masks packed eight to a byte: at 16 × 20 × 512² a batch's masks are 84 MB as
    booleans, and they cross from the loader process to the trainer and then to the GPU every step.
    """
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2)[..., :width].bool()


def on_device(batch: tuple[torch.Tensor, ...], device: torch.device):
    """A loader batch (images, packed masks, counts[, packed distractor pixels]) as the step uses it:
    images, unpacked masks and distractor pixels on ``device`` (None when the batch carries none),
    counts where they are (the matching reads them on the host)."""
    images, packed, counts, *avoid = batch
    images = images.to(device, non_blocking=True)
    width = images.shape[-1]
    masks = unpack_masks(packed.to(device, non_blocking=True), width)
    return (
        images,
        masks,
        counts,
        (unpack_masks(avoid[0].to(device, non_blocking=True), width) if avoid else None),
    )


@dataclass
class SyntheticSamples:
    """Picklable factory of augmented synthetic crops for ``_Batches``."""

    data: DataConfig

    def __call__(self, seed: int) -> Iterator[Sample]:
        from dislotrack.training.data import synthetic_images

        return training_samples(synthetic_images(self.data, seed), self.data, seed)


def validation_set(config: TrainConfig) -> list[tuple]:
    """Fixed held-out synthetic images (seed never used for training), uncropped, unaugmented, each
    with where its distractors run (so validation also says how much of the slip traces is marked)."""
    from dislotrack.runtime.synth import iter_samples
    from dislotrack.training.data import presets

    stream = iter_samples(preset=presets(config.data)[0], seed=config.val_seed, size=config.val_size)
    out = []
    for _ in range(config.val_images):
        s = next(stream)
        out.append(
            (s.image.astype(np.float32), s.masks.astype(bool)[: config.model.n_masks], s.distractor_axes())
        )
    return out


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r} (auto, cpu or cuda)")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch sees no CUDA GPU")
    return torch.device(name)


def hardware(device: torch.device | None = None) -> str:
    """GPU name when training on CUDA; CPU model and core count (Linux ``/proc/cpuinfo`` when
    readable) and torch's thread count."""
    name = cpuinfo_value("model name") or platform.processor() or platform.machine()
    cpu = f"{name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); {cpu}"
    return cpu


def cpuinfo_value(key: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first ``key`` entry of Linux's ``/proc/cpuinfo``; None where it is absent or unreadable."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key) and ":" in ln), None)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether the CPU computes bfloat16 in hardware (AMX-BF16 or AVX512-BF16); None where
    ``/proc/cpuinfo`` gives no flags. Without it bf16 autocast is emulated and slower than float32
    (a 2-core Xeon with plain AVX512: 3.0 s per fine-tuning step against 1.6 s)."""
    flags = cpuinfo_value("flags", cpuinfo)
    if flags is None:
        return None
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    """Short hash of a validation set, to notice when a resumed run validates on different images."""
    import hashlib

    h = hashlib.sha256()
    for image, masks, *_ in samples:
        h.update(np.ascontiguousarray(image).tobytes())
        h.update(np.packbits(masks).tobytes())
    return h.hexdigest()[:16]


def lr_at(step: int, config: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up then cosine decay to 5 % over the planned steps or, with ``max_minutes``, over
    that time if it runs out first (so a time-limited run still ends on a decayed learning rate)."""
    total = max(config.epochs * config.steps_per_epoch, 1)
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = min((step - config.warmup_steps) / max(total - config.warmup_steps, 1), 1.0)
    if config.max_minutes:
        t = max(t, min(elapsed_s / (60.0 * config.max_minutes), 1.0))
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t)))


@torch.no_grad()
def predict_probs(
    net: torch.nn.Module,
    images: Sequence[np.ndarray],
    model: ModelConfig,
    batch_size: int = 4,
    all_outputs: bool = False,
) -> Iterator[np.ndarray]:
    """(N, H, W) mask probabilities per image (sizes must be multiples of 32), in evaluation mode, on
    the network's device; ``all_outputs`` keeps the trace channel too, when there is one."""
    net.eval()
    device = next(net.parameters()).device
    keep = model.outputs if all_outputs else model.n_masks
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.stack(images[i : i + batch_size])[:, None].astype(np.float32)).to(device)
        probs = torch.sigmoid(net((x - model.mean) / model.std)[:, :keep]).float().cpu().numpy()
        yield from probs


@torch.no_grad()
def validate(
    net: torch.nn.Module, samples: Sequence[tuple], config: TrainConfig, metric: MetricConfig | None = None
) -> tuple[float, Summary]:
    """Mean matched-Dice loss and the metric summary on a fixed validation set: (image, masks) samples,
    or (image, masks, distractor axes) for synthetic ones (``validation_set``)."""
    from dislotrack.training.data import distractor_band
    from dislotrack.training.evaluate import runtime_masks

    metric = metric or MetricConfig(iou_tolerance_px=config.val_iou_tolerance_px)
    losses, scores = [], []
    images = [sample[0] for sample in samples]
    outputs = predict_probs(net, images, config.model, all_outputs=True)
    for out, (_, masks, *axes) in zip(outputs, samples, strict=True):
        truth = torch.from_numpy(masks[None])
        logits = torch.logit(torch.from_numpy(out[None]).clamp(1e-6, 1 - 1e-6))
        probs = out[: config.model.n_masks]
        avoid = None
        if config.needs_band:
            band = distractor_band(axes[0], masks, config.data) if axes else np.zeros(masks.shape[1:], bool)
            avoid = torch.from_numpy(band[None])
        losses.append(float(matched_dice_loss(logits, truth, torch.tensor([len(masks)]), config.loss, avoid)))
        if config.val_lines:
            pred = runtime_masks(probs, metric.threshold)
        else:
            pred = binarise(probs, metric.threshold)
        scores.append(score_masks(masks, pred, metric, axes[0] if axes else None))
    return float(np.mean(losses)), summarise(scores)


def forward(net: torch.nn.Module, images: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Float32 logits of a training batch, computed in bfloat16 when ``config.bf16``."""
    x = (images - config.model.mean) / config.model.std
    if not config.bf16:
        return net(x)
    with torch.autocast(images.device.type, dtype=torch.bfloat16):
        return net(x.contiguous(memory_format=torch.channels_last)).float()


def save_checkpoint(path: Path, net, optimizer, state: dict, config: TrainConfig) -> None:
    """Write atomically, so a run killed mid-save never leaves a broken ``last.pt``."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": state,
            "config": config.to_dict(),
        },
        tmp,
    )
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def append_history(path: Path, row: dict) -> None:
    """One row per epoch; a history written with other columns (an older version, resumed) is
    rewritten with today's first, its missing fields left empty."""
    if path.exists():
        with path.open(newline="") as f:
            header = tuple(next(csv.reader(f), ()))
            old = None if header == HISTORY_FIELDS else list(csv.DictReader(f, fieldnames=header))
        if old is not None:
            _write_history(path, old, "w")
    _write_history(path, [row], "a" if path.exists() else "w")


def _write_history(path: Path, rows: list[dict], mode: str) -> None:
    with path.open(mode, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        if mode == "w":
            writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in HISTORY_FIELDS} for r in rows)


def plot_history(csv_path: Path, png_path: Path) -> None:
    """Loss (train, validation) and validation metrics against epoch, for the run folder and the docs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epoch = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for key in ("train_loss", "val_loss"):
        ax1.plot(epoch, [float(r[key]) for r in rows], label=key)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("matched Dice loss")
    ax1.legend()
    for key in (
        "val_length_metric",
        "val_lar",
        "val_instance_recall",
        "val_centreline_recall",
        "val_traces_marked",
    ):
        values = [float(r[key]) if r.get(key) else float("nan") for r in rows]
        ax2.plot(epoch, values, label=key.removeprefix("val_"))
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, mininterval=5.0, dynamic_ncols=True)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    init_weights: dict | None = None,
    make_samples: Callable[[int], Iterator[Sample]] | None = None,
    val_samples: Sequence[Sample] | None = None,
) -> Path:
    """Run (or resume) training; returns the run folder holding ``best.pt``, ``last.pt``, CSV and PNG.

    ``make_samples`` replaces the synthetic stream (fine-tuning on real frames); ``val_samples``
    replaces the synthetic validation set; ``init_weights`` starts from a trained state dict.
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.data.seed)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
    net = build_model(config.model).to(device)
    if config.bf16 and device.type == "cpu" and cpu_has_native_bf16() is False:
        log.warning("--bf16 on a CPU without AMX-BF16 or AVX512-BF16: emulated, slower than float32")
    if config.bf16:
        net = net.to(memory_format=torch.channels_last)
    if init_weights is not None and config.init_partial:
        loaded = load_matching(net, init_weights)
        log.info("init weights resized: %s; started as built: %s", loaded.resized, loaded.fresh)
        config = replace(config, init={**(config.init or {}), **asdict(loaded)})
    elif init_weights is not None:
        net.load_state_dict(init_weights)
    if config.freeze_encoder:
        net.encoder.requires_grad_(False)
    trained = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    state = {"epoch": 0, "step": 0, "best": -1.0, "wall_s": 0.0}
    if resume:
        ckpt = load_checkpoint(out / "last.pt")
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        log.info("resumed %s at epoch %d step %d", out, state["epoch"], state["step"])
    state.setdefault("hardware", hardware(device))
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    val_samples = validation_set(config) if val_samples is None else val_samples
    fingerprint = samples_fingerprint(val_samples)
    if state.get("val_fingerprint") != fingerprint:
        # A different validation set (new generator version, other preset) makes old scores incomparable.
        state.update(best=-1.0, val_fingerprint=fingerprint)
    factory = make_samples or SyntheticSamples(config.data)
    # A resumed run continues the stream from a new seed instead of replaying the first images.
    dataset = _Batches(
        factory, config.data.seed + 104_729 * state["step"], config.batch_size, config.model.n_masks
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
    )
    batches = iter(loader)
    started = time.perf_counter() - state["wall_s"]
    while state["epoch"] < config.epochs:
        net.train()
        if config.freeze_encoder:
            net.encoder.eval()
        losses = []
        bar = _progress(config.steps_per_epoch, f"epoch {state['epoch'] + 1}/{config.epochs}")
        for _ in range(config.steps_per_epoch):
            images, masks, counts, avoid = on_device(next(batches), device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state["step"], config, time.perf_counter() - started)
            loss = matched_dice_loss(forward(net, images, config), masks, counts, config.loss, avoid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            state["step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        bar.close()
        val_loss, summary = validate(net, val_samples, config)
        state["epoch"] += 1
        state["wall_s"] = time.perf_counter() - started
        row = _history_row(state, optimizer, float(np.mean(losses)), val_loss, summary)
        append_history(out / "history.csv", row)
        plot_history(out / "history.csv", out / "history.png")
        log.info("epoch %d: %s", state["epoch"], json.dumps(row))
        state["summary"] = summary.to_dict()  # this epoch's figures: the ones that describe these weights
        improved = summary.length_metric > state["best"]
        if improved:
            state["best"] = summary.length_metric
            state["best_summary"] = summary.to_dict()
            save_checkpoint(out / "best.pt", net, optimizer, state, config)
        save_checkpoint(out / "last.pt", net, optimizer, state, config)
        if config.max_minutes and state["wall_s"] > 60 * config.max_minutes:
            log.warning(
                "stopping after epoch %d: time limit of %.0f min reached", state["epoch"], config.max_minutes
            )
            break
    return out


def _history_row(state: dict, optimizer, train_loss: float, val_loss: float, summary: Summary) -> dict:
    return {
        "epoch": state["epoch"],
        "step": state["step"],
        "lr": f"{optimizer.param_groups[0]['lr']:.3g}",
        "train_loss": f"{train_loss:.4f}",
        "val_loss": f"{val_loss:.4f}",
        "val_length_metric": f"{summary.length_metric:.4f}",
        "val_lar": f"{summary.lar:.4f}",
        "val_instance_recall": f"{summary.instance_recall:.4f}",
        "val_centreline_recall": f"{summary.centreline_recall:.4f}",
        "val_centreline_precision": f"{summary.centreline_precision:.4f}",
        "val_traces_marked": _share(summary.distractors_marked.get("slip_traces")),
        "wall_s": f"{state['wall_s']:.0f}",
    }


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def with_out_dir(config: TrainConfig, out_dir: str | Path) -> TrainConfig:
    return replace(config, out_dir=str(out_dir))
