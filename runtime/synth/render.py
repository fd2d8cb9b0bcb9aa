"""Drawing primitives: anti-aliased curved lines inside their bounding box, straight traces in a band.

A curved line is splatted (bilinear weights) from points sampled every half pixel into a small box around
it and blurred there with a Gaussian, which gives an anti-aliased profile with a dark core and soft edges
at the cost of a few small-array operations per line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from dislotrack.runtime.geometry import arclength, equally_spaced

_SPLAT_VAR = 1.0 / 6.0  # variance of the bilinear splat kernel per axis
_MIN_HALF_WIDTH = 0.8  # a line's mask is at least 1.6 px wide unless a wider label is asked for


@lru_cache(maxsize=512)
def _kernel(sigma: float, truncate: float) -> np.ndarray:
    """Normalised Gaussian taps, cached: videos and fixed filters ask for the same sigmas again and again."""
    r = max(int(truncate * sigma + 0.5), 1)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    k.flags.writeable = False
    return k


def _pad_symmetric(a: np.ndarray, r: int) -> np.ndarray:
    """``np.pad(a, r, mode="symmetric")`` as float32 with four slice copies (np.pad's overhead is larger
    than the copy itself for the small boxes of single lines)."""
    h, w = a.shape
    p = np.empty((h + 2 * r, w + 2 * r), dtype=np.float32)
    p[r : r + h, r : r + w] = a
    p[r : r + h, :r] = p[r : r + h, 2 * r - 1 : r - 1 : -1]
    p[r : r + h, r + w :] = p[r : r + h, r + w - 1 : w - 1 : -1]
    p[:r] = p[2 * r - 1 : r - 1 : -1]
    p[r + h :] = p[r + h - 1 : h - 1 : -1]
    return p


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
    w = _kernel(float(sigma), float(truncate))
    r = len(w) // 2
    h, wd = a.shape
    if r >= h or r >= wd:  # tiny arrays: let scipy handle the borders
        return ndimage.gaussian_filter(a.astype(np.float32), sigma, truncate=truncate)
    p = _pad_symmetric(a, r)
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
    """Bilinear splat of weighted points (x, y) into a float32 (h, w) box at (x0, y0)."""
    x = pts[:, 0] - x0
    y = pts[:, 1] - y0
    ix = np.floor(x)
    iy = np.floor(y)
    fx = x - ix
    fy = y - iy
    stride = w + 1
    base = iy.astype(np.intp) * stride + ix.astype(np.intp)
    idx = base + np.array([[0], [1], [stride], [stride + 1]])
    gx = np.stack([1 - fx, fx])
    gy = np.stack([1 - fy, fy]) * weights
    wt = (gy[:, None] * gx[None]).reshape(4, -1)
    acc = np.bincount(idx.ravel(), weights=wt.ravel(), minlength=(h + 1) * stride)
    return acc.reshape(h + 1, w + 1)[:h, :w].astype(np.float32)


def near_points(
    pts: np.ndarray, radius: float, origin: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """Boolean (h, w) box at ``origin`` (y0, x0): pixel centres within ``radius`` of the polyline ``pts``.

    ``pts`` (x, y) lie about half a pixel apart; every other one is enough for a radius of 1 px or more
    (the scallops between points then stay under 0.09 px deep at 1.5 px). The points must lie in the box;
    the stencil writes into a margin around it, so no bounds checks are needed.
    """
    if radius >= 1.0 and len(pts) > 2:
        pts = np.concatenate([pts[:-1:2], pts[-1:]])
    y0, x0 = origin
    h, w = shape
    k = int(radius) + 1
    off = np.arange(1 - k, k + 1)  # the pixels within radius of x lie in floor(x) + off
    ix = np.floor(pts[:, 0])
    iy = np.floor(pts[:, 1])
    dx2 = (off - (pts[:, 0] - ix)[:, None]) ** 2
    dy2 = (off - (pts[:, 1] - iy)[:, None]) ** 2
    ok = dy2[:, :, None] + dx2[:, None, :] <= radius * radius
    wk = w + 2 * k
    start = (iy.astype(np.intp) - y0 + k) * wk + ix.astype(np.intp) - x0 + k
    flat = start[:, None, None] + (off * wk)[:, None] + off
    canvas = np.zeros((h + 2 * k) * wk, dtype=bool)
    canvas[flat[ok]] = True
    return canvas.reshape(h + 2 * k, wk)[k : k + h, k : k + w]


def rasterize_line(
    points: np.ndarray,
    shape: tuple[int, int],
    thickness: float,
    fringe: float = 0.0,
    weights: np.ndarray | None = None,
    min_half_width: float = _MIN_HALF_WIDTH,
    max_half_width: float = 0.0,
) -> LineRaster | None:
    """Profile and mask of a line through ``points`` (x, y) with full width at half maximum ``thickness``.

    ``points`` lie about half a pixel apart (as `resample` with step 0.5 and the scene's splines give them),
    so they can be splatted as they are.

    ``weights`` (a few values spread evenly along the line, mean about 1) modulate darkness along it.
    The mask holds the pixels within max(thickness / 2, ``min_half_width``) px of the line, at most
    ``max_half_width`` px when that is > 0 (a centreline label for a wide line).
    """
    h_img, w_img = shape
    sigma = thickness / 2.3548
    sig_blur = math.sqrt(max(sigma * sigma - _SPLAT_VAR, 0.0))
    sig_eff2 = sig_blur * sig_blur + _SPLAT_VAR
    sig_eff = math.sqrt(sig_eff2)
    pts = _extend(points, 1.2 * sig_eff)
    sig_wide = 2.0 * sig_eff + 0.5
    reach = max(2.0 * sig_wide if fringe > 0 else 0.0, 3.0 * sig_eff, 1.5 * min_half_width)
    pad = math.ceil(reach) + 2
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
    if weights is None:
        wts = np.full(len(pts), 0.5)
    else:  # the weights spread evenly over the points
        knots = np.arange(len(weights)) * ((len(pts) - 1) / max(len(weights) - 1, 1))
        wts = 0.5 * np.interp(np.arange(len(pts)), knots, weights)
    dens = _splat(pts, wts, bx0, by0, bh, bw)
    # Below 0.25 px the bilinear splat alone (sigma 0.41 px) is the profile.
    core = blur(dens, sig_blur, truncate=2.5) if sig_blur > 0.25 else dens
    sl = (slice(y0 - by0, y1 - by0), slice(x0 - bx0, x1 - bx0))
    # Scale so a straight line of mean weight peaks at 1; from here on only the part in view is needed.
    mean_w = 2.0 * float(np.mean(wts))
    gain = math.sqrt(2.0 * math.pi * sig_eff2) / mean_w
    if fringe > 0.01:
        # bright fringes: (1 + fringe) min(core, 1) - fringe min(wide, 1), with wide a wider copy
        # (its truncated tails do not matter here)
        wide = blur(dens, math.sqrt(sig_wide * sig_wide - _SPLAT_VAR), truncate=2.0)[sl]
        prof = np.multiply(core[sl], np.float32(gain * (1.0 + fringe)))
        np.minimum(prof, np.float32(1.0 + fringe), out=prof)
        wide *= np.float32(math.sqrt(2.0 * math.pi) * sig_wide / mean_w * fringe)
        np.minimum(wide, np.float32(fringe), out=wide)
        prof -= wide
    else:
        prof = np.multiply(core[sl], np.float32(gain))
        np.minimum(prof, np.float32(1.0), out=prof)
    hw = max(thickness / 2.0, min_half_width)
    if max_half_width > 0:
        hw = min(hw, max_half_width)
    if hw > max(thickness / 2.0, _MIN_HALF_WIDTH) + 1e-6:
        # The label is wider than the line: the pixels within hw of the centreline, solid whatever the
        # darkness modulation (a stencil per point is cheaper than a wider blur of the box).
        mask = near_points(points, hw, (y0, x0), (y1 - y0, x1 - x0))
    else:
        mask = core[sl] >= np.float32(math.exp(-hw * hw / (2.0 * sig_eff2)) * 0.999 / gain)
    return LineRaster(y0=y0, x0=x0, profile=prof, mask=mask)


def band_pixels(
    shape: tuple[int, int], p: np.ndarray, d: np.ndarray, radius: float, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels near the infinite line p + s * d as flat indices into the image padded by ``pad`` on every
    side, with their signed distances (both (n, k) arrays).

    Steep lines take ``k`` pixels per row, flat ones per column, around the crossing point. Windows of
    rows or columns where the line is out of view are clamped into the padding, which needs
    ``pad >= 2 * (ceil(radius) + 1) + 2``; so no pixel has to be filtered out and, within one line, no
    index repeats.
    """
    h, w = shape
    norm = math.hypot(d[0], d[1])
    dx, dy = d[0] / norm, d[1] / norm
    r = math.ceil(radius) + 1
    offs = np.arange(-r, r + 2)
    steep = abs(dy) >= abs(dx)
    if steep:  # walk rows: u is the row, v the column; the normal is (-dy, dx)
        n_u, n_v, pu, pv, nu, nv, slope = h, w, p[1], p[0], dx, -dy, dx / dy
    else:
        n_u, n_v, pu, pv, nu, nv, slope = w, h, p[0], p[1], -dy, dx, dy / dx
    du = np.arange(n_u) - pu
    v0 = np.floor(du * slope + pv)
    np.clip(v0, r - pad, n_v + pad - r - 2, out=v0)
    base_dist = (v0 - pv) * nv
    base_dist += du * nu
    dist = base_dist.astype(np.float32)[:, None] + (offs * nv).astype(np.float32)
    wp = w + 2 * pad
    v0 = v0.astype(np.intp) + pad
    us = np.arange(pad, n_u + pad)
    base = us * wp + v0 if steep else v0 * wp + us
    return base[:, None] + offs * (1 if steep else wp), dist


def draw_bands(img: np.ndarray, bands: list[tuple[np.ndarray, np.ndarray, callable, float]]) -> None:
    """Multiply ``img`` by 1 + the summed profiles of straight lines given as (point, dir, profile, radius).

    The contributions of all lines are gathered into one sparse sum over a padded canvas, so many slip
    traces cost one pass and no per-pixel bounds checks.
    """
    if not bands:
        return
    h, w = img.shape
    pad = 2 * max(int(np.ceil(radius)) + 1 for *_, radius in bands) + 2
    acc = np.zeros((h + 2 * pad) * (w + 2 * pad), dtype=np.float32)
    for p, d, profile, radius in bands:
        i, dist = band_pixels((h, w), p, d, radius, pad)
        acc[i] += profile(dist)
    acc = acc.reshape(h + 2 * pad, w + 2 * pad)[pad : pad + h, pad : pad + w]
    acc += np.float32(1.0)
    img *= acc


def draw_curves(img: np.ndarray, pts: np.ndarray, darkness: np.ndarray, thickness: float) -> None:
    """Darken many thin unlabelled curves at once: one splat and one filter over their common box.

    ``pts`` (x, y) are the curves' points about half a pixel apart, ``darkness`` one value per point.
    """
    if not len(pts):
        return
    h, w = img.shape
    sigma = thickness / 2.3548
    sig_blur = float(np.sqrt(max(sigma * sigma - _SPLAT_VAR, 0.0)))
    pad = int(np.ceil(3.0 * sigma)) + 2
    wts = 0.5 * np.asarray(darkness, dtype=np.float64)
    x0 = max(int(np.floor(pts[:, 0].min())) - pad, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - pad, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + pad + 1, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + pad + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    keep = (pts[:, 0] >= x0) & (pts[:, 0] < x1 - 1) & (pts[:, 1] >= y0) & (pts[:, 1] < y1 - 1)
    dens = _splat(pts[keep], wts[keep], x0, y0, y1 - y0, x1 - x0)
    dens = blur(dens, sig_blur, truncate=3.0) if sig_blur > 0.05 else dens
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
