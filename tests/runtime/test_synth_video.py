"""Synthetic in-situ video: truth consistent with the frames, motion as promised, files readable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dislotrack.runtime.synth import VideoConfig, clean_pileup, iter_video, read_truth_lines, write_video

SMALL = {"size": (160, 192), "n_frames": 24}


def _frames(cfg: VideoConfig) -> list:
    return list(iter_video(cfg))


def test_frame_contract_and_determinism() -> None:
    cfg = VideoConfig(seed=3, **SMALL)
    a, b = _frames(cfg), _frames(cfg)
    assert len(a) == cfg.n_frames
    for fa, fb in zip(a, b, strict=True):
        assert fa.image.dtype == np.uint8 and fa.image.shape == cfg.size
        assert fa.labels.dtype == np.uint8 and fa.labels.shape == cfg.size
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.labels, fb.labels)
        assert fa.lines.keys() == fb.lines.keys()
        assert fa.time_s == pytest.approx(fa.index / cfg.fps)
    c = _frames(VideoConfig(seed=4, **SMALL))
    assert not np.array_equal(a[0].image, c[0].image)


@pytest.mark.parametrize("cfg", [VideoConfig(seed=1, **SMALL), clean_pileup(seed=2, **SMALL)])
def test_truth_lines_match_the_label_images(cfg: VideoConfig) -> None:
    checked = 0
    for fr in iter_video(cfg):
        ids = set(np.unique(fr.labels)) - {0}
        assert ids == set(fr.lines), f"frame {fr.index}: labels {ids} vs lines {set(fr.lines)}"
        for tid, pts in fr.lines.items():
            assert pts.shape == (50, 2)
            assert (
                np.all(pts >= 0)
                and np.all(pts[:, 0] <= cfg.size[1] - 1)
                and np.all(pts[:, 1] <= cfg.size[0] - 1)
            )
            step = np.hypot(*np.diff(pts, axis=0).T)
            assert np.allclose(step, step.mean(), rtol=0.05, atol=0.05), "points must be equally spaced"
            ij = np.round(pts[:, ::-1]).astype(int)
            own = fr.labels[ij[:, 0], ij[:, 1]] == tid
            near = fr.labels[ij[:, 0], ij[:, 1]] > 0
            assert near.mean() > 0.95 and own.mean() > 0.5
            # label pixels of a track lie on its line
            yy, xx = np.nonzero(fr.labels == tid)
            d = np.hypot(xx[:, None] - pts[None, :, 0], yy[:, None] - pts[None, :, 1]).min(axis=1)
            assert d.max() < 5.0
            checked += 1
    assert checked > cfg.n_frames


def test_clean_pileup_keeps_every_line_in_view_and_moves_jerkily() -> None:
    cfg = clean_pileup(seed=5, n_frames=60, size=(256, 256))
    frames = _frames(cfg)
    ids = set(frames[0].lines)
    assert len(ids) == 6
    assert all(set(f.lines) == ids for f in frames), "clean pile-up: no line enters or leaves"
    centre = np.array([[f.lines[t].mean(axis=0) for t in sorted(ids)] for f in frames])  # (T, k, 2)
    step = np.hypot(*np.diff(centre, axis=0).transpose(2, 0, 1))  # (T-1, k)
    assert step.max() > 0.5, "the pile-up glides"
    assert (step < 0.3).mean() > 0.1, "and is pinned now and then (jerky)"
    gaps = np.hypot(*np.diff(centre, axis=1).transpose(2, 0, 1))  # (T, k-1)
    assert np.ptp(gaps, axis=0).max() > 2.0, "spacings change"


def test_default_video_has_lines_entering_and_leaving() -> None:
    cfg = VideoConfig(seed=0, size=(256, 256), n_frames=80)
    seen = [set(f.lines) for f in iter_video(cfg)]
    first = {t: min(i for i, s in enumerate(seen) if t in s) for t in set().union(*seen)}
    last = {t: max(i for i, s in enumerate(seen) if t in s) for t in first}
    assert any(v > 0 for v in first.values()), "some dislocation enters the view"
    assert any(v < len(seen) - 1 for v in last.values()), "some dislocation leaves the view"


def test_write_video_files(tmp_path) -> None:
    import av

    cfg = VideoConfig(seed=2, **SMALL)
    paths = write_video(cfg, tmp_path)
    with av.open(str(paths.video)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "mpeg4"
        assert float(st.average_rate) == pytest.approx(22.0)
        decoded = [(f.time, f.to_ndarray(format="gray")) for f in c.decode(video=0)]
    frames = _frames(cfg)
    assert len(decoded) == cfg.n_frames
    for (t, img), fr in zip(decoded, frames, strict=True):
        assert t == pytest.approx(fr.time_s, abs=1e-3)
        # thin dark lines survive the encoder: small error everywhere, also on the lines
        err = np.abs(img.astype(float) - fr.image)
        assert err.mean() < 4.0
        if fr.lines:
            assert err[fr.labels > 0].mean() < 8.0
    truth = read_truth_lines(paths.truth_lines)
    labels = np.load(paths.truth_labels)
    assert labels["labels"].shape == (cfg.n_frames, *cfg.size)
    for fr in frames:
        assert np.array_equal(labels["labels"][fr.index], fr.labels)
        got = truth.get(fr.index, {})
        assert got.keys() == fr.lines.keys()
        for tid, pts in fr.lines.items():
            np.testing.assert_allclose(got[tid], pts, atol=1e-3)
    header = paths.truth_lines.read_text().splitlines()[0]
    assert header == "frame,time_s,track_id,point,x,y"
    assert VideoConfig.from_dict(json.loads(paths.params.read_text())["config"]) == cfg


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (101, 100)}, "even"),
        ({"size": (-2, 64)}, "size"),
        ({"n_frames": 0}, "n_frames"),
        ({"fps": 0}, "fps"),
        ({"lines": (5, 2)}, "empty range"),
        ({"pin_prob": 1.5}, "pin_prob"),
        ({"glide_speed": -1.0}, "glide_speed"),
        ({"preset": "nope"}, "unknown preset"),
        ({"overrides": {"thickness": (-1.0, 1.0)}}, "thickness"),
    ],
)
def test_bad_video_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match="invalid synth parameters") as info:
        VideoConfig(**kwargs)
    assert message in str(info.value)
