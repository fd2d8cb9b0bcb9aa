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

__all__ = [
    "MAX_LINES",
    "BackgroundConfig",
    "DistractorConfig",
    "LineStyleConfig",
    "PileupConfig",
    "SynthConfig",
    "SynthSample",
    "generate",
    "iter_samples",
    "list_presets",
    "load_preset",
    "regenerate",
]
