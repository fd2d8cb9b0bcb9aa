"""Backgrounds from real, dislocation-free patches: two random patches superimposed with a random opacity.

Each patch is scaled, flipped, rotated by a multiple of 90 degrees and cropped at random; patches smaller
than the image are mirrored outwards to cover it. The project ships no patches: the user points
``background.patch_dir`` at a folder of grey images (PNG/TIFF/JPEG).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from dislotrack.runtime.synth.config import BackgroundConfig

SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def patch_files(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"invalid synth parameters: background.patch_dir {root} is not a folder")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise ValueError(f"invalid synth parameters: no patch images ({', '.join(SUFFIXES)}) in {root}")
    return files


@lru_cache(maxsize=64)
def _load(path: str, mtime: float) -> np.ndarray:
    """Grey float32 in [0, 1] (cached; ``mtime`` invalidates the cache when the file changes)."""
    import tifffile
    from PIL import Image

    if path.lower().endswith((".tif", ".tiff")):
        a = np.asarray(tifffile.imread(path))
    else:
        with Image.open(path) as im:
            a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    a = a.astype(np.float32)
    top = 255.0 if a.max() <= 255 else 65535.0
    out = a / np.float32(top)
    out.flags.writeable = False
    return out


def _one_patch(path: Path, shape: tuple[int, int], cfg: BackgroundConfig, rng: np.random.Generator) -> tuple:
    img = _load(str(path), path.stat().st_mtime)
    scale = (
        float(rng.uniform(*cfg.patch_scale))
        if cfg.patch_scale[1] > cfg.patch_scale[0]
        else cfg.patch_scale[0]
    )
    rot = int(rng.integers(4))
    flip = bool(rng.random() < 0.5)
    if abs(scale - 1.0) > 1e-6:
        img = ndimage.zoom(img, scale, order=1, mode="mirror")
    img = np.rot90(img, rot)
    if flip:
        img = img[:, ::-1]
    h, w = shape
    ph, pw = img.shape
    if ph < h or pw < w:
        img = np.pad(img, ((0, max(h - ph, 0)), (0, max(w - pw, 0))), mode="symmetric")
        ph, pw = img.shape
    y0 = int(rng.integers(ph - h + 1))
    x0 = int(rng.integers(pw - w + 1))
    crop = np.ascontiguousarray(img[y0 : y0 + h, x0 : x0 + w], dtype=np.float32)
    return crop, {"file": path.name, "scale": scale, "rot90": rot, "flip": flip, "crop_xy": [x0, y0]}


def patch_texture(
    cfg: BackgroundConfig, v: dict[str, Any], shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Blend of two random patches; what was chosen is added to ``v`` (the recorded background values)."""
    files = patch_files(cfg.patch_dir)
    picks = [files[int(i)] for i in rng.integers(len(files), size=2)]
    a, info_a = _one_patch(picks[0], shape, cfg, rng)
    b, info_b = _one_patch(picks[1], shape, cfg, rng)
    lo, hi = cfg.patch_opacity
    alpha = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    v["patches"] = [info_a, info_b]
    v["patch_opacity"] = alpha
    out = a * np.float32(1.0 - alpha)
    out += b * np.float32(alpha)
    return out
