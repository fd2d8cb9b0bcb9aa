"""Torch-free core of dislotrack: frame sources, ONNX inference, line extraction, tracking, export.

Nothing here imports torch or Qt, so this is what gets deployed next to the microscope.
"""

from dislotrack.runtime.results import Frame, FrameResult, Line, Spacing

__all__ = ["Frame", "FrameResult", "Line", "Spacing"]
