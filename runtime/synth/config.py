"""Generator parameters: dataclasses of ranges, loaded from preset TOML files, validated in one place.

A preset holds *ranges*; every sample draws concrete values from them with its own seeded RNG, so the
preset dict plus the seed is all that `regenerate` needs. Ranges are written ``[lo, hi]`` (or one number
for a fixed value) and are inclusive; integer fields draw integers.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

MAX_LINES = 20
"""Hard limit of dislocations (= model output masks) per image."""

Range = tuple[float, float]
IntRange = tuple[int, int]


@dataclass(frozen=True)
class BackgroundConfig:
    """Perlin background of Govind et al. plus tone, illumination and optional real patches."""

    kind: str = "perlin"  # "perlin" or "patches"
    lam1: Range = (10.0, 100.0)  # lattice spacing (px) of the main Perlin field P1
    lam2: Range = (10.0, 100.0)  # lattice spacing of the detail field P2
    wp: Range = (0.2, 0.4)  # weight of P2
    ww: Range = (0.5, 0.7)  # weight of white noise X1 in [-1, 1]
    s1: Range = (1.0, 1.0)  # first Gaussian filter
    lam4: Range = (20.0, 100.0)  # lattice spacing of P4, which modulates the second noise
    noise_weight: Range = (0.2, 0.4)  # weight of sigma(P4) * X2
    s2: Range = (0.6, 0.8)  # second Gaussian filter
    level: Range = (0.5, 0.5)  # mean grey after the first filter (0.5, 1.0 = the paper's plain procedure)
    contrast: Range = (1.0, 1.0)  # texture contrast after the first filter
    gradient: Range = (0.0, 0.0)  # strength of a linear illumination ramp (fraction of grey)
    vignette: Range = (0.0, 0.0)  # darkening of the corners (fraction of grey)
    bend: Range = (0.0, 0.0)  # strength of broad bend contours: 1 + bend * P5, P5 Perlin scaled to [-1, 1]
    bend_lam: Range = (150.0, 400.0)  # lattice spacing of P5 (px)
    patch_dir: str = ""  # folder of dislocation-free real patches (kind = "patches")
    patch_opacity: Range = (0.3, 0.7)  # opacity of the second patch over the first
    patch_scale: Range = (0.8, 1.25)  # zoom of each patch before the crop


@dataclass(frozen=True)
class PileupConfig:
    """Pairs of slip traces and the pile-ups of dislocations spanning them."""

    n: IntRange = (1, 4)  # pile-ups per image
    orientations: IntRange = (1, 3)  # distinct slip-trace orientations per image
    lines: IntRange = (1, 8)  # dislocations per pile-up
    slip_width: Range = (50.0, 160.0)  # perpendicular distance between the two traces (px)
    inclination_deg: Range = (0.0, 180.0)  # slip-trace direction
    line_angle_deg: Range = (-35.0, 35.0)  # chord of a dislocation against the trace normal
    bow: Range = (0.05, 0.6)  # bow height / slip width (sign random, shared by a pile-up)
    bow_jitter: Range = (0.0, 0.08)  # per-dislocation change of the bow
    asymmetry: Range = (-0.4, 0.4)  # skew of the bow towards one trace
    support_points: IntRange = (2, 5)  # interior spline support points
    point_noise: Range = (0.0, 0.04)  # per-point noise, fraction of the slip width
    spacing: Range = (6.0, 40.0)  # spacing along the traces at the head of a pile-up (px)
    spacing_growth: Range = (0.9, 1.35)  # ratio of consecutive spacings
    spacing_jitter: Range = (0.0, 0.25)  # relative random change of each spacing
    pair_prob: float = 0.1  # chance that a spacing is a nearly touching pair
    pair_spacing: Range = (1.0, 2.5)  # spacing of such pairs (px)
    margin: float = 0.1  # pile-up centres keep this fraction of the size from the border
    min_separation: float = 0.0  # pile-up centres at least this fraction of the size apart (if possible)
    min_visible_length: float = 8.0  # shorter visible parts are neither drawn nor labelled (px)
    labelme: str = ""  # file or folder of labelme JSON polylines used as support-point shapes
    labelme_prob: float = 0.0  # chance that a pile-up takes its shape from a labelme polyline


@dataclass(frozen=True)
class LineStyleConfig:
    """How a dislocation is drawn: thickness, darkness and contrast profile across the line."""

    thickness: Range = (1.0, 5.0)  # full width at half darkness (px)
    thickness_power: float = 1.0  # >1 favours thin lines: t = lo + (hi - lo) * u**power
    darkness: Range = (0.15, 0.5)  # fractional darkening of the local background at the core
    darkness_floor: float = 0.0  # darkness >= floor * background contrast (visible on busy textures)
    darkness_variation: Range = (0.0, 0.3)  # smooth variation of darkness along the line
    fringe: Range = (0.0, 0.3)  # bright fringes beside the core (diffraction contrast)
    pileup_style_jitter: float = 0.25  # relative spread of style within one pile-up
    label_width: float = 1.6  # a line's mask is at least this wide (px): thin lines get wider labels
    # and at most this wide when > 0: wide lines keep a centreline label, as hand labels of real
    # frames are (about 3.8 px wide on tanaka-8um); 0: the label is as wide as the drawn line
    label_max_width: float = 0.0
    defocus_prob: float = 0.0  # chance that a pile-up is out of focus: wide, soft, faint lines
    defocus_thickness: Range = (5.0, 9.0)  # width of out-of-focus lines (px), replaces ``thickness``
    defocus_darkness: Range = (0.4, 0.8)  # factor on the darkness (and its floor) of out-of-focus lines


@dataclass(frozen=True)
class DistractorConfig:
    """Things that are drawn but never labelled."""

    trace_prob: float = 0.7  # chance that a pile-up's own slip traces are visible
    extra_traces: IntRange = (0, 6)  # further slip traces in the image's orientations
    trace_contrast: Range = (0.02, 0.1)  # |fractional change| of a trace (sign random: dark or light)
    trace_width: Range = (1.0, 3.0)  # trace width (px)
    trace_double_prob: float = 0.3  # chance that a trace is a double line
    trace_double_gap: Range = (2.0, 6.0)  # gap of double traces (px)
    boundaries: IntRange = (0, 1)  # grain/twin boundaries (contrast steps)
    boundary_step: Range = (0.05, 0.2)  # |fractional step| across a boundary
    boundary_softness: Range = (0.5, 3.0)  # edge width of the step (px)
    dots: IntRange = (0, 20)  # small dark dots
    dot_radius: Range = (0.7, 2.5)
    dot_darkness: Range = (0.05, 0.35)
    tangles: IntRange = (0, 0)  # clusters of short, randomly oriented dislocation segments (not in pile-ups)
    tangle_radius: Range = (40.0, 120.0)
    tangle_lines: IntRange = (8, 25)
    tangle_length: Range = (15.0, 70.0)
    tangle_thickness: Range = (1.0, 2.5)  # one width for all segments of an image
    tangle_darkness: Range = (0.1, 0.4)
    # Slip-band shading: on real frames a dense pile-up often lies in a strip darker than its
    # surroundings, bounded by its two slip traces (tanaka-8um frames 140-300).
    band_prob: float = 0.0  # chance that the strip between a pile-up's traces is shaded
    band_darkness: Range = (0.1, 0.45)  # fractional darkening inside the strip
    band_softness: Range = (2.0, 12.0)  # edge width across the traces (px); 3x that along them
    band_margin: Range = (20.0, 150.0)  # the shading runs this far beyond the pile-up's end lines (px)
    # Traces drawn like the lines they bound: on real frames a pile-up's slip traces are often as wide
    # and dark as its dislocations, so darkness and width cannot tell them apart, only shape can.
    trace_match_prob: float = 0.0  # chance that a pile-up's traces take the style of its lines
    inner_traces: IntRange = (0, 0)  # further such traces parallel to them, across the pile-up's lines
    trace_match_jitter: float = 0.25  # relative spread of width and darkness of those further traces


@dataclass(frozen=True)
class SynthConfig:
    """Everything a preset fixes; together with a seed and the size it determines a sample."""

    name: str = "custom"
    max_lines: int = MAX_LINES
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    pileups: PileupConfig = field(default_factory=PileupConfig)
    style: LineStyleConfig = field(default_factory=LineStyleConfig)
    distractors: DistractorConfig = field(default_factory=DistractorConfig)

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError(f"invalid synth parameters ({self.name}): " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        return _build(cls, data, "")

    def with_overrides(self, **overrides: Any) -> SynthConfig:
        """Copy with fields replaced: ``section={...}`` dicts, ``section__field=v`` or a unique field name."""
        data = dataclasses.asdict(self)
        sections = {f.name for f in dataclasses.fields(self) if f.name in _SECTIONS}
        for key, value in overrides.items():
            if key in sections and isinstance(value, dict):
                for sub, v in value.items():
                    if sub not in data[key]:
                        raise ValueError(f"invalid synth parameters: unknown parameter {key}.{sub}")
                    data[key][sub] = v
            elif "__" in key:
                sec, sub = key.split("__", 1)
                if sec not in sections or sub not in data[sec]:
                    raise ValueError(f"invalid synth parameters: unknown parameter {sec}.{sub}")
                data[sec][sub] = value
            elif key in data and key not in sections:
                data[key] = value
            else:
                owners = [sec for sec in sections if key in data[sec]]
                if len(owners) != 1:
                    what = "unknown" if not owners else f"ambiguous ({', '.join(sorted(owners))})"
                    raise ValueError(f"invalid synth parameters: {what} parameter {key!r}")
                data[owners[0]][key] = value
        return SynthConfig.from_dict(data)


_SECTIONS: dict[str, type] = {
    "background": BackgroundConfig,
    "pileups": PileupConfig,
    "style": LineStyleConfig,
    "distractors": DistractorConfig,
}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _coerce(value: Any, annotation: str, where: str) -> Any:
    """Turn TOML/JSON values into the annotated type; ranges accept one number for a fixed value."""
    try:
        if annotation in ("Range", "IntRange"):
            kind = int if annotation == "IntRange" else float
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lo = hi = value
            else:
                lo, hi = value
            if kind is int and (float(lo) != int(lo) or float(hi) != int(hi)):
                raise TypeError
            return (kind(lo), kind(hi))
        if annotation == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if annotation == "int":
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError
            return int(value)
        if annotation == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ValueError(f"invalid synth parameters: {where} must be a {annotation}, got {value!r}") from None
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"invalid synth parameters: {prefix or 'config'} must be a table, got {data!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"invalid synth parameters: unknown parameter(s) {', '.join(prefix + u for u in unknown)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = known[name]
        if name in _SECTIONS and cls is SynthConfig:
            kwargs[name] = _build(_SECTIONS[name], value, f"{name}.")
        else:
            kwargs[name] = _coerce(value, str(f.type), prefix + name)
    return cls(**kwargs)


# Lower bounds of the values (inclusive) and which fields must stay within [0, 1].
_NON_NEGATIVE = {
    "lam1",
    "lam2",
    "lam4",
    "wp",
    "ww",
    "s1",
    "noise_weight",
    "s2",
    "level",
    "contrast",
    "gradient",
    "vignette",
    "patch_opacity",
    "patch_scale",
    "n",
    "orientations",
    "lines",
    "slip_width",
    "bow",
    "bow_jitter",
    "support_points",
    "point_noise",
    "spacing",
    "spacing_growth",
    "spacing_jitter",
    "pair_spacing",
    "margin",
    "min_visible_length",
    "thickness",
    "thickness_power",
    "darkness",
    "darkness_variation",
    "fringe",
    "pileup_style_jitter",
    "label_width",
    "label_max_width",
    "defocus_thickness",
    "defocus_darkness",
    "extra_traces",
    "trace_match_prob",
    "trace_match_jitter",
    "inner_traces",
    "trace_contrast",
    "trace_width",
    "trace_double_gap",
    "boundaries",
    "boundary_step",
    "boundary_softness",
    "dots",
    "dot_radius",
    "dot_darkness",
    "bend",
    "bend_lam",
    "tangles",
    "tangle_radius",
    "tangle_lines",
    "tangle_length",
    "tangle_thickness",
    "tangle_darkness",
    "min_separation",
    "darkness_floor",
    "band_darkness",
    "band_softness",
    "band_margin",
}
_POSITIVE = {
    "label_width",
    "defocus_thickness",
    "lam1",
    "lam2",
    "lam4",
    "slip_width",
    "spacing",
    "spacing_growth",
    "thickness",
    "thickness_power",
    "trace_width",
    "dot_radius",
    "pair_spacing",
    "patch_scale",
    "contrast",
    "bend_lam",
    "tangle_radius",
    "tangle_length",
    "tangle_thickness",
    "band_softness",
}
_UNIT = {
    "wp",
    "patch_opacity",
    "pair_prob",
    "labelme_prob",
    "defocus_prob",
    "defocus_darkness",
    "trace_prob",
    "trace_double_prob",
    "band_prob",
    "trace_match_prob",
    "margin",
    "darkness",
    "darkness_variation",
    "fringe",
    "trace_contrast",
    "boundary_step",
    "dot_darkness",
    "level",
    "gradient",
    "vignette",
    "bend",
    "tangle_darkness",
    "band_darkness",
}


def _problems(cfg: SynthConfig) -> list[str]:
    out: list[str] = []
    if not 1 <= cfg.max_lines <= MAX_LINES:
        out.append(f"max_lines must be in [1, {MAX_LINES}], got {cfg.max_lines}")
    for sec_name in _SECTIONS:
        sec = getattr(cfg, sec_name)
        for f in dataclasses.fields(sec):
            v = getattr(sec, f.name)
            where = f"{sec_name}.{f.name}"
            vals = v if isinstance(v, tuple) else (v,)
            if isinstance(v, str):
                continue
            if isinstance(v, tuple) and v[0] > v[1]:
                out.append(f"{where} is an empty range [{v[0]}, {v[1]}]")
            if f.name in _POSITIVE and min(vals) <= 0:
                out.append(f"{where} must be > 0, got {list(vals) if len(vals) > 1 else v}")
            elif f.name in _NON_NEGATIVE and min(vals) < 0:
                out.append(f"{where} must be >= 0, got {list(vals) if len(vals) > 1 else v}")
            if f.name in _UNIT and max(vals) > 1:
                out.append(f"{where} must be <= 1, got {list(vals) if len(vals) > 1 else v}")
    bg = cfg.background
    if bg.kind not in ("perlin", "patches"):
        out.append(f"background.kind must be 'perlin' or 'patches', got {bg.kind!r}")
    if bg.kind == "patches" and not bg.patch_dir:
        out.append("background.kind = 'patches' needs background.patch_dir")
    pu = cfg.pileups
    if pu.n[0] < 1 or pu.lines[0] < 1 or pu.orientations[0] < 1:
        out.append("pileups.n, pileups.lines and pileups.orientations must be >= 1")
    if pu.margin >= 0.5:
        out.append(f"pileups.margin must be < 0.5, got {pu.margin}")
    if pu.labelme_prob > 0 and not pu.labelme:
        out.append("pileups.labelme_prob > 0 needs pileups.labelme (file or folder of labelme JSON)")
    if not -90 < pu.line_angle_deg[0] <= pu.line_angle_deg[1] < 90:
        out.append(f"pileups.line_angle_deg must lie within (-90, 90), got {list(pu.line_angle_deg)}")
    return out


@functools.cache
def _shipped_names() -> tuple[str, ...]:
    root = resources.files("dislotrack.runtime.synth") / "presets"
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml")))


def _shipped_data(name: str) -> dict[str, Any]:
    res = resources.files("dislotrack.runtime.synth") / "presets" / f"{name}.toml"
    return tomllib.loads(res.read_text(encoding="utf-8"))


def with_base(data: dict[str, Any], chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """Preset data with ``base = "<shipped preset>"`` resolved: the base's values, section by
    section overridden by this file's, so a variant names only what it changes."""
    base = data.get("base")
    if base is None:
        return data
    if base in chain:
        raise ValueError(f"invalid synth parameters: preset base cycle {' -> '.join((*chain, base))}")
    if base not in _shipped_names():
        raise ValueError(f"invalid synth parameters: unknown base preset {base!r}")
    merged = with_base(_shipped_data(base), (*chain, base))
    out = {k: v for k, v in merged.items() if k != "name"}
    for key, value in data.items():
        if key == "base":
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


@functools.cache
def _shipped_preset(name: str) -> SynthConfig:
    """Parsed once per process: package data does not change, and parsing costs ~10 % of an image."""
    data = with_base(_shipped_data(name), (name,))
    data.setdefault("name", name)
    return SynthConfig.from_dict(data)


def list_presets() -> list[str]:
    """Names of the presets shipped as package data."""
    return list(_shipped_names())


def load_preset(preset: str | Path | SynthConfig | dict) -> SynthConfig:
    """A shipped preset by name, a TOML file path, a config dict or a config itself."""
    if isinstance(preset, SynthConfig):
        return preset
    if isinstance(preset, dict):
        return SynthConfig.from_dict(preset)
    text = str(preset)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"invalid synth parameters: preset file {path} not found")
        data = with_base(tomllib.loads(path.read_text(encoding="utf-8")))
        data.setdefault("name", path.stem)
        return SynthConfig.from_dict(data)
    names = list_presets()
    if text not in names:
        raise ValueError(f"invalid synth parameters: unknown preset {text!r} (known: {', '.join(names)})")
    return _shipped_preset(text)
