"""The batch job: every source through ``iter_results`` into its own output folder.

All sources are opened (and the model loaded) before anything is processed, so a typo in the third
file name fails in a second, not after two hours. One model session serves every source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dislotrack.runtime.export import ExportConfig, RunWriter
from dislotrack.runtime.inference import InferenceConfig, Predictor
from dislotrack.runtime.pipeline import PipelineConfig, iter_results
from dislotrack.runtime.results import FrameResult
from dislotrack.runtime.sources import FrameSource, open_source

log = logging.getLogger(__name__)

VERSIONED = (
    "dislotrack",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "scipy",
    "scikit-image",
    "av",
    "pyarrow",
)


@dataclass(frozen=True)
class ProcessOptions:
    """Settings of ``dislotrack process`` (one set for all sources of a call)."""

    device: str = "auto"
    flips: int = 1  # network passes per frame, mirrored (InferenceConfig.flips): 1, 2 or 4
    threshold: float | None = None
    track: bool = True
    drift: bool = False
    batch_size: int = 4
    max_frames: int | None = None
    follow: bool = False
    frame_interval_s: float | None = None
    progress: bool = True
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def inference(self) -> InferenceConfig:
        return InferenceConfig(device=self.device, flips=self.flips)


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_fingerprint(spec: str) -> dict[str, Any]:
    """Hash of the input: a file's content; a folder's listing (names, sizes); nothing for streams."""
    path = Path(spec)
    if path.is_file():
        return {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    if path.is_dir():
        listing = "\n".join(f"{p.name}\t{p.stat().st_size}" for p in sorted(path.iterdir()) if p.is_file())
        return {"listing_sha256": hashlib.sha256(listing.encode()).hexdigest()}
    return {}


def output_dirs(specs: Sequence[str], out: Path) -> list[Path]:
    """One folder per source, named after it; repeated names get a numeric suffix."""
    dirs, used = [], set()
    for spec in specs:
        stem = Path(spec.rstrip("/")).stem or "source"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        dirs.append(out / name)
    return dirs


def run_info(source: FrameSource, predictor: Predictor, options: ProcessOptions) -> dict[str, Any]:
    """What ``run.json`` records before the first frame: input, model, provider, settings, versions."""
    model = predictor.model
    return {
        "format": "dislotrack-run",
        "version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {**source.describe(), **source_fingerprint(source.spec)},
        "model": {
            "name": model.name,
            "path": str(model.path),
            "sha256": model.sha256,
            "metadata": predictor.meta.raw,
        },
        "provider": predictor.provider,
        "threshold": options.threshold if options.threshold is not None else predictor.threshold,
        "settings": dataclasses.asdict(options),
        "versions": versions(),
    }


def _progress(total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True, leave=True)


def process_source(
    source: FrameSource,
    out_dir: Path,
    predictor: Predictor,
    options: ProcessOptions,
    on_result: Callable[[FrameResult], None] | None = None,
) -> dict[str, Any]:
    """Process one opened source into ``out_dir``; returns the summary also stored in run.json."""
    info = run_info(source, predictor, options)
    t0 = time.perf_counter()
    total = (
        source.n_frames
        if options.max_frames is None
        else min(source.n_frames or options.max_frames, options.max_frames)
    )
    with (
        RunWriter(out_dir, info, options.export) as writer,
        _progress(total, out_dir.name, options.progress) as bar,
    ):
        results = iter_results(
            source,
            model=predictor,
            threshold=options.threshold,
            track=options.track,
            drift=options.drift,
            batch_size=options.batch_size,
            config=dataclasses.replace(options.pipeline, with_labels=False),
        )
        try:
            for result in results:
                writer.write(result)
                if on_result is not None:
                    on_result(result)
                bar.update(1)
                if options.max_frames is not None and writer.frames >= options.max_frames:
                    break
        finally:
            results.close()
            source.close()
            wall = time.perf_counter() - t0
            writer.info["wall_s"] = round(wall, 3)
            writer.info["frames_per_s"] = round(writer.frames / wall, 3) if wall > 0 else None
    return {**writer.summary("complete"), "out": str(out_dir), "wall_s": round(wall, 3)}


def process(
    specs: Sequence[str],
    out: str | Path,
    model: str | Path | None = None,
    options: ProcessOptions | None = None,
) -> list[dict[str, Any]]:
    """``dislotrack process``: open everything first, then process each source in turn."""
    options = options or ProcessOptions()
    if not specs:
        raise ValueError("no source given")
    if options.threshold is not None and not 0.0 < options.threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {options.threshold}")
    if options.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {options.batch_size}")
    predictor = Predictor(model, options.inference())
    log.info("provider: %s", predictor.provider)
    sources = []
    try:
        for spec in specs:
            sources.append(
                open_source(spec, follow=options.follow, frame_interval_s=options.frame_interval_s)
            )
    except BaseException:
        for s in sources:
            s.close()
        raise
    summaries = []
    dirs = output_dirs([str(s) for s in specs], Path(out))
    for i, (source, out_dir) in enumerate(zip(sources, dirs, strict=True)):
        try:
            summaries.append(process_source(source, out_dir, predictor, options))
        except BaseException:
            for s in sources[i + 1 :]:
                s.close()
            raise
    return summaries
