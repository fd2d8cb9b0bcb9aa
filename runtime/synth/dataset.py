"""Synthetic samples on disk: one sample's files, and a whole dataset written by worker processes.

Layout of a dataset folder (sample ``i`` is sample ``i`` of ``iter_samples(preset, seed)``)::

    dataset.json             preset, seed, size, n and the full config
    images/000000.png        grey image, uint8
    labels/000000.png        label image, uint8 (0 background, i + 1 on dislocation i; the stronger wins)
    masks/000000.npz         ``masks``: bool (n, H, W), overlaps kept; ``lines_k``: (M, 2) x, y points
    params/000000.json       everything `regenerate` needs
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dislotrack.runtime.synth.config import SynthConfig, load_preset
from dislotrack.runtime.synth.generator import SynthSample, check_seed, check_size, render, sample_seed

SUBDIRS = ("images", "labels", "masks", "params")


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, optimize=False, compress_level=3)


def read_png(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "I") else im)


def write_sample(sample: SynthSample, out_dir: str | Path, stem: str = "sample") -> dict[str, Path]:
    """Image PNG, label PNG, masks + lines NPZ and params JSON of one sample in ``out_dir``."""
    out = Path(out_dir)
    paths = {
        "image": out / "images" / f"{stem}.png",
        "labels": out / "labels" / f"{stem}.png",
        "masks": out / "masks" / f"{stem}.npz",
        "params": out / "params" / f"{stem}.json",
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    write_png(paths["image"], to_uint8(sample.image))
    write_png(paths["labels"], sample.labels)
    lines = {f"lines_{k}": pts for k, pts in enumerate(sample.lines)}
    np.savez_compressed(paths["masks"], masks=sample.masks, **lines)
    paths["params"].write_text(json.dumps(sample.params), encoding="utf-8")
    return paths


def read_sample(
    out_dir: str | Path, stem: str
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...], dict]:
    """(image uint8, masks bool (n, H, W), lines, params) of a sample written by `write_sample`."""
    out = Path(out_dir)
    image = read_png(out / "images" / f"{stem}.png")
    with np.load(out / "masks" / f"{stem}.npz") as z:
        masks = z["masks"]
        lines = tuple(z[f"lines_{k}"] for k in range(len(masks)))
    params = json.loads((out / "params" / f"{stem}.json").read_text(encoding="utf-8"))
    return image, masks, lines, params


def _write_one(index: int, config: dict[str, Any], seed: int, size: tuple[int, int], out: str) -> int:
    sample = render(SynthConfig.from_dict(config), sample_seed(seed, index), size)
    write_sample(sample, out, f"{index:06d}")
    return len(sample.lines)


def write_dataset(
    out_dir: str | Path,
    preset: str | Path | SynthConfig | dict = "m2",
    n: int = 100,
    seed: int = 0,
    size: int | Sequence[int] = (512, 512),
    workers: int = 1,
    progress: bool = False,
    start: int = 0,
    **overrides: Any,
) -> Path:
    """Write samples ``start .. start + n - 1`` of the stream ``(preset, seed)``; returns ``dataset.json``."""
    cfg = load_preset(preset)
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    shape = check_size(size)
    check_seed(seed)
    if n < 0 or start < 0:
        raise ValueError(f"invalid synth parameters: n and start must be >= 0, got n={n}, start={start}")
    if workers < 1:
        raise ValueError(f"invalid synth parameters: workers must be >= 1, got {workers}")
    out = Path(out_dir)
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    index = out / "dataset.json"
    index.write_text(
        json.dumps(
            {
                "format": "dislotrack-synth-dataset",
                "preset": cfg.name,
                "seed": seed,
                "size": list(shape),
                "start": start,
                "n": n,
                "sample_seed": "[seed, index]",
                "config": cfg.to_dict(),
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    job = partial(_write_one, config=cfg.to_dict(), seed=seed, size=shape, out=str(out))
    indices = range(start, start + n)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="img", desc=f"synth {cfg.name}")
    try:
        if workers == 1:
            for i in indices:
                job(i)
                if bar is not None:
                    bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(job, indices, chunksize=4):
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
    return index
