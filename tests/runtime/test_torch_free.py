"""The deployed runtime must work where torch cannot even be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from media import ramp_frames, write_video
from onnx_models import metadata, write_model

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("torch", "torchvision", "segmentation_models_pytorch", "PySide6", "pyqtgraph")

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
    from dislotrack.runtime.pipeline import iter_results
    results = list(iter_results(sys.argv[1], model=sys.argv[2], device="cpu"))
    assert len(results) == 5, len(results)
    leaked = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not leaked, leaked
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch-free OK", len(results))
    """
)


def test_runtime_imports_and_runs_without_torch(tmp_path):
    video = write_video(tmp_path / "v.mp4", ramp_frames(5))
    model = write_model(tmp_path / "m.onnx", metadata(n_masks=2))
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + RUN, str(video), str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch-free OK 5" in proc.stdout
