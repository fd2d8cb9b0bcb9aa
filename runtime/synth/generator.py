"""Still synthetic samples: `generate`, `regenerate`, `iter_samples` and the `SynthSample` record."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy

from dislotrack.runtime.synth.config import SynthConfig, load_preset
from dislotrack.runtime.synth.scene import (
    bend_field,
    distractor_axes,
    draw_distractors,
    draw_lines,
    finish,
    illumination,
    noise_fields,
    perlin_texture,
    resample,
    sample_background,
    sample_distractors,
    sample_pileups,
    sample_styles,
    spline,
    streams,
    support_points,
    traces,
    truth,
)

FORMAT = "dislotrack-synth"
VERSION = 3  # bumped whenever the same record would render differently


@dataclass(frozen=True)
class SynthSample:
    """One synthetic frame with its truth; ``params`` regenerates it bit for bit."""

    image: np.ndarray  # float32 (H, W) in [0, 1]
    masks: np.ndarray  # bool (n, H, W), one per dislocation, n <= 20
    labels: np.ndarray  # uint8 (H, W): 0 background, i + 1 on dislocation i
    lines: tuple[np.ndarray, ...]  # float (M, 2) x, y spline points of the visible part, same order as masks
    params: dict[str, Any]  # JSON-serialisable: preset, config, seed, size and the values drawn

    def to_json(self) -> str:
        return json.dumps(self.params)

    def distractor_axes(self) -> dict[str, np.ndarray]:
        """Bool (H, W) masks of where its slip traces, tangles and grain boundaries run."""
        return distractor_axes(self.params["sampled"]["distractors"], self.image.shape)


def check_size(size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from an int or a pair; both at least 16 px."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
        if any(float(v) != int(v) for v in size):
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"invalid synth parameters: size must be (H, W) integers, got {size!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"invalid synth parameters: size must be at least 16 x 16 px, got ({h}, {w})")
    return h, w


def check_seed(seed: Any) -> int | list[int]:
    """A non-negative int or a list of them (SeedSequence entropy)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"invalid synth parameters: seed must be >= 0, got {seed}")
        return int(seed)
    if (
        isinstance(seed, (list, tuple))
        and seed
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seed)
    ):
        return [int(s) for s in seed]
    raise ValueError(
        f"invalid synth parameters: seed must be a non-negative int or list of them, got {seed!r}"
    )


def labelme_shapes(cfg: SynthConfig) -> list[list[list[float]]] | None:
    if cfg.pileups.labelme_prob <= 0:
        return None
    from dislotrack.runtime.synth.labelme import load_shapes

    return load_shapes(cfg.pileups.labelme)


def texture(
    cfg: SynthConfig, v: dict[str, Any], shape: tuple[int, int], rngs: dict[str, np.random.Generator]
) -> np.ndarray:
    """Background texture before illumination, distractors and lines: Perlin or real patches."""
    if cfg.background.kind == "patches":
        from dislotrack.runtime.synth.patches import patch_texture

        return patch_texture(cfg.background, v, shape, rngs["patches"])
    return perlin_texture(v, shape, rngs["background"])


@lru_cache(maxsize=16)
def _config_json(cfg: SynthConfig) -> str:
    return json.dumps(cfg.to_dict())


def config_dict(cfg: SynthConfig) -> dict[str, Any]:
    """``cfg.to_dict()``, a fresh copy per call: the config of a stream is converted once, not per sample."""
    try:
        return json.loads(_config_json(cfg))
    except TypeError:  # a config holding an unhashable value: no cache
        return cfg.to_dict()


def render(cfg: SynthConfig, seed: int | list[int], size: tuple[int, int]) -> SynthSample:
    """The sample that ``cfg``, ``seed`` and ``size`` determine."""
    shape = check_size(size)
    seed = check_seed(seed)
    rngs = streams(seed)
    bgv = sample_background(cfg.background, rngs["background"])
    img = texture(cfg, bgv, shape, rngs)
    bend = bend_field(bgv, shape, rngs["background"])
    if bend is not None:
        img *= bend
    illum = illumination(bgv, shape)
    if illum is not None:
        img *= illum
    orients, pileups = sample_pileups(cfg, shape, rngs["geometry"], labelme_shapes(cfg))
    styles = sample_styles(cfg, pileups, rngs["style"], bgv["contrast"])
    distractors = sample_distractors(cfg, shape, orients, pileups, rngs["distractors"], styles)
    draw_distractors(img, distractors)
    curves = []
    for p, pu in enumerate(pileups):
        for j in range(len(pu["lines"])):
            curves.append(((p, j), spline(support_points(pu, j)), styles[p][j]))
    drawn = draw_lines(img, curves, cfg.pileups.min_visible_length, cfg.style)
    img = finish(img, noise_fields(bgv, shape, rngs["noise"]), bgv["s2"], rngs["noise"])
    masks, labels = truth(drawn, shape)
    lines = tuple(resample(d.points, 1.0) for d in drawn)
    trace_pairs = {}  # (trace A, trace B) as [x, y, dx, dy] lists, once per pile-up
    for p in sorted({d.key[0] for d in drawn}):
        (pa, ta), (pb, tb) = traces(pileups[p])
        trace_pairs[p] = ([*pa.tolist(), *ta.tolist()], [*pb.tolist(), *tb.tolist()])
    line_info = []
    for d in drawn:
        p, j = d.key
        line_info.append(
            {
                "pileup": p,
                "index": j,
                **styles[p][j],
                "trace_a": list(trace_pairs[p][0]),
                "trace_b": list(trace_pairs[p][1]),
            }
        )
    params = {
        "format": FORMAT,
        "version": VERSION,
        "preset": cfg.name,
        "seed": seed,
        "size": list(shape),
        "config": config_dict(cfg),
        "n_lines": len(drawn),
        "sampled": {
            "background": bgv,
            "orientations_deg": orients,
            "pileups": pileups,
            "distractors": distractors,
            "lines": line_info,
        },
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__},
    }
    return SynthSample(image=img, masks=masks, labels=labels, lines=lines, params=params)


def generate(
    preset: str | Path | SynthConfig | dict = "m2",
    seed: int | list[int] = 0,
    size: int | Sequence[int] = (512, 512),
    **overrides: Any,
) -> SynthSample:
    """A synthetic sample from a preset (name, TOML path, dict or config) and optional overrides."""
    cfg = load_preset(preset)
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    return render(cfg, seed, size)


def regenerate(params: dict[str, Any] | str | Path) -> SynthSample:
    """Bit-identical copy of the sample recorded in ``params`` (a dict or a path to its JSON file)."""
    if not isinstance(params, dict):
        path = Path(params)
        if not path.is_file():
            raise ValueError(f"invalid synth parameters: no such JSON file {path}")
        params = json.loads(path.read_text(encoding="utf-8"))
    if params.get("format") != FORMAT or "config" not in params:
        raise ValueError("invalid synth parameters: not a dislotrack-synth sample record")
    if params.get("version") != VERSION:
        raise ValueError(f"invalid synth parameters: record version {params.get('version')} != {VERSION}")
    return render(SynthConfig.from_dict(params["config"]), params["seed"], params["size"])


def sample_seed(seed: int, index: int) -> list[int]:
    """Seed of sample ``index`` of the stream ``seed`` (used by `iter_samples` and the dataset writer)."""
    return [int(seed), int(index)]


def iter_samples(
    preset: str | Path | SynthConfig | dict = "m2",
    seed: int = 0,
    size: int | Sequence[int] = (512, 512),
    start: int = 0,
    **overrides: Any,
) -> Iterator[SynthSample]:
    """Endless, deterministic stream of samples: sample i has seed ``[seed, i]`` (no files needed)."""
    cfg = load_preset(preset)
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    shape = check_size(size)
    check_seed(seed)
    for i in itertools.count(start):
        yield render(cfg, sample_seed(seed, i), shape)
