"""Compare the loss's greedy (paper) and optimal matchings on a trained model's predictions.

Prints, over held-out synthetic images: the mean matched Dice loss each matching finds, how often
they pick different pairs, and the time per matching. Usage:
    python scripts/eval_matching.py CHECKPOINT_OR_SAFETENSORS [--images 64] [--size 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dislotrack.runtime.synth import iter_samples
from dislotrack.training.export import load_weights
from dislotrack.training.loss import dice_loss_matrix, greedy_match, optimal_match
from dislotrack.training.train import predict_probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=999_999_937)
    args = parser.parse_args()
    torch.set_num_threads(1)
    weights = load_weights(args.weights)
    stream = iter_samples(seed=args.seed, size=(args.size, args.size))
    samples = [next(stream) for _ in range(args.images)]
    probs = list(predict_probs(weights.network(), [s.image for s in samples], weights.model))
    costs = {"greedy": [], "optimal": []}
    times = {"greedy": 0.0, "optimal": 0.0}
    differ = 0
    for s, p in zip(samples, probs, strict=True):
        if len(s.masks) == 0:
            continue
        cost = dice_loss_matrix(torch.from_numpy(p), torch.from_numpy(s.masks[: len(p)])).numpy()
        pairs = {}
        for name, fn in (("greedy", greedy_match), ("optimal", optimal_match)):
            t = time.perf_counter()
            rows, cols = fn(cost)
            times[name] += time.perf_counter() - t
            costs[name].append(float(cost[rows, cols].mean()))
            pairs[name] = set(zip(rows.tolist(), cols.tolist(), strict=True))
        differ += pairs["greedy"] != pairs["optimal"]
    n = len(costs["greedy"])
    for name in costs:
        print(f"{name:8s} mean matched Dice loss {np.mean(costs[name]):.4f}  "
              f"time per image {1e3 * times[name] / n:.3f} ms")
    print(f"images where the matchings differ: {differ}/{n}")


if __name__ == "__main__":
    main()
