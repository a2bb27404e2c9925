"""C2PA content credentials, read and validated by the official `c2pa-python` bindings.

A credential is a signed statement, embedded in the file, of how the image was made (captured,
generated, edited) and by what. The bindings check the signature and that the image's bytes
still match the hash it signed: a file edited after signing reads as invalid, and says why.
Nothing is fetched: remote manifests and OCSP look-ups are off, so reading never waits on a
network and a file cannot make this tool call out.

Whom to trust is the user's to say: $FORENSICS_C2PA_TRUST_ANCHORS names a PEM file of root
certificates (the C2PA trust list, or an organisation's own); a credential whose chain ends in one
of them reads as `trusted`. Without it no signer is trusted, and a valid credential shows only
that the file is unchanged since it was signed, not who signed it.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

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
# self-made or unlisted certificate (or time-stamp authority) is reported as untrusted, not as
# tampering, and a revocation check that was not made (no network) is not a failure.
TRUST_CODES = (
    "signingCredential.untrusted",
    "signingCredential.ocsp.skipped",
    "signingCredential.ocsp.inaccessible",
    "timeStamp.untrusted",
)
SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
TRUST_ANCHORS_VARIABLE = "FORENSICS_C2PA_TRUST_ANCHORS"
CREATED_ACTION = "c2pa.created"
# An ingredient's relationship to the file: its parent (what was edited) or one of its parts.
PARENT, COMPONENT = "parentof", "componentof"
MAX_INGREDIENT_DEPTH = 8  # a manifest store is a stranger's data: its chains are walked bounded


@dataclass(frozen=True)
class ContentCredential:
    """What a file's active C2PA manifest says, and whether it still holds."""

    validation: str  # "valid" (signature and hashes check out), "invalid", "unreadable"
    problems: list[str] = field(default_factory=list)  # why invalid or unreadable
    trusted: bool = False  # signed by a certificate on a trust list (none is configured here)
    claim_generator: str | None = None  # the software that wrote the manifest
    actions: list[str] = field(default_factory=list)  # "c2pa.created", "c2pa.edited", ...
    digital_source_types: list[str] = field(default_factory=list)  # IPTC codes, last segment
    # An action (or an ingredient's credential) declares AI-generated media, or its software
    # agent is a known image generator; `partly_generated`: only in part (a composite,
    # generative fill), never the whole picture.
    ai_generated: bool = False
    partly_generated: bool = False
    generator: str | None = None  # the generator an action names (its software agent), if any
    signer: str | None = None  # the certificate's common name (or issuer)
    signed_at: str | None = None

    @property
    def captured(self) -> bool:
        """A camera capture is declared (and, with `ai_generated` False, no generative step)."""
        return any(t.lower() in CAPTURE_SOURCE_TYPES for t in self.digital_source_types)

    def to_dict(self) -> dict:
        return {
            "claim_generator": self.claim_generator,
            "ai_generated": self.ai_generated,
            "partly_generated": self.partly_generated,
            "generator": self.generator,
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
        context = c2pa.Context(c2pa.Settings.from_dict(reading_settings()))
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
        if reader is None:
            return None
        with reader:
            store = json.loads(reader.json())
    except Exception as exc:  # the bindings raise C2paError and its kin for any broken store
        return ContentCredential("unreadable", [quote(f"{type(exc).__name__}: {exc}")[:500]])
    return _credential(store)


def reading_settings() -> dict:
    """The bindings' settings: nothing fetched, and the user's trust anchors where given."""
    anchors = os.environ.get(TRUST_ANCHORS_VARIABLE, "").strip()
    if not anchors:
        return SETTINGS
    try:
        pem = Path(anchors).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"${TRUST_ANCHORS_VARIABLE} ({anchors}) cannot be read: {exc}") from None
    return {"verify": {**SETTINGS["verify"], "verify_trust": True},
            "trust": {"trust_anchors": pem}}  # fmt: skip


def _credential(store: dict) -> ContentCredential:
    """The active manifest of a manifest store (the bindings' JSON), with what its actions and
    its ingredients' credentials declare."""
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest")) or {}
    statuses = store.get("validation_status") or []
    problems = [
        f"{s.get('code')}: {s.get('explanation', '')}".strip(": ")
        for s in statuses
        if isinstance(s, dict) and s.get("code") not in TRUST_CODES
    ]
    state = str(store.get("validation_state") or "").lower()
    # Valid when nothing but trust failed: the bindings call a credential whose time-stamp
    # authority is unlisted "invalid" although the file matches what was signed.
    only_trust = bool(statuses) and all(
        isinstance(s, dict) and s.get("code") in TRUST_CODES for s in statuses
    )
    intact = (state in ("valid", "trusted") or only_trust) and not problems
    validation = "valid" if intact else "invalid"
    if validation == "invalid" and not problems:
        problems = [f"validation state {state or 'missing'}"]
    steps = _actions(active)
    sources = [source for _, source, _ in steps if source]
    whole, part, generator = _generative_steps(steps)
    in_parent, in_component, from_ingredient = _ingredient_claims(active, manifests)
    signature = active.get("signature_info") or {}
    ai_generated = whole or part or in_parent or in_component
    return ContentCredential(
        validation=validation,
        problems=problems,
        trusted=state == "trusted",
        claim_generator=_claim_generator(active),
        actions=[action for action, _, _ in steps],
        digital_source_types=sources,
        ai_generated=ai_generated,
        partly_generated=ai_generated and not (whole or in_parent),
        generator=generator or from_ingredient,
        signer=_text(signature.get("common_name") or signature.get("issuer")),
        signed_at=_text(signature.get("time")),
    )


def _actions(manifest: dict) -> list[tuple[str, str, str | None]]:
    """(action, digital source type or "", software agent) of every action of every actions
    assertion (the source type as its URI's last segment)."""
    steps = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict):
            continue
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            if not isinstance(action, dict):
                continue
            source = action.get("digitalSourceType")
            source = source.rstrip("/").rsplit("/", 1)[-1] if isinstance(source, str) else ""
            steps.append((quote(action.get("action", "")), source, _agent(action)))
    return steps


def _agent(action: dict) -> str | None:
    """An action's software agent: a string (C2PA 1.x) or {name, version} (2.x)."""
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        agent = " ".join(str(agent[k]) for k in ("name", "version") if agent.get(k))
    return _text(agent) if isinstance(agent, str) else None


def _generative_steps(steps) -> tuple[bool, bool, str | None]:
    """(the whole picture is declared generated, a part of it is, the generator named).

    A step is generative when its digital source type is AI-generated media, or its software
    agent is a known image generator: a `c2pa.created` step makes the whole picture, any other
    (generative fill, a placed element) a part of it."""
    from forensics.evidence.metadata import GENERATOR_NAMES, name_in

    whole = part = False
    generator = None
    for action, source, agent in steps:
        known = name_in(agent, GENERATOR_NAMES) if agent else None
        kind = source.lower()
        if kind not in AI_SOURCE_TYPES and known is None:
            continue
        composite = kind in COMPOSITE_AI_SOURCE_TYPES
        if composite or (kind not in AI_SOURCE_TYPES and action != CREATED_ACTION):
            part = True
        else:
            whole = True
        generator = generator or agent
    return whole, part, generator


def _ingredient_claims(manifest: dict, manifests: dict) -> tuple[bool, bool, str | None]:
    """(a parent ingredient's credential declares generated media, a component's does, the
    generator it names): an AI picture edited and signed again is still AI-generated."""
    in_parent = in_component = False
    generator = None
    seen: set[str] = set()
    frontier = [(manifest, None)]
    for _ in range(MAX_INGREDIENT_DEPTH):
        following = []
        for current, relation in frontier:
            for ingredient in current.get("ingredients") or []:
                if not isinstance(ingredient, dict):
                    continue
                label = ingredient.get("active_manifest")
                if not isinstance(label, str) or label in seen or label not in manifests:
                    continue
                seen.add(label)
                linked = manifests[label] or {}
                own = str(ingredient.get("relationship") or PARENT).lower()
                # A part of a part is a part; the parent of a parent is a parent.
                kind = COMPONENT if COMPONENT in (own, relation) else PARENT
                whole, part, named = _generative_steps(_actions(linked))
                if whole and kind == PARENT:
                    in_parent = True
                elif whole or part:
                    in_component = True
                generator = generator or named
                following.append((linked, kind))
        frontier = following
    return in_parent, in_component, generator


def _claim_generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("name"):
        version = info[0].get("version")
        return quote(f"{info[0]['name']} {version}" if version else info[0]["name"])
    return _text(manifest.get("claim_generator"))


def _text(value: object) -> str | None:
    return quote(value) if value else None
