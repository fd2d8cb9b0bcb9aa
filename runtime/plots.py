"""``spacing.png``: spacing time series of the most persistent neighbour pairs (matplotlib, optional).

matplotlib is imported inside the function: the runtime works without it and then writes no figure.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_spacing(path: Path) -> dict[tuple[int, int], list[tuple[float, float]]]:
    """{(track_a, track_b): [(time or frame, spacing_px), ...]} from ``spacing.csv``."""
    series: dict[tuple[int, int], list[tuple[float, float]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            t = float(row["time_s"]) if row["time_s"] else math.nan
            x = t if math.isfinite(t) else float(row["frame"])
            series.setdefault((int(row["track_a"]), int(row["track_b"])), []).append(
                (x, float(row["spacing_px"]))
            )
    return series


def plot_spacing(csv_path: Path, png_path: Path, max_pairs: int = 12) -> None:
    """Plot the ``max_pairs`` pairs seen in most frames; raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_spacing(csv_path)
    top = sorted(series, key=lambda k: len(series[k]), reverse=True)[:max_pairs]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for key in sorted(top):
        xs, ys = zip(*series[key], strict=True)
        ax.plot(xs, ys, ".-", ms=2, lw=0.8, label=f"{key[0]}–{key[1]}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("spacing (px)")
    ax.set_title("Spacing of neighbouring dislocations")
    ax.legend(fontsize=7, ncol=2, title="tracks")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
