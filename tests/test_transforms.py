"""forensics.transforms: config validation, eval/train transforms, normalisation, and the display
view that the heatmap is drawn on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image
from torchvision.transforms import v2

from forensics.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    DataConfig,
    TrimLongSide,
    build_batch_mix,
    build_eval_transform,
    build_train_transform,
    to_display,
)

CONFIG = DataConfig(input_size=16, resize=20)


def _constant(value: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, value)


# --------------------------------------------------------------------------------------------
# DataConfig / AugmentConfig
# --------------------------------------------------------------------------------------------


def test_data_config_defaults_are_imagenet() -> None:
    config = DataConfig()
    assert (config.input_size, config.resize) == (224, 256)
    assert config.mean == IMAGENET_MEAN and config.std == IMAGENET_STD


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_size": 4, "resize": 4},  # too small
        {"input_size": 0, "resize": 8},
        {"input_size": 4096, "resize": 4096},  # too large
        {"input_size": 32, "resize": 16},  # resize below the crop
        {"std": (0.2, 0.0, 0.2)},
        {"std": (0.2, -0.1, 0.2)},
        {"std": (0.2, 0.2)},
        {"mean": (0.5, 0.5)},
        {"mean": (0.5, 0.5, 0.5, 0.5)},
        {"interpolation": "lanczos"},
        {"interpolation": "BILINEAR"},
    ],
)
def test_data_config_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError):
        DataConfig(**kwargs)


def test_unknown_interpolation_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="bicubic"):
        DataConfig(interpolation="lanczos")


def test_data_config_accepts_edges() -> None:
    assert DataConfig(input_size=8, resize=8).input_size == 8
    assert DataConfig(input_size=2048, resize=2048).resize == 2048


def test_data_config_dict_round_trip() -> None:
    config = DataConfig(
        input_size=32,
        resize=36,
        mean=(0.5, 0.4, 0.3),
        std=(0.25, 0.2, 0.15),
        interpolation="bicubic",
    )
    values = config.to_dict()
    assert values["mean"] == [0.5, 0.4, 0.3] and values["std"] == [0.25, 0.2, 0.15]
    assert DataConfig.from_dict(values) == config
    # Through JSON, as a checkpoint stores it.
    assert DataConfig.from_dict(json.loads(json.dumps(values))) == config


def test_data_config_from_dict_fills_defaults_and_ignores_unknown_keys() -> None:
    config = DataConfig.from_dict({"input_size": 32, "resize": 32, "architecture": "resnet18"})
    assert config == DataConfig(input_size=32, resize=32)
    # Lists (as stored in JSON) become tuples of floats, so configs compare and hash.
    config = DataConfig.from_dict({"input_size": 32, "resize": 32, "mean": [0, 0, 0]})
    assert config.mean == (0.0, 0.0, 0.0)
    hash(config)


def test_augment_config_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="flip_rotate_jitter"):
        AugmentConfig(preset="mixup")
    with pytest.raises(ValueError, match="random_resized_crop"):
        AugmentConfig(crop="center")
    assert AugmentConfig(preset="none", crop="random_resized_crop").preset == "none"
    for bad in ({"jpeg_quality": (90, 50)}, {"jpeg_quality": (0, 50)}, {"blur_sigma": (0, 1)},
                {"jpeg_probability": 1.5}):  # fmt: skip
        with pytest.raises(ValueError):
            AugmentConfig(**bad)


def test_batch_mix_is_validated_and_off_by_default() -> None:
    assert build_batch_mix(AugmentConfig()) is None
    with pytest.raises(ValueError, match="mixup_or_cutmix"):
        AugmentConfig(batch_mix="mosaic")
    with pytest.raises(ValueError, match="batch_mix_alpha"):
        AugmentConfig(batch_mix="mixup", batch_mix_alpha=0)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_batch_mix_mixes_images_and_labels_in_the_same_proportion(mix: str) -> None:
    """Image i is mixed with image i-1; its soft label gives each source's share, which for
    MixUp is the blend weight and for CutMix the share of pixels that stayed."""
    torch.manual_seed(0)
    images = torch.arange(1.0, 5.0).view(4, 1, 1, 1).expand(4, 3, 8, 8).contiguous()
    labels = torch.tensor([0, 1, 0, 1])
    mixed, soft = build_batch_mix(AugmentConfig(batch_mix=mix))(images, labels)
    assert mixed.shape == images.shape and soft.shape == (4, 2)
    torch.testing.assert_close(soft.sum(1), torch.ones(4))
    kept = soft[torch.arange(4), labels]  # the share of each image's own class
    for i in range(4):
        own, other = images[i, 0, 0, 0], images[i - 1, 0, 0, 0]
        if mix == "mixup":
            expected = kept[i] * own + (1 - kept[i]) * other
            torch.testing.assert_close(mixed[i], expected.expand(3, 8, 8))
        else:
            assert set(mixed[i].unique().tolist()) <= {own.item(), other.item()}
            share = (mixed[i] == own).float().mean()
            torch.testing.assert_close(share, kept[i])


def test_jpeg_and_blur_degrade_the_image_like_a_reshare() -> None:
    """With both always on, a sharp checkerboard comes out smoothed: its neighbouring pixels
    differ far less than the original's (flips and crops alone keep the edges)."""
    board = np.indices((64, 64)).sum(axis=0) % 2 * 255
    image = Image.fromarray(np.repeat(board[..., None], 3, axis=2).astype(np.uint8))
    config = DataConfig(input_size=64, resize=64, mean=(0, 0, 0), std=(1, 1, 1))

    def edge_strength(preset: str, **options) -> float:
        augment = AugmentConfig(preset=preset, crop_padding=0, **options)
        tensor = build_train_transform(config, augment)(image)
        return float((tensor[:, :, 1:] - tensor[:, :, :-1]).abs().mean())

    torch.manual_seed(0)
    sharp = edge_strength("flip")
    degraded = edge_strength(
        "flip_jpeg_blur", jpeg_probability=1.0, blur_probability=1.0, blur_sigma=(1.0, 1.0)
    )
    only_jpeg = edge_strength(
        "flip_jpeg_blur", jpeg_quality=(10, 10), jpeg_probability=1.0, blur_probability=0.0
    )
    assert sharp == pytest.approx(1.0)
    assert degraded < 0.5 * sharp
    assert only_jpeg < 0.95 * sharp


# --------------------------------------------------------------------------------------------
# Eval transform
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(40, 30), (16, 16), (30, 64), (64, 18)])
def test_eval_transform_shape_and_dtype(size) -> None:
    tensor = build_eval_transform(CONFIG)(make_image(1, size=64).resize(size))
    assert isinstance(tensor, torch.Tensor)
    assert tuple(tensor.shape) == (3, 16, 16)
    assert tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("value", [(0, 0, 0), (255, 255, 255), (10, 128, 250)])
def test_eval_transform_normalises_per_channel(value) -> None:
    tensor = build_eval_transform(CONFIG)(_constant(value))
    for channel in range(3):
        expected = (value[channel] / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(tensor[channel], torch.full((16, 16), expected), atol=1e-5)


def test_eval_transform_uses_the_configured_mean_and_std() -> None:
    config = DataConfig(input_size=16, resize=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    tensor = build_eval_transform(config)(_constant((255, 255, 0)))
    # (1 - 0.5) / 0.5 = 1, (1 - 0.5) / 0.25 = 2, (0 - 0.5) / 1 = -0.5
    np.testing.assert_allclose(tensor.mean(dim=(1, 2)).numpy(), [1.0, 2.0, -0.5], atol=1e-5)


def test_eval_transform_crops_the_centre_rather_than_squashing() -> None:
    # 64x32: left eighth red, the rest blue. Short side 32 -> 16 gives 32x16; the centre
    # 16 columns come from original columns 16..48, all blue (the red ends 8 columns before,
    # beyond the resampling filter's reach). Squashing to 16x16 would keep red columns.
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, :8] = (255, 0, 0)
    pixels[:, 8:] = (0, 0, 255)
    config = DataConfig(input_size=16, resize=16)
    view = to_display(Image.fromarray(pixels), config)
    assert view.shape == (16, 16, 3)
    assert (view[..., 0] == 0).all() and (view[..., 2] == 255).all()


def test_eval_transform_is_deterministic(sample_image: Image.Image) -> None:
    transform = build_eval_transform(CONFIG)
    first = transform(sample_image)
    torch.manual_seed(123)
    assert torch.equal(first, transform(sample_image))
    assert torch.equal(first, build_eval_transform(CONFIG)(sample_image))


# --------------------------------------------------------------------------------------------
# Train transform
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "augment",
    [
        None,
        AugmentConfig(),
        AugmentConfig(preset="flip_rotate_jitter"),
        AugmentConfig(crop="random_resized_crop"),
        AugmentConfig(preset="flip_rotate_jitter", crop="random_resized_crop"),
        AugmentConfig(preset="flip_jpeg_blur"),
        AugmentConfig(preset="robust", crop="random_resized_crop"),
    ],
)
def test_train_transform_shape_and_randomness(sample_image: Image.Image, augment) -> None:
    transform = build_train_transform(CONFIG, augment)
    torch.manual_seed(0)
    outputs = [transform(sample_image) for _ in range(8)]
    for tensor in outputs:
        assert tuple(tensor.shape) == (3, 16, 16) and tensor.dtype == torch.float32
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])
    torch.manual_seed(0)
    assert torch.equal(transform(sample_image), outputs[0])  # seeded: reproducible


def test_train_transform_preset_none_is_eval(sample_image: Image.Image) -> None:
    train = build_train_transform(CONFIG, AugmentConfig(preset="none"))
    expected = build_eval_transform(CONFIG)(sample_image)
    for _ in range(3):
        assert torch.equal(train(sample_image), expected)


@pytest.mark.parametrize("preset", ["none", "flip", "robust"])
@pytest.mark.parametrize("crop", ["random_crop", "random_resized_crop"])
def test_crop_size_trains_on_patches_of_the_view(
    sample_image: Image.Image, preset: str, crop: str
) -> None:
    augment = AugmentConfig(preset=preset, crop=crop, crop_size=8, crop_padding=0)
    patch = build_train_transform(CONFIG, augment)(sample_image)
    assert tuple(patch.shape) == (3, 8, 8)
    assert tuple(build_eval_transform(CONFIG)(sample_image).shape) == (3, 16, 16)
    if preset == "none":  # the central patch of the evaluation view, pixel for pixel
        view = build_eval_transform(CONFIG)(sample_image)
        assert torch.equal(patch, view[:, 4:12, 4:12])


def test_crop_size_larger_than_the_view_is_refused(sample_image: Image.Image) -> None:
    with pytest.raises(ValueError, match=r"must not exceed input\.input_size"):
        build_train_transform(CONFIG, AugmentConfig(crop_size=17))
    with pytest.raises(ValueError, match="crop_size"):
        AugmentConfig(crop_size=2)


def test_train_transform_normalises_like_eval() -> None:
    # A constant image is unchanged by crops, flips and reflect padding: only the normalisation
    # shows, and it must be the same as at evaluation time.
    image = _constant((30, 60, 90))
    train = build_train_transform(CONFIG, AugmentConfig(preset="flip"))
    torch.testing.assert_close(train(image), build_eval_transform(CONFIG)(image), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# Display view and resampling warnings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(48, 48), (60, 40), (40, 64), (16, 16)])
def test_to_display_is_what_the_model_saw(size) -> None:
    image = make_image(9, size=64).resize(size)
    view = to_display(image, CONFIG)
    assert view.dtype == np.uint8 and view.shape == (16, 16, 3)
    tensor = build_eval_transform(CONFIG)(image)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    seen = (tensor * std + mean).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(view / 255.0, seen, atol=1 / 255 + 1e-5, rtol=0)


def test_to_display_accepts_other_modes() -> None:
    view = to_display(Image.new("L", (30, 30), 77), CONFIG)
    assert view.shape == (16, 16, 3) and (view == 77).all()


def test_to_display_does_not_alias_the_input() -> None:
    image = make_image(2, size=16)
    view = to_display(image, DataConfig(input_size=16, resize=16))
    view[:] = 0
    assert np.asarray(image).any()


# ------------------------------------------------------------------- elongated images


@pytest.mark.parametrize("size", [(256, 256), (300, 200), (1920, 1080), (300, 900)])
def test_ordinary_images_are_not_trimmed(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size)
    assert TrimLongSide(resize=256, input_size=224)(image) is image


@pytest.mark.parametrize(("size", "config"), [
    ((1, 10_000), DataConfig(input_size=256, resize=256)),
    ((10_000, 3), DataConfig(input_size=32, resize=32)),
    ((1000, 40_000), DataConfig(input_size=224, resize=256)),
])  # fmt: skip
def test_a_long_strip_is_trimmed_before_it_is_resized(size, config: DataConfig) -> None:
    # Resized whole, the 1x10000 strip at 256 px would be 256x2,560,000 pixels (2 GB).
    image = Image.new("RGB", size, "grey")
    trimmed = TrimLongSide(resize=config.resize, input_size=config.input_size)(image)
    short = min(size)
    assert min(trimmed.size) == short
    assert max(trimmed.size) <= 4 * (config.input_size * max(short / config.resize, 1) + 16)
    assert build_eval_transform(config)(image).shape == (3, config.input_size, config.input_size)
    assert to_display(image, config).shape == (config.input_size, config.input_size, 3)


def test_a_trimmed_image_shows_the_same_view() -> None:
    # A smooth gradient along the long side: the view is the centre of the strip either way.
    ramp = np.linspace(0, 255, 6000)[:, None, None] * np.ones((6000, 40, 3))
    image = Image.fromarray(ramp.astype(np.uint8))
    config = DataConfig(input_size=32, resize=36)
    trimmed = build_eval_transform(config)(image)
    untrimmed = [v2.Resize(36, antialias=True), v2.CenterCrop(32), v2.ToImage(),
                 v2.ToDtype(torch.float32, scale=True),
                 v2.Normalize(mean=list(config.mean), std=list(config.std))]  # fmt: skip
    whole = v2.Compose(untrimmed)(image)
    assert TrimLongSide(resize=36, input_size=32)(image).size[1] < 200
    assert torch.allclose(trimmed, whole, atol=0.05)


def test_batched_normalisation_equals_the_per_image_eval_transform(sample_image) -> None:
    from forensics.transforms import build_eval_geometry, normalize_batch

    images = [sample_image, make_image(2, size=80), make_image(3, size=40)]
    per_image = torch.stack([build_eval_transform(CONFIG)(image) for image in images])
    pixels = torch.stack([build_eval_geometry(CONFIG)(image) for image in images])
    assert pixels.dtype == torch.uint8
    torch.testing.assert_close(normalize_batch(pixels, CONFIG), per_image, atol=0, rtol=0)


def test_random_resample_keeps_the_size_and_changes_the_pixels() -> None:
    from forensics.transforms import AugmentConfig, RandomResample

    torch.manual_seed(0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8))
    resampled = RandomResample((0.75, 0.95), p=1.0)(image)
    assert resampled.size == image.size
    assert np.abs(np.asarray(resampled, float) - np.asarray(image, float)).mean() > 5
    assert RandomResample((0.75, 0.95), p=0.0)(image) is image
    with pytest.raises(ValueError, match="resample_scale"):
        AugmentConfig(resample_scale=(0.9, 1.2))
    with pytest.raises(ValueError, match="resample_probability"):
        AugmentConfig(resample_probability=1.5)
    steps = build_train_transform(
        DataConfig(input_size=32, resize=32), AugmentConfig(resample_probability=0.5)
    )
    assert "RandomResample" in repr(steps)


def test_a_native_config_never_resizes_and_pads_a_smaller_image() -> None:
    config = DataConfig(input_size=32, resize=32, native=True)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 512, 3), np.uint8))
    view = to_display(photo, config)
    # The centre 32x32 of the photograph, pixel for pixel: never resampled.
    assert np.array_equal(view, np.asarray(photo)[134:166, 240:272])
    small = to_display(Image.new("RGB", (20, 20), (255, 0, 0)), config)
    assert small.shape == (32, 32, 3) and small[16, 16, 0] == 255 and small[0, 0, 0] == 0
    train = build_train_transform(config, AugmentConfig(crop_size=16, crop_padding=0))
    assert train(photo).shape == (3, 16, 16) and train(Image.new("RGB", (8, 8))).shape == (
        3,
        16,
        16,
    )
    assert DataConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="native must be true or false"):
        DataConfig(input_size=32, resize=32, native="yes")
