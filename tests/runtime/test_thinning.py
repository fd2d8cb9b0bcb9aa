"""lee_skeleton must reproduce skimage's Lee thinning pixel for pixel: the skeletons (so the lines'
points, lengths and curvatures) are the paper's method, and the numba version only makes it faster."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

import dislotrack.runtime.lines as lines_module
from dislotrack.runtime.evaluation import truth_probabilities
from dislotrack.runtime.lines import extract_lines
from dislotrack.runtime.synth import VideoConfig, iter_video
from dislotrack.runtime.thinning import lee_skeleton


def assert_same(mask: np.ndarray, what: str) -> None:
    got = lee_skeleton(mask)
    want = skeletonize(mask, method="lee")
    assert got.dtype == bool and got.shape == mask.shape, what
    assert np.array_equal(got, want), f"{what}: {np.argwhere(got != want)[:5].tolist()}"


def blob(rng: np.random.Generator, shape: tuple[int, int], sigma: float, density: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise > np.quantile(noise, 1 - density)


def thick_curve(rng: np.random.Generator, shape: tuple[int, int], width: float) -> np.ndarray:
    """A random polyline (a few vertices, or many along a smooth curve) drawn ``width`` px thick."""
    h, w = shape
    if rng.random() < 0.5:
        pts = rng.uniform((0, 0), (h, w), size=(rng.integers(2, 6), 2))
    else:
        t = np.linspace(0, 1, 40)[:, None]
        a, b, c = rng.uniform((0, 0), (h, w), size=(3, 2))
        pts = (1 - t) ** 2 * a + 2 * t * (1 - t) * b + t**2 * c
    yy, xx = np.mgrid[:h, :w]
    grid = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(float)
    dist = np.full(grid.shape[0], np.inf)
    for p, q in itertools.pairwise(pts):
        d = q - p
        s = np.clip((grid - p) @ d / max(d @ d, 1e-12), 0, 1)
        dist = np.minimum(dist, np.linalg.norm(grid - p - s[:, None] * d, axis=1))
    return (dist <= width / 2).reshape(shape)


def test_random_blobs_at_several_densities():
    rng = np.random.default_rng(1)
    n = 0
    for density in (0.1, 0.3, 0.5, 0.7, 0.9):
        for _ in range(30):
            shape = tuple(rng.integers(8, 64, size=2))
            mask = blob(rng, shape, rng.uniform(0.8, 4.0), density)
            assert_same(mask, f"blob {n} density {density}")
            n += 1
    assert n == 150


def test_random_thick_curves_of_width_1_to_7():
    rng = np.random.default_rng(2)
    for n in range(150):
        width = 1 + 6 * rng.random()
        shape = tuple(rng.integers(10, 70, size=2))
        mask = thick_curve(rng, shape, width)
        assert mask.any()
        assert_same(mask, f"curve {n} width {width:.2f}")


def test_masks_touching_the_image_border():
    rng = np.random.default_rng(3)
    for n in range(60):
        shape = tuple(rng.integers(5, 40, size=2))
        mask = blob(rng, shape, rng.uniform(1.0, 3.0), rng.uniform(0.3, 0.8))
        side = n % 4  # force foreground along one edge, so thinning meets the image border
        edge = (mask[0], mask[-1], mask[:, 0], mask[:, -1])[side]
        edge[rng.integers(0, edge.size) :] = True
        assert_same(mask, f"border mask {n}")
    for n in range(40):
        shape = tuple(rng.integers(4, 30, size=2))
        mask = thick_curve(rng, shape, 1 + 6 * rng.random())
        mask[:, : rng.integers(1, 4)] |= rng.random() < 0.5
        assert_same(mask, f"border curve {n}")


def test_single_pixels_full_empty_and_thin_images():
    for shape in ((1, 1), (1, 7), (7, 1), (5, 6)):
        assert_same(np.zeros(shape, bool), f"empty {shape}")
        assert_same(np.ones(shape, bool), f"full {shape}")
        for y, x in itertools.product(range(shape[0]), range(shape[1])):
            one = np.zeros(shape, bool)
            one[y, x] = True
            assert_same(one, f"pixel {(y, x)} of {shape}")
    assert_same(np.ones((40, 50), bool), "full 40x50")
    rng = np.random.default_rng(4)
    for n in range(40):
        row = rng.random((1, rng.integers(1, 60))) < rng.uniform(0.2, 0.9)
        assert_same(row, f"row {n}")
        assert_same(row.T.copy(), f"column {n}")


def test_every_small_image():
    """Exhaustive over all 3x3, 3x4 and 4x3 images: every pixel of them meets the image border."""
    for shape in ((3, 3), (3, 4), (4, 3)):
        size = shape[0] * shape[1]
        bits = (np.arange(2**size)[:, None] >> np.arange(size)) & 1
        for k, b in enumerate(bits.astype(bool)):
            assert_same(b.reshape(shape), f"{shape} image {k}")


def test_input_is_left_alone_and_any_nonzero_is_foreground():
    rng = np.random.default_rng(5)
    mask = blob(rng, (30, 40), 2.0, 0.5)
    ints = mask.astype(np.int32) * rng.integers(1, 5, size=mask.shape)
    before = ints.copy()
    assert np.array_equal(lee_skeleton(ints), skeletonize(mask, method="lee"))
    assert np.array_equal(ints, before)
    with pytest.raises(ValueError, match="2D"):
        lee_skeleton(np.ones((3, 3, 3), bool))


def test_the_canvases_that_line_extraction_thins(monkeypatch):
    """The packed canvases of ``skeleton_rows`` on model-like masks of a pile-up video."""
    cfg = VideoConfig(n_frames=4, seed=0, pileups=(2, 2), lines=(9, 10))
    rng = np.random.default_rng(0)
    canvases = []

    def spy(canvas):
        canvases.append(canvas.copy())
        return lee_skeleton(canvas)

    monkeypatch.setattr(lines_module, "lee_skeleton", spy)
    for frame in iter_video(cfg):
        probs = truth_probabilities(frame.labels, sorted(frame.lines), 20, rng)
        for threshold in (0.3, 0.5, 0.7):
            extract_lines(probs, threshold, with_labels=False)
    assert len(canvases) == 12
    for k, canvas in enumerate(canvases):
        assert canvas.sum() > 1000
        assert_same(canvas, f"canvas {k}")
