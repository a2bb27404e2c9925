"""THE ONLY preprocessing in the project: train and eval transforms, and the view the model saw.

Everything is parameterised by a `DataConfig`, which the checkpoint records, so training,
evaluation, the app and the CLI all see an image the same way.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

# The one copy of the normalisation constants (ImageNet statistics, torchvision's convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
CROPS = ("random_crop", "random_resized_crop")
MAX_INPUT_SIZE = 2048
# flip_jpeg_blur and robust add JPEG re-compression and blur: detectors trained with them hold up
# better on images that were re-shared (re-encoded, resized) after generation.
AUGMENT_PRESETS = ("none", "flip", "flip_rotate_jitter", "flip_jpeg_blur", "robust")
# Batch-level mixing in the training loop (torchvision's MixUp and CutMix); "mixup_or_cutmix"
# picks one of the two for each batch.
BATCH_MIXES = ("none", "mixup", "cutmix", "mixup_or_cutmix")


@dataclass(frozen=True)
class DataConfig:
    """How an image becomes the model's input: resize the short side, centre-crop, normalise."""

    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    # Never resized: the centre `input_size` square at native resolution (zero-padded where the
    # image is smaller). For sets of mixed sizes judged as native patches, e.g. a model trained
    # on several sources at once; `resize` is then unused.
    native: bool = False

    def __post_init__(self) -> None:
        # Bounded above too: a checkpoint from a stranger could otherwise ask for every image
        # to be resized to a billion pixels a side.
        if not (
            8 <= int(self.input_size) <= MAX_INPUT_SIZE
            and int(self.input_size) <= int(self.resize) <= 2 * MAX_INPUT_SIZE
        ):
            raise ValueError(
                f"need 8 <= input_size <= {MAX_INPUT_SIZE} and input_size <= resize <= "
                f"{2 * MAX_INPUT_SIZE}, got input_size={self.input_size}, resize={self.resize}"
            )
        finite = all(math.isfinite(float(v)) for v in (*self.mean, *self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or not finite or min(self.std) <= 0:
            raise ValueError("mean and std need three finite values each, std > 0")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; valid: {sorted(INTERPOLATIONS)}"
            )
        if not isinstance(self.native, bool):
            raise ValueError(f"native must be true or false, got {self.native!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataConfig:
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; the studies use flips, small rotations and colour jitter."""

    preset: str = "flip"
    crop: str = "random_crop"
    crop_padding: int = 4  # random_crop: pad then crop back, as in CIFAR training
    crop_scale: tuple[float, float] = field(default=(0.6, 1.0))  # random_resized_crop
    # Side of the training crops; None = input_size. Smaller trains a fully convolutional model
    # on patches of the view and evaluates it on the whole view (more of the image's evidence).
    crop_size: int | None = None
    rotation_degrees: float = 10.0
    jitter: float = 0.2
    jpeg_quality: tuple[int, int] = (50, 95)  # re-compression quality range (inclusive)
    jpeg_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    blur_probability: float = 0.3
    # Blends pairs of training images (MixUp) or pastes a patch of one into the other (CutMix),
    # with the labels mixed in the same proportion: a regulariser for small sets trained from
    # scratch. The mixing proportion is drawn from Beta(alpha, alpha).
    batch_mix: str = "none"
    batch_mix_alpha: float = 1.0
    # Resizes training images (both classes alike) by a factor drawn from `resample_scale` and
    # back, before anything else: where one class was resampled when the dataset was made and
    # the other was not (sdcoco's photographs), resampling traces stop telling the classes apart.
    resample_probability: float = 0.0
    resample_scale: tuple[float, float] = (0.75, 0.95)

    def __post_init__(self) -> None:
        if self.preset not in AUGMENT_PRESETS:
            raise ValueError(
                f"unknown augmentation preset {self.preset!r}; valid: {AUGMENT_PRESETS}"
            )
        if self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r}; valid: {CROPS}")
        low, high = self.jpeg_quality
        if not 1 <= int(low) <= int(high) <= 100:
            raise ValueError(f"jpeg_quality needs 1 <= low <= high <= 100, got {self.jpeg_quality}")
        if not 0 < float(self.blur_sigma[0]) <= float(self.blur_sigma[1]):
            raise ValueError(f"blur_sigma must be 0 < low <= high, got {self.blur_sigma}")
        if self.crop_size is not None and not 8 <= int(self.crop_size) <= MAX_INPUT_SIZE:
            raise ValueError(
                f"crop_size must be in [8, {MAX_INPUT_SIZE}] or null, got {self.crop_size}"
            )
        if self.batch_mix not in BATCH_MIXES:
            raise ValueError(f"unknown batch_mix {self.batch_mix!r}; valid: {BATCH_MIXES}")
        if not float(self.batch_mix_alpha) > 0:
            raise ValueError(f"batch_mix_alpha must be > 0, got {self.batch_mix_alpha}")
        if not 0 < float(self.resample_scale[0]) <= float(self.resample_scale[1]) <= 1:
            raise ValueError(
                f"resample_scale must be 0 < low <= high <= 1, got {self.resample_scale}"
            )
        for name in ("jpeg_probability", "blur_probability", "resample_probability"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


class TrimLongSide:
    """Centre-crop a PIL image's long side to the part that the resize and centre crop after it
    keep, plus a margin for the resampling filter. Without it a 1x10000 strip, resized to a
    256 px short side, becomes 256x2,560,000 pixels (2 GB) only to be cropped to 256x256.
    Images at most four times as elongated as the kept part (every ordinary photograph) pass
    through untouched; the others see the same view to within a pixel of resampling."""

    def __init__(self, *, resize: int, input_size: int) -> None:
        self.resize, self.input_size = int(resize), int(input_size)

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        scale = short / self.resize  # source pixels per resized pixel
        margin = math.ceil(3 * max(scale, 1.0)) + 1  # bicubic support (2) with room to spare
        # Never below the short side: the resize after this must still scale the same side.
        keep = max(math.ceil(self.input_size * scale) + 2 * margin, short)
        if long <= 4 * keep:
            return image
        # Centred where the centre crop after the resize is (torchvision's rounding).
        resized_long = int(self.resize * long / short)
        crop_start = round((resized_long - self.input_size) / 2.0)
        centre = (crop_start + self.input_size / 2) * long / resized_long
        start = min(max(round(centre - keep / 2), 0), long - keep)
        box = (
            (start, 0, start + keep, height) if width > height else (0, start, width, start + keep)
        )
        return image.crop(box)

    def __repr__(self) -> str:
        return f"TrimLongSide(resize={self.resize}, input_size={self.input_size})"


def _geometry(config: DataConfig) -> list[Callable]:
    if config.native:
        return [v2.CenterCrop(config.input_size)]
    interpolation = INTERPOLATIONS[config.interpolation]
    return [
        TrimLongSide(resize=config.resize, input_size=config.input_size),
        v2.Resize(config.resize, interpolation=interpolation, antialias=True),
        v2.CenterCrop(config.input_size),
    ]


def _to_normalized_tensor(config: DataConfig) -> list[Callable]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ]


class RandomResample:
    """With probability `p`, resize a PIL image by a factor drawn from `scale` and back to its
    size (Lanczos both ways, as datasets are made). Draws from torch's RNG."""

    def __init__(self, scale: tuple[float, float], *, p: float) -> None:
        self.low, self.high, self.p = float(scale[0]), float(scale[1]), float(p)

    def __call__(self, image: Image.Image) -> Image.Image:
        if float(torch.rand(())) >= self.p:
            return image
        factor = self.low + (self.high - self.low) * float(torch.rand(()))
        small = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        lanczos = Image.Resampling.LANCZOS
        return image.resize(small, lanczos).resize(image.size, lanczos)

    def __repr__(self) -> str:
        return f"RandomResample(scale=({self.low}, {self.high}), p={self.p})"


class RandomJpeg:
    """With probability `p`, re-encode a PIL image as JPEG at a quality drawn from `quality`
    (inclusive range), as sharing sites do. Draws from torch's RNG, so seeding reproduces it."""

    def __init__(self, quality: tuple[int, int], *, p: float) -> None:
        self.low, self.high, self.p = int(quality[0]), int(quality[1]), float(p)

    def __call__(self, image: Image.Image) -> Image.Image:
        if float(torch.rand(())) >= self.p:
            return image
        quality = int(torch.randint(self.low, self.high + 1, ()))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")

    def __repr__(self) -> str:
        return f"RandomJpeg(quality=({self.low}, {self.high}), p={self.p})"


def build_eval_transform(config: DataConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> float tensor (3, input_size, input_size), as validation sees it."""
    return v2.Compose(_geometry(config) + _to_normalized_tensor(config))


def build_eval_geometry(config: DataConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> uint8 tensor (3, input_size, input_size): the eval transform's
    geometry alone. `normalize_batch` finishes a stack of them in one operation, which costs
    less per image than normalising each (and collates a quarter of the bytes)."""
    return v2.Compose([*_geometry(config), v2.ToImage()])


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> uint8 tensor (3, H, W) as it is, never resampled: a native-resolution
    patch for `normalize_batch`."""
    return v2.functional.pil_to_tensor(image)


def normalize_batch(batch: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """uint8 (N, 3, H, W) from `build_eval_geometry` -> the float batch `build_eval_transform`
    would have given, image by image."""
    return v2.Compose(_to_normalized_tensor(config)[1:])(batch)


def build_train_transform(
    config: DataConfig, augment: AugmentConfig | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> augmented, normalised float tensor (3, side, side), where side is
    `augment.crop_size` or else `config.input_size`."""
    augment = augment or AugmentConfig()
    side = config.input_size if augment.crop_size is None else int(augment.crop_size)
    if side > config.input_size:
        raise ValueError(
            f"augment.crop_size ({side}) must not exceed input.input_size ({config.input_size})"
        )
    if augment.preset == "none":
        return build_eval_transform(replace(config, input_size=side))
    interpolation = INTERPOLATIONS[config.interpolation]
    steps: list[Callable] = []
    if augment.resample_probability > 0:
        steps.append(RandomResample(augment.resample_scale, p=float(augment.resample_probability)))
    if augment.preset in ("flip_jpeg_blur", "robust"):
        # On the full-size image, before resizing: the way a re-shared picture was degraded.
        sigma_high = float(augment.blur_sigma[1])
        steps += [
            RandomJpeg(augment.jpeg_quality, p=float(augment.jpeg_probability)),
            v2.RandomApply(
                [v2.GaussianBlur(2 * math.ceil(2 * sigma_high) + 1, tuple(augment.blur_sigma))],
                p=float(augment.blur_probability),
            ),
        ]
    if augment.crop == "random_resized_crop":
        steps.append(
            v2.RandomResizedCrop(
                side,
                scale=tuple(augment.crop_scale),
                interpolation=interpolation,
                antialias=True,
            )
        )
    else:
        if not config.native:
            steps.append(v2.Resize(config.resize, interpolation=interpolation, antialias=True))
        crop = v2.RandomCrop(
            side, padding=augment.crop_padding, padding_mode="reflect", pad_if_needed=config.native
        )
        steps.append(crop)
    steps.append(v2.RandomHorizontalFlip())
    if augment.preset in ("flip_rotate_jitter", "robust"):
        steps += [
            v2.RandomRotation(augment.rotation_degrees, interpolation=interpolation),
            v2.ColorJitter(
                brightness=augment.jitter, contrast=augment.jitter, saturation=augment.jitter
            ),
        ]
    return v2.Compose(steps + _to_normalized_tensor(config))


def build_batch_mix(
    augment: AugmentConfig, num_classes: int = 2
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """(images, integer labels) -> (mixed images, soft labels of shape (batch, num_classes)) for
    the training loop, or None when `augment.batch_mix` is "none". Draws from torch's global
    generator, which training seeds per epoch, so a resumed run mixes as an uninterrupted one."""
    if augment.batch_mix == "none":
        return None
    alpha = float(augment.batch_mix_alpha)
    mixup = v2.MixUp(alpha=alpha, num_classes=num_classes)
    cutmix = v2.CutMix(alpha=alpha, num_classes=num_classes)
    mixes = {"mixup": mixup, "cutmix": cutmix, "mixup_or_cutmix": v2.RandomChoice([mixup, cutmix])}
    return mixes[augment.batch_mix]


def to_display(image: Image.Image, config: DataConfig) -> np.ndarray:
    """The uint8 (input_size, input_size, 3) view the model saw: same resize and crop."""
    view = v2.Compose(_geometry(config))(image.convert("RGB"))
    return np.asarray(view, dtype=np.uint8).copy()
