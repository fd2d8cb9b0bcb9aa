"""Seconds per training step of candidate CPU encoders (U-Net++, 20 masks, 4 x 256² crops).

Prints the best and median of a few steps per configuration, fp32 and bf16 autocast, so the ratios
come from one run on one machine. Usage: python scripts/train_bench_encoders.py [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from dislotrack.training.model import ModelConfig, build_model

CANDIDATES = (
    ModelConfig(encoder="mobilenet_v2", decoder_channels=(256, 128, 64, 32, 16)),
    ModelConfig(encoder="mobilenet_v2"),
    ModelConfig(encoder="efficientnet-b0"),
    ModelConfig(encoder="resnet18"),
)


def step_times(config: ModelConfig, steps: int, bf16: bool) -> list[float]:
    net = build_model(config)
    x = torch.randn(4, 1, 256, 256)
    if bf16:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = net(x)
        loss = torch.sigmoid(y.float()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times[1:]  # the first step pays one-off allocation costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for config in CANDIDATES:
        params = sum(p.numel() for p in build_model(config).parameters()) / 1e6
        for bf16 in (False, True):
            t = sorted(step_times(config, args.steps, bf16))
            decoder = ",".join(map(str, config.decoder_channels))
            print(f"{config.encoder:16s} decoder {decoder:18s} {params:5.1f} M params  "
                  f"{'bf16' if bf16 else 'fp32'}  best {t[0]:.2f} s  median {t[len(t) // 2]:.2f} s/step")


if __name__ == "__main__":
    main()
