"""Training samples: on-the-fly synthetic images or labelled frames, cropped and augmented.

The network is fully convolutional, so it trains on random crops and infers on whole frames. A crop
keeps only the masks that still show a usable piece of their line (``min_mask_px``); the same rule is
applied to synthetic and real samples so that "cut out by the crop" means the same everywhere.
Augmentations widen the synthetic domain towards real microscopes: sensor noise, brightness and
contrast changes, CLAHE (histogram equalisation) as some users pre-process, flips and 90° rotations.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

Sample = tuple[np.ndarray, ...]
"""(image float32 (H, W) in [0, 1], masks bool (n, H, W)); synthetic samples may carry a third
element, bool (H, W): the pixels to leave unmarked (``DataConfig.distractor_px``)."""


PRESET_SEED_STRIDE = 15_485_863  # keeps the streams of mixed presets apart


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation; ``AugmentConfig.off()`` disables them all."""

    noise_prob: float = 0.5
    noise_std: tuple[float, float] = (0.0, 0.06)
    brightness: tuple[float, float] = (-0.15, 0.15)
    contrast: tuple[float, float] = (0.35, 1.4)  # real frames hold lines at under half synthetic contrast
    contrast_field_prob: float = 0.5  # contrast varying smoothly across the image, as in real frames
    gamma: tuple[float, float] = (0.7, 1.4)
    clahe_prob: float = 0.2
    clahe_clip: tuple[float, float] = (0.005, 0.03)
    flips: bool = True
    rot90: bool = True
    # Gaussian blur first, as the optics blur before the sensor adds noise: real videos drift out of
    # focus over a recording (tanaka-8um's later frames), and synthetic lines are drawn sharp
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    # JPEG round trip last, as a recorder compresses the noisy frame: real videos carry 8×8 block
    # edges (tanaka-8um: differences across block borders 1.22× those inside, median of its 59
    # frames; synthetic images 1.00×, after JPEG at quality 70 / 90 about 1.50× / 1.17×)
    compress_prob: float = 0.0
    compress_quality: tuple[int, int] = (70, 95)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(
            noise_prob=0.0,
            noise_std=(0.0, 0.0),
            brightness=(0.0, 0.0),
            contrast=(1.0, 1.0),
            contrast_field_prob=0.0,
            gamma=(1.0, 1.0),
            clahe_prob=0.0,
            clahe_clip=(0.01, 0.01),
            flips=False,
            rot90=False,
            blur_prob=0.0,
            compress_prob=0.0,
        )


@dataclass(frozen=True)
class DataConfig:
    """Where training samples come from and how they are cut.

    ``gen_size``: size at which synthetic images are generated; ``crops_per_image`` random crops of
    ``crop`` px are taken from each, so generation cost is shared when it is larger than the crop.
    ``preset`` may name several presets, comma-separated: images then alternate between them (so a
    model learns wide lines without forgetting thin ones); validation uses the first.
    ``synthetic_share`` (fine-tuning only): the fraction of crops taken from that synthetic stream
    instead of the labelled frames.
    """

    preset: str = "m2"
    seed: int = 0
    gen_size: tuple[int, int] = (512, 512)
    crop: tuple[int, int] = (256, 256)
    crops_per_image: int = 1
    min_mask_px: int = 20
    max_masks: int = 20
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic_share: float = 0.0
    # > 0: synthetic samples carry the drawn distractors of ``distractor_kinds`` widened by this many
    # px, less the pixels near a true line, for the loss's terms that read it (``loss.BAND_TERMS``)
    distractor_px: int = 0
    # pixels within this many px of a true line are left out of that band (None: distractor_px);
    # wider spares the ends of lines that meet a trace, which the band otherwise pulls both ways
    distractor_margin_px: int | None = None
    distractor_kinds: tuple[str, ...] = ("slip_traces", "grain_boundaries")

    def __post_init__(self) -> None:
        if not 0.0 <= self.synthetic_share < 1.0:
            raise ValueError(f"synthetic_share must be in [0, 1), got {self.synthetic_share}")
        if self.distractor_px < 0:
            raise ValueError(f"distractor_px must be >= 0, got {self.distractor_px}")
        if self.distractor_margin_px is not None and self.distractor_margin_px < 0:
            raise ValueError(f"distractor_margin_px must be >= 0, got {self.distractor_margin_px}")


def crop_planes(
    image: np.ndarray, planes: np.ndarray, size: tuple[int, int], rng: np.random.Generator
) -> Sample:
    """The same random crop of ``image`` and of every (H, W) plane of ``planes`` (masks, pixels to
    avoid); an image smaller than ``size`` is padded by reflection, its planes with 0."""
    image, planes = _pad_to(image, planes, size)
    h, w = image.shape
    ch, cw = size
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y : y + ch, x : x + cw], planes[:, y : y + ch, x : x + cw]


def _pad_to(image: np.ndarray, masks: np.ndarray, size: tuple[int, int]) -> Sample:
    ph, pw = max(size[0] - image.shape[0], 0), max(size[1] - image.shape[1], 0)
    if ph == 0 and pw == 0:
        return image, masks
    image = np.pad(image, ((0, ph), (0, pw)), mode="reflect")
    masks = np.pad(masks, ((0, 0), (0, ph), (0, pw)))
    return image, masks


def keep_visible(masks: np.ndarray, min_mask_px: int) -> np.ndarray:
    """Drop masks with fewer than ``min_mask_px`` pixels (lines cut away by a crop)."""
    if len(masks) == 0:
        return masks
    return masks[masks.reshape(len(masks), -1).sum(1) >= min_mask_px]


def geometric(
    image: np.ndarray, masks: np.ndarray, rng: np.random.Generator, config: AugmentConfig
) -> Sample:
    """Random flips and quarter turns, applied identically to image and masks."""
    if config.flips and rng.random() < 0.5:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    if config.flips and rng.random() < 0.5:
        image, masks = image[::-1], masks[:, ::-1]
    if config.rot90:
        k = int(rng.integers(0, 4))
        image, masks = np.rot90(image, k), np.rot90(masks, k, axes=(1, 2))
    return np.ascontiguousarray(image), np.ascontiguousarray(masks)


def contrast_field(
    image: np.ndarray, rng: np.random.Generator, gains: tuple[float, float], sigma: float = 24.0
) -> np.ndarray:
    """Contrast about the local mean scaled by a gain that varies smoothly across the image.

    Real frames are crisp in one region and washed out in another (foil thickness, bend contours);
    a single global contrast factor never shows the network faint lines beside strong ones.
    """
    from scipy import ndimage

    h, w = image.shape
    corners = rng.uniform(*gains, size=(2, 2)).astype(np.float32)
    ty = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    tx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    gain = (corners[0, 0] * (1 - tx) + corners[0, 1] * tx) * (1 - ty) + (
        corners[1, 0] * (1 - tx) + corners[1, 1] * tx
    ) * ty
    local = ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=2.0)
    return (image - local) * gain + local


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` in [0, 1] as an 8-bit frame through JPEG at ``quality`` and back (block artefacts)."""
    import io

    from PIL import Image

    from dislotrack.runtime.synth.dataset import to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf), dtype=np.float32) / 255.0


def photometric(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Optional blur, contrast (global or a smooth field), brightness, gamma, optional CLAHE,
    Gaussian noise and JPEG compression; result clipped to [0, 1]."""
    from scipy.ndimage import gaussian_filter
    from skimage.exposure import equalize_adapthist

    x = image.astype(np.float32)
    if rng.random() < config.blur_prob:
        x = gaussian_filter(x, rng.uniform(*config.blur_sigma), mode="reflect")
    if rng.random() < config.contrast_field_prob:
        x = contrast_field(x, rng, config.contrast)
    else:
        mean = float(x.mean())
        x = (x - mean) * rng.uniform(*config.contrast) + mean
    x = x + rng.uniform(*config.brightness)
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(*config.gamma)
    if rng.random() < config.clahe_prob:
        x = equalize_adapthist(x, clip_limit=rng.uniform(*config.clahe_clip)).astype(np.float32)
    if rng.random() < config.noise_prob:
        x = x + rng.normal(0.0, rng.uniform(*config.noise_std), x.shape).astype(np.float32)
    if config.compress_prob > 0 and rng.random() < config.compress_prob:  # no draw when off: old streams stay
        lo, hi = config.compress_quality
        x = jpeg_round_trip(x, int(rng.integers(lo, hi + 1)))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def prepare(
    image: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
    config: DataConfig,
    avoid: np.ndarray | None = None,
) -> Sample:
    """One training sample from a full image: crop, geometric and photometric augmentation; the
    pixels to ``avoid``, when given, are cut and turned with the masks and returned third."""
    planes = masks if avoid is None else np.concatenate([masks, avoid[None]])
    image, planes = crop_planes(image, planes, config.crop, rng)
    image, planes = geometric(image, planes, rng, config.augment)
    image = photometric(image, rng, config.augment)
    masks = keep_visible(planes[: len(masks)], config.min_mask_px)[: config.max_masks]
    return (image, masks) if avoid is None else (image, masks, planes[-1])


def band_margin_px(distractor_px: int, distractor_margin_px: int | None) -> int:
    """The px around true lines that the distractor band leaves out: the margin, or the band's width."""
    return distractor_px if distractor_margin_px is None else int(distractor_margin_px)


def distractor_band(axes: dict[str, np.ndarray], masks: np.ndarray, config: DataConfig) -> np.ndarray:
    """Bool (H, W): the axes of ``config.distractor_kinds`` widened by ``distractor_px`` (a square of
    side 2·px + 1), less every pixel within ``distractor_margin_px`` (default: that distance) of a
    true line, where a dislocation crosses a trace or ends on it and the line must still be marked."""
    from scipy import ndimage

    px = config.distractor_px
    margin = band_margin_px(px, config.distractor_margin_px)
    axis = np.zeros(masks.shape[1:], dtype=bool)
    for kind in config.distractor_kinds:
        axis |= axes[kind]
    band = ndimage.maximum_filter(axis, size=2 * px + 1)
    if len(masks):
        band &= ~ndimage.maximum_filter(masks.any(0), size=2 * margin + 1)
    return band


def synthetic_images(config: DataConfig, seed: int) -> Iterator[Sample]:
    """Endless (image, masks) pairs from the deterministic synthetic stream of ``seed`` (one stream
    per preset, taken in turn)."""
    from dislotrack.runtime.synth import iter_samples

    streams = [
        iter_samples(preset=name, seed=seed + PRESET_SEED_STRIDE * k, size=config.gen_size)
        for k, name in enumerate(presets(config))
    ]
    while True:
        for stream in streams:
            s = next(stream)
            image, masks = s.image.astype(np.float32), s.masks.astype(bool)
            if config.distractor_px > 0:
                yield image, masks, distractor_band(s.distractor_axes(), masks, config)
            else:
                yield image, masks


def presets(config: DataConfig) -> list[str]:
    """The generator presets of ``config.preset`` (comma-separated), in order."""
    names = [p.strip() for p in config.preset.split(",") if p.strip()]
    if not names:
        raise ValueError(f"no generator preset in {config.preset!r}")
    return names


def cycled(samples: Sequence[Sample], rng: np.random.Generator) -> Iterator[Sample]:
    """Endless shuffled passes over a small labelled set (fine-tuning)."""
    for _ in itertools.count():
        for i in rng.permutation(len(samples)):
            yield samples[i]


def training_samples(source: Iterator[Sample], config: DataConfig, seed: int) -> Iterator[Sample]:
    """Crops with augmentation; ``crops_per_image`` crops per source image share its generation cost."""
    rng = np.random.default_rng([seed, 0xA11])
    for image, masks, *avoid in source:
        for _ in range(config.crops_per_image):
            yield prepare(image, masks, rng, config, *avoid)


def collate(samples: Sequence[Sample], n_masks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack into (B, 1, H, W) images, (B, n_masks, H, W) zero-padded masks and (B,) mask counts."""
    b = len(samples)
    h, w = samples[0][0].shape
    images = np.zeros((b, 1, h, w), np.float32)
    masks = np.zeros((b, n_masks, h, w), bool)
    counts = np.zeros(b, np.int64)
    for i, (img, m, *_) in enumerate(samples):
        m = m[:n_masks]
        images[i, 0] = img
        masks[i, : len(m)] = m
        counts[i] = len(m)
    return images, masks, counts


def collate_avoid(samples: Sequence[Sample]) -> np.ndarray | None:
    """(B, H, W) pixels to leave unmarked, all False for samples that carry none; None when none does."""
    if all(len(s) < 3 for s in samples):
        return None
    out = np.zeros((len(samples), *samples[0][0].shape), bool)
    for i, s in enumerate(samples):
        if len(s) > 2:
            out[i] = s[2]
    return out
