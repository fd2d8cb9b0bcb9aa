"""``dislotrack live``: registered by the CLI, importable without Qt, clear message without the gui extra."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from onnx_models import metadata, write_model

from dislotrack.cli.main import build_parser

WITHOUT_QT = "import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None; "


def test_live_command_parses_its_options(tmp_path):
    args = build_parser().parse_args(
        ["live", "/dev/video0", "--follow", "--threshold", "0.4", "--record", str(tmp_path), "--speed", "2"]
    )
    assert args.command == "live" and args.source == "/dev/video0"
    assert args.follow and args.threshold == 0.4 and args.record == tmp_path and args.speed == 2.0
    assert args.pace is None and build_parser().parse_args(["live", "v.mp4", "--no-pace"]).pace is False
    assert args.flips == 1 and build_parser().parse_args(["live", "v.mp4", "--flips", "4"]).flips == 4


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_cli_imports_without_qt_and_live_names_the_missing_extra():
    done = run_python(WITHOUT_QT + "from dislotrack.cli.main import main; sys.exit(main(['live', 'v.mp4']))")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("pip install 'dislotrack[gui]'")


@pytest.mark.parametrize("bad", [["--threshold", "1.5"], ["--speed", "0"]])
def test_bad_live_settings_are_one_line_errors(bad):
    argv = ["live", "v.mp4", *bad]
    done = run_python(WITHOUT_QT + f"from dislotrack.cli.main import main; sys.exit(main({argv}))")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "must be" in done.stderr


@pytest.mark.gui
def test_sigterm_closes_the_live_window_and_completes_the_recording(demo_video, tmp_path):
    model = write_model(tmp_path / "tiny.onnx", metadata(n_masks=4), gain=-25.0, level=0.4)
    out = tmp_path / "rec"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    cmd = [
        sys.executable,
        "-m",
        "dislotrack.cli",
        "live",
        str(demo_video.path),
        "--model",
        str(model),
        "--record",
        str(out),
        "--speed",
        "0.5",
    ]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = time.monotonic() + 60
            while not (out / "spacing.csv").is_file() or (out / "lines.csv").stat().st_size < 2000:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "no results recorded"
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["frames"] >= 1
