"""Scene sampling and rendering shared by still images and videos.

A scene is plain data (JSON-ready dicts of concrete values drawn from a `SynthConfig`): background values,
pile-ups with their slip traces and dislocation shapes, line styles and distractors. `render_scene` turns
a scene plus the random background fields into an image, masks and labels; the video generator renders
the same scene with moving dislocation positions.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dislotrack.runtime.synth.config import BackgroundConfig, DistractorConfig, LineStyleConfig, SynthConfig
from dislotrack.runtime.synth.perlin import perlin
from dislotrack.runtime.synth.render import (
    LineRaster,
    band_pixels,
    blur,
    draw_bands,
    draw_curves,
    draw_spot,
    polyline_length,
    rasterize_line,
    resample,
)

STREAMS = ("background", "geometry", "style", "distractors", "noise", "patches", "motion")


def streams(seed: int | list[int]) -> dict[str, np.random.Generator]:
    """One independent generator per part of the sample, spawned from the recorded seed."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(ch) for name, ch in zip(STREAMS, children, strict=True)}


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _clip(v: float, r: tuple[float, float]) -> float:
    return min(max(v, r[0]), r[1])


def _i(rng: np.random.Generator, r: tuple[int, int]) -> int:
    return int(rng.integers(r[0], r[1] + 1)) if r[1] > r[0] else int(r[0])


# ---------------------------------------------------------------------------------------------- background


def sample_background(cfg: BackgroundConfig, rng: np.random.Generator) -> dict[str, Any]:
    v = {
        k: _u(rng, getattr(cfg, k))
        for k in (
            "lam1",
            "lam2",
            "wp",
            "ww",
            "s1",
            "lam4",
            "noise_weight",
            "s2",
            "level",
            "contrast",
            "gradient",
            "vignette",
        )
    }
    v["gradient_angle"] = float(rng.uniform(0.0, 2.0 * np.pi))
    v["vignette_center"] = [float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))]
    v["bend"] = _u(rng, cfg.bend)
    v["bend_lam"] = _u(rng, cfg.bend_lam)
    return v


def bend_field(v: dict[str, Any], shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray | None:
    """Broad bend contours of the foil: 1 + bend * P5 with P5 a coarse Perlin field scaled to [-1, 1]."""
    if v["bend"] <= 0:
        return None
    p5 = perlin(shape, v["bend_lam"], rng)
    p5 *= np.float32(v["bend"] / max(_abs_max(p5), 1e-6))
    p5 += np.float32(1.0)
    return p5


def perlin_texture(v: dict[str, Any], shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Govind et al. up to the first filter: P3 = P1 + wp P2 in [0, 1], + ww X1, Gaussian s1; then tone.

    The scaling of P3 to [0, 1] and the tone (mean grey ``level``, texture ``contrast``: an addition to the
    paper) are linear, so they are folded into the noise amplitude and one multiply-add after the filter.
    """
    p3 = perlin(shape, v["lam1"], rng)
    p2 = perlin(shape, v["lam2"], rng)
    p2 *= np.float32(v["wp"])
    p3 += p2
    lo, hi = float(p3.min()), float(p3.max())
    k = 1.0 / max(hi - lo, 1e-6)  # P3 scaled = k * (p3 - lo)
    p3 += white_noise(shape, v["ww"] / k, rng)
    out = blur(p3, v["s1"]) if v["s1"] > 0 else p3
    # tone: level + contrast * (k * (out - lo) - 0.5)
    out *= np.float32(v["contrast"] * k)
    out += np.float32(v["level"] - v["contrast"] * (0.5 + k * lo))
    return out


def white_noise(shape: tuple[int, int], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform white noise in [-amplitude, amplitude] (float32), drawn as bytes: 256 levels, 3x faster.

    The bytes are the raw 64-bit outputs of the generator, eight at a time, little-endian: for the
    streams here the bytes ``rng.integers(0, 256, shape, dtype=np.uint8)`` gives (it splits the same
    outputs into 32-bit halves, low byte first), at a third of its cost.
    """
    n = math.prod(shape)
    raw = rng.bit_generator.random_raw(-(-n // 8))
    if sys.byteorder != "little":
        raw = raw.byteswap()
    u = raw.view(np.uint8)[:n].reshape(shape)
    out = np.multiply(u, np.float32(2.0 * amplitude / 255.0), dtype=np.float32)
    out -= np.float32(amplitude)
    return out


def illumination(v: dict[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
    """Large-scale brightness: a linear ramp times a vignette with dark corners (None when flat).

    Both factors are sums of a row and a column term, so each costs one broadcast pass over the image.
    """
    h, w = shape
    if v["gradient"] <= 0 and v["vignette"] <= 0:
        return None
    diag = math.hypot(h, w)
    xs = (np.arange(w, dtype=np.float64) - w / 2) / diag
    ys = (np.arange(h, dtype=np.float64) - h / 2) / diag
    a = v["gradient_angle"]
    g = v["gradient"]
    field = np.add.outer(
        (1.0 + g * math.sin(a) * ys).astype(np.float32), (g * math.cos(a) * xs).astype(np.float32)
    )
    if v["vignette"] > 0:
        cx, cy = v["vignette_center"]
        dx = (np.arange(w, dtype=np.float64) - cx * w) / diag
        dy = (np.arange(h, dtype=np.float64) - cy * h) / diag
        k = 2.0 * v["vignette"]
        field *= np.add.outer((1.0 - k * dy * dy).astype(np.float32), (-k * dx * dx).astype(np.float32))
    return field


def _abs_max(a: np.ndarray) -> float:
    """max |a| without an |a| temporary the size of the image."""
    return max(float(a.max()), -float(a.min()))


def noise_fields(v: dict[str, Any], shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Spatial weight of the second noise: noise_weight * contrast * sigma(P4), sigma the logistic function.

    The factor ``contrast`` (the tone of the texture) keeps the noise in proportion to the texture, as if
    the tone were applied after the paper's whole procedure.
    """
    p4 = perlin(shape, v["lam4"], rng)
    p4 *= np.float32(-4.0 / max(_abs_max(p4), 1e-6))
    np.exp(p4, out=p4)
    p4 += np.float32(1.0)
    return np.divide(np.float32(v["noise_weight"] * v["contrast"]), p4, out=p4)


def finish(img: np.ndarray, weight: np.ndarray, s2: float, rng: np.random.Generator) -> np.ndarray:
    """+ sigma(P4) X2 (X2 uniform in [-1, 1]), Gaussian s2, clip to [0, 1]."""
    img_noisy = white_noise(img.shape, 1.0, rng)
    img_noisy *= weight
    img_noisy += img
    img = blur(img_noisy, s2) if s2 > 0 else img_noisy
    np.clip(img, 0.0, 1.0, out=img)
    return img


# ---------------------------------------------------------------------------------------------- geometry


def sample_pileups(
    cfg: SynthConfig,
    shape: tuple[int, int],
    rng: np.random.Generator,
    shapes: list[list[list[float]]] | None = None,
) -> tuple[list[float], list[dict[str, Any]]]:
    """Orientations of the image's slip systems and the concrete pile-ups (at most ``max_lines`` lines)."""
    pc = cfg.pileups
    h, w = shape
    n_or = _i(rng, pc.orientations)
    orients = [_u(rng, pc.inclination_deg) for _ in range(n_or)]
    n_p = _i(rng, pc.n)
    budget = cfg.max_lines
    pileups = []
    for p in range(n_p):
        if budget <= 0:
            break
        k = min(_i(rng, pc.lines), budget)
        budget -= k
        angle = orients[p % n_or] if p < n_or else orients[int(rng.integers(n_or))]
        width = _u(rng, pc.slip_width)
        m = pc.margin
        center = [float(rng.uniform(m * w, (1 - m) * w)), float(rng.uniform(m * h, (1 - m) * h))]
        sep = pc.min_separation * min(h, w)
        for _ in range(30):  # keep pile-ups apart when asked (videos: distinct groups to follow)
            if sep <= 0 or all(math.dist(center, q["center"]) >= sep for q in pileups):
                break
            center = [float(rng.uniform(m * w, (1 - m) * w)), float(rng.uniform(m * h, (1 - m) * h))]
        bow = _u(rng, pc.bow) * (1.0 if rng.random() < 0.5 else -1.0)
        n_sup = _i(rng, pc.support_points)
        shape_uv = None
        if shapes and rng.random() < pc.labelme_prob:
            shape_uv = shapes[int(rng.integers(len(shapes)))]
            n_sup = max(len(shape_uv) - 2, 0)
        # Spacings from the head of the pile-up backwards: small at the head, growing behind it.
        head = _u(rng, pc.spacing)
        growth = _u(rng, pc.spacing_growth)
        jit = _u(rng, pc.spacing_jitter)
        spacings = []
        for j in range(k - 1):
            s = head * growth**j * (1.0 + jit * float(rng.uniform(-1, 1)))
            if rng.random() < pc.pair_prob:
                s = _u(rng, pc.pair_spacing)
            spacings.append(float(max(s, pc.pair_spacing[0])))
        pos = np.concatenate([[0.0], np.cumsum(spacings)])
        direction = 1.0 if rng.random() < 0.5 else -1.0
        pos = direction * (pos - pos.mean()) + float(rng.uniform(-0.15, 0.15)) * min(h, w)
        # Interior support points about evenly spread along the chord, so the spline cannot zigzag.
        sup_u = (np.arange(1, n_sup + 1) + rng.uniform(-0.25, 0.25, size=n_sup)) / (n_sup + 1)
        sup_u = None if shape_uv is not None else sup_u
        noise = _u(rng, pc.point_noise) * width
        lines = []
        for _j in range(k):
            lines.append(
                {
                    "bow": float(bow + _u(rng, pc.bow_jitter) * float(rng.uniform(-1, 1))),
                    "noise": [float(x) for x in rng.normal(0.0, noise, size=n_sup)] if n_sup else [],
                }
            )
        pileups.append(
            {
                "angle_deg": angle,
                "slip_width": width,
                "center": center,
                "line_angle_deg": _u(rng, pc.line_angle_deg),
                "asymmetry": _u(rng, pc.asymmetry),
                "support_u": None if sup_u is None else [float(x) for x in sup_u],
                "shape_uv": shape_uv,
                "positions": [float(x) for x in pos],
                "lines": lines,
            }
        )
    return orients, pileups


def trace_frame(pu: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, unit trace direction t and unit normal n of a pile-up's slip traces."""
    a = math.radians(pu["angle_deg"])
    t = np.array([math.cos(a), math.sin(a)])
    n = np.array([-t[1], t[0]])
    return np.asarray(pu["center"], dtype=np.float64), t, n


def traces(
    pu: dict[str, Any], shift: float = 0.0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The two slip traces as (point, unit direction); ``shift`` moves them along their normal (drift)."""
    c, t, n = trace_frame(pu)
    half = pu["slip_width"] / 2.0
    return (c - half * n, t), (c + half * n, t)


def support_points(
    pu: dict[str, Any], j: int, position: float | None = None, offset: np.ndarray | None = None
) -> np.ndarray:
    """Support points (x, y) of dislocation j: first on trace A, last on trace B."""
    c, t, n = trace_frame(pu)
    if offset is not None:
        c = c + offset
    d = pu["slip_width"]
    s = pu["positions"][j] if position is None else position
    tilt = d * math.tan(math.radians(pu["line_angle_deg"]))
    a = c - d / 2 * n + (s - tilt / 2) * t
    b = c + d / 2 * n + (s + tilt / 2) * t
    line = pu["lines"][j]
    chord = b - a
    if pu.get("shape_uv"):
        uv = np.asarray(pu["shape_uv"], dtype=np.float64)
        cn = np.array([-chord[1], chord[0]])
        pts = a[None] + uv[:, :1] * chord[None] + uv[:, 1:2] * cn[None]
        if len(line["noise"]) and len(pts) > 2:
            pts[1:-1] += np.asarray(line["noise"])[:, None] * (cn / max(np.hypot(*cn), 1e-9))[None]
        return pts
    u = np.concatenate([[0.0], pu["support_u"], [1.0]])
    bowshape = 4.0 * u * (1.0 - u) * (1.0 + pu["asymmetry"] * (2.0 * u - 1.0))
    pts = a[None] + u[:, None] * chord[None] + (line["bow"] * d * bowshape)[:, None] * t[None]
    if len(line["noise"]):
        cn = np.array([-chord[1], chord[0]]) / max(float(np.hypot(*chord)), 1e-9)
        pts[1:-1] += np.asarray(line["noise"])[:, None] * cn[None]
    return pts


def spline(support: np.ndarray, step: float = 0.5) -> np.ndarray:
    """Cubic spline through the support points (chord-length parameter), sampled about every ``step`` px."""
    d = support[1:] - support[:-1]
    seg = np.hypot(d[:, 0], d[:, 1])
    if not np.all(seg > 1e-6):
        support = support[np.concatenate([[True], seg > 1e-6])]
        d = support[1:] - support[:-1]
        seg = np.hypot(d[:, 0], d[:, 1])
    if len(support) < 3:
        return resample(support, step) if len(support) > 1 else support
    tau = np.zeros(len(support))
    np.cumsum(seg, out=tau[1:])
    n = max(math.ceil(1.3 * tau[-1] / 2.0), 8)  # every ~2 px: chords then deviate < 0.05 px from the curve
    u = np.arange(n) * (tau[-1] / (n - 1))
    u[-1] = tau[-1]
    dense = natural_cubic(tau, support, u)
    return resample(dense, step)


def _tridiagonal(diag: np.ndarray, off: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the symmetric tridiagonal system (Thomas algorithm) on Python floats: for the handful of
    unknowns of a spline a dense solver's call overhead is far larger than the arithmetic."""
    d = diag.tolist()
    o = off.tolist()
    r = rhs.tolist()
    for i in range(1, len(d)):
        f = o[i - 1] / d[i - 1]
        d[i] -= f * o[i - 1]
        r[i] = [a - f * b for a, b in zip(r[i], r[i - 1], strict=True)]
    x = [[v / d[-1] for v in r[-1]]]
    for i in range(len(d) - 2, -1, -1):
        x.append([(a - o[i] * b) / d[i] for a, b in zip(r[i], x[-1], strict=True)])
    return np.array(x[::-1])


def natural_cubic(x: np.ndarray, y: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Natural cubic spline through (x, y) (y may have several columns) evaluated at u.

    Same curve as ``scipy.interpolate.CubicSpline(x, y, bc_type="natural")`` without its per-call overhead,
    which dominated for the few support points of a dislocation: one small solve for the second
    derivatives, then each segment's polynomial by Horner's rule.
    """
    n = len(x)
    h = x[1:] - x[:-1]
    slope = (y[1:] - y[:-1]) / h[:, None]
    m = np.zeros_like(y, dtype=np.float64)
    if n > 2:
        m[1:-1] = _tridiagonal(2.0 * (h[:-1] + h[1:]), h[1:-1], 6.0 * (slope[1:] - slope[:-1]))
    # y_k + t (b_k + t (c_k + t d_k)) on segment k, t = u - x_k
    coef = np.empty((n - 1, 4, *y.shape[1:]))
    coef[:, 0] = y[:-1]
    coef[:, 1] = slope - h[:, None] * (2.0 * m[:-1] + m[1:]) / 6.0
    coef[:, 2] = 0.5 * m[:-1]
    coef[:, 3] = (m[1:] - m[:-1]) / (6.0 * h[:, None])
    k = np.searchsorted(x, u, side="right")
    k -= 1
    np.minimum(k, n - 2, out=k)
    np.maximum(k, 0, out=k)
    c = coef[k]
    t = (u - x[k])[:, None]
    out = c[:, 3] * t
    out += c[:, 2]
    out *= t
    out += c[:, 1]
    out *= t
    out += c[:, 0]
    return out


def clip_to_view(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """Longest part of a polyline inside [0, W-1] x [0, H-1], cut exactly at the border."""
    h, w = shape
    lo = np.array([0.0, 0.0])
    hi = np.array([w - 1.0, h - 1.0])
    if np.all(points.min(axis=0) >= lo) and np.all(points.max(axis=0) <= hi):
        return points
    inside = np.all((points >= lo) & (points <= hi), axis=1)
    if not inside.any():
        return None
    idx = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
    starts, ends = idx[0::2], idx[1::2]
    k = int(np.argmax(ends - starts))
    s, e = int(starts[k]), int(ends[k])  # inside run points[s:e]
    run = [points[s:e]]

    def cross(p_in: np.ndarray, p_out: np.ndarray) -> np.ndarray:
        d = p_out - p_in
        tmax = 1.0
        for ax in range(2):
            if d[ax] > 0:
                tmax = min(tmax, (hi[ax] - p_in[ax]) / d[ax])
            elif d[ax] < 0:
                tmax = min(tmax, (lo[ax] - p_in[ax]) / d[ax])
        return np.clip(p_in + tmax * d, lo, hi)

    if s > 0:
        run.insert(0, cross(points[s], points[s - 1])[None])
    if e < len(points):
        run.append(cross(points[e - 1], points[e])[None])
    return np.concatenate(run)


# ---------------------------------------------------------------------------------------------- style


def sample_styles(
    cfg: SynthConfig, pileups: list[dict[str, Any]], rng: np.random.Generator, texture_contrast: float = 0.0
) -> list[list[dict]]:
    """Thickness, darkness, fringe and darkness modulation per dislocation, similar within a pile-up.

    Darkness is at least ``darkness_floor * texture_contrast``, so a line stays visible on a busy texture.
    An out-of-focus pile-up (chance ``defocus_prob``; real foils are not flat, so part of a frame is
    often blurred) draws wide, soft lines whose darkness and floor are scaled by ``defocus_darkness``.
    The extra draw happens only when ``defocus_prob`` > 0, so presets without it are unchanged.
    """
    st = cfg.style
    out = []
    for pu in pileups:
        u = float(rng.random())
        base_t = st.thickness[0] + (st.thickness[1] - st.thickness[0]) * u**st.thickness_power
        base_d = _u(rng, st.darkness)
        base_f = _u(rng, st.fringe)
        var = _u(rng, st.darkness_variation)
        js = st.pileup_style_jitter
        widths, fade = st.thickness, 1.0
        if st.defocus_prob > 0 and rng.random() < st.defocus_prob:
            widths, fade = st.defocus_thickness, _u(rng, st.defocus_darkness)
            base_t = _u(rng, widths)
        lines = []
        for _ in pu["lines"]:
            th = _clip(base_t * (1 + js * rng.uniform(-1, 1)), widths)
            dk = _clip(base_d * (1 + js * rng.uniform(-1, 1)), st.darkness)
            dk = fade * max(dk, st.darkness_floor * texture_contrast)
            fr = _clip(base_f * (1 + js * rng.uniform(-1, 1)), st.fringe)
            mod = np.maximum(1.0 + var * rng.uniform(-1, 1, size=6), 0.2)
            lines.append(
                {"thickness": th, "darkness": dk, "fringe": fr, "modulation": [float(m) for m in mod]}
            )
        out.append(lines)
    return out


# ---------------------------------------------------------------------------------------------- distractors


def sample_distractors(
    cfg: SynthConfig,
    shape: tuple[int, int],
    orients: list[float],
    pileups: list[dict[str, Any]],
    rng: np.random.Generator,
    styles: list[list[dict]] | None = None,
) -> dict[str, Any]:
    """Slip traces, boundaries, dots, tangles and bands; ``styles`` (from `sample_styles`) are needed
    only when traces are drawn like their pile-up's lines (``trace_match_prob`` > 0)."""
    dc = cfg.distractors
    h, w = shape
    tr = []
    own: dict[int, list[int]] = {}

    def trace_style() -> dict[str, Any]:
        sign = -1.0 if rng.random() < 0.6 else 1.0
        double = rng.random() < dc.trace_double_prob
        return {
            "contrast": sign * _u(rng, dc.trace_contrast),
            "width": _u(rng, dc.trace_width),
            "gap": _u(rng, dc.trace_double_gap) if double else 0.0,
        }

    for k, pu in enumerate(pileups):
        if rng.random() < dc.trace_prob:
            own[k] = [len(tr), len(tr) + 1]
            for p, t in traces(pu):
                tr.append(
                    {"point": [float(p[0]), float(p[1])], "dir": [float(t[0]), float(t[1])], **trace_style()}
                )
    for _ in range(_i(rng, dc.extra_traces)):
        a = math.radians(orients[int(rng.integers(len(orients)))] + float(rng.normal(0.0, 1.0)))
        tr.append(
            {
                "point": [float(rng.uniform(0, w)), float(rng.uniform(0, h))],
                "dir": [math.cos(a), math.sin(a)],
                **trace_style(),
            }
        )
    bd = []
    for _ in range(_i(rng, dc.boundaries)):
        a = float(rng.uniform(0, 2 * np.pi))
        bd.append(
            {
                "point": [float(rng.uniform(0.2 * w, 0.8 * w)), float(rng.uniform(0.2 * h, 0.8 * h))],
                "normal": [math.cos(a), math.sin(a)],
                "step": _u(rng, dc.boundary_step) * (1.0 if rng.random() < 0.5 else -1.0),
                "softness": _u(rng, dc.boundary_softness),
            }
        )
    nd = _i(rng, dc.dots)
    dots = {
        "centers": rng.uniform([0, 0], [w, h], size=(nd, 2)).tolist(),
        "radii": [_u(rng, dc.dot_radius) for _ in range(nd)],
        "darkness": [_u(rng, dc.dot_darkness) for _ in range(nd)],
    }
    tangles = []
    for _ in range(_i(rng, dc.tangles)):
        c = rng.uniform([0, 0], [w, h])
        radius = _u(rng, dc.tangle_radius)
        segs = []
        cx, cy = float(c[0]), float(c[1])
        for _ in range(_i(rng, dc.tangle_lines)):
            nx, ny = rng.normal(0.0, radius / 2, size=2).tolist()
            mx, my = cx + nx, cy + ny
            ang = float(rng.uniform(0, np.pi))
            length = _u(rng, dc.tangle_length)
            dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
            b = float(rng.uniform(-0.6, 0.6))
            pts = [[mx - dx, my - dy], [mx + -dy * b, my + dx * b], [mx + dx, my + dy]]
            segs.append(
                {"points": [[round(v, 3) for v in p] for p in pts], "darkness": _u(rng, dc.tangle_darkness)}
            )
        tangles.append({"thickness": _u(rng, dc.tangle_thickness), "segments": segs})
    out = {"traces": tr, "boundaries": bd, "dots": dots, "tangles": tangles}
    if dc.band_prob > 0:  # drawn last and only when asked, so other presets keep their samples
        out["slip_bands"] = [slip_band(dc, pu, rng) for pu in pileups if rng.random() < dc.band_prob]
    if dc.trace_match_prob > 0:  # drawn last and only when asked, as the bands
        if styles is None:
            raise ValueError("trace_match_prob > 0 needs the pile-ups' line styles")
        match_traces(dc, pileups, styles, own, tr, rng)
    return out


def match_traces(
    dc: DistractorConfig,
    pileups: list[dict[str, Any]],
    styles: list[list[dict]],
    own: dict[int, list[int]],
    tr: list[dict[str, Any]],
    rng: np.random.Generator,
) -> None:
    """Give a matched pile-up's visible traces the mean width and darkness of its lines and add
    ``inner_traces`` more, parallel to them and between them, so they cross its lines (in place)."""
    for k, pu in enumerate(pileups):
        if rng.random() >= dc.trace_match_prob or not styles[k]:
            continue
        width = float(np.mean([s["thickness"] for s in styles[k]]))
        dark = float(np.mean([s["darkness"] for s in styles[k]]))
        for i in own.get(k, []):
            tr[i] = {**tr[i], "contrast": -dark, "width": width, "gap": 0.0}
        c, t, n = trace_frame(pu)
        js = dc.trace_match_jitter
        for _ in range(_i(rng, dc.inner_traces)):
            p = c + float(rng.uniform(-0.85, 0.85)) * pu["slip_width"] / 2 * n
            tr.append(
                {
                    "point": [float(p[0]), float(p[1])],
                    "dir": [float(t[0]), float(t[1])],
                    "contrast": -dark * (1 + js * float(rng.uniform(-1, 1))),
                    "width": width * (1 + js * float(rng.uniform(-1, 1))),
                    "gap": 0.0,
                }
            )


def slip_band(dc: DistractorConfig, pu: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The shaded strip between a pile-up's traces, from its first to its last line plus a margin."""
    c, t, _ = trace_frame(pu)
    d = pu["slip_width"]
    reach = abs(d * math.tan(math.radians(pu["line_angle_deg"]))) / 2
    reach += max(abs(line["bow"]) for line in pu["lines"]) * d
    pos = pu["positions"]
    return {
        "center": [float(c[0]), float(c[1])],
        "dir": [float(t[0]), float(t[1])],
        "half_width": d / 2,
        "start": float(min(pos) - reach - _u(rng, dc.band_margin)),
        "end": float(max(pos) + reach + _u(rng, dc.band_margin)),
        "darkness": _u(rng, dc.band_darkness),
        "softness": _u(rng, dc.band_softness),
    }


def draw_slip_band(img: np.ndarray, band: dict[str, Any], offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """Multiply ``img`` by 1 - darkness inside the band, with tanh edges (softer along the traces)."""
    h, w = img.shape
    tx, ty = band["dir"]
    cx, cy = band["center"][0] + offset[0], band["center"][1] + offset[1]
    xs = np.arange(w, dtype=np.float32) - np.float32(cx)
    ys = np.arange(h, dtype=np.float32) - np.float32(cy)
    s = np.float32(band["softness"])
    along = np.add.outer(ys * np.float32(ty), xs * np.float32(tx))
    across = np.abs(np.add.outer(ys * np.float32(tx), xs * np.float32(-ty)))
    inside = np.tanh((np.float32(band["half_width"]) - across) / s)
    inside += 1
    inside *= np.tanh((along - np.float32(band["start"])) / (3 * s)) + 1
    inside *= np.tanh((np.float32(band["end"]) - along) / (3 * s)) + 1
    inside *= np.float32(-band["darkness"] / 8)
    inside += 1
    img *= inside


def _beziers(ctrl: np.ndarray, step: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Quadratic Bezier curves with control points ``ctrl`` (n, 3, 2), each sampled about every ``step`` px
    (at least twice), all in one array; also the index of the curve each point belongs to."""
    legs = np.hypot(*np.diff(ctrl, axis=1).transpose(2, 0, 1)).sum(axis=1)
    n = np.maximum(np.ceil(legs / step).astype(np.intp), 2)
    seg = np.repeat(np.arange(len(ctrl)), n)
    first = np.cumsum(n) - n
    t = ((np.arange(n.sum()) - first[seg]) / (n - 1)[seg])[:, None]
    p = ctrl[seg]
    return (1 - t) ** 2 * p[:, 0] + 2 * t * (1 - t) * p[:, 1] + t * t * p[:, 2], seg


def _gauss(x: np.ndarray, c: float, sig: float) -> np.ndarray:
    """c exp(-x^2 / (2 sig^2)) in float32 with one temporary."""
    out = np.multiply(x, x, dtype=np.float32)
    out *= np.float32(-0.5 / sig**2)
    np.exp(out, out=out)
    out *= np.float32(c)
    return out


def draw_distractors(img: np.ndarray, d: dict[str, Any], offset: tuple[float, float] = (0.0, 0.0)) -> None:
    h, w = img.shape
    ox, oy = offset
    for b in d["boundaries"]:
        nx, ny = b["normal"]
        xs = (np.arange(w, dtype=np.float32) - np.float32(b["point"][0] + ox)) * np.float32(nx)
        ys = (np.arange(h, dtype=np.float32) - np.float32(b["point"][1] + oy)) * np.float32(ny)
        dist = np.add.outer(ys * np.float32(1.0 / b["softness"]), xs * np.float32(1.0 / b["softness"]))
        np.tanh(dist, out=dist)  # 1 + step (0.5 + 0.5 tanh), in place
        dist *= np.float32(0.5 * b["step"])
        dist += np.float32(1.0 + 0.5 * b["step"])
        img *= dist
    bands = []
    for t in d["traces"]:
        sig = t["width"] / 2.3548
        c, gap = t["contrast"], t["gap"]
        if gap > 0:

            def prof(x: np.ndarray, c: float = c, gap: float = gap, sig: float = sig) -> np.ndarray:
                return _gauss(x - np.float32(gap / 2), c, sig) + _gauss(x + np.float32(gap / 2), c, sig)
        else:

            def prof(x: np.ndarray, c: float = c, sig: float = sig) -> np.ndarray:
                return _gauss(x, c, sig)

        p = np.asarray(t["point"]) + np.array([ox, oy])
        bands.append((p, np.asarray(t["dir"]), prof, 2.5 * sig + gap / 2 + 0.5))
    draw_bands(img, bands)
    dots = d["dots"]
    for (cx, cy), rad, dark in zip(dots["centers"], dots["radii"], dots["darkness"], strict=True):
        draw_spot(img, cx + ox, cy + oy, rad, dark)
    for band in d.get("slip_bands", []):
        draw_slip_band(img, band, offset)
    for t in d.get("tangles", []):
        if not t["segments"]:
            continue
        ctrl = np.array([seg["points"] for seg in t["segments"]], dtype=np.float64) + np.array([ox, oy])
        pts, owner = _beziers(ctrl)
        dark = np.array([seg["darkness"] for seg in t["segments"]])[owner]
        draw_curves(img, pts, dark, t["thickness"])


DISTRACTOR_KINDS = ("slip_traces", "tangles", "grain_boundaries")


def _axis_pixels(
    shape: tuple[int, int], p: np.ndarray, d: np.ndarray, offsets: Sequence[float]
) -> np.ndarray:
    """Flat indices (into the unpadded image) of the pixels within half a pixel of the lines parallel to
    p + s * d at the given signed offsets."""
    h, w = shape
    reach = max(abs(o) for o in offsets) + 0.5
    pad = 2 * (math.ceil(reach) + 1) + 2
    idx, dist = band_pixels(shape, p, d, reach, pad)
    near = np.zeros(dist.shape, dtype=bool)
    for o in offsets:
        near |= np.abs(dist - o) <= 0.5
    rows, cols = np.divmod(idx[near], w + 2 * pad)
    rows, cols = rows - pad, cols - pad
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    return rows[inside] * w + cols[inside]


def distractor_axes(
    d: dict[str, Any], shape: tuple[int, int], offset: tuple[float, float] = (0.0, 0.0)
) -> dict[str, np.ndarray]:
    """Where the drawn distractors run, one bool (H, W) mask per kind in ``DISTRACTOR_KINDS``: the axes of
    slip traces (both lines of a double trace), the tangles' curves and the grain boundaries' edges, one
    pixel wide. These are what a detector must not mark, so evaluation can count how much of them it
    marks (``d``: a sample's ``params["sampled"]["distractors"]``)."""
    h, w = shape
    ox, oy = offset
    out = {k: np.zeros(h * w, dtype=bool) for k in DISTRACTOR_KINDS}
    for t in d["traces"]:
        p = np.asarray(t["point"], dtype=np.float64) + np.array([ox, oy])
        gap = t["gap"]
        out["slip_traces"][
            _axis_pixels(shape, p, np.asarray(t["dir"]), (-gap / 2, gap / 2) if gap > 0 else (0.0,))
        ] = True
    for b in d["boundaries"]:
        nx, ny = b["normal"]
        p = np.asarray(b["point"], dtype=np.float64) + np.array([ox, oy])
        out["grain_boundaries"][_axis_pixels(shape, p, np.array([-ny, nx]), (0.0,))] = True
    segments = [seg["points"] for t in d.get("tangles", []) for seg in t["segments"]]
    if segments:
        pts, _ = _beziers(np.array(segments, dtype=np.float64) + np.array([ox, oy]))
        xs, ys = np.rint(pts[:, 0]).astype(np.intp), np.rint(pts[:, 1]).astype(np.intp)
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        out["tangles"][ys[inside] * w + xs[inside]] = True
    return {k: v.reshape(h, w) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------- lines


@dataclass(frozen=True)
class DrawnLine:
    points: np.ndarray  # visible spline points, about 0.5 px apart
    raster: LineRaster
    key: tuple[int, int]  # (pile-up, index in pile-up)


def draw_lines(
    img: np.ndarray,
    curves: list[tuple[tuple[int, int], np.ndarray, dict]],
    min_length: float,
    config: LineStyleConfig,
) -> list[DrawnLine]:
    """Clip each curve to the view, darken the image along it and return the ones that stay visible.

    Each line's mask is at least ``config.label_width`` px wide, and at most
    ``config.label_max_width`` when that is > 0.
    """
    shape = img.shape
    drawn = []
    for key, pts, style in curves:
        vis = clip_to_view(pts, shape)
        if vis is None or polyline_length(vis) < min_length:
            continue
        # Darkness modulation is indexed by position along the full curve, so clipping does not shift it.
        mod = np.asarray(style["modulation"])
        line = vis
        if vis is not pts:  # cut at the border: even spacing again for the rasteriser
            full_s = np.linspace(0, 1, len(pts))
            near = np.argmin(np.hypot(*(pts[:, None, :] - vis[[0, -1]][None]).transpose(2, 0, 1)), axis=0)
            knots = np.linspace(0, 1, len(mod))
            sub = np.linspace(full_s[near[0]], full_s[near[1]], len(mod))
            mod = np.interp(sub, knots, mod)
            line = resample(vis, 0.5)
        r = rasterize_line(
            line,
            shape,
            style["thickness"],
            style["fringe"],
            weights=mod,
            min_half_width=config.label_width / 2.0,
            max_half_width=config.label_max_width / 2.0,
        )
        if r is None or not r.mask.any():
            continue
        box = img[r.y0 : r.y0 + r.profile.shape[0], r.x0 : r.x0 + r.profile.shape[1]]
        factor = r.profile * np.float32(-style["darkness"])
        factor += np.float32(1.0)
        box *= factor
        drawn.append(DrawnLine(points=vis, raster=r, key=key))
    return drawn


def truth(drawn: list[DrawnLine], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-line masks (n, H, W) and the label image (the stronger line wins where masks overlap)."""
    h, w = shape
    masks = np.zeros((len(drawn), h, w), dtype=bool)
    labels = np.zeros((h, w), dtype=np.uint8)
    best = np.full((h, w), -np.inf, dtype=np.float32)
    for i, d in enumerate(drawn):
        r = d.raster
        sl = (slice(r.y0, r.y0 + r.mask.shape[0]), slice(r.x0, r.x0 + r.mask.shape[1]))
        masks[i][sl] = r.mask
        win = r.profile > best[sl]
        win &= r.mask
        np.copyto(labels[sl], np.uint8(i + 1), where=win)
        np.copyto(best[sl], r.profile, where=win)
    return masks, labels
