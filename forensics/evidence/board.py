"""The evidence board: everything the file itself says and shows, beside (never inside) the
model's score. `gather_evidence` reads one image's metadata, content credential and classic
views; `read_provenance` only what the file claims about its origin (no pixel is decoded), which
is what a decision weighs (`forensics.decision`); `Evidence.summary` puts the strongest
provenance claim in one line."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from forensics.evidence.c2pa import ContentCredential, read_content_credential
from forensics.evidence.ela import error_level_view
from forensics.evidence.findings import KINDS, Finding, View
from forensics.evidence.jpeg import jpeg_history_view
from forensics.evidence.metadata import read_metadata
from forensics.evidence.noise import noise_residual_view
from forensics.evidence.spectrum import spectrum_view
from forensics.images import MAX_BYTES, PNG_SIGNATURE, ImageSource, _read_bytes, read_image

PROVENANCES = ("generator", "camera", "edited", "none")  # strongest first
NO_PROVENANCE = "no provenance metadata (most platforms strip it; its absence proves nothing)"
EDIT_ACTIONS = ("c2pa.opened", "c2pa.created", "c2pa.placed")  # not edits in themselves
COMPACT_VALUE_CHARS = 200  # a finding's raw value as a dataset's manifest keeps it
# PNG chunks that PIL finds after the image data only by decoding it.
PNG_METADATA_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"eXIf")


@dataclass(frozen=True)
class Evidence:
    """One image's model-independent evidence."""

    provenance: str  # one of PROVENANCES: the strongest claim found
    summary: str  # one line: what the metadata says, or that it says nothing
    findings: list[Finding] = field(default_factory=list)
    content_credential: ContentCredential | None = None
    views: list[View] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: everything but the view images."""
        return {
            "provenance": self.provenance,
            "summary": self.summary,
            "findings": [finding.to_dict() for finding in self.findings],
            "c2pa": None if self.content_credential is None else self.content_credential.to_dict(),
            "views": {view.name: view.to_dict() for view in self.views},
        }

    def to_record(self) -> dict:
        """What a decision weighs, small enough for one manifest cell: the provenance, its
        summary, the credential and the findings that claim an origin (values cut short)."""
        findings = [
            {**f.to_dict(), "value": f.value[:COMPACT_VALUE_CHARS], "name": f.name}
            for f in self.findings
            if f.kind != "info"
        ]
        credential = self.content_credential
        return {"provenance": self.provenance, "summary": self.summary, "findings": findings,
                "c2pa": None if credential is None else credential.to_dict()}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict) -> Evidence:
        """The Evidence `to_record` (or `to_dict`) wrote, without its views."""
        credential = record.get("c2pa")
        return cls(
            provenance=record["provenance"],
            summary=record["summary"],
            findings=[Finding(**finding) for finding in record.get("findings") or []],
            content_credential=None if credential is None else ContentCredential(**credential),
        )


def gather_evidence(source: ImageSource, *, views: bool = True) -> Evidence:
    """Metadata, C2PA credential and (with `views`) the classic views of one image file.

    `source`: a path, bytes or binary file-like object (the file's bytes are needed: a decoded
    PIL image has lost its metadata). Raises ImageLoadError exactly where `load_image` does;
    malformed metadata or a broken credential is reported, never raised.
    """
    if isinstance(source, Image.Image):
        from forensics.images import ImageLoadError

        raise ImageLoadError("evidence needs the file (path, bytes or file-like), not pixels")
    data = _read_bytes(source, MAX_BYTES)
    rgb, info = read_image(data)
    findings, credential, tables = _origin_claims(data)
    shown = []
    if views:
        pixels = np.asarray(rgb)
        shown = [
            error_level_view(pixels),
            noise_residual_view(pixels),
            spectrum_view(pixels),
            jpeg_history_view(pixels, quality=info.jpeg_quality, tables=tables),
        ]
    return _evidence(findings, credential, shown)


def read_provenance(data: bytes) -> Evidence:
    """What a file's bytes claim about its origin: metadata and the C2PA credential, no views.

    No pixel is decoded (a PNG's text chunks after its image data excepted, which only a decode
    reaches), so a decision can weigh a file's claims at almost no cost beside its verdict. A
    file that is not an image has no claims here; `load_image` is what says why it is refused.
    """
    if not may_carry_claims(data):  # most files: a plain JPEG or PNG, said at once
        return _evidence([], None, [])
    # Not an image, or a broken header: no claims (the verdict's loader says what is wrong).
    findings, credential, _ = _origin_claims(data)
    return _evidence(findings, credential, [])


# JPEG segments that can hold a claim: APP1 (EXIF, XMP), APP11 (C2PA's JUMBF), APP13 (IPTC),
# COM (a comment); and PNG chunks: text, EXIF, C2PA's caBX.
JPEG_CLAIM_MARKERS = frozenset((0xE1, 0xEB, 0xED, 0xFE))
PNG_CLAIM_CHUNKS = frozenset((*PNG_METADATA_CHUNKS, b"caBX"))
JPEG_START_OF_SCAN = 0xDA


def may_carry_claims(data: bytes) -> bool:
    """False only for a JPEG or PNG with no segment or chunk where metadata lives (walking the
    headers, not parsing them): what a dataset scan meets most, read in microseconds. Every
    other file may carry claims and is read in full."""
    if data.startswith(PNG_SIGNATURE):
        for kind in _png_chunk_kinds(data):
            if kind in PNG_CLAIM_CHUNKS:
                return True
            if kind == b"IEND":
                return False
        return True  # truncated: let the full reading (and the loader) judge it
    if not data.startswith(b"\xff\xd8"):
        return True
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker in JPEG_CLAIM_MARKERS:
            return True
        if marker == JPEG_START_OF_SCAN:
            return False  # the header is over: what follows is image data
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        offset += 2 + length
    return True  # an unusual layout: read it in full


def _origin_claims(data: bytes):
    """(findings, the credential, JPEG tables) of a file: its credential's finding first."""
    findings, tables, image_format = _file_metadata(data)
    credential = read_content_credential(data, image_format)
    if credential is not None:
        findings.insert(0, credential_finding(credential))
    return findings, credential, tables


def _evidence(findings: list[Finding], credential, views: list[View]) -> Evidence:
    provenance = next((k for k in KINDS[:3] if any(f.kind == k for f in findings)), "none")
    return Evidence(provenance, summarize(provenance, findings, credential), findings, credential,
                    views)  # fmt: skip


def credential_finding(credential: ContentCredential) -> Finding:
    """The C2PA credential as a finding, its kind from what its actions declare."""
    made_by = credential.claim_generator or "unnamed software"
    check = credential.validation
    if check == "valid" and not credential.trusted:
        check += "; signer not on a trust list"
    elif credential.problems:
        check += f": {credential.problems[0]}"
    if credential.ai_generated:
        extent = "partly AI-generated" if credential.partly_generated else "AI-generated"
        if credential.generator:
            extent += f" with {credential.generator}"
        kind, claim = "generator", f"C2PA credential: {extent}, by {made_by} ({check})"
    elif credential.captured:
        kind, claim = "camera", f"C2PA credential: captured, by {made_by} ({check})"
    elif any(action not in EDIT_ACTIONS for action in credential.actions):
        kind, claim = "edited", f"C2PA credential: edited with {made_by} ({check})"
    else:
        kind, claim = "info", f"C2PA credential written by {made_by} ({check})"
    value = ", ".join(credential.actions + credential.digital_source_types) or credential.validation
    return Finding("c2pa", claim, value, kind, made_by)


def summarize(
    provenance: str, findings: list[Finding], credential: ContentCredential | None
) -> str:
    """One line for the strongest claim, e.g. 'metadata says: generated by X (C2PA, signed by
    Y, valid)' or 'camera metadata: Canon EOS 5D, 2019-05-01'. Never a probability."""
    if provenance == "none":
        return NO_PROVENANCE
    first = next(f for f in findings if f.kind == provenance)
    if first.source == "c2pa" and credential is not None:
        check = credential.validation
        if credential.problems:  # its code, e.g. assertion.dataHash.mismatch: the rest is listed
            check += f": {credential.problems[0].split(':')[0]}"
        verb = {"generator": "generated by", "camera": "captured by", "edited": "edited with"}
        if credential.partly_generated:
            verb["generator"] = "partly generated by"
        line = (
            f"metadata says: {verb[provenance]} {first.name} "
            f"(C2PA, signed by {credential.signer or 'an unnamed signer'}, {check})"
        )
    elif provenance == "generator":
        line = f"metadata says: generated by {first.name} ({first.source})"
    elif provenance == "camera":
        taken = next((f.claim for f in findings if f.claim.startswith("capture time: ")), "")
        date = taken.removeprefix("capture time: ")[:10]
        line = f"camera metadata: {first.name}" + (f", {date}" if date else "")
    else:
        line = f"metadata says: edited with {first.name} ({first.source})"
    if provenance != "edited":
        edit = next((f for f in findings if f.kind == "edited"), None)
        if edit is not None:
            line += f"; also edited with {edit.name} ({edit.source})"
    return line


def _file_metadata(data: bytes) -> tuple[list[Finding], dict | None, str | None]:
    """Findings, JPEG quantisation tables and PIL's name for the format of the file (None
    where PIL cannot open it)."""
    image_format = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd metadata; it is reported as data
            with Image.open(io.BytesIO(data)) as opened:
                image_format = opened.format
                tables = getattr(opened, "quantization", None) if opened.format == "JPEG" else None
                trailing = opened.format == "PNG" and png_metadata_after_image(data)
                findings = read_metadata(opened, trailing_text=trailing)
                return findings, dict(tables) if tables else None, image_format
    except Exception:  # decodable pixels with unreadable metadata: the pixels still speak
        return [], None, image_format


def png_metadata_after_image(data: bytes) -> bool:
    """Whether a PNG has text or EXIF chunks after its image data (PIL reads those only by
    decoding the pixels; the ones before it are read with the header). Walks the chunk headers
    only."""
    if not data.startswith(PNG_SIGNATURE):
        return False
    seen_image = False
    for kind in _png_chunk_kinds(data):
        seen_image = seen_image or kind == b"IDAT"
        if seen_image and kind in PNG_METADATA_CHUNKS:
            return True
    return False


def _png_chunk_kinds(data: bytes) -> Iterator[bytes]:
    """The type of each chunk of a PNG file, in order, up to IEND or the end of the data (by
    the chunk lengths: no payload is read)."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        yield kind
        if kind == b"IEND":
            return
        offset += 12 + length
