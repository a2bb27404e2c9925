"""Image files with known provenance metadata, built in memory (never committed): what the
evidence tests, the CLI test and the browser test read."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, PngImagePlugin

from tests.conftest import image_bytes, make_image

A1111_PARAMETERS = (
    "a lighthouse at dusk, oil painting\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, Model hash: 31e35c80fc, "
    "Model: sd_xl_base_1.0, Version: v1.6.0"
)
COMFYUI_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-dev.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
}
AI_XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    b"Iptc4xmpExt:DigitalSourceType="
    b'"http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def photo_like(seed: int, size: int = 128) -> Image.Image:
    """Smooth shapes with mild grain: closer to a photograph than make_image's flat noise."""
    rng = np.random.default_rng(seed)
    # 7 px per random value: a multiple of 8 would print a JPEG-like block grid on it.
    coarse = rng.integers(0, 256, (size // 7, size // 7, 3)).astype(np.float32)
    smooth = np.array(Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BICUBIC))
    grain = rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def png_with_text(chunks: dict[str, str], *, seed: int = 1) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    return image_bytes(make_image(seed, size=64), "PNG", pnginfo=info)


def a1111_png() -> bytes:
    return png_with_text({"parameters": A1111_PARAMETERS})


def comfyui_png() -> bytes:
    return png_with_text({"prompt": json.dumps(COMFYUI_PROMPT), "workflow": "{}"})


def camera_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2019:05:01 10:00:00"
    return image_bytes(photo_like(2), "JPEG", quality=92, exif=exif)


def ai_xmp_jpeg() -> bytes:
    return image_bytes(photo_like(3), "JPEG", quality=90, xmp=AI_XMP)


def photoshop_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0131] = "Adobe Photoshop 25.0 (Windows)"
    return image_bytes(photo_like(4), "JPEG", quality=90, exif=exif)


def bare_png() -> bytes:
    return image_bytes(photo_like(5), "PNG")


# name -> (bytes, expected provenance)
PROVENANCE_FILES = {
    "a1111.png": (a1111_png, "generator"),
    "comfyui.png": (comfyui_png, "generator"),
    "camera.jpg": (camera_jpeg, "camera"),
    "ai_xmp.jpg": (ai_xmp_jpeg, "generator"),
    "photoshop.jpg": (photoshop_jpeg, "edited"),
    "bare.png": (bare_png, "none"),
}


def throwaway_signer():
    """A c2pa Signer on a certificate chain made here (a root CA and an ES256 leaf with the
    profile C2PA requires), on no trust list: valid signatures, never a trusted signer."""
    return throwaway_signer_and_root()[0]


def throwaway_signer_and_root():
    """(a throw-away Signer, its root certificate as PEM text): a trust list of that root
    makes its signatures trusted ($FORENSICS_C2PA_TRUST_ANCHORS)."""
    import c2pa
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    root = _certificate("Test Root CA", root_key, root_key, issuer=None)
    leaf = _certificate("Test Generator Signer", leaf_key, root_key, issuer=root)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
    key = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    return signer, root.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _certificate(common_name: str, key, signing_key, *, issuer):
    """A two-day certificate: a CA when `issuer` is None (self-signed), else a signing leaf."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evidence Tests"),
    ])  # fmt: skip
    ca = issuer is None
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if ca else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not ca:
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key())
        builder = builder.add_extension(usage, critical=False)
        builder = builder.add_extension(authority, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _key_usage(*, ca: bool):
    from cryptography import x509

    flags = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "encipher_only", "decipher_only"),
        False,
    )  # fmt: skip
    return x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **flags)


def c2pa_signed(
    data: bytes,
    mime: str,
    *,
    source_type: str | None,
    action: str = "c2pa.created",
    agent: str | None = None,
    then: tuple[dict, ...] = (),
    signer=None,
) -> bytes:
    """`data` (an image file) with a C2PA manifest by "TestGen 1.0" declaring `action` with an
    IPTC digital source type (None: none) and software agent (None: none), then the actions
    `then`, signed by `signer` (None: a throw-away one)."""
    import io

    import c2pa

    step = {"action": action}
    if source_type is not None:
        step["digitalSourceType"] = f"http://cv.iptc.org/newscodes/digitalsourcetype/{source_type}"
    if agent is not None:
        step["softwareAgent"] = {"name": agent}
    manifest = {
        "claim_generator_info": [{"name": "TestGen", "version": "1.0"}],
        "title": "test image",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [step, *then]}}],
    }
    signed = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer or throwaway_signer(), mime, io.BytesIO(data), signed)
    return signed.getvalue()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG file."""
    import struct

    chunks, offset = [], 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def build_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    import struct
    import zlib

    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(payload)) + kind + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        for kind, payload in chunks
    )  # fmt: skip


def repaint_png(signed: bytes, image: Image.Image) -> bytes:
    """`signed` with its pixels (IDAT chunks) replaced by `image`'s, every other chunk (the C2PA
    manifest too) kept: a picture edited after it was signed."""
    fresh = [c for c in png_chunks(image_bytes(image, "PNG")) if c[0] == b"IDAT"]
    kept = png_chunks(signed)
    at = next(i for i, c in enumerate(kept) if c[0] == b"IDAT")
    rest = [c for c in kept[at:] if c[0] != b"IDAT"]
    return build_png(kept[:at] + fresh + rest)


def ai_signed_png() -> bytes:
    return c2pa_signed(bare_png(), "image/png", source_type="trainedAlgorithmicMedia")


def composite_signed_jpeg() -> bytes:
    return c2pa_signed(
        camera_jpeg(), "image/jpeg", source_type="compositeWithTrainedAlgorithmicMedia"
    )


def capture_signed_png() -> bytes:
    return c2pa_signed(image_bytes(photo_like(6), "PNG"), "image/png", source_type="digitalCapture")


def edited_after_signing_png() -> bytes:
    return repaint_png(ai_signed_png(), photo_like(99))


# The folder: name -> (bytes, decision, decided_by), the decision where it is evidence's;
# None: the model's own decision. With unsigned metadata not counted, sd.png is the model's.
DECISION_FILES = {
    "ai_signed.png": (ai_signed_png, "fake", "credential"),
    "composite_signed.jpg": (composite_signed_jpeg, "fake", "credential"),
    "capture_signed.png": (capture_signed_png, "real", "credential"),
    "edited_after_signing.png": (edited_after_signing_png, None, "model"),
    "sd_parameters.png": (a1111_png, "fake", "metadata"),
    "nothing.png": (bare_png, None, "model"),
}


def write_decision_folder(folder) -> dict:
    """The DECISION_FILES written into `folder`; returns {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (make, _, _) in DECISION_FILES.items():
        paths[name] = folder / name
        paths[name].write_bytes(make())
    return paths
