"""Shared test configuration: offscreen Qt, GPU/torch skips and the optional real-data folder."""

from __future__ import annotations

import importlib.util
import os
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
