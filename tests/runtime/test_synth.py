"""Synthetic still images: contract, reproducibility, geometry of the truth and parameter errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy import ndimage

from dislotrack.runtime.synth import (
    MAX_LINES,
    SynthConfig,
    generate,
    iter_samples,
    list_presets,
    load_preset,
    regenerate,
)
from dislotrack.runtime.synth.perlin import perlin
from dislotrack.runtime.synth.render import blur, draw_bands, near_points, resample
from dislotrack.runtime.synth.scene import (
    clip_to_view,
    distractor_axes,
    draw_distractors,
    natural_cubic,
    white_noise,
)

SIZE = (160, 192)
PRESETS = ["m1", "m2", "m2-wide", "m2-tem", "m2-dense", "m2-band", "m2-trace", "m2-match"]
SEEDS = range(12)


def _dist_to_line(pt: np.ndarray, line: list[float]) -> float:
    """Distance from a point to the infinite line (x0, y0, dx, dy) with a unit direction."""
    x0, y0, dx, dy = line
    return abs((pt[0] - x0) * dy - (pt[1] - y0) * dx)


def _on_border(pt: np.ndarray, shape: tuple[int, int], tol: float = 1e-6) -> bool:
    h, w = shape
    return min(pt[0], pt[1], w - 1 - pt[0], h - 1 - pt[1]) <= tol


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_shipped_data(preset: str) -> None:
    assert preset in list_presets()
    cfg = load_preset(preset)
    assert cfg.name == preset
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_sample_contract(preset: str) -> None:
    for seed in SEEDS:
        s = generate(preset, seed=seed, size=SIZE)
        assert s.image.dtype == np.float32 and s.image.shape == SIZE
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        n = len(s.lines)
        assert s.masks.dtype == bool and s.masks.shape == (n, *SIZE)
        assert n <= MAX_LINES and n == s.params["n_lines"]
        assert s.labels.dtype == np.uint8 and s.labels.max() <= n
        for i, m in enumerate(s.masks):
            assert m.any(), f"seed {seed}: mask {i} is empty"
            # labels only mark pixels of the line's own mask, and every line keeps some labelled pixels
            assert np.all(m[s.labels == i + 1])
        assert np.array_equal(s.labels > 0, s.masks.any(axis=0))
        json.dumps(s.params)


def test_default_size_and_m2_counts() -> None:
    s = generate("m2", seed=3)
    assert s.image.shape == (512, 512)
    counts = [len(generate("m2", seed=k, size=(256, 256)).lines) for k in range(15)]
    assert max(counts) > 4, "m2 should produce several pile-ups' worth of lines"


@pytest.mark.parametrize("preset", PRESETS)
def test_regenerate_is_bit_identical(preset: str, tmp_path) -> None:
    s = generate(preset, seed=11, size=SIZE, dots=(5, 10))
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(s.params))
    for again in (regenerate(json.loads(path.read_text())), regenerate(path), regenerate(str(path))):
        assert again.image.tobytes() == s.image.tobytes()
        assert again.masks.tobytes() == s.masks.tobytes()
        assert again.labels.tobytes() == s.labels.tobytes()
        assert all(np.array_equal(a, b) for a, b in zip(again.lines, s.lines, strict=True))
        assert again.params == json.loads(json.dumps(s.params))


def test_m2_wide_changes_only_the_width_and_darkness_of_m2s_lines() -> None:
    m2, wide = load_preset("m2"), load_preset("m2-wide")
    for section in ("background", "pileups", "distractors"):
        assert getattr(wide, section) == getattr(m2, section)
    assert wide.max_lines == m2.max_lines
    changed = {k for k, v in wide.style.__dict__.items() if v != getattr(m2.style, k)}
    assert changed == {"thickness", "thickness_power", "darkness"}
    assert wide.style.thickness[1] > m2.style.thickness[1]


def test_a_label_width_cap_keeps_wide_lines_labelled_by_a_thin_centreline_band() -> None:
    from dislotrack.runtime.synth.render import rasterize_line

    pts = np.stack([np.arange(20.0, 120.0, 0.5), np.full(200, 40.0)], axis=1)
    wide = rasterize_line(pts, (80, 140), thickness=9.0)
    capped = rasterize_line(pts, (80, 140), thickness=9.0, max_half_width=2.0)
    assert np.array_equal(wide.profile, capped.profile)  # the drawn line is the same
    rows = lambda r: np.flatnonzero(r.mask[:, 70 - r.x0])  # noqa: E731 - mask rows in one column
    assert len(rows(wide)) >= 9 and len(rows(capped)) <= 5
    assert set(rows(capped)) <= set(rows(wide))


def test_m2_tem_labels_stay_thin_while_its_lines_are_wide() -> None:
    from skimage.morphology import skeletonize

    def label_widths(preset: str) -> np.ndarray:
        """Mask area over skeleton length: a label's mean width (px)."""
        masks = [m for k in range(4) for m in generate(preset, seed=k, size=(256, 256)).masks]
        return np.array([m.sum() / max(skeletonize(m).sum(), 1) for m in masks])

    cap = load_preset("m2-tem").style.label_max_width
    assert load_preset("m2-tem").style.thickness[1] > 2 * cap
    assert np.median(label_widths("m2-tem")) <= cap + 1 < np.median(label_widths("m2-wide"))


def test_a_preset_file_names_only_what_it_changes_from_its_base(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('base = "m2"\n[pileups]\nlines = [2, 3]\n')
    mine, m2 = load_preset(path), load_preset("m2")
    assert mine.name == "mine"
    assert mine.pileups.lines == (2, 3)
    assert mine.pileups.spacing == m2.pileups.spacing
    assert mine.style == m2.style and mine.background == m2.background


def test_a_base_must_be_a_shipped_preset_without_cycles(tmp_path, monkeypatch) -> None:
    from dislotrack.runtime.synth import config

    path = tmp_path / "mine.toml"
    path.write_text('base = "m9"\n')
    with pytest.raises(ValueError, match="unknown base preset 'm9'"):
        load_preset(path)
    monkeypatch.setattr(config, "_shipped_names", lambda: ("a", "b"))
    monkeypatch.setattr(config, "_shipped_data", lambda name: {"base": "b" if name == "a" else "a"})
    with pytest.raises(ValueError, match="cycle a -> b -> a"):
        config.with_base({"base": "a"})


def test_regenerate_uses_the_recorded_config_not_the_preset_file() -> None:
    s = generate("m2", seed=2, size=SIZE, lines=(1, 1), n=(2, 2))
    assert s.params["config"]["pileups"]["lines"] == [1, 1]
    assert np.array_equal(regenerate(s.params).image, s.image)


def test_iter_samples_is_endless_and_deterministic() -> None:
    a = [x.image for x in itertools.islice(iter_samples("m2", seed=5, size=SIZE), 3)]
    b = [x.image for x in itertools.islice(iter_samples("m2", seed=5, size=SIZE), 3)]
    c = next(iter_samples("m2", seed=6, size=SIZE)).image
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], c)
    first = next(iter_samples("m2", seed=5, size=SIZE))
    assert np.array_equal(regenerate(first.params).image, a[0])


@pytest.mark.parametrize("preset", ["m1", "m2"])
def test_dislocations_start_and_end_on_their_slip_traces(preset: str) -> None:
    n_clipped = n_full = 0
    for seed in range(25):
        s = generate(preset, seed=seed, size=SIZE)
        for pts, info in zip(s.lines, s.params["sampled"]["lines"], strict=True):
            first, last = pts[0], pts[-1]
            on_a = _dist_to_line(first, info["trace_a"]) < 1e-6
            on_b = _dist_to_line(last, info["trace_b"]) < 1e-6
            # A line leaving the field of view is cut exactly at the border.
            assert on_a or _on_border(first, SIZE), (seed, first)
            assert on_b or _on_border(last, SIZE), (seed, last)
            assert np.all(pts >= 0) and np.all(pts[:, 0] <= SIZE[1] - 1) and np.all(pts[:, 1] <= SIZE[0] - 1)
            if on_a and on_b:
                n_full += 1
            else:
                n_clipped += 1
    assert n_full > 0 and n_clipped > 0, "the check must see whole and clipped lines"


@pytest.mark.parametrize("label_width", [1.6, 3.0, 5.0])
def test_masks_follow_their_lines(label_width: float) -> None:
    widths = []
    for seed in range(6):
        s = generate("m2", seed=seed, size=SIZE, label_width=label_width)
        for pts, mask, info in zip(s.lines, s.masks, s.params["sampled"]["lines"], strict=True):
            ij = np.clip(np.round(pts[:, ::-1]).astype(int), 0, np.array(SIZE) - 1)
            assert mask[ij[:, 0], ij[:, 1]].mean() > 0.95
            seed_img = np.ones(SIZE, dtype=bool)
            seed_img[ij[:, 0], ij[:, 1]] = False
            dist = ndimage.distance_transform_edt(seed_img)
            half = max(info["thickness"], label_width) / 2
            assert dist[mask].max() <= max(half, 0.8) + 1.5
            length = np.hypot(*np.diff(pts, axis=0).T).sum()
            if info["thickness"] < label_width and length > 20:
                widths.append(mask.sum() / length / label_width)
    # masks of lines thinner than the label width are about label_width wide, and solid
    assert widths and 0.8 < np.median(widths) < 1.3


def test_out_of_focus_pileups_are_wide_and_faint() -> None:
    """defocus_prob = 1 gives every line the defocus width, a wider mask and half the darkness."""
    dark = {"sharp": [], "soft": []}
    px = {"sharp": 0, "soft": 0}
    for seed in range(4):
        for kind, prob in (("sharp", 0.0), ("soft", 1.0)):
            s = generate("m2", seed=seed, size=SIZE, defocus_prob=prob, defocus_darkness=(0.5, 0.5))
            lines = s.params["sampled"]["lines"]
            assert lines
            if kind == "soft":
                assert all(5.0 <= ln["thickness"] <= 9.0 for ln in lines)
            dark[kind] += [ln["darkness"] for ln in lines]
            px[kind] += int(s.masks.sum())
    assert np.mean(dark["soft"]) < 0.6 * np.mean(dark["sharp"])
    assert px["soft"] > 1.3 * px["sharp"]


def test_lines_are_darker_than_their_surroundings() -> None:
    diffs = []
    for seed in range(8):
        s = generate("m1", seed=seed, size=SIZE)
        for mask in s.masks:
            ring = ndimage.binary_dilation(mask, iterations=4) & ~ndimage.binary_dilation(mask, iterations=2)
            diffs.append(s.image[ring].mean() - s.image[mask].mean())
    assert np.median(diffs) > 0.02


def test_max_lines_and_nearly_touching_pairs() -> None:
    s = generate("m2", seed=1, size=SIZE, max_lines=3, n=(4, 4), lines=(8, 8))
    assert len(s.lines) <= 3
    assert sum(len(p["lines"]) for p in s.params["sampled"]["pileups"]) == 3
    s = generate("m1", seed=4, size=(256, 256), pair_prob=1.0, lines=(4, 4))
    pos = np.asarray(s.params["sampled"]["pileups"][0]["positions"])
    gaps = np.abs(np.diff(pos))
    assert np.all((gaps >= 1.0) & (gaps <= 2.5))


def test_overrides_by_section_and_by_name() -> None:
    a = generate("m1", seed=0, size=SIZE, style={"thickness": (3.0, 3.0)})
    b = generate("m1", seed=0, size=SIZE, style__thickness=(3.0, 3.0))
    c = generate("m1", seed=0, size=SIZE, thickness=3.0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.image, c.image)
    assert all(info["thickness"] == 3.0 for info in a.params["sampled"]["lines"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (-5, 64)}, "size"),
        ({"size": (0, 0)}, "size"),
        ({"size": "big"}, "size"),
        ({"seed": -1}, "seed"),
        ({"preset": "m9"}, "unknown preset"),
        ({"lam1": (50.0, 10.0)}, "empty range"),
        ({"lines": (5, 2)}, "empty range"),
        ({"thickness": (-1.0, 2.0)}, "thickness"),
        ({"slip_width": (-10.0, 20.0)}, "slip_width"),
        ({"spacing": 0.0}, "spacing"),
        ({"max_lines": 21}, "max_lines"),
        ({"max_lines": -1}, "max_lines"),
        ({"wp": (0.2, 1.5)}, "wp"),
        ({"no_such_thing": 1}, "no_such_thing"),
        ({"style": {"thickness": "thin"}}, "thickness"),
    ],
)
def test_bad_parameters_give_one_clear_value_error(kwargs: dict, message: str) -> None:
    kwargs = dict(kwargs)
    preset = kwargs.pop("preset", "m2")
    with pytest.raises(ValueError, match="invalid synth parameters") as info:
        generate(preset, **kwargs)
    assert message in str(info.value)


def test_regenerate_rejects_foreign_records(tmp_path) -> None:
    with pytest.raises(ValueError, match="invalid synth parameters"):
        regenerate({"hello": 1})
    with pytest.raises(ValueError, match="invalid synth parameters"):
        regenerate(tmp_path / "missing.json")


def _perlin_reference(shape: tuple[int, int], lam: float, rng: np.random.Generator) -> np.ndarray:
    """Textbook per-pixel Perlin noise drawing the same random numbers as the vectorised version."""
    h, w = shape
    ox, oy = rng.uniform(0.0, lam, size=2)
    ny, nx = int((h - 1 + oy) // lam) + 2, int((w - 1 + ox) // lam) + 2
    theta = rng.uniform(0.0, 2.0 * np.pi, size=(ny, nx))

    def fade(t: float) -> float:
        return t * t * t * (t * (t * 6 - 15) + 10)

    out = np.zeros(shape)
    for y in range(h):
        for x in range(w):
            tx, ty = (x + ox) / lam, (y + oy) / lam
            j, i = int(np.floor(tx)), int(np.floor(ty))
            fx, fy = tx - j, ty - i
            v = 0.0
            for di in (0, 1):
                for dj in (0, 1):
                    g = theta[i + di, j + dj]
                    dot = np.cos(g) * (fx - dj) + np.sin(g) * (fy - di)
                    wx = fade(fx) if dj else 1 - fade(fx)
                    wy = fade(fy) if di else 1 - fade(fy)
                    v += wx * wy * dot
            out[y, x] = v
    return out


@pytest.mark.parametrize("lam", [3.0, 7.5, 20.0])
def test_vectorised_perlin_matches_the_textbook_definition(lam: float) -> None:
    fast = perlin((23, 31), lam, np.random.default_rng(9))
    ref = _perlin_reference((23, 31), lam, np.random.default_rng(9))
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, atol=1e-5)
    assert np.abs(ref).max() > 0.05


def test_clip_to_view_cuts_at_the_border() -> None:
    pts = np.column_stack([np.linspace(-20, 50, 71), np.linspace(5, 5, 71)])
    out = clip_to_view(pts, (30, 40))
    assert out[0, 0] == 0.0 and out[-1, 0] == 39.0 and np.all(out[:, 1] == 5.0)
    assert clip_to_view(pts + np.array([0.0, 100.0]), (30, 40)) is None
    inside = pts[25:40]
    assert clip_to_view(inside, (30, 40)) is inside


def test_distractors_change_the_image_but_never_the_labels() -> None:
    base = generate("m2", seed=5, size=SIZE, tangles=(0, 0), bend=0.0)
    for extra in ({"tangles": (2, 2), "bend": 0.0}, {"tangles": (0, 0), "bend": 0.5}):
        other = generate("m2", seed=5, size=SIZE, **extra)
        assert np.array_equal(other.masks, base.masks) and np.array_equal(other.labels, base.labels)
        assert np.abs(other.image - base.image).max() > 0.05
    tangled = generate("m2", seed=5, size=SIZE, tangles=(2, 2), bend=0.0)
    segs = [seg for t in tangled.params["sampled"]["distractors"]["tangles"] for seg in t["segments"]]
    assert len(segs) >= 16


def test_distractor_axes_run_where_the_distractors_are_drawn() -> None:
    flat = {"traces": [], "boundaries": [], "tangles": []}
    single = {"point": [10.0, 20.0], "dir": [1.0, 0.0], "contrast": -0.3, "width": 3.0, "gap": 0.0}
    double = {**single, "point": [0.0, 0.0], "dir": [0.0, 1.0], "gap": 6.0}
    edge = {"point": [0.0, 40.0], "normal": [0.0, 1.0], "step": 0.1, "softness": 1.0}
    axes = distractor_axes({**flat, "traces": [single, double], "boundaries": [edge]}, (48, 64))
    assert set(axes) == {"slip_traces", "tangles", "grain_boundaries"} and not axes["tangles"].any()
    rows, cols = np.nonzero(axes["slip_traces"])
    assert set(rows[cols > 10]) == {20} and set(cols[rows != 20]) == {3}  # x = ±3 px, the one in view
    assert np.array_equal(np.flatnonzero(axes["grain_boundaries"].any(1)), [40])
    # a generated sample's axes: its traces drawn alone change the grey most on their axes
    s = generate("m2-trace", seed=3, size=SIZE, tangles=(2, 2))
    d = s.params["sampled"]["distractors"]
    alone = np.ones(SIZE, np.float32)
    draw_distractors(
        alone, {**flat, "traces": d["traces"], "dots": {"centers": [], "radii": [], "darkness": []}}
    )
    ax = s.distractor_axes()
    assert ax["slip_traces"].any() and ax["tangles"].sum() > 100
    change = np.abs(alone - 1)
    assert np.median(change[ax["slip_traces"]]) > 5 * np.median(change[~ax["slip_traces"]])


# ------------------------------------------------ fast drawing primitives against plain references


def test_white_noise_is_the_byte_stream_of_integers() -> None:
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    a.uniform(size=5)
    b.uniform(size=5)
    noise = white_noise((24, 40), 1.0, a)
    ref = b.integers(0, 256, size=(24, 40), dtype=np.uint8)
    np.testing.assert_allclose(noise, ref * np.float32(2.0 / 255.0) - 1.0, atol=1e-6)
    assert noise.dtype == np.float32 and a.random() == b.random()  # the streams go on in step


def test_natural_cubic_matches_scipy() -> None:
    from scipy.interpolate import CubicSpline

    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 7):
        x = np.concatenate([[0.0], np.cumsum(rng.uniform(5, 40, n - 1))])
        y = rng.normal(size=(n, 2)) * 30
        u = np.linspace(0, x[-1], 101)
        np.testing.assert_allclose(natural_cubic(x, y, u), CubicSpline(x, y, bc_type="natural")(u), atol=1e-9)


def test_near_points_is_the_band_around_the_polyline() -> None:
    t = np.linspace(0, 1, 200)
    line = resample(np.column_stack([10 + 50 * t, 12 + 30 * t + 15 * np.sin(5 * t)]), 0.5)
    origin, shape = (4, 3), (60, 70)
    mask = near_points(line, 1.5, origin, shape)
    yy, xx = np.mgrid[origin[0] : origin[0] + shape[0], origin[1] : origin[1] + shape[1]]
    dense = resample(line, 0.02)
    dist = np.full(shape, np.inf)
    for x, y in dense:
        np.minimum(dist, np.hypot(xx - x, yy - y), out=dist)
    assert np.all(mask[dist <= 1.4]) and not np.any(mask[dist > 1.5])


def test_draw_bands_matches_a_per_row_reference() -> None:
    shape = (40, 50)
    bands = [
        (np.array([20.0, -5.0]), np.array([0.3, 1.0]), lambda x: 0.2 * np.exp(-0.5 * x * x), 3.0),
        (np.array([-3.0, 30.0]), np.array([1.0, -0.2]), lambda x: -0.1 * np.exp(-x * x / 8), 5.2),
        (np.array([70.0, 10.0]), np.array([1.0, 1.0]), lambda x: 0.3 * np.exp(-x * x), 2.0),
    ]
    img = np.ones(shape, dtype=np.float32)
    draw_bands(img, bands)
    ref = np.ones(shape)
    for p, d, prof, radius in bands:
        d = d / np.hypot(*d)
        r = int(np.ceil(radius)) + 1
        steep = abs(d[1]) >= abs(d[0])
        for u in range(shape[0] if steep else shape[1]):
            c = p[0] + (u - p[1]) * d[0] / d[1] if steep else p[1] + (u - p[0]) * d[1] / d[0]
            for v in range(int(np.floor(c)) - r, int(np.floor(c)) + r + 2):
                y, x = (u, v) if steep else (v, u)
                if 0 <= y < shape[0] and 0 <= x < shape[1]:
                    ref[y, x] += prof(np.float32((x - p[0]) * -d[1] + (y - p[1]) * d[0]))
    np.testing.assert_allclose(img, ref, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.7])
def test_blur_matches_scipy(sigma: float) -> None:
    a = np.random.default_rng(1).random((70, 90)).astype(np.float32)
    ref = ndimage.gaussian_filter(a.astype(np.float64), sigma, mode="reflect", truncate=2.0)
    np.testing.assert_allclose(blur(a, sigma), ref, atol=2e-6)


def test_dense_preset_draws_longer_pileups_than_m2() -> None:
    """m2-dense exists for pile-ups of 8-20 lines as filmed; m2 draws at most 8 per pile-up."""

    def per_pileup(preset: str) -> list[int]:
        counts = []
        for k in range(8):
            lines = generate(preset, seed=k, size=(512, 512)).params["sampled"]["lines"]
            counts += list(np.bincount([ln["pileup"] for ln in lines]))
        return counts

    assert max(per_pileup("m2")) <= 8 < max(per_pileup("m2-dense"))
    assert np.median(per_pileup("m2-dense")) > np.median(per_pileup("m2"))


def test_a_slip_band_darkens_the_strip_between_its_traces_only() -> None:
    """band_prob = 1 shades each pile-up's strip: darker between the traces near the pile-up, the
    same far from it, and the labels do not change; band_prob = 0 draws nothing (old records hold)."""
    plain = dict(bend=0.0, tangles=(0, 0), n=(1, 1), extra_traces=(0, 0), trace_prob=0.0, dots=(0, 0))
    base = generate("m2-tem", seed=3, size=(256, 256), **plain)
    band = generate(
        "m2-tem",
        seed=3,
        size=(256, 256),
        band_prob=1.0,
        band_darkness=(0.4, 0.4),
        band_softness=(2.0, 2.0),
        **plain,
    )
    assert "slip_bands" not in base.params["sampled"]["distractors"]
    (b,) = band.params["sampled"]["distractors"]["slip_bands"]
    assert np.array_equal(band.masks, base.masks) and np.array_equal(band.labels, base.labels)
    yy, xx = np.mgrid[0:256, 0:256]
    dx, dy = xx - b["center"][0], yy - b["center"][1]
    tx, ty = b["dir"]
    along, across = dx * tx + dy * ty, np.abs(dx * -ty + dy * tx)
    lines = band.masks.any(0)
    inside = (across < b["half_width"] - 8) & (along > b["start"] + 24) & (along < b["end"] - 24) & ~lines
    outside = ((across > b["half_width"] + 8) | (along < b["start"] - 24) | (along > b["end"] + 24)) & ~lines
    assert inside.sum() > 500 and outside.sum() > 500
    ratio = band.image / np.maximum(base.image, 1e-6)
    assert np.median(ratio[inside]) == pytest.approx(0.6, abs=0.03)
    assert np.median(ratio[outside]) == pytest.approx(1.0, abs=0.01)
    assert regenerate(band.params).image.tobytes() == band.image.tobytes()


def test_matched_traces_take_their_pile_ups_line_style_and_cross_its_lines() -> None:
    """trace_match_prob = 1: each pile-up's visible traces get its lines' mean width and darkness, and
    its inner traces run parallel to them, between them; the lines and their labels do not change, and
    m2-match is m2-trace's sample with some traces restyled or added."""
    plain = dict(extra_traces=(0, 0), trace_prob=1.0, n=(2, 2))
    base = generate("m2-trace", seed=5, size=(256, 256), **plain)
    match = generate("m2-trace", seed=5, size=(256, 256), trace_match_prob=1.0, inner_traces=(2, 2), **plain)
    assert np.array_equal(match.masks, base.masks) and np.array_equal(match.labels, base.labels)
    before, after = base.params["sampled"]["distractors"], match.params["sampled"]["distractors"]
    pileups = match.params["sampled"]["pileups"]
    lines = match.params["sampled"]["lines"]
    assert len(after["traces"]) == len(before["traces"]) + 2 * len(pileups)
    checked = 0
    for k in range(len(pileups)):
        mine = [ln for ln in lines if ln["pileup"] == k]
        if not mine:
            continue
        checked += 1
        width = np.mean([ln["thickness"] for ln in mine])
        dark = np.mean([ln["darkness"] for ln in mine])
        for t in after["traces"][2 * k : 2 * k + 2]:
            assert t["width"] == pytest.approx(width, rel=0.3) and t["gap"] == 0.0
            assert t["contrast"] == pytest.approx(-dark, rel=0.3)
    assert checked
    a, t = np.radians(pileups[0]["angle_deg"]), after["traces"][2 * len(pileups)]
    assert abs(np.cos(a) * t["dir"][1] - np.sin(a) * t["dir"][0]) < 1e-9
    offset = _dist_to_line(np.asarray(t["point"]), [*pileups[0]["center"], np.cos(a), np.sin(a)])
    assert offset < pileups[0]["slip_width"] / 2
    assert t["contrast"] < 0 and regenerate(match.params).image.tobytes() == match.image.tobytes()
    trace, m2_match = generate("m2-trace", seed=4, size=SIZE), generate("m2-match", seed=4, size=SIZE)
    assert np.array_equal(trace.masks, m2_match.masks)
    assert trace.params["sampled"]["pileups"] == m2_match.params["sampled"]["pileups"]


def test_matched_traces_need_the_line_styles() -> None:
    from dislotrack.runtime.synth.scene import sample_distractors

    cfg = load_preset("m2-match").with_overrides(trace_match_prob=1.0)
    with pytest.raises(ValueError, match="line styles"):
        sample_distractors(cfg, SIZE, [0.0], [], np.random.default_rng(0))


def test_a_slip_band_moves_with_the_canvas_offset() -> None:
    """Videos draw distractors on a padded canvas with an offset: the band moves by that offset."""
    from dislotrack.runtime.synth.scene import draw_slip_band

    band = {
        "center": [40.0, 30.0],
        "dir": [0.6, 0.8],
        "half_width": 12.0,
        "start": -40.0,
        "end": 40.0,
        "darkness": 0.3,
        "softness": 3.0,
    }
    a = np.ones((80, 90), np.float32)
    b = np.ones((80, 90), np.float32)
    draw_slip_band(a, band)
    draw_slip_band(b, band, offset=(7.0, 5.0))
    np.testing.assert_allclose(b[5:, 7:], a[:-5, :-7], atol=1e-6)
    assert a.min() == pytest.approx(0.7, abs=1e-3) and a.max() <= 1.0
