"""The deployed runtime must work where torch (and the optional matplotlib) cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
from drawing import curve, line_mask
from media import write_video
from onnx_models import metadata, write_model

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("torch", "torchvision", "segmentation_models_pytorch", "PySide6", "pyqtgraph", "matplotlib")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    """
)

RUN = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import dislotrack.runtime as rt
    for mod in pkgutil.walk_packages(rt.__path__, "dislotrack.runtime."):
        importlib.import_module(mod.name)
    from pathlib import Path
    from dislotrack.runtime.batch import ProcessOptions, process
    from dislotrack.runtime.pipeline import iter_results
    results = list(iter_results(sys.argv[1], model=sys.argv[2], device="cpu"))
    assert len(results) == 5, len(results)
    (summary,) = process([sys.argv[1]], sys.argv[3], sys.argv[2], ProcessOptions(progress=False))
    assert summary["frames"] == 5 and summary["status"] == "complete", summary
    assert summary["spacings"] == 5, summary  # a figure was due: matplotlib's absence is no error
    assert not (Path(summary["out"]) / "spacing.png").exists()
    leaked = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not leaked, leaked
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch-free OK", len(results))
    """
)


def test_runtime_imports_and_runs_without_torch(tmp_path):
    frames = []
    for i in range(5):
        img = np.full((96, 128), 30, np.uint8)
        for y in (20 + i, 60 + i):
            img[line_mask(img.shape, curve(10, y, 110, y + 12), 1.5)] = 230
        frames.append(img)
    video = write_video(tmp_path / "v.mp4", frames)
    model = write_model(tmp_path / "m.onnx", metadata(n_masks=2))
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + RUN, str(video), str(model), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch-free OK 5" in proc.stdout
