"""Frame sources: codecs, honest timestamps, grey conversion, stacks, folders and clear errors."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import tifffile
from media import ramp_frames, write_video
from PIL import Image

from dislotrack.runtime.sources import FollowConfig, open_source, to_grey


@pytest.mark.parametrize(
    ("codec", "suffix"), [("mpeg4", ".mp4"), ("libx264", ".mov"), ("libx265", ".mp4"), ("mpeg4", ".avi")]
)
def test_video_codecs_decode_to_grey_with_full_range_levels(tmp_path, codec, suffix):
    frames = ramp_frames(6)
    path = write_video(tmp_path / f"v{suffix}", frames, codec=codec)
    with open_source(path) as src:
        got = list(src)
        info = src.describe()
    assert [f.index for f in got] == list(range(6))
    for f, want in zip(got, frames, strict=True):
        assert f.image.dtype == np.uint8 and f.image.shape == want.shape
        assert abs(float(f.image.mean()) - float(want.mean())) < 2.0
    assert info["width"] == 96 and info["height"] == 64


def test_timestamps_come_from_pts_not_from_a_frame_rate(tmp_path):
    pts = [0, 40, 100, 180, 190, 400]
    path = write_video(tmp_path / "vfr.mkv", ramp_frames(len(pts)), codec="mpeg4", pts_ms=pts)
    times = [f.time_s for f in open_source(path)]
    np.testing.assert_allclose(times, np.array(pts) / 1000.0, atol=1e-3)


def test_rgb_video_becomes_grey(tmp_path):
    rgb = [np.dstack([np.full((32, 32), v, np.uint8)] * 3) for v in (50, 150)]
    path = write_video(tmp_path / "rgb.mp4", rgb, rgb=True)
    means = [float(f.image.mean()) for f in open_source(path)]
    assert means == pytest.approx([50, 150], abs=2.5)


def test_tiff_stack_keeps_16_bit_and_reads_imagej_interval(tmp_path):
    stack = np.stack([np.full((20, 30), 1000 * (i + 1), np.uint16) for i in range(4)])
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX", "finterval": 0.05})
    frames = list(open_source(path))
    assert len(frames) == 4
    assert frames[2].image.dtype == np.uint16 and int(frames[2].image[0, 0]) == 3000
    assert frames[3].time_s == pytest.approx(0.15)


def test_tiff_without_clock_has_nan_times(tmp_path):
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    frames = list(open_source(path))
    assert len(frames) == 3 and all(math.isnan(f.time_s) for f in frames)


def test_folder_is_sorted_naturally_and_rgb_png_is_grey(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(np.full((8, 8, 3), i * 10, np.uint8)).save(tmp_path / f"img_{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = list(open_source(tmp_path, frame_interval_s=0.5))
    assert [int(f.image[0, 0]) for f in frames] == [10, 20, 100]
    assert [f.time_s for f in frames] == [0.0, 0.5, 1.0]


def test_to_grey_uses_luma_weights():
    rgb = np.zeros((1, 1, 3), np.uint8)
    rgb[..., 1] = 200
    assert int(to_grey(rgb)[0, 0]) == round(0.587 * 200)


def test_missing_file_and_non_video_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(ValueError, match="not a readable video"):
        open_source(junk)
    text = tmp_path / "text.avi"
    text.write_text("hello")
    with pytest.raises(ValueError):
        open_source(text)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no"):
        open_source(empty)


def test_unknown_url_scheme_is_refused():
    with pytest.raises(ValueError, match="unsupported source URL"):
        open_source("gopher://example.invalid/x")


def test_follow_mode_picks_up_frames_written_later(tmp_path):
    Image.fromarray(np.full((8, 8), 1, np.uint8)).save(tmp_path / "f_1.png")
    src = open_source(tmp_path, follow=True, follow_config=FollowConfig(poll_s=0.05, idle_timeout_s=0.6))

    def later():
        time.sleep(0.2)
        for i in (2, 3):
            Image.fromarray(np.full((8, 8), i, np.uint8)).save(tmp_path / f"f_{i}.png")

    writer = threading.Thread(target=later)
    writer.start()
    values = [int(f.image[0, 0]) for f in src]
    writer.join()
    assert values == [1, 2, 3]


def test_close_from_another_thread_stops_iteration(tmp_path):
    path = write_video(tmp_path / "v.mp4", ramp_frames(30))
    src = open_source(path)
    got = []
    for frame in src:
        got.append(frame.index)
        if frame.index == 4:
            threading.Thread(target=src.close).start()
            time.sleep(0.05)
    assert got[-1] < 10


def test_follow_mode_reads_a_video_that_is_still_being_written(tmp_path):
    import av

    path = tmp_path / "growing.mkv"
    started = threading.Event()

    def record():
        with av.open(str(path), "w") as c:
            s = c.add_stream("mpeg4", rate=22)
            s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
            for i in range(40):
                for p in s.encode(
                    av.VideoFrame.from_ndarray(np.full((64, 96), 20 + 4 * i, np.uint8), format="gray")
                ):
                    c.mux(p)
                if i % 10 == 9:
                    started.set()
                    time.sleep(0.3)
            for p in s.encode():
                c.mux(p)

    writer = threading.Thread(target=record)
    writer.start()
    started.wait(5)
    src = open_source(path, follow=True, follow_config=FollowConfig(poll_s=0.05, idle_timeout_s=1.5))
    indices = [f.index for f in src]
    writer.join()
    assert indices == list(range(40))
