"""iter_results: order, batching, errors, stop/close with no thread left behind, tiling."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from drawing import curve, line_mask
from media import write_video
from onnx_models import metadata, write_model

from dislotrack.runtime.inference import InferenceConfig, Predictor
from dislotrack.runtime.lines import LineConfig
from dislotrack.runtime.pipeline import PipelineConfig, iter_results, resolve_config
from dislotrack.runtime.results import Frame
from dislotrack.runtime.tiling import TileConfig, tile_boxes


def _bright_lines(shape, lines_xy, level=230, background=30) -> np.ndarray:
    """A dark frame with bright lines: the tiny test model turns bright pixels into masks."""
    img = np.full(shape, background, dtype=np.uint8)
    for xy in lines_xy:
        img[line_mask(shape, xy, 1.5)] = level
    return img


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = write_model(tmp_path_factory.mktemp("m") / "tiny.onnx", metadata(n_masks=3))
    return Predictor(path, InferenceConfig(device="cpu"))


def _frames(n: int, shape=(96, 128)) -> list[Frame]:
    return [
        Frame(
            i,
            i * 0.05,
            _bright_lines(shape, [curve(10, 20 + i, 110, 30 + i), curve(10, 60 + i, 110, 75 + i)]),
        )
        for i in range(n)
    ]


def _own_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("dislotrack")}


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_results_come_in_order_with_tracks_and_spacings(model, batch_size):
    results = list(iter_results(_frames(10), model=model, batch_size=batch_size))
    assert [r.index for r in results] == list(range(10))
    for r in results:
        assert len(r.lines) == 2
        assert sorted(ln.track_id for ln in r.lines) == [0, 1]
        assert len(r.spacings) == 1 and 35 < r.spacings[0].spacing_px < 48
        assert r.provider == "CPUExecutionProvider"
        assert set(r.timings_s) == {"decode", "infer", "post", "track"}
        assert r.labels is not None and r.labels.max() == 2
    assert not _own_threads()


def test_untracked_results_have_no_ids_and_no_spacings(model):
    r = next(iter(iter_results(_frames(2), model=model, track=False)))
    assert all(ln.track_id == -1 for ln in r.lines) and r.spacings == ()


def test_closing_the_generator_early_stops_every_thread(model, tmp_path):
    video = write_video(tmp_path / "v.mp4", [f.image for f in _frames(40)])
    gen = iter_results(str(video), model=model, batch_size=2)
    first = [next(gen) for _ in range(3)]
    assert [r.index for r in first] == [0, 1, 2]
    assert _own_threads()
    gen.close()
    assert not _own_threads()


def test_stop_event_ends_iteration_between_frames(model):
    stop = threading.Event()
    seen = []
    for r in iter_results(_frames(30), model=model, stop=stop, batch_size=1):
        seen.append(r.index)
        if r.index == 4:
            stop.set()
    assert seen == [0, 1, 2, 3, 4]
    time.sleep(0.05)
    assert not _own_threads()


def test_a_failing_source_raises_in_the_consumer_after_the_good_frames(model):
    def frames():
        yield from _frames(3)
        raise RuntimeError("camera unplugged")

    seen = []
    with pytest.raises(RuntimeError, match="camera unplugged"):
        for r in iter_results(frames(), model=model, batch_size=2):
            seen.append(r.index)
    assert seen == [0, 1, 2]
    assert not _own_threads()


def test_bad_threshold_and_missing_source_fail_before_any_thread(model, tmp_path):
    with pytest.raises(ValueError, match="threshold"):
        iter_results(_frames(1), model=model, threshold=1.5)
    with pytest.raises(FileNotFoundError):
        iter_results(str(tmp_path / "none.mp4"), model=model)
    assert not _own_threads()


def test_frames_of_different_sizes_are_batched_separately(model):
    frames = [*_frames(3), Frame(3, 0.2, _bright_lines((64, 64), [curve(5, 30, 60, 34)])), *_frames(2)]
    results = list(iter_results(frames, model=model, batch_size=4))
    assert [r.frame.image.shape for r in results] == [f.image.shape for f in frames]
    assert len(results[3].lines) == 1


def test_tile_boxes_cover_the_frame_with_overlap():
    boxes = tile_boxes(700, 1100, TileConfig(tile=512, overlap=64))
    cover = np.zeros((700, 1100), int)
    for y0, x0, y1, x1 in boxes:
        assert y1 - y0 == 512 and x1 - x0 == 512
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1


def test_tiled_frames_give_the_same_lines_as_whole_frames(model):
    shape = (300, 420)
    xy = [curve(20, 40, 400, 120, bow=15), curve(30, 200, 390, 260, bow=-10), curve(120, 140, 330, 165)]
    frame = Frame(0, 0.0, _bright_lines(shape, xy))
    whole = next(iter(iter_results([frame], model=model, track=False)))
    tiled_cfg = PipelineConfig(tiling=TileConfig(max_side=200, tile=128, overlap=32), lines=LineConfig())
    tiled = next(iter(iter_results([frame], model=model, track=False, config=tiled_cfg)))
    assert len(whole.lines) == len(tiled.lines) == 3
    lengths = sorted(ln.length_px for ln in whole.lines)
    np.testing.assert_allclose(sorted(ln.length_px for ln in tiled.lines), lengths, rtol=0.03)


class FewMasksModel:
    """A model with only ``n`` masks: the ``n`` largest bright lines of its input, one per mask."""

    provider = "test"
    threshold = 0.5

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, []

    def predict(self, images: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        self.calls.append(images.shape)
        out = np.zeros((len(images), self.n, *images.shape[1:]), np.float32)
        for b, image in enumerate(images):
            labels, _ = ndimage.label(image > 128, structure=np.ones((3, 3)))
            sizes = np.bincount(labels.ravel())[1:]
            for c, lab in enumerate(np.argsort(sizes)[::-1][: self.n]):
                out[b, c] = labels == lab + 1
        return out


def test_a_frame_with_more_lines_than_masks_is_retiled():
    """Two pile-ups of four lines and a model with five masks: half-size tiles see all eight."""
    shape = (512, 512)
    xy = [curve(x0, y, x0 + 150, y + 10) for x0 in (20, 340) for y in (100, 180, 260, 340)]
    frame = Frame(0, 0.0, _bright_lines(shape, xy))
    model = FewMasksModel(5)
    result = next(iter(iter_results([frame], model=model, track=False)))
    assert len(result.lines) == 8
    assert any(s[1:] != shape for s in model.calls)  # tiles were run
    off = PipelineConfig(tiling=TileConfig(saturated_fraction=0.0))
    assert len(next(iter(iter_results([frame], model=FewMasksModel(5), track=False, config=off))).lines) == 5


def test_batch_size_comes_from_the_config_unless_given(model):
    assert resolve_config(PipelineConfig(batch_size=1), None).batch_size == 1
    assert resolve_config(PipelineConfig(batch_size=1), 3).batch_size == 3
    assert resolve_config(None, None).batch_size == PipelineConfig().batch_size
    with pytest.raises(ValueError, match="batch size"):
        iter_results(_frames(1), model=model, batch_size=0)


def test_post_workers_follow_the_provider():
    from dislotrack.runtime.pipeline import default_post_workers

    assert default_post_workers("CPUExecutionProvider", 16) == 1
    assert default_post_workers("CUDAExecutionProvider", 16) == 8
    assert default_post_workers("TensorrtExecutionProvider", 4) == 2
    assert default_post_workers("CUDAExecutionProvider", 2) == 1
