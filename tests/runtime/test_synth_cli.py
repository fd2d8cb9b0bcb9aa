"""``dislotrack synth ...`` and the dataset writer."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from dislotrack.cli.main import main
from dislotrack.runtime.synth import iter_samples, regenerate
from dislotrack.runtime.synth.dataset import read_png, read_sample, to_uint8, write_dataset, write_png


def test_image_command_writes_a_regenerable_sample(tmp_path, capsys) -> None:
    rc = main(
        ["synth", "image", "--out", str(tmp_path), "--size", "64x96", "--seed", "3", "--set", "lines=[2,3]"]
    )
    assert rc == 0
    image, masks, lines, params = read_sample(tmp_path, "sample")
    assert image.shape == (64, 96) and masks.shape == (len(lines), 64, 96)
    assert params["config"]["pileups"]["lines"] == [2, 3]
    again = regenerate(tmp_path / "params" / "sample.json")
    assert np.array_equal(to_uint8(again.image), image)
    assert np.array_equal(again.masks, masks)
    assert np.array_equal(read_png(tmp_path / "labels" / "sample.png"), again.labels)
    assert "dislocations" in capsys.readouterr().out
    # --params regenerates the same files
    rc = main(
        ["synth", "image", "--params", str(tmp_path / "params" / "sample.json"), "--out", str(tmp_path / "b")]
    )
    assert rc == 0
    assert np.array_equal(read_sample(tmp_path / "b", "sample")[0], image)


def test_dataset_matches_the_training_stream(tmp_path) -> None:
    rc = main(
        ["synth", "dataset", "--n", "4", "--out", str(tmp_path), "--workers", "2", "--size", "64", "--quiet"]
    )
    assert rc == 0
    index = json.loads((tmp_path / "dataset.json").read_text())
    assert index["n"] == 4 and index["preset"] == "m2"
    stream = list(itertools.islice(iter_samples("m2", seed=0, size=(64, 64)), 4))
    for i, s in enumerate(stream):
        image, masks, lines, params = read_sample(tmp_path, f"{i:06d}")
        assert np.array_equal(image, to_uint8(s.image))
        assert np.array_equal(masks, s.masks)
        assert all(np.array_equal(a, b) for a, b in zip(lines, s.lines, strict=True))
        assert params["seed"] == [0, i]


def test_dataset_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="workers"):
        write_dataset(tmp_path, n=2, workers=0)
    with pytest.raises(ValueError, match="unknown preset"):
        write_dataset(tmp_path, preset="zz", n=2)


def test_cli_reports_bad_parameters(tmp_path, capsys) -> None:
    assert main(["synth", "image", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["synth", "image", "--out", str(tmp_path), "--set", "lam1=[9,1]"]) == 2
    assert "empty range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "image", "--out", str(tmp_path), "--size", "-4"])


def test_video_command(tmp_path) -> None:
    rc = main(
        ["synth", "video", "--out", str(tmp_path), "--frames", "6", "--size", "64x96", "--clean", "--quiet"]
    )
    assert rc == 0
    for name in ("video.mp4", "truth_lines.csv", "truth_labels.npz", "video.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "video.json").read_text())["config"]["enter_leave"] is False


def test_sheet_with_real_frames(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    real = tmp_path / "real" / "images"
    real.mkdir(parents=True)
    (tmp_path / "real" / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(real / f"f{i}.png", rng.integers(0, 255, (40, 70), dtype=np.uint8))
        m = np.zeros((40, 70), dtype=np.uint8)
        m[10 + i, 5:60] = 255
        write_png(tmp_path / "real" / "masks" / f"f{i}.png", m)
    out = tmp_path / "sheet.png"
    rc = main(["synth", "sheet", "--out", str(out), "--n", "2", "--size", "48", "--real", str(real)])
    assert rc == 0
    img = read_png(out)
    assert img.shape[0] > 100 and img.shape[1] > 300
