"""scripts/line_profiles.py: width and depth of lines of known profile, and labels off the core."""

from __future__ import annotations

import numpy as np
import pytest
from drawing import curve, line_mask
from scipy import ndimage

from dislotrack.training.evaluate import Labelled

SHAPE = (120, 160)


@pytest.fixture(scope="module")
def profiles(load_script):
    return load_script("line_profiles")


def _frame(fwhm: float, darkness: float, label_shift: float = 0.0, noise: float = 0.01) -> Labelled:
    """A bowed line darkening a 0.6 grey background by ``darkness`` with a Gaussian profile, labelled
    ``label_shift`` px beside its core."""
    xy = curve(20, 30, 140, 90, bow=15)
    seed = ~line_mask(SHAPE, xy, half_width=0.5)
    dist = ndimage.distance_transform_edt(seed)
    sigma = fwhm / 2.3548
    rng = np.random.default_rng(3)
    image = 0.6 * (1 - darkness * np.exp(-(dist**2) / (2 * sigma**2))) + rng.normal(0, noise, SHAPE)
    label = line_mask(SHAPE, xy + np.array([0.0, label_shift]), half_width=1.0)
    return Labelled("line", image.astype(np.float32), label[None])


@pytest.mark.parametrize("fwhm", [3.0, 5.0])
def test_width_and_depth_of_a_known_line(profiles, fwhm: float) -> None:
    (p,) = profiles.line_profiles(_frame(fwhm, 0.3))
    assert abs(p.width_px - fwhm) <= 1.0
    # the background is read 5-8 px beside the core, where a wide line's tail still darkens a little
    assert 0.25 <= p.depth <= 0.31
    assert p.cnr > 10 and p.local > 0


def test_wider_fainter_lines_measure_wider_and_fainter(profiles) -> None:
    (thin,) = profiles.line_profiles(_frame(3.0, 0.3))
    (wide,) = profiles.line_profiles(_frame(6.0, 0.15))
    assert wide.width_px > thin.width_px + 1.5
    assert wide.depth < thin.depth / 1.5


def test_a_label_beside_the_core_still_finds_the_core(profiles) -> None:
    (on,) = profiles.line_profiles(_frame(4.0, 0.3))
    (off,) = profiles.line_profiles(_frame(4.0, 0.3, label_shift=2.0))
    assert abs(off.depth - on.depth) <= 0.03
    assert abs(off.width_px - on.width_px) <= 1.0


def test_summary_prints_quartiles_of_each_figure(profiles) -> None:
    rows = [profiles.line_profiles(_frame(w, 0.2))[0] for w in (3.0, 4.0, 5.0)]
    text = profiles.summary("test", rows)
    assert text.splitlines()[0] == "test: 3 lines"
    assert [ln.split()[0] for ln in text.splitlines()[1:]] == ["width_px", "depth", "cnr", "local"]


def test_a_label_on_its_line_scores_as_found(profiles) -> None:
    (row,) = profiles.alignments([_frame(4.0, 0.3)], profiles.MetricConfig(iou_tolerance_px=2))
    assert abs(row.offsets_px[0]) <= 0.5
    assert row.drawn.lar[0] > 0.95 and row.snapped.lar[0] > 0.95
    assert row.same_mask_as is None


def test_a_label_beside_its_line_cannot_be_matched_by_the_line(profiles) -> None:
    frame = _frame(4.0, 0.3, label_shift=4.0)
    (row,) = profiles.alignments([frame], profiles.MetricConfig(iou_tolerance_px=2))
    assert 3.0 <= abs(row.offsets_px[0]) <= 5.0
    assert row.drawn.lar[0] > 0.95  # the redrawn label still matches itself
    assert row.snapped.lar[0] == 0.0  # a line drawn on the dark core fails IoU >= 0.5 against it


def test_copied_masks_are_named_and_the_report_groups_frames_by_number(profiles) -> None:
    first, other = _frame(4.0, 0.3), _frame(5.0, 0.2)
    frames = [
        profiles.Labelled("video_img_000", first.image, first.masks),
        profiles.Labelled("video_img_010", other.image, first.masks),
        profiles.Labelled("video_img_020", other.image, other.masks[:, ::-1]),
    ]
    rows = profiles.alignments(frames, profiles.MetricConfig(iou_tolerance_px=2))
    assert [r.same_mask_as for r in rows] == [None, "video_img_000", None]
    text = profiles.alignment_report(rows, profiles.parse_groups("0-10, 20"))
    summary_lines = [ln for ln in text.splitlines() if ": " in ln and "frames" in ln]
    assert [ln.split(":")[0] for ln in summary_lines] == ["all", "0-10", "20-20"]
    assert "2 frames (1 repeat an earlier frame's mask)" in summary_lines[1]


def test_straight_detections_clear_of_labels_are_picked(profiles) -> None:
    from dislotrack.runtime.results import N_POINTS, Line

    t = np.linspace(0.0, 1.0, N_POINTS)[:, None]

    def line(x0: float, y0: float, x1: float, y1: float, bow: float = 0.0) -> Line:
        pts = (1 - t) * np.array([x0, y0]) + t * np.array([x1, y1])
        pts[:, 1] += bow * np.sin(np.pi * t[:, 0])
        return Line(pts, float(np.sum(np.hypot(*np.diff(pts, axis=0).T))), 0.9)

    labelled = np.zeros(SHAPE, dtype=bool)
    labelled[100:104, 10:150] = True
    lines = [
        line(5, 10, 150, 20),  # long, straight, clear of the label: a slip trace
        line(5, 94, 150, 94),  # as long and straight, but 6 px from the label
        line(5, 40, 150, 40, bow=25.0),  # clear but bowed
        line(5, 60, 60, 60),  # clear and straight but short
    ]
    assert profiles.straight_unlabelled(lines, labelled) == [0]
    assert profiles.straight_unlabelled(lines, np.zeros(SHAPE, dtype=bool)) == [0, 1]
