"""Synthetic in-situ video: pile-ups gliding jerkily through a drifting, flickering field of view.

The specimen (background texture, slip traces, boundaries, dots) is rendered once on a canvas larger
than the frame; every frame crops it at the current stage drift, applies the fixed illumination and a
brightness flicker, draws the dislocations at their current positions and adds fresh sensor noise.
Truth per frame: a label image (value = track id) and 50 equally spaced points per visible line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dislotrack.runtime.geometry import equally_spaced
from dislotrack.runtime.results import N_POINTS
from dislotrack.runtime.synth.config import SynthConfig, load_preset
from dislotrack.runtime.synth.generator import check_seed, check_size, labelme_shapes, texture
from dislotrack.runtime.synth.scene import (
    bend_field,
    draw_distractors,
    draw_lines,
    finish,
    illumination,
    noise_fields,
    sample_background,
    sample_distractors,
    sample_pileups,
    sample_styles,
    spline,
    streams,
    support_points,
    truth,
)


@dataclass(frozen=True)
class VideoConfig:
    """A synthetic video: scene preset plus motion, drift, flicker and encoding settings."""

    preset: str = "m1"  # scene preset (slip traces, line style, background)
    seed: int = 0
    size: tuple[int, int] = (512, 512)  # (H, W), both even (MPEG-4)
    n_frames: int = 100
    fps: float = 22.0
    pileups: tuple[int, int] = (
        3,
        3,
    )  # pile-ups (with enter_leave: one enters, one leaves, one stays in view)
    lines: tuple[int, int] = (5, 6)  # dislocations per pile-up (at most 20 in all)
    spacing: tuple[float, float] = (12.0, 30.0)  # spacing at the head of a pile-up (px)
    glide_speed: float = 2.0  # px per frame while a pile-up moves
    pin_prob: float = 0.08  # per frame: a moving pile-up gets pinned
    depin_prob: float = 0.2  # per frame: a pinned pile-up breaks free
    line_pin_prob: float = 0.1  # per frame: one dislocation gets pinned on its own
    line_depin_prob: float = 0.3
    spacing_change: float = 0.3  # relative amplitude of the slow compression/expansion of a pile-up
    relax: float = 0.15  # how fast spacings relax towards the current equilibrium (per frame)
    enter_leave: bool = True  # dislocations glide into and out of the field of view
    drift: float = 0.08  # stage drift speed (px per frame)
    flicker: float = 0.03  # relative brightness flicker (std per frame)
    noise: float = 1.0  # scale of the preset's per-frame noise weight
    qscale: int = 2  # MPEG-4 quantiser (2 = best, 31 = worst)
    overrides: dict[str, Any] = field(default_factory=dict)  # further preset overrides

    def __post_init__(self) -> None:
        problems = []
        h, w = check_size(self.size)
        object.__setattr__(self, "size", (h, w))
        object.__setattr__(self, "pileups", tuple(int(v) for v in self.pileups))
        object.__setattr__(self, "lines", tuple(int(v) for v in self.lines))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        check_seed(self.seed)
        if h % 2 or w % 2:
            problems.append(f"size must be even for MPEG-4, got ({h}, {w})")
        if self.n_frames < 1:
            problems.append(f"n_frames must be >= 1, got {self.n_frames}")
        if not self.fps > 0:
            problems.append(f"fps must be > 0, got {self.fps}")
        for name in ("pileups", "lines", "spacing"):
            lo, hi = getattr(self, name)
            if lo > hi:
                problems.append(f"{name} is an empty range [{lo}, {hi}]")
            if lo < (0.5 if name == "spacing" else 1):
                problems.append(f"{name} must be positive, got [{lo}, {hi}]")
        for name in ("glide_speed", "drift", "flicker", "noise", "spacing_change"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("pin_prob", "depin_prob", "line_pin_prob", "line_depin_prob", "relax"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.qscale <= 31:
            problems.append(f"qscale must be in [1, 31], got {self.qscale}")
        if problems:
            raise ValueError("invalid synth parameters (video): " + "; ".join(problems))
        self.scene_config()  # validates preset and overrides

    def scene_config(self) -> SynthConfig:
        ov = {"n": self.pileups, "lines": self.lines, "spacing": self.spacing, "min_separation": 0.4}
        ov.update(self.overrides)
        return load_preset(self.preset).with_overrides(**ov)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"invalid synth parameters (video): unknown parameter(s) {', '.join(unknown)}")
        data = dict(data)
        for k in ("size", "pileups", "lines", "spacing"):
            if k in data:
                data[k] = tuple(data[k])
        return cls(**data)


def clean_pileup(**changes: Any) -> VideoConfig:
    """One pile-up that stays in view, gliding jerkily with changing spacings, little drift and noise.

    The tracker's acceptance test: every track lives from the first to the last frame.
    """
    base = {
        "preset": "m1",
        "pileups": (1, 1),
        "lines": (6, 6),
        "spacing": (18.0, 24.0),
        "enter_leave": False,
        "drift": 0.03,
        "flicker": 0.01,
        "noise": 0.5,
        "overrides": {
            "pair_prob": 0.0,
            "thickness": (2.0, 3.0),
            "darkness": (0.45, 0.6),
            "extra_traces": (0, 2),
            "dots": (0, 5),
            "boundaries": (0, 0),
            "margin": 0.3,
            "slip_width": (90.0, 140.0),
            "bow": (0.1, 0.35),
        },
    }
    base.update(changes)
    return VideoConfig(**base)


@dataclass(frozen=True)
class VideoFrameTruth:
    """One frame of a synthetic video and what is in it."""

    index: int
    time_s: float
    image: np.ndarray  # uint8 (H, W)
    labels: np.ndarray  # uint8 (H, W): 0 background, track id on the pixels of that dislocation
    lines: dict[int, np.ndarray]  # track id -> (50, 2) float x, y, equally spaced along the visible line


@dataclass(frozen=True)
class VideoPaths:
    video: Path
    truth_lines: Path
    truth_labels: Path
    params: Path


def _visible_interval(
    pu: dict[str, Any], j: int, shape: tuple[int, int], margin: float, whole: bool = True
) -> tuple[float, float]:
    """Positions along the traces at which line j is wholly (or, ``whole=False``, partly) in the frame."""
    h, w = shape
    reach = math.hypot(h, w)
    s = np.arange(-reach, reach, 1.0)
    a = math.radians(pu["angle_deg"])
    t = np.array([math.cos(a), math.sin(a)])
    inside = []
    for p in spline(support_points(pu, j, position=0.0), step=4.0):
        q = p[None, :] + s[:, None] * t[None, :]
        inside.append(
            (q[:, 0] >= margin)
            & (q[:, 0] <= w - 1 - margin)
            & (q[:, 1] >= margin)
            & (q[:, 1] <= h - 1 - margin)
        )
    ok = np.all(inside, axis=0) if whole else np.any(inside, axis=0)
    if not ok.any():
        return (0.0, 0.0)
    return float(s[ok].min()), float(s[ok].max())


def _motion(
    cfg: VideoConfig, pu: dict[str, Any], shape: tuple[int, int], rng: np.random.Generator, role: str
) -> np.ndarray:
    """Positions (T, k) along the traces: jerky glide, slowly changing spacings, no overtaking.

    ``role``: "enter" glides in across the edge of the view, "leave" glides out, "stay" stays in view.
    """
    T = cfg.n_frames
    pos0 = np.asarray(pu["positions"], dtype=np.float64)
    k = len(pos0)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    # Work in "forward" coordinates where the head (index 0) has the largest position.
    gaps = np.abs(np.diff(pos0))  # index 0 is the head of the pile-up
    gaps = np.maximum(gaps, 1.0)
    moving = np.zeros(T, dtype=bool)
    state = True
    for t in range(T):
        moving[t] = state
        state = (rng.random() >= cfg.pin_prob) if state else (rng.random() < cfg.depin_prob)
    own = np.ones((T, k), dtype=bool)
    st = np.ones(k, dtype=bool)
    for t in range(T):
        own[t] = st
        flip = rng.random(k)
        st = np.where(st, flip >= cfg.line_pin_prob, flip < cfg.line_depin_prob)
    speed = cfg.glide_speed * np.clip(1.0 + 0.35 * rng.standard_normal((T, k)), 0.0, None)
    vel = speed * moving[:, None] * own
    phase = float(rng.uniform(0, 2 * np.pi))
    cycles = float(rng.uniform(0.5, 1.5))
    factor = 1.0 + cfg.spacing_change * np.sin(2 * np.pi * cycles * np.arange(T) / max(T, 1) + phase)
    travel = float(vel[:, 0].sum())
    extent = float(gaps.sum() * (1.0 + cfg.spacing_change))
    # Where is the head at the start? Lines must fit the view (clean) or stream through it (enter/leave).
    whole = role == "stay"
    lo, hi = _visible_interval(pu, 0, shape, 2.0, whole)
    if k > 1:
        lo_b, hi_b = _visible_interval(pu, k - 1, shape, 2.0, whole)
        lo, hi = max(lo, lo_b), min(hi, hi_b)
    if direction < 0:
        lo, hi = -hi, -lo
    if role == "enter":
        # The pile-up straddles the edge it glides in from: its tail starts outside and enters.
        head0 = lo + 0.5 * extent / (1.0 + cfg.spacing_change) + 5.0
    elif role == "leave":
        # The head starts in view near the far edge and leaves about 30 % into the glide.
        head0 = hi - max(0.3 * travel, 5.0)
    else:
        room = (hi - lo) - extent
        if room < travel:  # slow down so the whole pile-up stays in view
            vel *= max(room, 0.0) / max(travel, 1e-9)
            travel = max(room, 0.0)
        head0 = 0.5 * (lo + extent + hi - travel)
    pos = np.empty((T, k))
    cur = head0 - np.concatenate([[0.0], np.cumsum(gaps)])
    for t in range(T):
        if t:
            target = np.empty(k)
            target[0] = cur[0] + vel[t, 0]
            nxt = cur + vel[t]
            nxt[0] = target[0]
            for j in range(1, k):
                eq = nxt[j - 1] - gaps[j - 1] * factor[t]
                nxt[j] = nxt[j] + cfg.relax * (eq - nxt[j])
                nxt[j] = min(nxt[j], nxt[j - 1] - 1.0)  # never overtake; 1 px is a touching pair
            cur = nxt
        pos[t] = cur
    return direction * pos


def _drift(cfg: VideoConfig, rng: np.random.Generator) -> np.ndarray:
    """Stage drift (T, 2) in px: a slow walk with a persistent direction that wanders."""
    T = cfg.n_frames
    ang = float(rng.uniform(0, 2 * np.pi)) + np.cumsum(rng.normal(0.0, 0.05, T))
    step = cfg.drift * np.column_stack([np.cos(ang), np.sin(ang)])
    out = np.cumsum(step, axis=0)
    return out - out[0]


def _crop(canvas: np.ndarray, pad: int, shift: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Frame at sub-pixel stage position ``shift`` (x, y): bilinear crop of the specimen canvas."""
    h, w = shape
    x = pad - shift[0]
    y = pad - shift[1]
    ix, iy = math.floor(x), math.floor(y)
    fx, fy = np.float32(x - ix), np.float32(y - iy)
    a = canvas[iy : iy + h + 1, ix : ix + w + 1]
    top = a[:-1, :-1] * (1 - fx) + a[:-1, 1:] * fx
    bot = a[1:, :-1] * (1 - fx) + a[1:, 1:] * fx
    return top * (1 - fy) + bot * fy


def iter_video(config: VideoConfig) -> Iterator[VideoFrameTruth]:
    """Frames of the synthetic video with their truth, deterministic for a given config."""
    cfg = config
    scene = cfg.scene_config()
    shape = cfg.size
    h, w = shape
    rngs = streams(check_seed(cfg.seed))
    motion_rng = rngs["motion"]
    pad = math.ceil(cfg.drift * cfg.n_frames) + 2
    big = (h + 2 * pad, w + 2 * pad)
    bgv = sample_background(scene.background, rngs["background"])
    canvas = texture(scene, bgv, big, rngs)
    bend = bend_field(bgv, big, rngs["background"])
    if bend is not None:
        canvas *= bend
    orients, pileups = sample_pileups(scene, shape, rngs["geometry"], labelme_shapes(scene))
    styles = sample_styles(scene, pileups, rngs["style"], bgv["contrast"])
    distractors = sample_distractors(scene, shape, orients, pileups, rngs["distractors"], styles)
    draw_distractors(canvas, distractors, offset=(pad, pad))
    illum = illumination(bgv, shape)
    weight = noise_fields(bgv, shape, rngs["noise"]) * np.float32(cfg.noise)
    roles = ("enter", "leave", "stay") if cfg.enter_leave else ("stay",)
    positions = [_motion(cfg, pu, shape, motion_rng, roles[p % len(roles)]) for p, pu in enumerate(pileups)]
    drift = _drift(cfg, motion_rng)
    flicker = 1.0 + cfg.flicker * motion_rng.standard_normal(cfg.n_frames)
    ids = {}
    for p, pu in enumerate(pileups):
        for j in range(len(pu["lines"])):
            ids[(p, j)] = len(ids) + 1
    for t in range(cfg.n_frames):
        img = _crop(canvas, pad, drift[t], shape)
        if illum is not None:
            img *= illum
        img *= np.float32(flicker[t])
        curves = []
        for p, pu in enumerate(pileups):
            for j in range(len(pu["lines"])):
                sup = support_points(pu, j, position=float(positions[p][t, j]), offset=drift[t])
                curves.append(((p, j), spline(sup), styles[p][j]))
        drawn = draw_lines(img, curves, scene.pileups.min_visible_length, scene.style)
        img = finish(img, weight, bgv["s2"], rngs["noise"])
        _, labels_idx = truth(drawn, shape)
        labels = np.zeros(shape, dtype=np.uint8)
        lines = {}
        for i, d in enumerate(drawn):
            tid = ids[d.key]
            labels[labels_idx == i + 1] = tid
            lines[tid] = equally_spaced(d.points, N_POINTS)
        image = np.round(img * 255.0).astype(np.uint8)
        yield VideoFrameTruth(index=t, time_s=t / cfg.fps, image=image, labels=labels, lines=lines)


def write_video(config: VideoConfig, out_dir: str | Path, progress: bool = False) -> VideoPaths:
    """Write ``video.mp4`` (MPEG-4, PyAV), ``truth_lines.csv``, ``truth_labels.npz`` and ``video.json``."""
    import av

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = VideoPaths(
        video=out / "video.mp4",
        truth_lines=out / "truth_lines.csv",
        truth_labels=out / "truth_labels.npz",
        params=out / "video.json",
    )
    h, w = config.size
    labels = np.zeros((config.n_frames, h, w), dtype=np.uint8)
    times = np.zeros(config.n_frames)
    frames: Iterator[VideoFrameTruth] = iter_video(config)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=config.n_frames, unit="frame", desc="video")
    from fractions import Fraction

    rate = Fraction(config.fps).limit_denominator(1000)
    with av.open(str(paths.video), mode="w") as container, paths.truth_lines.open("w", newline="") as fh:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.qscale = config.qscale
        writer = csv.writer(fh)
        writer.writerow(["frame", "time_s", "track_id", "point", "x", "y"])
        for fr in frames:
            vf = av.VideoFrame.from_ndarray(fr.image, format="gray").reformat(format="yuv420p")
            vf.pts = fr.index
            vf.time_base = 1 / rate
            for packet in stream.encode(vf):
                container.mux(packet)
            labels[fr.index] = fr.labels
            times[fr.index] = fr.time_s
            for tid in sorted(fr.lines):
                for k, (x, y) in enumerate(fr.lines[tid]):
                    writer.writerow([fr.index, f"{fr.time_s:.6f}", tid, k, f"{x:.3f}", f"{y:.3f}"])
        for packet in stream.encode():
            container.mux(packet)
    np.savez_compressed(paths.truth_labels, labels=labels, time_s=times)
    paths.params.write_text(
        json.dumps({"format": "dislotrack-synth-video", "version": 1, "config": config.to_dict()}, indent=1)
    )
    return paths


def read_truth_lines(path: str | Path) -> dict[int, dict[int, np.ndarray]]:
    """``truth_lines.csv`` as {frame: {track_id: (50, 2) array}}."""
    out: dict[int, dict[int, list]] = {}
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(int(row["frame"]), {}).setdefault(int(row["track_id"]), []).append(
                (float(row["x"]), float(row["y"]))
            )
    return {f: {t: np.asarray(v) for t, v in d.items()} for f, d in out.items()}
