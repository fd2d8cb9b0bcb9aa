"""Synthetic in-situ TEM images, masks and videos with known truth (numpy/scipy only).

`generate` draws one sample from a preset (data files in ``presets/``), `regenerate` rebuilds it bit for
bit from its JSON record and `iter_samples` streams samples for training without touching the disk.
"""

from dislotrack.runtime.synth.config import (
    MAX_LINES,
    BackgroundConfig,
    DistractorConfig,
    LineStyleConfig,
    PileupConfig,
    SynthConfig,
    list_presets,
    load_preset,
)
from dislotrack.runtime.synth.generator import SynthSample, generate, iter_samples, regenerate
from dislotrack.runtime.synth.video import (
    VideoConfig,
    VideoFrameTruth,
    VideoPaths,
    clean_pileup,
    iter_video,
    read_truth_lines,
    write_video,
)

__all__ = [
    "MAX_LINES",
    "BackgroundConfig",
    "DistractorConfig",
    "LineStyleConfig",
    "PileupConfig",
    "SynthConfig",
    "SynthSample",
    "VideoConfig",
    "VideoFrameTruth",
    "VideoPaths",
    "clean_pileup",
    "generate",
    "iter_samples",
    "iter_video",
    "list_presets",
    "load_preset",
    "read_truth_lines",
    "regenerate",
    "write_video",
]
