"""`dislotrack process`: outputs, their consistency, and bad input that leaves valid partial outputs."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from drawing import curve, line_mask
from media import write_video
from onnx_models import metadata, write_model

from dislotrack.cli.main import main


def _frames(n: int, shape=(96, 128)) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.full(shape, 30, np.uint8)
        for y in (20 + i, 60 + i):
            img[line_mask(shape, curve(10, y, 110, y + 12), 1.5)] = 230
        out.append(img)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("model") / "tiny.onnx", metadata(n_masks=3))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", _frames(12))


def _run(capsys, *args) -> tuple[int, str]:
    code = main(["process", *map(str, args), "--quiet"])
    return code, capsys.readouterr().err


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_process_writes_consistent_outputs(tmp_path, tiny, video, capsys):
    code, err = _run(capsys, video, "--out", tmp_path, "--model", tiny, "--device", "cpu", "--overlay")
    assert code == 0, err
    out = tmp_path / "clip"
    rows = _rows(out / "lines.csv")
    assert len(rows) == 12 * 2 * 50
    assert {r["point"] for r in rows} == {str(i) for i in range(50)}
    table = pq.read_table(out / "lines.parquet")
    assert table.num_rows == len(rows)
    np.testing.assert_allclose(table["x"].to_numpy(), [float(r["x"]) for r in rows], atol=1e-3)
    times = sorted({float(r["time_s"]) for r in rows})
    np.testing.assert_allclose(np.diff(times), 1 / 22, atol=1e-4)
    tracks = _rows(out / "tracks.csv")
    assert [int(t["frames_seen"]) for t in tracks] == [12, 12]
    spacing = _rows(out / "spacing.csv")
    assert len(spacing) == 12 and all(35 < float(s["spacing_px"]) < 48 for s in spacing)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["frames"] == 12
    assert run["provider"] == "CPUExecutionProvider"
    assert run["model"]["metadata"]["n_masks"] == 3
    assert len(run["source"]["sha256"]) == 64
    with av.open(str(out / "overlay.mp4")) as overlay:
        times = [float(f.pts * f.time_base) for f in overlay.decode(video=0)]
    np.testing.assert_allclose(times, np.arange(12) / 22, atol=2e-3)


def test_one_folder_per_source(tmp_path, tiny, video, capsys):
    code, err = _run(capsys, video, video, "--out", tmp_path, "--model", tiny, "--max-frames", "2")
    assert code == 0, err
    assert (tmp_path / "clip" / "run.json").is_file() and (tmp_path / "clip-2" / "run.json").is_file()


def test_joining_is_on_unless_no_join_and_run_json_says_which(tmp_path, tiny, video, capsys):
    for flags, out in (((), "on"), (("--no-join",), "off")):
        code, err = _run(capsys, video, "--out", tmp_path / out, "--model", tiny, "--max-frames", "2", *flags)
        assert code == 0, err
    on, off = (json.loads((tmp_path / o / "clip" / "run.json").read_text()) for o in ("on", "off"))
    assert on["settings"]["pipeline"]["lines"]["join_gap_px"] > 0
    assert off["settings"]["pipeline"]["lines"]["join_gap_px"] == 0


def test_flip_passes_find_each_line_once_and_run_json_records_them(tmp_path, tiny, video, capsys):
    """The tiny model is mirror-symmetric, so every flipped pass repeats the plain one: the line
    extraction must merge those duplicates and give the same lines as a single pass."""
    for flips in ("1", "4"):
        code, err = _run(capsys, video, "--out", tmp_path / flips, "--model", tiny, "--flips", flips)
        assert code == 0, err
    one, four = (_rows(tmp_path / f / "clip" / "lines.csv") for f in ("1", "4"))
    assert len(four) == len(one) == 12 * 2 * 50
    np.testing.assert_allclose([float(r["x"]) for r in four], [float(r["x"]) for r in one], atol=1e-3)
    run = json.loads((tmp_path / "4" / "clip" / "run.json").read_text())
    assert run["settings"]["flips"] == 4


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (
            lambda d: (d / "junk.mp4").write_bytes(b"\x00nonsense" * 99) and d / "junk.mp4",
            "not a readable video",
        ),
        (lambda d: (d / "x.avi").write_text("plain text") and d / "x.avi", "not a readable video"),
    ],
)
def test_bad_sources_fail_with_one_line_and_no_output(tmp_path, tiny, capsys, make, message):
    code, err = _run(capsys, make(tmp_path), "--out", tmp_path / "out", "--model", tiny)
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def tiny_copy(tmp_path):
    return write_model(tmp_path / "ok.onnx", metadata(n_masks=3))


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is present")
def test_wrong_model_files_fail_with_one_line(tmp_path, video, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not onnx")
    code, err = _run(capsys, video, "--out", tmp_path / "o", "--model", bad)
    assert code == 2 and "not a loadable ONNX model" in err and err.count("\n") == 1
    code, err = _run(capsys, video, "--out", tmp_path / "o", "--model", tmp_path / "nope.onnx")
    assert code == 2 and "model file not found" in err
    code, err = _run(
        capsys, video, "--out", tmp_path / "o", "--device", "cuda", "--model", tiny_copy(tmp_path)
    )
    assert code == 2 and "cuda" in err and err.count("\n") == 1


def test_corrupt_frames_stop_with_an_error_and_leave_valid_partial_outputs(tmp_path, tiny, capsys):
    rng = np.random.default_rng(0)
    frames = _frames(40)
    video = write_video(tmp_path / "damaged.avi", frames)
    data = bytearray(video.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4000] = rng.integers(0, 255, 4000, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    code, err = _run(capsys, video, "--out", tmp_path / "o", "--model", tiny)
    assert code == 2 and "corrupt video data" in err and err.count("\n") == 1
    out = tmp_path / "o" / "damaged"
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "corrupt" in run["error"]
    assert 0 < run["frames"] < 40
    rows = _rows(out / "lines.csv")
    assert len({r["frame"] for r in rows}) == run["frames"]
    assert pq.read_table(out / "lines.parquet").num_rows == len(rows)
    assert len(_rows(out / "tracks.csv")) >= 2


def test_truncated_video_is_reported(tmp_path, tiny, capsys):
    video = write_video(tmp_path / "cut.avi", _frames(30))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    code, err = _run(capsys, video, "--out", tmp_path / "o", "--model", tiny)
    assert code == 2 and "truncated" in err
    assert json.loads((tmp_path / "o" / "cut" / "run.json").read_text())["status"] == "failed"


def test_unsupported_codec_is_a_clear_error(tmp_path, tiny, capsys):
    video = write_video(tmp_path / "odd.avi", _frames(4))
    data = video.read_bytes()
    assert b"FMP4" in data
    video.write_bytes(data.replace(b"FMP4", b"ZZZZ"))  # a FourCC no decoder knows
    code, err = _run(capsys, video, "--out", tmp_path / "o", "--model", tiny)
    assert code == 2 and "unsupported video codec" in err and err.count("\n") == 1


def test_bad_settings_fail_before_any_output(tmp_path, tiny, video, capsys):
    for args in (("--threshold", "1.5"), ("--batch-size", "0")):
        code, err = _run(capsys, video, "--out", tmp_path / "o", "--model", tiny, *args)
        assert code == 2 and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"dislotrack {version('dislotrack')}"
