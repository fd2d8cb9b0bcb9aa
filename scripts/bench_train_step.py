"""Where a training step's time goes: network, matched loss, data loader (images per second of each).

A GPU lease is short, so the training that runs on it should be limited by the GPU and nothing else.
This times, in one run on one machine: the network's forward and backward alone; a full step with the
matched loss formed image by image (one host round trip per image, the loss before session 13) and
batched (one per batch); one loader worker making a batch in this process (times the workers give
the loader's capacity); full steps fed by the loader with its workers; and what handing one batch's
masks over from a worker costs, as booleans and bit-packed.

    python scripts/bench_train_step.py --device cuda --crop 512 --batch 16 --workers 7 --bf16 [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from dislotrack.training.data import DataConfig
from dislotrack.training.loss import LossConfig, image_loss, matched_dice_loss
from dislotrack.training.model import ModelConfig, build_model
from dislotrack.training.train import (
    SyntheticSamples,
    TrainConfig,
    _Batches,
    forward,
    on_device,
    resolve_device,
)


def per_image_loss(logits: torch.Tensor, truth: torch.Tensor, counts: torch.Tensor, config: LossConfig):
    probs = torch.sigmoid(logits)
    return torch.stack(
        [image_loss(probs[b], truth[b, : int(counts[b])], config) for b in range(probs.shape[0])]
    ).mean()


def timed(step: Callable[[], None], steps: int, sync: Callable[[], None]) -> list[float]:
    """Seconds of each of ``steps`` calls after two warm-up calls (one-off allocations, cuDNN's choice)."""
    for _ in range(2):
        step()
    sync()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return times


class _SameMasks(torch.utils.data.IterableDataset):
    """One batch's masks, handed over again and again: what crossing from a loader worker costs."""

    def __init__(self, masks: torch.Tensor) -> None:
        self.masks = masks

    def __iter__(self):
        while True:
            yield self.masks.clone()


def handover(masks: torch.Tensor, steps: int) -> float:
    """Median seconds for one loader worker to hand ``masks`` to this process."""
    batches = iter(torch.utils.data.DataLoader(_SameMasks(masks), batch_size=None, num_workers=1))
    return statistics.median(timed(lambda: next(batches), steps, lambda: None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--encoder", default="mobilenet_v2")
    ap.add_argument("--decoder-channels", default="128,64,32,16,16")
    ap.add_argument("--local-contrast", type=float, default=24.0)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--preset", default="m2,m2-tem")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--handover-only", action="store_true", help="time only the hand-over (no network)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    model = ModelConfig(
        encoder=args.encoder,
        decoder_channels=tuple(int(c) for c in args.decoder_channels.split(",")),
        local_contrast_px=args.local_contrast,
    )
    data = DataConfig(preset=args.preset, crop=(args.crop, args.crop))
    config = TrainConfig(model=model, data=data, batch_size=args.batch, bf16=args.bf16, workers=args.workers)
    net = build_model(model).to(device)
    if args.bf16:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    dataset = _Batches(SyntheticSamples(data), 12_345, args.batch, model.n_masks)
    loader = iter(
        torch.utils.data.DataLoader(
            dataset, batch_size=None, num_workers=args.workers, pin_memory=device.type == "cuda"
        )
    )
    one_worker = iter(dataset)  # the same work as a loader worker, in this process
    first = next(loader)
    packed = first[1]
    images, masks, counts, _ = on_device(first, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step_with(loss_fn, batch=None):
        def step() -> None:
            x, m, c, *_ = batch() if batch else (images, masks, counts)
            loss = loss_fn(forward(net, x, config), m, c)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()

        return step

    loss_config = LossConfig()
    batched_step = step_with(lambda y, m, c: matched_dice_loss(y, m, c, loss_config))

    def frozen_step() -> None:  # as ``--freeze-encoder``: no encoder gradients, its BN statistics fixed
        net.encoder.requires_grad_(False)
        net.encoder.eval()
        try:
            batched_step()
        finally:
            net.encoder.requires_grad_(True)
            net.encoder.train()

    stages = {
        "network only (forward, backward, optimiser)": step_with(lambda y, m, c: torch.sigmoid(y).mean()),
        "step, loss image by image": step_with(lambda y, m, c: per_image_loss(y, m, c, loss_config)),
        "step, batched loss": batched_step,
        "step, batched loss, encoder frozen": frozen_step,
        "one loader worker making a batch": lambda: next(one_worker),
        "step, batched loss, fed by the loader": step_with(
            lambda y, m, c: matched_dice_loss(y, m, c, loss_config), lambda: on_device(next(loader), device)
        ),
    }
    figures = {
        "device": str(device),
        "encoder": args.encoder,
        "crop": args.crop,
        "batch": args.batch,
        "workers": args.workers,
        "bf16": args.bf16,
    }
    print(
        f"{args.encoder} U-Net++, batch {args.batch} x {args.crop}², workers {args.workers}, "
        f"bf16 {args.bf16}, on {device}"
    )
    for name, step in () if args.handover_only else stages.items():
        torch.set_num_threads(args.threads)  # a loader worker sets 1 thread in the process it runs in
        times = timed(step, args.steps, sync)
        median = statistics.median(times)
        figures[name] = {"median_ms": round(1000 * median, 2), "images_per_s": round(args.batch / median, 1)}
        print(f"{name:45s} {1000 * median:9.1f} ms/step {args.batch / median:9.1f} images/s")
    for name, m in (("masks as booleans", masks.cpu()), ("masks packed eight to a byte", packed)):
        median = handover(m, args.steps)
        figures[f"hand-over, {name}"] = {"median_ms": round(1000 * median, 2), "megabytes": m.numel() / 1e6}
        print(f"hand-over from a worker, {name:28s} {1000 * median:9.1f} ms/batch ({m.numel() / 1e6:.1f} MB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
