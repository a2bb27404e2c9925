"""Provenance claims in a file's metadata: EXIF, XMP, IPTC and PNG text chunks.

Metadata is data written by whoever made the file: it is read with bounded sizes, never
evaluated, and a malformed block is skipped rather than allowed to fail the whole reading.
XMP is searched with plain patterns, not parsed as XML: an XML parser would expand entities
and follow a packet's structure wherever a stranger leads it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator

from PIL import Image, IptcImagePlugin

from forensics.evidence.findings import MAX_VALUE_CHARS, Finding, quote

MAX_XMP_BYTES = 1 << 20  # a real XMP packet is a few kB; Adobe's own limit per segment is 64 kB
MAX_JSON_CHARS = 1 << 20

# EXIF tags (TIFF/EXIF 2.3 numbers): main IFD, then the Exif and GPS sub-IFDs.
MAKE, MODEL, SOFTWARE, DATETIME, ARTIST = 0x010F, 0x0110, 0x0131, 0x0132, 0x013B
DESCRIPTION = 0x010E
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME_ORIGINAL, USER_COMMENT, LENS_MAKE, LENS_MODEL = 0x9003, 0x9286, 0xA433, 0xA434

# Names that only image generators write into Software, CreatorTool or similar fields
# (lower case, matched as substrings).
GENERATOR_NAMES = {
    "midjourney": "Midjourney",
    "dall-e": "DALL-E",
    "dall·e": "DALL-E",
    "openai": "OpenAI",
    "chatgpt": "ChatGPT",
    "stable diffusion": "Stable Diffusion",
    "stablediffusion": "Stable Diffusion",
    "stability ai": "Stability AI",
    "dreamstudio": "DreamStudio",
    "automatic1111": "AUTOMATIC1111",
    "comfyui": "ComfyUI",
    "novelai": "NovelAI",
    "invokeai": "InvokeAI",
    "fooocus": "Fooocus",
    "firefly": "Adobe Firefly",
    "imagen": "Google Imagen",
    "gemini": "Google Gemini",
    "bing image creator": "Bing Image Creator",
    "leonardo.ai": "Leonardo.Ai",
    "ideogram": "Ideogram",
    "black forest labs": "FLUX (Black Forest Labs)",
    "runway": "Runway",
    "nightcafe": "NightCafe",
    "craiyon": "Craiyon",
}
EDITOR_NAMES = {
    "photoshop": "Adobe Photoshop",
    "lightroom": "Adobe Lightroom",
    "gimp": "GIMP",
    "affinity": "Affinity Photo",
    "capture one": "Capture One",
    "snapseed": "Snapseed",
    "picsart": "PicsArt",
    "pixelmator": "Pixelmator",
    "paint.net": "Paint.NET",
    "darktable": "darktable",
    "rawtherapee": "RawTherapee",
    "canva": "Canva",
    "luminar": "Luminar",
    "facetune": "Facetune",
}
# IPTC Digital Source Type codes (cv.iptc.org/newscodes/digitalsourcetype): kind and meaning.
DIGITAL_SOURCE_TYPES = {
    "trainedalgorithmicmedia": ("generator", "made by a trained AI model"),
    "compositewithtrainedalgorithmicmedia": ("generator", "a composite with AI-generated parts"),
    "algorithmicmedia": ("generator", "made by an algorithm without a training sample"),
    "compositesynthetic": ("generator", "a composite including synthetic elements"),
    "digitalcapture": ("camera", "captured by a digital camera"),
    "computationalcapture": ("camera", "captured with computational photography"),
    "negativefilm": ("camera", "scanned from a film negative"),
    "positivefilm": ("camera", "scanned from film"),
    "print": ("camera", "scanned from a print"),
    "minorhumanedits": ("edited", "captured, with minor human edits"),
    "compositecapture": ("edited", "a composite of captured elements"),
    "composite": ("edited", "a composite"),
    "algorithmicallyenhanced": ("edited", "captured, then algorithmically enhanced"),
    "digitalart": ("info", "drawn by a person with digital tools"),
    "virtualrecording": ("info", "a recording of a virtual scene"),
    "screencapture": ("info", "a screen capture"),
    "datadrivenmedia": ("info", "a visualisation of data"),
}
# PNG text keys that image generators write, with the tool they identify.
GENERATOR_TEXT_KEYS = {
    "parameters": "Stable Diffusion (AUTOMATIC1111/Forge)",
    "prompt": "ComfyUI",
    "workflow": "ComfyUI",
    "invokeai_metadata": "InvokeAI",
    "invokeai_graph": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "dream": "InvokeAI",
    "fooocus_scheme": "Fooocus",
}

# XMP properties, as attributes (prop="v") or elements (<prop>v</prop>, rdf:resource="v");
# `[^"<]{0,4000}` keeps every match linear in the packet's size.
_XMP_PROPERTY = r"(?:[\w.-]{{1,40}}:)?{name}"
_XMP_FORMS = (
    r'{prop}\s*=\s*"([^"<]{{0,4000}})"',
    r"<{prop}\b[^>]{{0,400}}?rdf:resource\s*=\s*\"([^\"<]{{0,4000}})\"",
    r"<{prop}>\s*([^<]{{0,4000}})<",
)
# A1111 writes generation settings as "Steps: 20, Sampler: Euler a, CFG scale: 7, ..."
_A1111_SETTINGS = re.compile(r"Steps: \d+, Sampler: ")


def read_metadata(image: Image.Image, *, trailing_text: bool = True) -> list[Finding]:
    """Every provenance claim in an opened image file's metadata, in the order found.

    `image` is the file as PIL opened it (`Image.open`: its `info`, EXIF and, for PNG, its
    text chunks). `trailing_text=False` reads only the PNG text and EXIF chunks before the image
    data: those after it cost a decode of the pixels (`png_metadata_after_image` in
    `forensics.evidence.board` tells whether there are any). Never raises for malformed
    metadata: a block that cannot be read is skipped.
    """
    findings: list[Finding] = []
    readers = (
        functools.partial(_exif_findings, trailing=trailing_text),
        functools.partial(_xmp_findings, trailing=trailing_text),
        _iptc_findings,
        functools.partial(_text_findings, trailing=trailing_text),
    )
    for reader in readers:
        try:
            findings += list(reader(image))
        except Exception:  # metadata is a stranger's data: one bad block is skipped
            continue
    return findings


def name_in(text: str, names: dict[str, str]) -> str | None:
    """The known tool whose name occurs in `text` as a whole word (case-insensitive), if any:
    "Canva" is not "Canvas", nor is "Imagen" "Imagenomic"."""
    lowered = text.lower()
    return next((names[key] for key in names if _word(key).search(lowered)), None)


@functools.cache
def _word(name: str) -> re.Pattern:
    return re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])")


def software_finding(source: str, field: str, value: object) -> Finding:
    """A software name (EXIF Software, XMP CreatorTool, ...): generator, editor or just info."""
    text = quote(value)
    generator = name_in(text, GENERATOR_NAMES)
    if generator:
        claim = f"{field} names a generator: {generator}"
        return Finding(source, claim, text, "generator", generator)
    editor = name_in(text, EDITOR_NAMES)
    if editor:
        return Finding(source, f"{field} names an editor: {editor}", text, "edited", editor)
    return Finding(source, f"{field}: {text[:80]}", text, "info")


def _exif_findings(image: Image.Image, *, trailing: bool = True) -> Iterator[Finding]:
    if image.format == "PNG" and not trailing and "exif" not in image.info:
        return  # PIL's getexif would decode the pixels to look for an eXIf chunk after them
    exif = image.getexif()
    if not exif:
        return
    sub = _safe(lambda: exif.get_ifd(EXIF_IFD)) or {}
    make, model = _text(exif.get(MAKE)), _text(exif.get(MODEL))
    if make or model:
        camera = _camera_name(make, model)
        yield Finding("exif", f"camera: {camera}", f"Make={make!r} Model={model!r}", "camera",
                      camera)  # fmt: skip
    lens = _text(sub.get(LENS_MODEL)) or _text(sub.get(LENS_MAKE))
    if lens:
        yield Finding("exif", f"lens: {lens}", lens)
    taken = _text(sub.get(DATETIME_ORIGINAL)) or _text(exif.get(DATETIME))
    if taken:
        yield Finding("exif", f"capture time: {_exif_date(taken)}", taken)
    if exif.get(SOFTWARE) is not None:
        yield software_finding("exif", "Software", exif.get(SOFTWARE))
    if exif.get(ARTIST) is not None:
        yield Finding("exif", "artist named", quote(exif.get(ARTIST)))
    if GPS_IFD in exif:
        yield Finding("exif", "GPS position present", "GPS IFD present")
    for tag, field in ((USER_COMMENT, "UserComment"), (DESCRIPTION, "ImageDescription")):
        text = _text(sub.get(tag) if tag == USER_COMMENT else exif.get(tag))
        if text and _A1111_SETTINGS.search(text):
            name = GENERATOR_TEXT_KEYS["parameters"]
            yield Finding("exif", f"{field} holds {name} generation settings", quote(text),
                          "generator", name)  # fmt: skip


def _xmp_findings(image: Image.Image, *, trailing: bool = True) -> Iterator[Finding]:
    packet = _xmp_packet(image, trailing=trailing)
    if not packet:
        return
    for value in _xmp_values(packet, "DigitalSourceType"):
        code = value.rstrip("/").rsplit("/", 1)[-1]
        kind, meaning = DIGITAL_SOURCE_TYPES.get(code.lower(), ("info", "an unknown source type"))
        who = {"generator": "an AI model", "camera": "a capture device"}.get(kind, "software")
        if code.lower().startswith("composite") and kind == "generator":
            who = "an AI model, in part"
        name = f"{who}, per its IPTC digital source type {code}"
        yield Finding("xmp", f"digital source type {code}: {meaning}", value, kind, name)
    for field in ("CreatorTool", "softwareAgent"):
        for value in _xmp_values(packet, field):
            yield software_finding("xmp", field, value)
    make, model = (next(_xmp_values(packet, f), "") for f in ("Make", "Model"))
    if make or model:
        camera = _camera_name(make, model)
        yield Finding("xmp", f"camera: {camera}", f"Make={make!r} Model={model!r}", "camera",
                      camera)  # fmt: skip


def _iptc_findings(image: Image.Image) -> Iterator[Finding]:
    if image.format not in ("JPEG", "TIFF"):
        return
    iptc = IptcImagePlugin.getiptcinfo(image) or {}
    program = iptc.get((2, 65))  # IIM 2:65 Originating Program
    if program:
        yield software_finding("iptc", "Originating Program", _first(program))
    for key, field in (((2, 80), "By-line"), ((2, 110), "Credit"), ((2, 115), "Source")):
        if iptc.get(key):
            value = quote(_first(iptc[key]))
            generator = name_in(value, GENERATOR_NAMES)
            if generator:
                yield Finding("iptc", f"{field} names a generator: {generator}", value,
                              "generator", generator)  # fmt: skip


def _text_findings(image: Image.Image, *, trailing: bool = True) -> Iterator[Finding]:
    """PNG tEXt/zTXt/iTXt chunks (and the same keys where other formats keep them in `info`);
    without `trailing`, only those PIL read with the header (`info`)."""
    text = getattr(image, "text", None) if image.format == "PNG" and trailing else None
    chunks = {**image.info, **(text or {})}
    for key, raw in chunks.items():
        if not isinstance(key, str) or not isinstance(raw, (str, bytes)) or key == "xmp":
            continue
        lowered = key.lower()
        if lowered == "xml:com.adobe.xmp":
            continue  # read as XMP
        source = f"png:{key}" if image.format == "PNG" else f"{(image.format or '').lower()}:{key}"
        value = quote(raw)
        if lowered in GENERATOR_TEXT_KEYS:
            yield _generator_text(source, lowered, raw, value)
        elif lowered == "software" or (
            lowered in ("source", "comment", "description", "author")
            and name_in(value, GENERATOR_NAMES)
        ):
            yield software_finding(source, key, raw)


def _generator_text(source: str, key: str, raw: str | bytes, value: str) -> Finding:
    """A generator's own text chunk, with the model or node graph it describes where readable."""
    name = GENERATOR_TEXT_KEYS[key]
    detail = ""
    if key == "parameters":
        model = re.search(r"(?:^|, )Model: ([^,\n]{1,200})", value)
        detail = f", model {model.group(1)}" if model else ""
    elif name == "ComfyUI":
        graph = _json(raw)
        if isinstance(graph, dict):
            nodes = graph.get("nodes") if isinstance(graph.get("nodes"), list) else graph
            detail = f", a graph of {len(nodes)} nodes"
            checkpoints = sorted(_comfy_checkpoints(graph))[:3]
            if checkpoints:
                detail += f" loading {', '.join(checkpoints)}"
    return Finding(source, f"generated by {name}{detail}", value, "generator", name)


def _comfy_checkpoints(graph: dict) -> Iterator[str]:
    """Checkpoint file names in a ComfyUI prompt ({id: {class_type, inputs}})."""
    for node in list(graph.values())[:10_000]:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict):
            for field in ("ckpt_name", "unet_name"):
                if isinstance(inputs.get(field), str):
                    yield quote(inputs[field])[:200]


def _xmp_packet(image: Image.Image, *, trailing: bool = True) -> str:
    raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    if image.format == "PNG" and not raw and trailing:
        raw = (getattr(image, "text", None) or {}).get("XML:com.adobe.xmp", b"")
    if isinstance(raw, str):
        return raw[:MAX_XMP_BYTES]
    return bytes(raw[:MAX_XMP_BYTES]).decode("utf-8", errors="replace")


def _xmp_values(packet: str, name: str) -> Iterator[str]:
    if name not in packet:  # a substring search is far cheaper than three patterns
        return
    prop = _XMP_PROPERTY.format(name=re.escape(name))
    seen = set()
    for form in _XMP_FORMS:
        for match in re.finditer(form.format(prop=prop), packet):
            value = quote(match.group(1))
            if value and value not in seen:
                seen.add(value)
                yield value


def _json(raw: str | bytes) -> object:
    if len(raw) > MAX_JSON_CHARS:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # malformed, or nested deeper than Python recurses
        return None


def _camera_name(make: str, model: str) -> str:
    """'Canon' + 'Canon EOS 5D' -> 'Canon EOS 5D' (models often repeat the make)."""
    if make and model.lower().startswith(make.lower().split()[0]):
        return model
    return " ".join(part for part in (make, model) if part)


def _exif_date(value: str) -> str:
    """EXIF's '2019:05:01 10:00:00' as '2019-05-01 10:00:00'."""
    match = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})(.*)", value)
    return f"{match[1]}-{match[2]}-{match[3]}{match[4]}" if match else value


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        # UserComment starts with an 8-byte character code: ASCII\0\0\0, UNICODE\0 (UTF-16).
        if value[:8] == b"UNICODE\x00":
            # UTF-16 in the file's byte order, which the tag does not record (piexif, used by
            # AUTOMATIC1111, writes big-endian): the reading with more plain ASCII wins.
            payload = value[8 : 8 + MAX_VALUE_CHARS * 8]
            readings = [
                payload.decode(order, errors="replace") for order in ("utf-16-be", "utf-16-le")
            ]
            return quote(
                max(readings, key=lambda t: sum(c.isascii() and c.isprintable() for c in t))
            )
        if value[:8] in (b"ASCII\x00\x00\x00", b"\x00" * 8):
            value = value[8:]
    return quote(value)


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


def _safe(read: Callable[[], object]) -> object:
    try:
        return read()
    except Exception:  # a malformed sub-IFD is skipped like any bad block
        return None
