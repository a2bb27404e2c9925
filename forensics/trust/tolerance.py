"""How far beyond its training images a model's input domain reaches, measured on validation.

A model trained on 32 px images at JPEG quality 75 may or may not cope with a 36 px image or
one saved at quality 60: that is a property of the model, not of the data. Each tolerance is the
largest step of a ladder whose changes, applied to the model's own validation images in both
directions, flip at most a given share of their calls (`training.fit_trust` measures the flip
rates; `InputDomain` applies the result). Where even the first step is not withstood the
domain admits nothing beyond the training images: a verdict the model would not hold under
that change is not evidence about an image that went through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SCALE_TOLERANCE_STEPS = (1.1, 1.25, 1.5)  # resizing factors, up and down
JPEG_MARGIN_STEPS = (5, 10, 20)  # quality steps below the lowest and above the highest


def resize_factors() -> list[float]:
    """The resizing factors whose flip rates `choose_scale_tolerance` reads, down then up."""
    return [1 / step for step in SCALE_TOLERANCE_STEPS] + list(SCALE_TOLERANCE_STEPS)


def margin_qualities(quality: tuple[int, int]) -> list[int]:
    """The JPEG qualities whose flip rates `choose_jpeg_margin` reads for a training range
    (low, high): each step below `low` and above `high`, within 1..100, without repeats."""
    low, high = quality
    wanted = [max(1, low - s) for s in JPEG_MARGIN_STEPS] + [
        min(100, high + s) for s in JPEG_MARGIN_STEPS
    ]
    return list(dict.fromkeys(wanted))


def choose_scale_tolerance(flip_rates: Mapping[float, float], *, max_flip_rate: float) -> float:
    """The largest SCALE_TOLERANCE_STEPS factor whose resize by it and by its inverse each flip
    at most `max_flip_rate` of the validation calls, every smaller step included
    (`flip_rates`: factor -> share flipped); 1.0 where the first step already fails."""
    return _largest_withstood(
        SCALE_TOLERANCE_STEPS,
        lambda step: (flip_rates[1 / step], flip_rates[step]),
        max_flip_rate,
        none=1.0,
    )


def choose_jpeg_margin(
    flip_rates: Mapping[int, float], quality: tuple[int, int], *, max_flip_rate: float
) -> int:
    """The largest JPEG_MARGIN_STEPS step whose re-save that many qualities below the training
    range and above it each flip at most `max_flip_rate` of the validation calls
    (`flip_rates`: quality -> share flipped); 0 where the first step already fails."""
    low, high = quality
    return _largest_withstood(
        JPEG_MARGIN_STEPS,
        lambda step: (flip_rates[max(1, low - step)], flip_rates[min(100, high + step)]),
        max_flip_rate,
        none=0,
    )


def _largest_withstood(steps: Sequence, rates_of, max_flip_rate: float, *, none):
    chosen = none
    for step in steps:
        if max(rates_of(step)) > max_flip_rate:
            break
        chosen = step
    return chosen
