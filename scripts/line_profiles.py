"""How dislocations look across the line: labelled real frames against a synthetic preset.

The model learns only from the generator, so the generator's lines must look like real ones. This
script measures, for every labelled line, the grey profile across it (perpendicular to its spline,
re-centred on the darkest point within 3 px because hand labels wander) and prints quartiles of:

- width: full width at half depth of the line's mean profile (px);
- depth: darkening at the core as a fraction of the grey level beside the line (the generator's
  ``darkness``);
- cnr: core depth over the frame's pixel noise (robust std of the image minus its 1.5 px blur);
- local: core depth over the grey spread in a 24 px Gaussian window (what ``--local-contrast 24``
  hands the network).

Usage:

    python scripts/line_profiles.py --images DIR --masks DIR [--preset m2 --synthetic 60]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dislotrack.runtime.inference import max_value
from dislotrack.runtime.lines import fit_lines, skeleton_path
from dislotrack.training.evaluate import Labelled, load_mask_folder, synthetic_labelled

OFFSETS = np.arange(-12.0, 12.5, 0.5)  # positions across the line (px)
CORE_PX = 3.0  # search the darkest point within this distance of the labelled centre
BESIDE_PX = (5.0, 8.0)  # "beside the line": far enough from the core, closer than a pile-up neighbour
LOCAL_SIGMA = 24.0


@dataclass(frozen=True)
class Profile:
    width_px: float
    depth: float
    cnr: float
    local: float


def frame_noise(image: np.ndarray) -> float:
    """Robust std of the fine-scale residual: the pixel noise, mostly free of lines and background."""
    residual = image - ndimage.gaussian_filter(image, 1.5)
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def local_spread(image: np.ndarray, sigma: float) -> np.ndarray:
    mean = ndimage.gaussian_filter(image, sigma)
    return np.sqrt(np.maximum(ndimage.gaussian_filter(image * image, sigma) - mean * mean, 1e-12))


def fwhm(profile: np.ndarray, offsets: np.ndarray, background: float) -> float:
    """Width where the mean profile is darker than half way from the background to its core."""
    centre = int(np.argmin(np.abs(offsets)))
    half = background - (background - profile[centre]) / 2
    below = profile <= half
    if not below[centre]:
        return float("nan")
    left = right = centre
    while left > 0 and below[left - 1]:
        left -= 1
    while right < len(profile) - 1 and below[right + 1]:
        right += 1
    return float((right - left + 1) * (offsets[1] - offsets[0]))


def line_profiles(frame: Labelled) -> list[Profile]:
    image = np.asarray(frame.image)
    image = image.astype(np.float64) / max_value(image.dtype)  # the runtime's full scale
    if image.ndim == 3:
        image = image.mean(axis=2)
    noise, spread = frame_noise(image), local_spread(image, LOCAL_SIGMA)
    out = []
    for mask in frame.masks:
        path = skeleton_path(mask)
        if len(path) < 12:
            continue
        pts, _, _ = fit_lines([path[:, ::-1].astype(np.float64)], 50)[0]
        tangent = np.gradient(pts, axis=0)
        tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)[5:45]
        centre = pts[5:45]
        xy = centre[:, None, :] + OFFSETS[None, :, None] * normal[:, None, :]
        prof = ndimage.map_coordinates(image, [xy[..., 1], xy[..., 0]], order=1, mode="nearest")
        near = np.abs(OFFSETS) <= CORE_PX
        shift = np.flatnonzero(near)[np.argmin(prof[:, near], axis=1)] - np.argmin(np.abs(OFFSETS))
        span = int(np.max(np.abs(shift)))
        aligned = np.stack([np.roll(p, -s) for p, s in zip(prof, shift, strict=True)])[
            :, span : len(OFFSETS) - span
        ]
        offsets = OFFSETS[span : len(OFFSETS) - span]
        beside = (np.abs(offsets) >= BESIDE_PX[0]) & (np.abs(offsets) <= BESIDE_PX[1])
        mean = aligned.mean(axis=0)
        background = float(np.median(mean[beside]))
        core = float(mean[np.argmin(np.abs(offsets))])
        depth = background - core
        at = np.round(centre).astype(int)
        at[:, 0] = np.clip(at[:, 0], 0, image.shape[1] - 1)
        at[:, 1] = np.clip(at[:, 1], 0, image.shape[0] - 1)
        local = float(np.median(spread[at[:, 1], at[:, 0]]))
        out.append(
            Profile(
                fwhm(mean, offsets, background), depth / max(background, 1e-6), depth / noise, depth / local
            )
        )
    return out


def summary(name: str, profiles: Iterable[Profile]) -> str:
    rows = list(profiles)
    parts = [f"{name}: {len(rows)} lines"]
    for field in ("width_px", "depth", "cnr", "local"):
        v = np.array([getattr(p, field) for p in rows], dtype=float)
        v = v[np.isfinite(v)]
        q = np.percentile(v, [25, 50, 75]) if v.size else [np.nan] * 3
        parts.append(f"  {field:9s} quartiles {q[0]:7.3f} {q[1]:7.3f} {q[2]:7.3f}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", help="labelled frames (as for dislotrack evaluate)")
    ap.add_argument("--masks", help="their line masks, same file stems")
    ap.add_argument("--preset", default="m2")
    ap.add_argument("--synthetic", type=int, default=60, help="synthetic images to measure (0: none)")
    ap.add_argument("--seed", type=int, default=424242)
    ap.add_argument("--size", type=int, nargs=2, default=(362, 700), metavar=("H", "W"))
    args = ap.parse_args(argv)
    if args.images and args.masks:
        from pathlib import Path

        real = [p for f in load_mask_folder(Path(args.images), Path(args.masks)) for p in line_profiles(f)]
        print(summary(f"labelled frames {args.images}", real))
    if args.synthetic:
        frames = synthetic_labelled(args.synthetic, args.preset, args.seed, tuple(args.size))
        print(
            summary(
                f"synthetic {args.preset} (seed {args.seed})", (p for f in frames for p in line_profiles(f))
            )
        )


if __name__ == "__main__":
    main()
