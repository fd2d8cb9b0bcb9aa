"""Contact sheet of synthetic samples with coloured masks, optionally beside real frames (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from dislotrack.runtime.synth.dataset import read_png
from dislotrack.runtime.synth.generator import generate

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def colour_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB image (float, black background) with one distinct colour per label value."""
    rng = np.random.default_rng(seed)
    n = int(labels.max())
    hues = (np.arange(n) * 0.618034 + rng.random()) % 1.0
    import colorsys

    lut = np.zeros((n + 1, 3))
    for i, h in enumerate(hues):
        lut[i + 1] = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return lut[labels]


def real_frames(folder: str | Path, n: int) -> list[tuple[np.ndarray, np.ndarray | None, str]]:
    """Up to ``n`` frames spread over a folder, with instance labels from a sibling ``masks`` folder."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images in {folder}")
    pick = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(n, len(files)))]
    out = []
    for f in pick:
        img = read_png(f)
        lab = None
        mask_file = folder.parent / "masks" / f.name
        if mask_file.is_file():
            m = read_png(mask_file) > 0
            if m.shape == img.shape:
                lab = ndimage.label(m, structure=np.ones((3, 3)))[0].astype(np.int32)
        out.append((img, lab, f.name))
    return out


def make_sheet(
    out: str | Path,
    n: int = 8,
    seed: int = 0,
    size: Sequence[int] = (512, 512),
    presets: Sequence[str] = ("m1", "m2"),
    real: str | Path | None = None,
) -> Path:
    """Draw ``n`` samples of each preset (image | coloured masks), plus real frames when ``real`` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns: list[list[tuple[np.ndarray, np.ndarray | None, str]]] = []
    for preset in presets:
        col = []
        for i in range(n):
            s = generate(preset, seed=[seed, i], size=size)
            col.append((s.image, s.labels, f"{preset} seed [{seed}, {i}]: {len(s.lines)} lines"))
        columns.append(col)
    if real is not None:
        columns.append([(img, lab, f"real {name}") for img, lab, name in real_frames(real, n)])
    rows = max(len(c) for c in columns)
    ncol = 2 * len(columns)
    aspect = size[0] / size[1]
    fig, axes = plt.subplots(rows, ncol, figsize=(2.6 * ncol, 2.6 * aspect * rows + 0.4), squeeze=False)
    for c, col in enumerate(columns):
        for r in range(rows):
            ax_img, ax_lab = axes[r, 2 * c], axes[r, 2 * c + 1]
            for ax in (ax_img, ax_lab):
                ax.set_axis_off()
            if r >= len(col):
                continue
            img, lab, title = col[r]
            grey = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
            ax_img.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax_img.set_title(title, fontsize=6)
            if lab is not None:
                ax_lab.imshow(colour_labels(lab, seed=r), interpolation="nearest")
                ax_lab.set_title("masks", fontsize=6)
    fig.suptitle("dislotrack synthetic samples: image | one colour per dislocation mask", fontsize=9, y=0.999)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
