"""A corpus of hostile and unusual image files, generated (never committed): what a forensic
tool receives from strangers. Each case says whether a careful reader can decode it."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.conftest import image_bytes, make_image


@dataclass(frozen=True)
class HostileFile:
    name: str  # a file name, with the extension a user would see
    data: bytes
    decodable: bool  # True: a verdict is expected; False: an ImageLoadError


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def declared_png(width: int, height: int) -> bytes:
    """A PNG declaring width x height with one tiny (wrong) data chunk: a bomb if decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _broken_crc_png() -> bytes:
    data = bytearray(image_bytes(make_image(1), "PNG"))
    idat = data.find(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    crc_at = idat + 4 + length
    data[crc_at : crc_at + 4] = bytes(b ^ 0xFF for b in data[crc_at : crc_at + 4])
    return bytes(data)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return image_bytes(make_image(2, size=48).crop((0, 0, 48, 24)), "JPEG", exif=exif)


def _huge_exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: nearly the whole 64 kB APP1 segment
    return image_bytes(make_image(3), "JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [make_image(seed).convert("P") for seed in (4, 5, 6)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = make_image(7).convert("P")
    return image_bytes(image, "PNG", transparency=0)


def _tiff(array: np.ndarray) -> bytes:
    return image_bytes(Image.fromarray(array), "TIFF")  # uint16 -> I;16, float32 -> F


def hostile_corpus() -> list[HostileFile]:
    rng = np.random.default_rng(0)
    jpeg = image_bytes(make_image(8, size=64), "JPEG", quality=90)
    png = image_bytes(make_image(9, size=64), "PNG")
    svg = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        b'<rect width="64" height="64" fill="red"/></svg>'
    )
    cases = [
        HostileFile("zero_bytes.jpg", b"", False),
        HostileFile("random_bytes.jpg", rng.bytes(4096), False),
        HostileFile("random_bytes.png", rng.bytes(4096), False),
        HostileFile("text.jpg", b"This is a shopping list, not a photograph.\n" * 20, False),
        HostileFile("page.jpg", b"<!doctype html><html><body><img src=x></body></html>", False),
        *[
            HostileFile(f"truncated_{cut}.jpg", jpeg[: int(len(jpeg) * cut / 100)], False)
            for cut in (1, 10, 50, 90)
        ],
        *[
            HostileFile(f"truncated_{cut}.png", png[: int(len(png) * cut / 100)], False)
            for cut in (1, 10, 50, 90)
        ],
        HostileFile("broken_crc.png", _broken_crc_png(), False),
        HostileFile("bomb_30000x30000.png", declared_png(30_000, 30_000), False),
        # Below PIL's own refusal (179 MP) but over the library's 50 MP: only our limit stops it.
        HostileFile("bomb_12000x12000.png", declared_png(12_000, 12_000), False),
        HostileFile("bomb_1x2000000000.png", declared_png(1, 2_000_000_000), False),
        HostileFile("svg_drawing.svg", svg, False),
        HostileFile("svg_renamed.png", svg, False),
        HostileFile(
            "one_pixel.png", image_bytes(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), True
        ),
        HostileFile(
            "strip_1x10000.png", image_bytes(Image.new("RGB", (1, 10_000), "grey"), "PNG"), True
        ),
        # Resized whole to a 256 px short side, this strip would be 256 x 102,400,000 pixels.
        HostileFile(
            "strip_1x400000.png", image_bytes(Image.new("RGB", (1, 400_000), "grey"), "PNG"), True
        ),
        HostileFile(
            "sixteen_bit.tiff",
            _tiff(rng.integers(0, 65535, (40, 40), dtype=np.uint16)),
            True,
        ),
        HostileFile("float.tiff", _tiff(rng.random((40, 40), dtype=np.float32)), True),
        HostileFile("cmyk.jpg", image_bytes(make_image(10).convert("CMYK"), "JPEG"), True),
        HostileFile("palette_transparent.png", _palette_with_transparency(), True),
        HostileFile("grey_alpha.png", image_bytes(make_image(11).convert("LA"), "PNG"), True),
        HostileFile("animated.gif", _animated_gif(), True),
        HostileFile("exif_rotated.jpg", _exif_rotated_jpeg(), True),
        HostileFile("huge_exif.jpg", _huge_exif_jpeg(), True),
        HostileFile("photo.webp", image_bytes(make_image(12), "WEBP", quality=80), True),
        HostileFile("valid.jpg", jpeg, True),
        HostileFile("valid.png", png, True),
    ]
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases
