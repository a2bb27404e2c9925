"""Load any image a user may hand us into a validated RGB PIL image, or fail with a clear reason.

Forensic tools receive files from strangers, so every failure is an `ImageLoadError` (a
`ValueError`) whose message says what is wrong; no other exception escapes for bad input.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 50 megapixels decodes to ~150 MB of RGB: far below what exhausts memory, and just above the
# 48 MP that phone cameras now write. Compressed inputs are capped too, so a huge upload is
# refused unread.
MAX_PIXELS = 50_000_000
MAX_BYTES = 100 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ORIENTATION_TAG = 0x0112  # EXIF
# IJG's standard luminance quantisation table (JPEG spec, Annex K), row by row: JPEG quality is
# estimated by finding the quality whose scaled table matches the file's.
# fmt: off
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
], dtype=float)
# fmt: on

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image


class ImageLoadError(ValueError):
    """The input is not an image this tool can read; the message says why."""


def load_image(
    source: ImageSource, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES
) -> Image.Image:
    """Return `source` as a fully decoded RGB image.

    `source` may be a path, raw bytes, a binary file-like object or a PIL image. EXIF
    orientation is applied, the first frame of an animation is used, and every mode
    (L, LA, P with transparency, RGBA, CMYK, I;16, I, F, ...) becomes 8-bit RGB; transparent
    areas are composited on white.

    Raises ImageLoadError for empty, truncated, non-image, unsupported or oversized input.
    """
    if isinstance(source, Image.Image):
        with _decoding_errors(None):
            return _to_rgb(_checked_frame(source, max_pixels), owned=False)
    with _decoded_frame(_read_bytes(source, max_bytes), max_pixels) as frame:
        return _to_rgb(frame)


@dataclass(frozen=True)
class ImageInfo:
    """What a dataset scan records of one image file."""

    width: int  # as `load_image` returns it: after EXIF orientation
    height: int
    format: str | None  # PIL's name: JPEG, PNG, WEBP, ...
    jpeg_quality: int | None  # IJG quality 1-100 estimated from the tables; None if not a JPEG


def read_image(
    source: ImageSource, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES
) -> tuple[Image.Image, ImageInfo]:
    """`load_image(source)` and `inspect_image(source)` from one decode: the pixels and what the
    file was (a verdict's applicability check needs both). For a PIL image, the format and
    quality are those of the file it was opened from, if any."""
    if isinstance(source, Image.Image):
        rgb = load_image(source, max_pixels=max_pixels)
        return rgb, ImageInfo(rgb.width, rgb.height, source.format, estimate_jpeg_quality(source))
    with _decoded_frame(_read_bytes(source, max_bytes), max_pixels) as frame:
        rgb = _to_rgb(frame)
        return rgb, ImageInfo(rgb.width, rgb.height, frame.format, estimate_jpeg_quality(frame))


def inspect_image(
    source: ImageSource, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES
) -> ImageInfo:
    """Size, format and JPEG quality of `source`, after exactly the checks `load_image` makes.

    The pixels are fully decoded (a truncated or corrupt file fails here, as it would later in
    `load_image`), but no RGB copy is built: a dataset scan needs the verdict on the file, not
    its pixels, and skipping the copy roughly doubles its speed on small images.
    Raises ImageLoadError for everything `load_image` refuses.
    """
    if isinstance(source, Image.Image):
        raise ImageLoadError("inspect_image needs the file (path, bytes or file-like), not pixels")
    with _decoded_frame(_read_bytes(source, max_bytes), max_pixels) as frame:
        width, height = frame.size
        # EXIF orientations 5-8 turn the picture by 90 degrees, as load_image does.
        if frame.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8):
            width, height = height, width
        return ImageInfo(width, height, frame.format, estimate_jpeg_quality(frame))


def estimate_jpeg_quality(image: Image.Image) -> int | None:
    """IJG quality (1-100) whose luminance table best matches the file's; None if not a JPEG."""
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables:
        return None
    actual = float(np.asarray(tables[min(tables)], dtype=float).sum())
    # argmin takes the first of equally close qualities, the lowest one.
    return int(np.argmin(np.abs(_IJG_TABLE_SUMS - actual))) + 1


def _ijg_table_sums() -> np.ndarray:
    """Sum of IJG's luminance table scaled to each quality 1..100 (index 0 is quality 1)."""
    quality = np.arange(1, 101, dtype=float)[:, None]
    scale = np.where(quality < 50, 5000 / quality, 200 - 2 * quality)
    return np.clip(np.floor((_IJG_LUMINANCE * scale + 50) / 100), 1, 255).sum(axis=1)


_IJG_TABLE_SUMS = _ijg_table_sums()  # computed once: a scan estimates thousands of files


@contextlib.contextmanager
def _decoding_errors(data: bytes | None) -> Iterator[None]:
    """Turn whatever PIL raises on bad input into an ImageLoadError that says what is wrong."""
    try:
        with warnings.catch_warnings():
            # PIL warns (then errors) on decompression bombs; our own limit is stricter.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(_describe_unrecognised(data)) from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"image is too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # PIL reports truncated/corrupt data as OSError, broken headers as SyntaxError, etc.
        raise ImageLoadError(f"image data is truncated or corrupt ({exc})") from None


@contextlib.contextmanager
def _decoded_frame(data: bytes, max_pixels: int) -> Iterator[Image.Image]:
    """The checked, fully decoded first frame of `data`, open for the `with` block."""
    if data.startswith(PNG_SIGNATURE):
        _check_png_chunks(data)
    with _decoding_errors(data), Image.open(io.BytesIO(data)) as image:
        frame = _checked_frame(image, max_pixels)
        frame.load()
        yield frame


def _describe_unrecognised(data: bytes | None) -> str:
    """Why PIL could not identify `data`, in words a user can act on."""
    head = (data or b"")[:1024].lstrip().lower()
    if b"<svg" in head:
        return (
            "not a recognised image format: this is an SVG drawing (vector graphics), "
            "export it as PNG or JPEG first"
        )
    if head.startswith((b"<!doctype html", b"<html")):
        return "not a recognised image format: this is an HTML page, not the picture it shows"
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "not a recognised image format: this is a text file"
    return "not a recognised image format (is it really an image?)"


def _check_png_chunks(data: bytes) -> None:
    """Refuse a PNG whose chunk checksums do not match, as libpng (and so browsers) does: PIL
    does not check the image data's, and a corrupted file must not get a verdict as if whole.
    Truncation is left to the decoder, which reports it."""
    offset = len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        end = offset + 8 + length
        if end + 4 > len(data):
            return
        kind = data[offset + 4 : offset + 8]
        (stored,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(data[offset + 4 : end]) & 0xFFFFFFFF != stored:
            name = kind.decode("latin-1", errors="replace")
            raise ImageLoadError(f"PNG is corrupt: the checksum of its {name!r} chunk is wrong")
        if kind == b"IEND":
            return
        offset = end + 4


def _read_bytes(source: ImageSource, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(f"file not found: {path}")
        if not path.is_file():
            raise ImageLoadError(f"not a file: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageLoadError(
                f"file is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    elif hasattr(source, "read"):
        if hasattr(source, "seek"):
            # Non-seekable streams are read from where they are.
            with contextlib.suppress(OSError, ValueError):
                source.seek(0)
        data = source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError("file-like object must be opened in binary mode")
        data = bytes(data)
    else:
        raise ImageLoadError(
            f"unsupported input type {type(source).__name__}: "
            "give a path, bytes, a binary file-like object or a PIL image"
        )
    if not data:
        raise ImageLoadError("file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageLoadError(f"input is over the {max_bytes / 2**20:.0f} MB limit")
    return data


def _checked_frame(image: Image.Image, max_pixels: int) -> Image.Image:
    """First frame of `image`, after checking its declared size against the pixel limit."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageLoadError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageLoadError(
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels, "
            f"over the {max_pixels / 1e6:.0f} MP limit"
        )
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    return image


def _to_rgb(image: Image.Image, *, owned: bool = True) -> Image.Image:
    """`image` as 8-bit RGB, upright. `owned`: the pixels were decoded here, and an RGB image
    may share them (never the caller's image: that is copied)."""
    if image.getexif().get(ORIENTATION_TAG, 1) != 1:
        image, owned = ImageOps.exif_transpose(image), True
    mode = image.mode
    if mode == "RGB":
        if not owned:
            return image.copy()
        # A plain image on the decoded pixels, detached from the file: `copy()` would hold a
        # second 150 MB buffer for a 48 MP photograph (Image.copy is this plus the copy).
        image.load()
        return image._new(image.im)
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_high_depth_to_uint8(image), mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit and float greyscale to 8 bits: integers by bit depth, floats as [0,1] or [0,255]."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if image.mode == "F":
        peak = 1.0 if values.size and values.max() <= 1.0 else 255.0
    else:
        peak = 65535.0 if values.size and values.max() > 255 else 255.0
    return np.clip(np.rint(values / peak * 255.0), 0, 255).astype(np.uint8)
