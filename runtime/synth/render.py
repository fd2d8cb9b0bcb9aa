"""Drawing primitives: anti-aliased curved lines inside their bounding box, straight traces in a band.

A curved line is splatted (bilinear weights) from points sampled every half pixel into a small box around
it and blurred there with a Gaussian, which gives an anti-aliased profile with a dark core and soft edges
at the cost of a few small-array operations per line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dislotrack.runtime.geometry import arclength, equally_spaced

_SPLAT_VAR = 1.0 / 6.0  # variance of the bilinear splat kernel per axis
_MIN_HALF_WIDTH = 0.8  # a line's mask is at least 1.6 px wide unless a wider label is asked for


def _kernel(sigma: float, truncate: float) -> np.ndarray:
    r = max(int(truncate * sigma + 0.5), 1)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def blur(a: np.ndarray, sigma: float, truncate: float = 2.0, strip: int = 64) -> np.ndarray:
    """Separable Gaussian filter (mirror borders) as float32 array operations on cache-sized strips.

    Equal to ``scipy.ndimage.gaussian_filter(a, sigma, mode="reflect", truncate=truncate)`` up to float32
    rounding, but several times faster: the image is processed in strips of ``strip`` rows that stay in
    cache, and every tap is a contiguous slice (the flattened padded strip for the horizontal pass, whole
    rows for the vertical one). The default ``truncate=2`` keeps 5 taps for sigma = 1 (the dropped taps
    weigh about 1 % of the centre).
    """
    if sigma <= 0:
        return a.astype(np.float32, copy=True)
    w = _kernel(sigma, truncate)
    r = len(w) // 2
    h, wd = a.shape
    if r >= h or r >= wd:  # tiny arrays: let scipy handle the borders
        return ndimage.gaussian_filter(a.astype(np.float32), sigma, truncate=truncate)
    p = np.pad(a.astype(np.float32, copy=False), r, mode="symmetric")
    w2 = wd + 2 * r
    out = np.empty((h, wd), dtype=np.float32)
    strip = h if h * wd <= 65536 else min(strip, h)  # small arrays fit the cache whole
    hbuf = np.empty((strip + 2 * r) * w2, dtype=np.float32)
    htmp = np.empty_like(hbuf)
    vtmp = np.empty((strip, wd), dtype=np.float32)
    for y0 in range(0, h, strip):
        m = min(strip, h - y0)
        flat = p[y0 : y0 + m + 2 * r].ravel()
        n = flat.size - 2 * r
        o, t = hbuf[:n], htmp[:n]
        np.multiply(flat[r : r + n], w[r], out=o)
        for k in range(r):
            np.add(flat[k : k + n], flat[2 * r - k : 2 * r - k + n], out=t)
            t *= w[k]
            o += t
        rows = hbuf[: (m + 2 * r) * w2].reshape(m + 2 * r, w2)[:, :wd]
        res = out[y0 : y0 + m]
        np.multiply(rows[r : r + m], w[r], out=res)
        v = vtmp[:m]
        for k in range(r):
            np.add(rows[k : k + m], rows[2 * r - k : 2 * r - k + m], out=v)
            v *= w[k]
            res += v
    return out


@dataclass(frozen=True)
class LineRaster:
    """A line's contrast profile in its box: ``profile`` 1 at the core, negative on bright fringes."""

    y0: int
    x0: int
    profile: np.ndarray  # float32 (h, w)
    mask: np.ndarray  # bool (h, w)


def resample(points: np.ndarray, step: float) -> np.ndarray:
    """Points spaced ``step`` px along a polyline (first and last point kept)."""
    s = arclength(points)
    if s[-1] <= 0:
        return points[:1].copy()
    return equally_spaced(points, max(int(np.ceil(s[-1] / step)), 1) + 1, s)


def polyline_length(points: np.ndarray) -> float:
    return float(np.hypot(*np.diff(points, axis=0).T).sum()) if len(points) > 1 else 0.0


def _extend(pts: np.ndarray, ext: float) -> np.ndarray:
    """Prolong both ends along their tangents so the blurred profile does not fade before the end point."""
    if len(pts) < 2 or ext <= 0:
        return pts
    k = max(int(np.ceil(ext / 0.5)), 1)
    steps = (np.arange(k, 0, -1) * (ext / k))[:, None]
    t0 = pts[0] - pts[1]
    t1 = pts[-1] - pts[-2]
    t0 = t0 / max(np.hypot(*t0), 1e-9)
    t1 = t1 / max(np.hypot(*t1), 1e-9)
    return np.concatenate([pts[0] + steps * t0, pts, pts[-1] + steps[::-1] * t1])


def _splat(pts: np.ndarray, weights: np.ndarray, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    x = pts[:, 0] - x0
    y = pts[:, 1] - y0
    ix = np.floor(x).astype(np.intp)
    iy = np.floor(y).astype(np.intp)
    fx = x - ix
    fy = y - iy
    stride = w + 1
    base = iy * stride + ix
    idx = np.concatenate([base, base + 1, base + stride, base + stride + 1])
    gx, gy = 1 - fx, 1 - fy
    wt = np.concatenate([gx * gy, fx * gy, gx * fy, fx * fy]) * np.tile(weights, 4)
    acc = np.bincount(idx, weights=wt, minlength=(h + 1) * stride)
    return acc.reshape(h + 1, w + 1)[:h, :w]


def rasterize_line(
    points: np.ndarray,
    shape: tuple[int, int],
    thickness: float,
    fringe: float = 0.0,
    weights: np.ndarray | None = None,
    min_half_width: float = _MIN_HALF_WIDTH,
) -> LineRaster | None:
    """Profile and mask of a line through ``points`` (x, y) with full width at half maximum ``thickness``.

    ``weights`` (one per point of the half-pixel resampling, mean about 1) modulate darkness along the line.
    The mask holds the pixels within max(thickness / 2, ``min_half_width``) px of the line.
    """
    h_img, w_img = shape
    sigma = thickness / 2.3548
    sig_blur = float(np.sqrt(max(sigma * sigma - _SPLAT_VAR, 0.0)))
    sig_eff2 = sig_blur * sig_blur + _SPLAT_VAR
    pts = _extend(resample(points, 0.5), 1.2 * np.sqrt(sig_eff2))
    sig_wide = 2.0 * np.sqrt(sig_eff2) + 0.5
    reach = max(2.0 * sig_wide if fringe > 0 else 0.0, 3.0 * np.sqrt(sig_eff2), 1.5 * min_half_width)
    pad = int(np.ceil(reach)) + 2
    (pxmin, pymin), (pxmax, pymax) = pts.min(axis=0), pts.max(axis=0)
    x0 = max(math.floor(pxmin) - pad, 0)
    y0 = max(math.floor(pymin) - pad, 0)
    x1 = min(math.ceil(pxmax) + pad + 1, w_img)
    y1 = min(math.ceil(pymax) + pad + 1, h_img)
    if x1 <= x0 or y1 <= y0:
        return None
    # Splat into a box that extends past the image so lines leaving the frame keep a full profile.
    bx0 = math.floor(pxmin) - pad
    by0 = math.floor(pymin) - pad
    bw = math.ceil(pxmax) + pad + 2 - bx0
    bh = math.ceil(pymax) + pad + 2 - by0
    wts = (
        np.full(len(pts), 0.5)
        if weights is None
        else 0.5 * np.interp(np.linspace(0, 1, len(pts)), np.linspace(0, 1, len(weights)), weights)
    )
    dens = _splat(pts, wts, bx0, by0, bh, bw).astype(np.float32)
    # Below 0.25 px the bilinear splat alone (sigma 0.41 px) is the profile.
    core = blur(dens, sig_blur, truncate=2.5) if sig_blur > 0.25 else dens
    peak = 1.0 / np.sqrt(2.0 * np.pi * sig_eff2)
    mean_w = float(np.mean(wts)) * 2.0
    core *= np.float32(1.0 / (peak * mean_w))
    prof = np.minimum(core, np.float32(1.0))
    if fringe > 0.01:
        # bright fringes: a wider, weaker copy subtracted (the truncated tails do not matter here)
        wide = blur(dens, float(np.sqrt(sig_wide**2 - _SPLAT_VAR)), truncate=2.0)
        wide *= np.float32(np.sqrt(2.0 * np.pi) * sig_wide / mean_w)
        np.minimum(wide, np.float32(1.0), out=wide)
        prof *= np.float32(1.0 + fringe)
        wide *= np.float32(fringe)
        prof -= wide
    sl = (slice(y0 - by0, y1 - by0), slice(x0 - bx0, x1 - bx0))
    prof = prof[sl]
    hw = max(thickness / 2.0, min_half_width)
    if hw > max(thickness / 2.0, _MIN_HALF_WIDTH) + 1e-6:
        # The label is wider than the line: threshold a wider Gaussian of the same centreline, whose
        # level at hw is well above the truncated tails of the drawn profile.
        sig_l2 = (hw / 1.5) ** 2
        wide = blur(dens, float(np.sqrt(sig_l2 - _SPLAT_VAR)), truncate=2.5)[sl]
        wide *= np.float32(np.sqrt(2.0 * np.pi * sig_l2) / mean_w)
        mask = wide >= np.float32(np.exp(-hw * hw / (2.0 * sig_l2)) * 0.999)
    else:
        thr = float(np.exp(-hw * hw / (2.0 * sig_eff2)))
        mask = core[sl] >= np.float32(thr * 0.999)
    return LineRaster(y0=y0, x0=x0, profile=prof, mask=mask)


def band_pixels(
    shape: tuple[int, int], p: np.ndarray, d: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and signed distances of the pixels within ``radius`` of the infinite line p + s * d."""
    h, w = shape
    d = d / np.hypot(*d)
    nrm = np.array([-d[1], d[0]])
    r = int(np.ceil(radius)) + 1
    if abs(d[1]) >= abs(d[0]):  # steep: walk rows
        ys = np.arange(h)
        xc = p[0] + (ys - p[1]) * d[0] / d[1]
        cols = np.floor(xc).astype(np.intp)[:, None] + np.arange(-r, r + 2)[None, :]
        rows = np.broadcast_to(ys[:, None], cols.shape)
    else:
        xs = np.arange(w)
        yc = p[1] + (xs - p[0]) * d[1] / d[0]
        rows = np.floor(yc).astype(np.intp)[:, None] + np.arange(-r, r + 2)[None, :]
        cols = np.broadcast_to(xs[:, None], rows.shape)
    ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    rows, cols = rows[ok], cols[ok]
    dist = (cols - p[0]).astype(np.float32) * np.float32(nrm[0])
    dist += (rows - p[1]).astype(np.float32) * np.float32(nrm[1])
    return rows * w + cols, dist


def draw_bands(img: np.ndarray, bands: list[tuple[np.ndarray, np.ndarray, callable, float]]) -> None:
    """Multiply ``img`` by 1 + the summed profiles of straight lines given as (point, dir, profile, radius).

    The contributions of all lines are gathered into one sparse sum, so many slip traces cost one pass.
    """
    if not bands:
        return
    idx, val = [], []
    for p, d, profile, radius in bands:
        i, dist = band_pixels(img.shape, p, d, radius)
        idx.append(i)
        val.append(profile(dist))
    acc = np.bincount(np.concatenate(idx), weights=np.concatenate(val), minlength=img.size)
    acc += 1.0
    img *= acc.reshape(img.shape).astype(np.float32)


def draw_curves(img: np.ndarray, curves: list[tuple[np.ndarray, float]], thickness: float) -> None:
    """Darken many thin unlabelled curves at once: one splat and one filter over their common box."""
    if not curves:
        return
    h, w = img.shape
    sigma = thickness / 2.3548
    sig_blur = float(np.sqrt(max(sigma * sigma - _SPLAT_VAR, 0.0)))
    pad = int(np.ceil(3.0 * sigma)) + 2
    pts = np.concatenate([c for c, _ in curves])
    wts = np.concatenate([np.full(len(c), 0.5 * dark) for c, dark in curves])
    x0 = max(int(np.floor(pts[:, 0].min())) - pad, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - pad, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + pad + 1, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + pad + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    keep = (pts[:, 0] >= x0) & (pts[:, 0] < x1 - 1) & (pts[:, 1] >= y0) & (pts[:, 1] < y1 - 1)
    dens = _splat(pts[keep], wts[keep], x0, y0, y1 - y0, x1 - x0)
    dens = blur(dens, sig_blur, truncate=3.0) if sig_blur > 0.05 else dens.astype(np.float32)
    dens *= np.float32(np.sqrt(2.0 * np.pi * (sig_blur**2 + _SPLAT_VAR)))
    np.minimum(dens, np.float32(0.9), out=dens)
    img[y0:y1, x0:x1] *= 1.0 - dens


def draw_spot(img: np.ndarray, cx: float, cy: float, radius: float, darkness: float) -> None:
    """Darken a small Gaussian spot in place (only its own window is touched)."""
    h, w = img.shape
    r = int(np.ceil(3 * radius)) + 1
    x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, w)
    y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    dx = (np.arange(x0, x1) - cx) ** 2
    dy = (np.arange(y0, y1) - cy) ** 2
    spot = np.exp(-(dy[:, None] + dx[None, :]) / (2 * radius * radius))
    img[y0:y1, x0:x1] *= (1.0 - darkness * spot).astype(img.dtype)
