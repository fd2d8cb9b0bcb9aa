"""User inputs of the generator: real-patch backgrounds and labelme polylines as dislocation shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dislotrack.runtime.synth import VideoConfig, generate, iter_video, regenerate
from dislotrack.runtime.synth.dataset import write_png
from dislotrack.runtime.synth.labelme import load_shapes, normalise

SIZE = (96, 128)


@pytest.fixture()
def patch_dir(tmp_path):
    """Two flat patches (grey 50 and 200), smaller than the image, so mirroring and blending are visible."""
    d = tmp_path / "patches"
    d.mkdir()
    write_png(d / "dark.png", np.full((60, 70), 50, dtype=np.uint8))
    write_png(d / "bright.png", np.full((80, 90), 200, dtype=np.uint8))
    return d


def test_patch_background_blends_two_patches(patch_dir) -> None:
    quiet = {
        "noise_weight": 0.0,
        "gradient": 0.0,
        "vignette": 0.0,
        "bend": 0.0,
        "dots": (0, 0),
        "boundaries": (0, 0),
    }
    quiet |= {"extra_traces": (0, 0), "trace_prob": 0.0}
    s = generate("m1", seed=1, size=SIZE, kind="patches", patch_dir=str(patch_dir), lines=(1, 1), **quiet)
    bg = s.params["sampled"]["background"]
    assert len(bg["patches"]) == 2 and {p["file"] for p in bg["patches"]} <= {"dark.png", "bright.png"}
    grey = {"dark.png": 50 / 255, "bright.png": 200 / 255}
    alpha = bg["patch_opacity"]
    expected = (1 - alpha) * grey[bg["patches"][0]["file"]] + alpha * grey[bg["patches"][1]["file"]]
    far = ~np.any(s.masks, axis=0)
    assert np.median(s.image[far]) == pytest.approx(expected, abs=0.03)
    again = regenerate(json.loads(json.dumps(s.params)))
    assert again.image.tobytes() == s.image.tobytes()


def test_patch_background_needs_patches(tmp_path) -> None:
    with pytest.raises(ValueError, match="patch_dir"):
        generate("m1", size=SIZE, kind="patches")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no patch images"):
        generate("m1", size=SIZE, kind="patches", patch_dir=str(tmp_path / "empty"))


def test_patch_background_in_video(patch_dir) -> None:
    cfg = VideoConfig(size=(64, 96), n_frames=3, overrides={"kind": "patches", "patch_dir": str(patch_dir)})
    frames = list(iter_video(cfg))
    assert len(frames) == 3 and frames[0].image.dtype == np.uint8


def _labelme_file(path, points) -> None:
    path.write_text(
        json.dumps(
            {
                "version": "5.4.1",
                "shapes": [
                    {"label": "dislocation", "points": points, "shape_type": "linestrip"},
                    {"label": "box", "points": [[0, 0], [5, 5]], "shape_type": "rectangle"},
                ],
                "imagePath": "frame.png",
            }
        )
    )


def test_labelme_template_is_in_chord_units(tmp_path) -> None:
    uv = normalise(np.array([[10.0, 10.0], [20.0, 14.0], [30.0, 10.0]]))
    assert uv == [[0.0, 0.0], [0.5, 0.2], [1.0, 0.0]]
    _labelme_file(tmp_path / "a.json", [[10, 10], [20, 14], [30, 10]])
    assert load_shapes(tmp_path) == [uv]
    with pytest.raises(ValueError, match="labelme"):
        load_shapes(tmp_path / "missing.json")


def test_labelme_polylines_shape_the_dislocations(tmp_path) -> None:
    # An S-shaped polyline: across-chord offsets +, - along the chord.
    s_shape = [[0, 0], [25, 12], [50, 0], [75, -12], [100, 0]]
    _labelme_file(tmp_path / "s.json", s_shape)
    inside = {"margin": 0.35, "slip_width": (60.0, 80.0), "spacing": (8.0, 12.0), "point_noise": 0.0}
    s = generate("m1", seed=2, size=(256, 256), labelme=str(tmp_path), labelme_prob=1.0, **inside)
    pu = s.params["sampled"]["pileups"][0]
    assert pu["shape_uv"] == normalise(np.array(s_shape, dtype=float))
    checked = 0
    for pts, info in zip(s.lines, s.params["sampled"]["lines"], strict=True):
        x0, y0, dx, dy = info["trace_a"]
        first, last = pts[0], pts[-1]
        if 2 < first[0] < 253 and 2 < first[1] < 253 and 2 < last[0] < 253 and 2 < last[1] < 253:
            assert abs((first[0] - x0) * dy - (first[1] - y0) * dx) < 1e-6
            chord = last - first
            normal = np.array([-chord[1], chord[0]]) / np.hypot(*chord)
            across = (pts - first) @ normal
            k = len(pts)
            # the S survives: one side in the first half, the other in the second
            assert np.sign(across[k // 4]) == -np.sign(across[3 * k // 4]) != 0
            checked += 1
    assert checked >= 1, "some whole line must be checked"
    again = regenerate(s.params)
    assert again.image.tobytes() == s.image.tobytes()
