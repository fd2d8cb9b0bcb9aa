"""Crops and augmentations keep image and masks aligned; collation pads masks to N."""

from __future__ import annotations

import numpy as np
import pytest

from dislotrack.training.data import AugmentConfig, DataConfig, collate, geometric, photometric, prepare

pytestmark = pytest.mark.train


def _sample(rng: np.random.Generator, shape=(96, 80)):
    masks = np.zeros((3, *shape), bool)
    masks[0, 10:13, 5:70] = True
    masks[1, 40:90, 30:33] = True
    masks[2, 80:83, 60:78] = True
    noise = rng.uniform(0, 0.01, shape).astype(np.float32)
    image = np.where(masks.any(0), 0.1, 0.8).astype(np.float32) + noise
    return image, masks


def test_geometric_augmentation_moves_image_and_masks_together():
    rng = np.random.default_rng(1)
    image, masks = _sample(rng)
    for _ in range(8):
        img, m = geometric(image, masks, rng, AugmentConfig())
        assert np.array_equal(img < 0.5, m.any(0))


def test_crop_keeps_alignment_and_drops_lines_cut_away():
    rng = np.random.default_rng(2)
    image, masks = _sample(rng)
    config = DataConfig(crop=(32, 32), min_mask_px=20, augment=AugmentConfig.off())
    seen = set()
    for _ in range(30):
        img, m = prepare(image, masks, rng, config)
        assert img.shape == (32, 32) and m.shape[1:] == (32, 32)
        assert not (m.any(0) & (img >= 0.5)).any()  # every kept mask pixel is a line pixel
        assert all(k.sum() >= 20 for k in m)
        seen.add(len(m))
    assert 0 in seen or 1 in seen  # some crops miss most lines


def test_crop_larger_than_image_pads():
    rng = np.random.default_rng(3)
    image, masks = _sample(rng, shape=(40, 40))
    img, m = prepare(image, masks[:, :40, :40], rng, DataConfig(crop=(64, 64), augment=AugmentConfig.off()))
    assert img.shape == (64, 64) and m.shape[1:] == (64, 64)


def test_photometric_augmentation_stays_in_range_and_changes_the_image():
    rng = np.random.default_rng(4)
    image, _ = _sample(rng)
    config = AugmentConfig(noise_prob=1.0, clahe_prob=1.0)
    out = photometric(image, rng, config)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, image)
    assert np.allclose(photometric(image, rng, AugmentConfig.off()), image, atol=1e-6)


def test_collate_pads_and_truncates_to_n_masks():
    rng = np.random.default_rng(5)
    image, masks = _sample(rng, shape=(32, 32))
    images, stacked, counts = collate([(image, masks[:2]), (image, masks)], n_masks=2)
    assert images.shape == (2, 1, 32, 32) and stacked.shape == (2, 2, 32, 32)
    assert counts.tolist() == [2, 2]
    images, stacked, counts = collate([(image, masks[:0]), (image, masks)], n_masks=4)
    assert counts.tolist() == [0, 3] and not stacked[0].any() and not stacked[1, 3].any()


def test_synthetic_samples_are_cropped_masks_of_the_generator():
    from dislotrack.training.data import synthetic_images, training_samples

    config = DataConfig(gen_size=(128, 128), crop=(64, 64), augment=AugmentConfig.off())
    image, masks = next(training_samples(synthetic_images(config, seed=3), config, seed=3))
    assert image.shape == (64, 64) and image.dtype == np.float32
    assert masks.dtype == bool and masks.shape[1:] == (64, 64) and len(masks) <= config.max_masks


def test_contrast_field_scales_lines_differently_across_the_image():
    from dislotrack.training.data import contrast_field

    image = np.full((129, 129), 0.5, dtype=np.float32)
    image[:, ::16] = 0.4  # faint vertical lines 0.1 deep, one on each border column
    out = contrast_field(image, np.random.default_rng(3), (0.3, 1.5))
    corners = np.random.default_rng(3).uniform(0.3, 1.5, size=(2, 2))  # the field's gains
    depth = out[:, 8::16].mean() - out[:, ::16]  # how far each line sits below the background
    measured = np.array([[depth[0, 0], depth[0, -1]], [depth[-1, 0], depth[-1, -1]]]) / 0.1
    np.testing.assert_allclose(measured, corners, rtol=0.25)
    assert abs(float(out.mean()) - float(image.mean())) < 0.01


def test_augmentation_off_leaves_the_image_alone():
    image = np.random.default_rng(0).uniform(0.2, 0.8, (32, 32)).astype(np.float32)
    out = photometric(image, np.random.default_rng(1), AugmentConfig.off())
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_mixed_presets_alternate_image_by_image_and_one_preset_is_unchanged():
    from dislotrack.runtime.synth import iter_samples
    from dislotrack.training.data import PRESET_SEED_STRIDE, DataConfig, presets, synthetic_images

    size = (64, 64)
    mixed = synthetic_images(DataConfig(preset="m2, m2-tem", gen_size=size), seed=5)
    firsts = [next(mixed)[0] for _ in range(3)]
    m2 = iter_samples(preset="m2", seed=5, size=size)
    tem = iter_samples(preset="m2-tem", seed=5 + PRESET_SEED_STRIDE, size=size)
    assert np.array_equal(firsts[0], next(m2).image.astype(np.float32))
    assert np.array_equal(firsts[1], next(tem).image.astype(np.float32))
    assert np.array_equal(firsts[2], next(m2).image.astype(np.float32))
    single = next(synthetic_images(DataConfig(preset="m2", gen_size=size), seed=5))[0]
    assert np.array_equal(single, firsts[0])
    assert presets(DataConfig(preset="m2,m2-tem")) == ["m2", "m2-tem"]
    with pytest.raises(ValueError, match="no generator preset"):
        presets(DataConfig(preset=" , "))


def test_loader_batches_carry_masks_packed_and_unpack_to_the_same_masks() -> None:
    import torch

    from dislotrack.training.train import _Batches, unpack_masks

    rng = np.random.default_rng(9)
    shapes = [(3, 32, 37), (1, 32, 37)]  # a width that is not a multiple of 8
    samples = [(rng.random(s[1:]).astype(np.float32), rng.random(s) < 0.3) for s in shapes]
    threads = torch.get_num_threads()
    try:  # a loader worker runs single-threaded; here it runs in the test's own process
        images, packed, counts = next(iter(_Batches(lambda seed: iter(samples), 0, 2, n_masks=4)))
    finally:
        torch.set_num_threads(threads)
    assert packed.dtype == torch.uint8 and packed.shape == (2, 4, 32, 5)
    masks = unpack_masks(packed, images.shape[-1])
    expected = collate(samples, n_masks=4)[1]
    assert masks.dtype == torch.bool and np.array_equal(masks.numpy(), expected)
    assert counts.tolist() == [3, 1]


def test_blur_is_a_gaussian_of_the_drawn_sigma():
    from dataclasses import replace

    from scipy.ndimage import gaussian_filter

    image = np.random.default_rng(0).uniform(0.2, 0.8, (48, 48)).astype(np.float32)
    always = replace(AugmentConfig.off(), blur_prob=1.0, blur_sigma=(1.2, 1.2))
    out = photometric(image, np.random.default_rng(1), always)
    np.testing.assert_allclose(out, gaussian_filter(image, 1.2, mode="reflect"), atol=1e-6)
    assert out.std() < 0.5 * image.std()  # white noise loses most of its spread


def test_configs_saved_before_blur_existed_resume_without_it():
    from dislotrack.training.train import TrainConfig

    saved = TrainConfig().to_dict()
    del saved["data"]["augment"]["blur_prob"], saved["data"]["augment"]["blur_sigma"]
    assert TrainConfig.from_dict(saved).data.augment.blur_prob == 0.0
    assert TrainConfig.from_dict(TrainConfig().to_dict()).data.augment == AugmentConfig()


def _block_edge_ratio(image: np.ndarray) -> float:
    """Mean |horizontal step| across 8-px block borders over that inside blocks (1: no blocks)."""
    d = np.abs(np.diff(image, axis=1))
    border = (np.arange(d.shape[1]) % 8) == 7
    return float(d[:, border].mean() / d[:, ~border].mean())


def test_compression_adds_the_block_edges_of_recorded_video_and_only_when_asked():
    from dataclasses import replace

    rng = np.random.default_rng(0)
    image = np.clip(0.5 + rng.normal(0, 0.05, (128, 128)), 0, 1).astype(np.float32)
    off = AugmentConfig.off()
    on = replace(off, compress_prob=1.0, compress_quality=(50, 50))
    assert _block_edge_ratio(photometric(image, np.random.default_rng(1), off)) < 1.03
    squeezed = photometric(image, np.random.default_rng(1), on)
    assert _block_edge_ratio(squeezed) > 1.1
    assert squeezed.dtype == np.float32 and squeezed.shape == image.shape
    assert 0.0 <= squeezed.min() and squeezed.max() <= 1.0
    assert np.abs(squeezed - image).mean() < 0.05  # a lossy copy of the same image
    # off by default, and then no random draw: the streams of runs before it are unchanged
    assert AugmentConfig().compress_prob == 0.0
    a = photometric(image, np.random.default_rng(2), AugmentConfig())
    b = photometric(image, np.random.default_rng(2), replace(AugmentConfig(), compress_quality=(5, 5)))
    assert np.array_equal(a, b)


def test_distractor_pixels_are_cut_and_turned_with_the_image_and_leave_the_stream_alone():
    """The plane of pixels to avoid follows the image through every crop and turn, and carrying it
    changes none of the random draws: the images and masks are those of a run without it."""
    from dataclasses import replace

    image, masks = _sample(np.random.default_rng(6))
    avoid = image > 0.5  # the background: a plane each of whose pixels can be checked on the image
    config = DataConfig(crop=(48, 48), augment=replace(AugmentConfig.off(), flips=True, rot90=True))
    with_avoid, without = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(10):
        img, m, a = prepare(image, masks, with_avoid, config, avoid)
        img0, m0 = prepare(image, masks, without, config)
        assert np.array_equal(img, img0) and np.array_equal(m, m0)
        assert np.array_equal(a, img > 0.5)


def test_distractor_band_widens_the_axes_and_spares_the_true_lines():
    from dislotrack.training.data import distractor_band

    axes = {k: np.zeros((40, 40), bool) for k in ("slip_traces", "tangles", "grain_boundaries")}
    axes["slip_traces"][20, :] = True  # a trace across the image
    axes["tangles"][5, :] = True  # a kind left out by default
    masks = np.zeros((1, 40, 40), bool)
    masks[0, 10:30, 30:32] = True  # a line crossing the trace
    band = distractor_band(axes, masks, DataConfig(distractor_px=2))
    assert band[18:23, :25].all() and not band[:17].any() and not band[24:].any()
    assert not band[:, 28:34].any()  # 2 px either side of the line are spared
    assert distractor_band(axes, masks[:0], DataConfig(distractor_px=1))[19:22].all()
    with_tangles = distractor_band(axes, masks, DataConfig(distractor_px=1, distractor_kinds=("tangles",)))
    assert with_tangles[4:7].all() and not with_tangles[19:22].any()
    wide = distractor_band(axes, masks, DataConfig(distractor_px=2, distractor_margin_px=6))
    assert not wide[:, 24:38].any() and wide[18:23, :23].all()  # 6 px either side spared instead
    same = distractor_band(axes, masks, DataConfig(distractor_px=2, distractor_margin_px=2))
    assert np.array_equal(same, band)
    with pytest.raises(ValueError, match="distractor_px"):
        DataConfig(distractor_px=-1)
    with pytest.raises(ValueError, match="distractor_margin_px"):
        DataConfig(distractor_px=2, distractor_margin_px=-1)


def test_synthetic_samples_carry_the_drawn_slip_traces_only_when_asked():
    from dislotrack.runtime.synth import iter_samples
    from dislotrack.training.data import distractor_band, synthetic_images

    config = DataConfig(preset="m2-trace", gen_size=(128, 128), distractor_px=2)
    image, masks, avoid = next(synthetic_images(config, seed=4))
    drawn = next(iter_samples(preset="m2-trace", seed=4, size=(128, 128)))
    assert np.array_equal(image, drawn.image.astype(np.float32))
    assert np.array_equal(avoid, distractor_band(drawn.distractor_axes(), masks, config)) and avoid.any()
    assert len(next(synthetic_images(DataConfig(preset="m2-trace", gen_size=(128, 128)), seed=4))) == 2


def test_batches_carry_distractor_pixels_packed_and_zero_for_samples_without_them() -> None:
    import torch

    from dislotrack.training.data import collate_avoid
    from dislotrack.training.train import _Batches, on_device

    rng = np.random.default_rng(10)
    plain = (rng.random((32, 37)).astype(np.float32), rng.random((2, 32, 37)) < 0.3)
    marked = (*plain, rng.random((32, 37)) < 0.5)
    assert collate_avoid([plain, plain]) is None
    threads = torch.get_num_threads()
    try:
        batch = next(iter(_Batches(lambda seed: iter([marked, plain]), 0, 2, n_masks=3)))
    finally:
        torch.set_num_threads(threads)
    _, masks, counts, avoid = on_device(batch, torch.device("cpu"))
    assert avoid.dtype == torch.bool and np.array_equal(avoid[0].numpy(), marked[2]) and not avoid[1].any()
    assert counts.tolist() == [2, 2] and masks.shape == (2, 3, 32, 37)
