"""forensics.perturb on tiny images: shapes, value ranges, parameter bounds, determinism, and the
file a perturbation gives (format and JPEG quality as a user's copy would have them)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from forensics.images import ImageLoadError, read_image
from forensics.perturb import (
    PERTURBATIONS,
    STABILITY_PERTURBATIONS,
    center_crop,
    gaussian_blur,
    gaussian_noise,
    jpeg_resave,
    perturb_file,
    perturb_image,
    perturbation_kind,
    rescale,
)
from tests.conftest import image_bytes, make_image


@pytest.fixture
def image() -> Image.Image:
    return make_image(3, size=24).resize((24, 16))  # not square: width and height kept apart


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_every_perturbation_gives_rgb_uint8_and_is_deterministic(image, name) -> None:
    kind = PERTURBATIONS[name]
    for strength in kind.sweep:
        first, second = perturb_image(image, name, strength), perturb_image(image, name, strength)
        assert first.mode == "RGB" and np.asarray(first).dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    low, high, step, default = kind.control
    assert low <= default <= high and step > 0
    assert all(kind.check(s) == s for s in kind.sweep)


def test_jpeg_resave_keeps_the_size_and_changes_more_at_lower_quality(image) -> None:
    base = pixels(image)
    errors = [np.abs(pixels(jpeg_resave(image, q)) - base).mean() for q in (95, 70, 30)]
    assert jpeg_resave(image, 70).size == image.size
    assert errors[0] < errors[1] < errors[2]


def test_rescale_goes_down_and_up_and_never_below_one_pixel(image) -> None:
    assert rescale(image, 0.5).size == (12, 8)
    assert rescale(image, 1.5).size == (36, 24)
    assert rescale(image, 0.01).size == (1, 1)


def test_blur_smooths_and_sigma_zero_is_the_image(image) -> None:
    np.testing.assert_array_equal(np.asarray(gaussian_blur(image, 0)), np.asarray(image))
    spread = [pixels(gaussian_blur(image, s)).std() for s in (0, 1, 2)]
    assert spread[0] > spread[1] > spread[2]
    assert gaussian_blur(image, 2).size == image.size


def test_noise_has_its_sigma_on_the_0_255_scale_and_is_seeded() -> None:
    grey = Image.new("RGB", (64, 64), (128, 128, 128))  # far from 0 and 255: no clipping
    noisy = pixels(gaussian_noise(grey, 10)) - 128
    assert abs(noisy.std() - 10) < 0.5 and abs(noisy.mean()) < 0.5
    same = gaussian_noise(grey, 10, seed=1), gaussian_noise(grey, 10, seed=1)
    np.testing.assert_array_equal(np.asarray(same[0]), np.asarray(same[1]))
    assert not np.array_equal(np.asarray(same[0]), np.asarray(gaussian_noise(grey, 10, seed=2)))
    # Without a seed, the pixels choose it: two images get different noise.
    other = Image.new("RGB", (64, 64), (129, 128, 128))
    assert not np.array_equal(
        pixels(gaussian_noise(grey, 10)) - 128, pixels(gaussian_noise(other, 10)) - 128
    )
    np.testing.assert_array_equal(np.asarray(gaussian_noise(grey, 0)), np.asarray(grey))
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    assert np.asarray(gaussian_noise(white, 50)).max() == 255  # clipped, not wrapped


def test_centre_crop_keeps_the_middle(image) -> None:
    crop = center_crop(image, 0.5)
    assert crop.size == (12, 8)
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(image)[4:12, 6:18])
    assert center_crop(image, 1.0).size == image.size
    assert center_crop(image, 0.001).size == (1, 1)


@pytest.mark.parametrize(
    ("name", "strength", "message"),
    [
        ("jpeg", 0, "JPEG quality must be in [1, 100], got 0"),
        ("jpeg", 101, "JPEG quality must be in [1, 100]"),
        ("jpeg", 70.5, "whole number"),
        ("scale", 0, "rescale factor must be in (0, 8]"),
        ("scale", 9, "rescale factor must be in (0, 8]"),
        ("blur", -1, "blur sigma must be in [0, 50]"),
        ("noise", 256, "noise sigma (0-255 scale) must be in [0, 255]"),
        ("noise", float("nan"), "noise sigma"),
        ("crop", 0, "crop fraction must be in (0, 1]"),
        ("crop", 1.5, "crop fraction must be in (0, 1]"),
        ("blur", "2", "blur sigma must be a number"),
        ("jpeg", True, "must be a number"),
    ],
)
def test_bad_strengths_are_refused_with_the_valid_range(image, name, strength, message) -> None:
    with pytest.raises(ValueError) as error:
        perturb_image(image, name, strength)
    assert message in str(error.value)


def test_an_unknown_perturbation_names_the_valid_ones(image) -> None:
    with pytest.raises(ValueError, match="unknown perturbation 'sharpen'; valid: jpeg, scale"):
        perturbation_kind("sharpen")


def test_the_stability_check_uses_this_module() -> None:
    assert STABILITY_PERTURBATIONS["JPEG re-save (q90)"] is jpeg_resave
    assert STABILITY_PERTURBATIONS["rescale 0.9x"] is rescale


def test_a_perturbed_file_is_saved_as_the_original_was(image) -> None:
    jpeg = image_bytes(image, "JPEG", quality=75)
    png = image_bytes(image, "PNG")
    # JPEG re-save: a JPEG at that quality, exactly the pixels of jpeg_resave.
    rgb, info = read_image(perturb_file(png, "jpeg", 60))
    assert (info.format, info.jpeg_quality) == ("JPEG", 60)
    np.testing.assert_array_equal(np.asarray(rgb), np.asarray(jpeg_resave(image, 60)))
    # Anything else: a JPEG stays a JPEG at its own quality, a PNG stays lossless.
    _, info = read_image(perturb_file(jpeg, "blur", 1))
    assert (info.format, info.jpeg_quality) == ("JPEG", 75)
    rgb, info = read_image(perturb_file(png, "scale", 0.5))
    assert info.format == "PNG" and rgb.size == (12, 8)
    np.testing.assert_array_equal(np.asarray(rgb), np.asarray(rescale(image, 0.5)))
    assert perturb_file(png, "noise", 5) == perturb_file(png, "noise", 5)


def test_a_perturbed_file_refuses_bad_input() -> None:
    with pytest.raises(ImageLoadError):
        perturb_file(b"not an image", "blur", 1)
    with pytest.raises(ValueError, match="crop fraction"):
        perturb_file(image_bytes(make_image(1)), "crop", 2)


def test_a_greyscale_jpeg_is_perturbed_as_rgb() -> None:
    buffer = io.BytesIO()
    make_image(4, size=16).convert("L").save(buffer, format="JPEG", quality=80)
    rgb, info = read_image(perturb_file(buffer.getvalue(), "noise", 5))
    assert rgb.mode == "RGB" and info.format == "JPEG"
