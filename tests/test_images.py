"""forensics.images.load_image: every source kind, every mode to RGB, and every bad input refused
with an ImageLoadError whose message names the reason."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import image_bytes, make_image
from PIL import Image, ImageFile

from forensics.images import ImageLoadError, load_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def _assert_rgb(image: Image.Image, size: tuple[int, int]) -> None:
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert image.size == size


def _png_declaring(width: int, height: int) -> bytes:
    """A real 4x4 PNG whose IHDR is patched to declare width x height, with a valid CRC."""
    data = bytearray(image_bytes(Image.new("RGB", (4, 4), RED), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _two_halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return Image.fromarray(pixels)


# --------------------------------------------------------------------------------------------
# Source kinds
# --------------------------------------------------------------------------------------------


@pytest.fixture
def png_data(sample_image: Image.Image) -> bytes:
    return image_bytes(sample_image, "PNG")


@pytest.mark.parametrize("as_type", [str, Path])
def test_loads_from_path(tmp_path: Path, png_data: bytes, sample_image, as_type) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(png_data)
    image = load_image(as_type(path))
    _assert_rgb(image, sample_image.size)
    # PNG is lossless: the pixels must come back exactly.
    np.testing.assert_array_equal(_pixels(image), _pixels(sample_image))


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_loads_from_bytes_like(png_data: bytes, sample_image, wrap) -> None:
    image = load_image(wrap(png_data))
    _assert_rgb(image, sample_image.size)
    np.testing.assert_array_equal(_pixels(image), _pixels(sample_image))


def test_loads_from_file_like_at_start_and_at_end(png_data: bytes, sample_image) -> None:
    fresh = io.BytesIO(png_data)
    np.testing.assert_array_equal(_pixels(load_image(fresh)), _pixels(sample_image))
    # An upload that someone already read to the end must still load: it is rewound.
    consumed = io.BytesIO(png_data)
    consumed.read()
    assert consumed.tell() == len(png_data)
    np.testing.assert_array_equal(_pixels(load_image(consumed)), _pixels(sample_image))


def test_loads_from_open_binary_file(tmp_path: Path, png_data: bytes, sample_image) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(png_data)
    with path.open("rb") as handle:
        image = load_image(handle)
    np.testing.assert_array_equal(_pixels(image), _pixels(sample_image))


def test_text_mode_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_text("hello")
    with path.open("r") as handle, pytest.raises(ImageLoadError, match="binary"):
        load_image(handle)


def test_loads_from_pil_image_without_aliasing_it(sample_image: Image.Image) -> None:
    before = _pixels(sample_image)
    image = load_image(sample_image)
    _assert_rgb(image, sample_image.size)
    np.testing.assert_array_equal(_pixels(image), before)
    image.putpixel((0, 0), (1, 2, 3))  # the caller's image must not change through the result
    np.testing.assert_array_equal(_pixels(sample_image), before)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP", "TIFF", "GIF"])
def test_common_formats_load_as_rgb(fmt: str) -> None:
    source = make_image(7, size=24)
    image = load_image(image_bytes(source, fmt))
    _assert_rgb(image, (24, 24))


# --------------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "top_colour"),
    [(6, RED), (8, BLUE)],  # 6: rotate 90 clockwise (left goes up); 8: 90 anticlockwise
)
def test_exif_orientation_is_applied(orientation: int, top_colour) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = _two_halves(40, 20)  # wide as stored, tall once displayed
    data = image_bytes(stored, "JPEG", exif=exif.tobytes(), quality=95)
    image = load_image(data)
    _assert_rgb(image, (20, 40))
    pixels = _pixels(image)
    top, bottom = pixels[2:16].mean(axis=(0, 1)), pixels[-16:-2].mean(axis=(0, 1))
    other = BLUE if top_colour == RED else RED
    np.testing.assert_allclose(top, top_colour, atol=30)
    np.testing.assert_allclose(bottom, other, atol=30)


def test_no_exif_keeps_size() -> None:
    image = load_image(image_bytes(_two_halves(40, 20), "JPEG"))
    _assert_rgb(image, (40, 20))


# --------------------------------------------------------------------------------------------
# Every mode becomes RGB
# --------------------------------------------------------------------------------------------


def test_greyscale_l() -> None:
    grey = Image.fromarray(np.array([[0, 100], [200, 255]], dtype=np.uint8), mode="L")
    image = load_image(image_bytes(grey, "PNG"))
    _assert_rgb(image, (2, 2))
    expected = np.repeat(np.array([[0, 100], [200, 255]])[..., None], 3, axis=2)
    np.testing.assert_array_equal(_pixels(image), expected)


def test_la_transparent_pixels_become_white() -> None:
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[0, 0] = (0, 0)  # black, fully transparent -> white
    la[0, 1] = (0, 255)  # black, opaque -> black
    la[1, :] = (50, 255)
    image = load_image(image_bytes(Image.fromarray(la, mode="LA"), "PNG"))
    _assert_rgb(image, (2, 2))
    pixels = _pixels(image)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[0, 1]) == (0, 0, 0)
    assert tuple(pixels[1, 0]) == (50, 50, 50)


def test_palette_with_transparency_composites_on_white() -> None:
    palette_image = Image.new("P", (4, 2), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))  # 0 black, 1 red
    palette_image.paste(1, (0, 0, 2, 2))  # left half red, right half index 0
    data = image_bytes(palette_image, "PNG", transparency=0)
    image = load_image(data)
    _assert_rgb(image, (4, 2))
    pixels = _pixels(image)
    assert (pixels[:, :2] == RED).all()
    # Index 0 is black but transparent: it must come out white, not black.
    assert (pixels[:, 2:] == 255).all()


def test_palette_without_transparency_keeps_colours() -> None:
    palette_image = Image.new("P", (2, 1), 1)
    palette_image.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image = load_image(image_bytes(palette_image, "PNG"))
    assert (_pixels(image) == (0, 255, 0)).all()


def test_rgba_transparent_becomes_white_opaque_kept() -> None:
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # transparent red -> white
    rgba[0, 1] = (0, 0, 255, 255)  # opaque blue -> blue
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black over white -> mid grey
    image = load_image(image_bytes(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    _assert_rgb(image, (3, 1))
    pixels = _pixels(image)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[0, 1]) == BLUE
    assert np.all(np.abs(pixels[0, 2] - 127) <= 1)


def test_rgba_pil_source_composites_on_white() -> None:
    source = Image.new("RGBA", (3, 3), (10, 20, 30, 0))
    assert (_pixels(load_image(source)) == 255).all()


def test_cmyk_jpeg() -> None:
    # CMYK (0,0,0,0) is no ink: white. Full black ink: black.
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
    cmyk.paste((0, 0, 0, 255), (0, 0, 8, 4))
    source = image_bytes(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(source)).mode == "CMYK"
    image = load_image(source)
    _assert_rgb(image, (8, 8))
    pixels = _pixels(image)
    assert pixels[:2].mean() < 30
    assert pixels[-2:].mean() > 225


def test_sixteen_bit_png_scales_to_eight_bits() -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    data = image_bytes(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = load_image(data)
    _assert_rgb(image, (3, 1))
    pixels = _pixels(image)
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert np.all(np.abs(pixels[0, 1] - 128) <= 1)
    assert tuple(pixels[0, 2]) == (255, 255, 255)


def test_float_tiff_in_unit_range_scales_to_255() -> None:
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    data = image_bytes(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    pixels = _pixels(load_image(data))
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert np.all(np.abs(pixels[0, 1] - 128) <= 1)
    assert tuple(pixels[0, 2]) == (255, 255, 255)


def test_one_bit_image() -> None:
    bits = Image.new("1", (4, 1), 0)
    bits.putpixel((1, 0), 1)
    image = load_image(image_bytes(bits, "PNG"))
    _assert_rgb(image, (4, 1))
    pixels = _pixels(image)
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert tuple(pixels[0, 1]) == (255, 255, 255)


def _two_frame_gif() -> bytes:
    first, second = Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[second], duration=100)
    return buffer.getvalue()


def test_animated_gif_uses_first_frame() -> None:
    data = _two_frame_gif()
    assert Image.open(io.BytesIO(data)).n_frames == 2
    image = load_image(data)
    _assert_rgb(image, (8, 8))
    assert (_pixels(image) == RED).all()


def test_animated_pil_image_on_a_later_frame_uses_first_frame() -> None:
    opened = Image.open(io.BytesIO(_two_frame_gif()))
    opened.seek(1)
    assert (_pixels(opened.convert("RGB")) == BLUE).all()  # the test setup really is on frame 2
    assert (_pixels(load_image(opened)) == RED).all()


# --------------------------------------------------------------------------------------------
# Bad input: ImageLoadError (a ValueError) with a reason
# --------------------------------------------------------------------------------------------


def test_image_load_error_is_a_value_error() -> None:
    assert issubclass(ImageLoadError, ValueError)
    with pytest.raises(ValueError):
        load_image(b"")


@pytest.mark.parametrize("source", [b"", bytearray(), io.BytesIO(b"")])
def test_empty_input(source) -> None:
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(source)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(path)


NOT_AN_IMAGE = "not a recognised image format"


def test_random_bytes() -> None:
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageLoadError, match=NOT_AN_IMAGE):
        load_image(noise)


def test_text_renamed_jpg(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_text("Dear diary, today I took no photos at all.\n" * 10)
    with pytest.raises(ImageLoadError, match=NOT_AN_IMAGE):
        load_image(path)


def test_html_page() -> None:
    html = b"<!DOCTYPE html><html><head><title>404</title></head><body>Not found</body></html>"
    with pytest.raises(ImageLoadError, match=NOT_AN_IMAGE):
        load_image(html)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.3, 0.5, 0.8, 0.95])
def test_truncated_files(fmt: str, fraction: float) -> None:
    data = image_bytes(make_image(3, size=40), fmt)
    cut = data[: max(1, int(len(data) * fraction))]
    with pytest.raises(ImageLoadError, match=f"truncated|corrupt|{NOT_AN_IMAGE}"):
        load_image(cut)


def test_truncated_jpeg_missing_only_its_end_marker() -> None:
    data = image_bytes(make_image(3, size=40), "JPEG")
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[:-20])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(str(tmp_path / "nope.png"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not a file"):
        load_image(tmp_path)


@pytest.mark.parametrize("source", [42, 3.5, None, ["a.png"], {"path": "a.png"}])
def test_unsupported_type(source) -> None:
    with pytest.raises(ImageLoadError, match="unsupported input type"):
        load_image(source)


def test_max_pixels_limit_on_bytes_and_pil() -> None:
    image = make_image(5, size=64).resize((100, 100))
    data = image_bytes(image, "PNG")
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(data, max_pixels=1000)
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(image, max_pixels=1000)
    # The limit is inclusive: exactly max_pixels is allowed, one fewer is not.
    _assert_rgb(load_image(data, max_pixels=100 * 100), (100, 100))
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(data, max_pixels=100 * 100 - 1)


@pytest.mark.parametrize("side", [8000, 30000])
def test_declared_huge_png_fails_fast_without_decoding(monkeypatch, side: int) -> None:
    data = _png_declaring(side, side)
    assert Image.open(io.BytesIO(_png_declaring(5, 7))).size == (5, 7)  # the patch is valid PNG

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded for an image that should be refused")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match=r"too large|megapixels") as info:
        load_image(data)
    assert time.perf_counter() - start < 2.0
    assert "truncated" not in str(info.value)


def test_max_bytes_limit(tmp_path: Path, png_data: bytes) -> None:
    small = len(png_data) - 1
    path = tmp_path / "photo.png"
    path.write_bytes(png_data)
    for source in (png_data, path, io.BytesIO(png_data)):
        with pytest.raises(ImageLoadError, match="limit"):
            load_image(source, max_bytes=small)
    # At exactly the limit it loads.
    _assert_rgb(load_image(png_data, max_bytes=len(png_data)), (48, 48))
    _assert_rgb(load_image(io.BytesIO(png_data), max_bytes=len(png_data)), (48, 48))


# Found by mutation testing: the exact scale of each high-depth case, at its boundaries.
@pytest.mark.parametrize(
    ("values", "fmt", "expected"),
    [
        (np.array([[0, 255]], dtype=np.uint16), "PNG", [0, 255]),  # at most 255: 8-bit values
        (np.array([[0, 256]], dtype=np.uint16), "PNG", [0, 1]),  # above: 16-bit values
        (np.array([[0.0, 128.0, 255.0]], dtype=np.float32), "TIFF", [0, 128, 255]),
        (np.array([[0.0, 1.5, 2.0]], dtype=np.float32), "TIFF", [0, 2, 2]),  # above 1: 0-255
        (np.array([[np.nan, np.inf, -np.inf, 0.5]], dtype=np.float32), "TIFF", [0, 0, 0, 128]),
        (np.array([[-5.0, 300.0, 2.0]], dtype=np.float32), "TIFF", [0, 255, 2]),  # clipped
    ],
)
def test_high_depth_images_scale_exactly(values, fmt: str, expected: list[int]) -> None:
    pixels = _pixels(load_image(image_bytes(Image.fromarray(values), fmt)))
    assert pixels[0, :, 0].tolist() == expected
    assert (pixels[..., 0] == pixels[..., 2]).all()  # grey


def test_every_jpeg_quality_is_recovered() -> None:
    """The trust checks compare a JPEG's quality with the training data's: the estimate must
    be exact at every libjpeg quality, on both sides of 50 where IJG's scaling changes."""
    from forensics.images import estimate_jpeg_quality

    image = make_image(1, size=32)
    found = []
    for quality in range(1, 101):
        with Image.open(io.BytesIO(image_bytes(image, "JPEG", quality=quality))) as jpeg:
            found.append(estimate_jpeg_quality(jpeg))
    assert found == list(range(1, 101))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'  <?xml version="1.0"?>\n<SVG xmlns="http://www.w3.org/2000/svg"></SVG>',
         "this is an SVG drawing (vector graphics), export it as PNG or JPEG first"),
        (b"\n<!DOCTYPE html><html><body><img src=x.png></body></html>",
         "this is an HTML page, not the picture it shows"),
        (b"<HTML><body>photo</body></HTML>", "this is an HTML page, not the picture it shows"),
        ("notes about a photo: caf\u00e9\n".encode(), "this is a text file"),
        (b"\xff\xfe\xfd not utf-8, no NUL byte", "(is it really an image?)"),
        (b"ab\x00cd" * 10, "(is it really an image?)"),
    ],
)  # fmt: skip
def test_an_unrecognised_file_is_described_in_words_a_user_can_act_on(
    data: bytes, says: str
) -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(data)
    assert str(info.value) == (
        f"not a recognised image format: {says}" if not says.startswith("(") else
        f"not a recognised image format {says}"
    )  # fmt: skip


@pytest.mark.parametrize("orientation", range(1, 9))
def test_inspect_image_reports_the_upright_size_format_and_quality(orientation: int) -> None:
    """The input-domain check reads these: the size as load_image returns it (EXIF
    orientations 5-8 turn the picture a quarter), the format and the JPEG quality."""
    from forensics.images import ImageInfo, inspect_image

    exif = Image.Exif()
    exif[0x0112] = orientation
    data = image_bytes(make_image(2, size=40).crop((0, 0, 40, 24)), "JPEG", quality=83, exif=exif)
    upright = load_image(data).size
    info = inspect_image(data)
    assert info == ImageInfo(*upright, "JPEG", 83)
    assert upright == ((24, 40) if orientation >= 5 else (40, 24))


def test_inspect_image_needs_the_file_not_pixels() -> None:
    from forensics.images import inspect_image

    with pytest.raises(ImageLoadError) as info:
        inspect_image(make_image(2))
    assert str(info.value) == "inspect_image needs the file (path, bytes or file-like), not pixels"
