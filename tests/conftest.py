"""Shared test configuration: offscreen Qt, GPU/torch skips, the real-data folder, scripts as modules."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]


def _has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA device (onnxruntime CUDAExecutionProvider)")
    no_torch = pytest.mark.skip(reason="needs the train extra (torch, segmentation-models-pytorch)")
    has_torch = importlib.util.find_spec("torch") is not None
    has_cuda = _has_cuda()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(no_gpu)
        if "train" in item.keywords and not has_torch:
            item.add_marker(no_torch)


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """The real evaluation video and labels (never copied into the project); skip when absent."""
    root = Path(os.environ.get("DISLOTRACK_REALDATA", REPO.parent / "shared" / "realdata" / "tanaka-8um"))
    if not (root / "index.json").is_file():
        pytest.skip(f"real data not found at {root}")
    return root


@pytest.fixture(scope="session")
def load_script():
    """Imports ``scripts/<name>.py`` (scripts are not a package). The module stays in ``sys.modules``
    for the session: a dataclass looks its module up there."""
    loaded: list[str] = []

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
