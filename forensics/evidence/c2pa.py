"""C2PA content credentials, read and validated by the official `c2pa-python` bindings.

A credential is a signed statement, embedded in the file, of how the image was made (captured,
generated, edited) and by what. The bindings check the signature and that the image's bytes
still match the hash it signed: a file edited after signing reads as invalid, and says why.
Nothing is fetched: remote manifests and OCSP look-ups are off, so reading never waits on a
network and a file cannot make this tool call out.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

from forensics.evidence.findings import quote

# Where the C2PA spec keeps a manifest store: a JUMBF box labelled "c2pa" (JPEG APP11, PNG
# caBX, the ISO BMFF uuid box, ...). A file without the label has no embedded credential and
# is never handed to the native parser.
MANIFEST_LABEL = b"c2pa"
MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
}
AI_SOURCE_TYPES = (
    "trainedalgorithmicmedia",
    "compositewithtrainedalgorithmicmedia",
    "algorithmicmedia",
    "compositesynthetic",
)
COMPOSITE_AI_SOURCE_TYPES = ("compositewithtrainedalgorithmicmedia", "compositesynthetic")
CAPTURE_SOURCE_TYPES = ("digitalcapture", "computationalcapture")
# Failures that concern whom to trust, not whether the file matches its credential: a
# self-made or unlisted certificate is reported as untrusted, not as tampering.
TRUST_CODES = ("signingCredential.untrusted", "signingCredential.ocsp.skipped")
SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


@dataclass(frozen=True)
class ContentCredential:
    """What a file's active C2PA manifest says, and whether it still holds."""

    validation: str  # "valid" (signature and hashes check out), "invalid", "unreadable"
    problems: list[str] = field(default_factory=list)  # why invalid or unreadable
    trusted: bool = False  # signed by a certificate on a trust list (none is configured here)
    claim_generator: str | None = None  # the software that wrote the manifest
    actions: list[str] = field(default_factory=list)  # "c2pa.created", "c2pa.edited", ...
    digital_source_types: list[str] = field(default_factory=list)  # IPTC codes, last segment
    ai_generated: bool = False  # an action's digital source type is AI-generated media
    signer: str | None = None  # the certificate's common name (or issuer)
    signed_at: str | None = None

    @property
    def partly_generated(self) -> bool:
        """AI-generated in part only (generative fill, a composite): no wholly generated type."""
        types = {t.lower() for t in self.digital_source_types} & set(AI_SOURCE_TYPES)
        return bool(types) and types <= set(COMPOSITE_AI_SOURCE_TYPES)

    @property
    def captured(self) -> bool:
        return any(t.lower() in CAPTURE_SOURCE_TYPES for t in self.digital_source_types)

    def to_dict(self) -> dict:
        return {
            "claim_generator": self.claim_generator,
            "ai_generated": self.ai_generated,
            "validation": self.validation,
            "problems": self.problems,
            "trusted": self.trusted,
            "actions": self.actions,
            "digital_source_types": self.digital_source_types,
            "signer": self.signer,
            "signed_at": self.signed_at,
        }


def read_content_credential(data: bytes, image_format: str | None) -> ContentCredential | None:
    """The file's embedded C2PA credential, validated; None when it has none.

    `data`: the file's bytes; `image_format`: PIL's name for it (JPEG, PNG, ...). A manifest
    the bindings cannot parse is returned as "unreadable" with their message, never raised.
    """
    mime = MIME_TYPES.get(image_format or "")
    if mime is None or MANIFEST_LABEL not in data:
        return None
    try:
        import c2pa
    except ImportError:  # pinned in requirements.txt; a partial install says so, not crashes
        return ContentCredential("unreadable", ["c2pa-python is not installed"])
    try:
        context = c2pa.Context(c2pa.Settings.from_dict(SETTINGS))
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
        if reader is None:
            return None
        with reader:
            store = json.loads(reader.json())
    except Exception as exc:  # the bindings raise C2paError and its kin for any broken store
        return ContentCredential("unreadable", [quote(f"{type(exc).__name__}: {exc}")[:500]])
    return _credential(store)


def _credential(store: dict) -> ContentCredential:
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest")) or {}
    statuses = store.get("validation_status") or []
    problems = [
        f"{s.get('code')}: {s.get('explanation', '')}".strip(": ")
        for s in statuses
        if isinstance(s, dict) and s.get("code") not in TRUST_CODES
    ]
    state = str(store.get("validation_state") or "").lower()
    validation = "valid" if state in ("valid", "trusted") and not problems else "invalid"
    if validation == "invalid" and not problems:
        problems = [f"validation state {state or 'missing'}"]
    actions, sources = _actions(active)
    signature = active.get("signature_info") or {}
    return ContentCredential(
        validation=validation,
        problems=problems,
        trusted=state == "trusted",
        claim_generator=_claim_generator(active),
        actions=actions,
        digital_source_types=sources,
        ai_generated=any(s.lower() in AI_SOURCE_TYPES for s in sources),
        signer=_text(signature.get("common_name") or signature.get("issuer")),
        signed_at=_text(signature.get("time")),
    )


def _actions(manifest: dict) -> tuple[list[str], list[str]]:
    """Action names and digital source types (last URI segment) of every actions assertion."""
    actions, sources = [], []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict):
            continue
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            if not isinstance(action, dict):
                continue
            actions.append(quote(action.get("action", "")))
            source = action.get("digitalSourceType")
            if isinstance(source, str) and source:
                sources.append(source.rstrip("/").rsplit("/", 1)[-1])
    return actions, sources


def _claim_generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("name"):
        version = info[0].get("version")
        return quote(f"{info[0]['name']} {version}" if version else info[0]["name"])
    return _text(manifest.get("claim_generator"))


def _text(value: object) -> str | None:
    return quote(value) if value else None
