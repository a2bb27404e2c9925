"""One decision per file from everything known about it: provenance first, then the pixels.

What a careful analyst does (Content Credentials Verify, InVID/WeVerify): a valid signed content
credential is the strongest evidence a file can carry; an unsigned generator tag (a Stable
Diffusion `parameters` chunk, a ComfyUI graph, an XMP CreatorTool or IPTC digital source type of
a generator) is a strong claim that anyone could also write; an absent tag proves nothing. So,
in this order:

1. a valid C2PA credential that declares AI-generated media: `fake` (a composite or generative
   fill: `fake`, shown as partly AI-generated), whatever the model says;
2. a valid credential that records a camera capture and no generative step: `real`, unless the
   model answers `fake` with confidence (every trust check passed), then `unsure`, both reasons
   side by side;
3. an invalid, tampered or unreadable credential decides nothing: its own reason, and on;
4. unsigned generator metadata: `fake`, saying it is unsigned (`trust_unsigned_metadata=False`
   leaves it to the pixels and signed credentials);
5. otherwise the model's decision, unchanged, with what the metadata said (or that it said
   nothing).

The model's score (`prob_fake`), its own decision and reasons stay in the Verdict
(`model_decision`, `model_reasons`), so nothing is hidden. Above `forensics.detector` and
`forensics.evidence`, beside `forensics.router`; imported by neither.

The file's bytes are read once: the model judges them and the evidence is read from them
(`forensics.evidence.read_provenance`, which decodes no pixels).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace

from PIL import Image

from forensics.evidence import Evidence
from forensics.evidence.board import NO_PROVENANCE, read_provenance
from forensics.images import MAX_BYTES, ImageSource, _read_bytes
from forensics.verdicts import Explanation, PatchMap, Verdict

NOTHING_SAID = (
    "the file's metadata says nothing about its origin (most platforms strip it; its absence "
    "proves nothing)"
)
NOT_READ = "the file's metadata was not read: only its pixels were judged"
UNSIGNED_OFF = "not counted: only the pixels and signed credentials decide with this option"


def weigh_evidence(
    verdict: Verdict, evidence: Evidence | None, *, trust_unsigned_metadata: bool = True
) -> Verdict:
    """The decision on a file from the model's `verdict` and the file's `evidence` (None: not
    read, e.g. a decoded image was given), by the rules of this module. Weighing a verdict
    again starts from the model's own decision, so the result depends only on its inputs."""
    model = model_verdict(verdict)
    if evidence is None:
        return _final(model, "model", model.decision, (*model.reasons, NOT_READ), "")
    credential = evidence.content_credential
    strong: list[str] = []  # said before the model's reasons
    weak: list[str] = []  # after them
    if credential is not None and credential.validation == "valid":
        signed = _signed_by(credential)
        if credential.ai_generated:
            extent = "partly AI-generated" if credential.partly_generated else "AI-generated"
            made = f" with {credential.generator}" if credential.generator else ""
            reason = f"a valid C2PA content credential says it is {extent}{made}; {signed}"
            return _final(model, "credential", "fake", (reason, model_reading(model),
                          *model.reasons), evidence.summary,
                          partly=credential.partly_generated)  # fmt: skip
        if credential.captured:
            reason = "a valid C2PA content credential records a camera capture"
            if model.decision == "fake":  # the model, every check passed, says otherwise
                return _final(model, "credential", "unsure", (
                    f"{reason}, but the model calls it AI-generated with confidence "
                    f"(P(fake) = {model.prob_fake:.2f}): the two disagree",
                    f"the credential is {signed}",
                    *model.reasons,
                ), evidence.summary)  # fmt: skip
            return _final(model, "credential", "real", (f"{reason}; {signed}",
                          model_reading(model), *model.reasons), evidence.summary)  # fmt: skip
        weak.append(
            f"a valid C2PA content credential records {_steps(credential)} but not how the "
            f"picture was first made: not evidence of its origin; {signed}"
        )
    elif credential is not None:
        strong.append(describe_broken_credential(credential))
    generator = _unsigned(evidence, "generator")
    if generator is not None:
        said = f"the file's metadata says it was made by {generator.name} ({generator.source}"
        if trust_unsigned_metadata:
            reason = f"{said}; unsigned: anyone could have written it)"
            return _final(model, "metadata", "fake", (reason, *strong, model_reading(model),
                          *model.reasons), evidence.summary,
                          partly="composite" in generator.claim.lower())  # fmt: skip
        strong.append(f"{said}, unsigned); {UNSIGNED_OFF}")
    camera = _unsigned(evidence, "camera")
    if camera is not None:
        weak.append(
            f"the file's metadata names a camera ({camera.name}, {camera.source}), which anyone "
            "can write: not evidence on its own"
        )
    if credential is None and evidence.provenance == "none":
        weak.append(NOTHING_SAID)
    return _final(model, "model", model.decision, (*strong, *model.reasons, *weak),
                  evidence.summary)  # fmt: skip


def model_verdict(verdict: Verdict) -> Verdict:
    """The model's own verdict, before any evidence was weighed into it."""
    return replace(verdict, decision=verdict.model_decision,
                   reasons=tuple(verdict.model_reasons or ()), decided_by="model",
                   partly_generated=False, provenance="")  # fmt: skip


def model_reading(model: Verdict) -> str:
    """The model's own decision in one phrase, said beside evidence that decided instead."""
    if model.decision == "unsure":
        return f"the model alone would not answer (P(fake) = {model.prob_fake:.2f})"
    return f"the model alone would say {model.decision} (P(fake) = {model.prob_fake:.2f})"


def describe_broken_credential(credential) -> str:
    """Why an invalid or unreadable credential decides nothing, in words."""
    problem = credential.problems[0] if credential.problems else credential.validation
    if credential.validation == "unreadable":
        return (
            f"the file carries a content credential that cannot be read ({problem}): it "
            "decides nothing"
        )
    if "mismatch" in problem:
        return (
            "the content credential no longer matches the pixels: edited after signing "
            f"({problem.split(':')[0]}), so it decides nothing"
        )
    return f"the content credential is invalid ({problem}): it decides nothing"


def _signed_by(credential) -> str:
    """'signed by X, on the trust list; written by Y' (or why an unlisted signer is no name)."""
    signer = credential.signer or "an unnamed signer"
    writer = f"; written by {credential.claim_generator}" if credential.claim_generator else ""
    if credential.trusted:
        return f"signed by {signer}, on the trust list{writer}"
    return (
        f"signed by {signer}, not on a trust list (the signature shows the file is unchanged "
        f"since it was signed, not who signed it){writer}"
    )


def _steps(credential) -> str:
    actions = [a.removeprefix("c2pa.") for a in credential.actions if a]
    return f"the steps {', '.join(actions[:4])}" if actions else "no steps"


def _unsigned(evidence: Evidence, kind: str):
    """The first finding of `kind` that is not the credential's own."""
    return next((f for f in evidence.findings if f.kind == kind and f.source != "c2pa"), None)


def _final(model: Verdict, decided_by: str, decision: str, reasons: Sequence[str],
           provenance: str, *, partly: bool = False) -> Verdict:  # fmt: skip
    return replace(
        model,
        decision=decision,
        reasons=tuple(reasons),
        decided_by=decided_by,
        partly_generated=partly and decision == "fake",
        provenance=provenance,
        model_decision=model.decision,
        model_reasons=tuple(model.reasons),
    )


# ------------------------------------------------------------------------------ files


def predict(
    detector,
    image: ImageSource,
    *,
    trust_unsigned_metadata: bool = True,
    stability: bool = True,
) -> Verdict:
    """The decision on one file: `detector` (a Detector or `auto`) judges its pixels and the
    file's provenance is weighed in (`weigh_evidence`). Raises ImageLoadError where the
    detector does."""
    (verdict,) = predict_batch(detector, [image], batch_size=1,
                               trust_unsigned_metadata=trust_unsigned_metadata,
                               stability=stability)  # fmt: skip
    return verdict


def predict_batch(
    detector,
    images: Sequence[ImageSource],
    batch_size: int = 32,
    *,
    trust_unsigned_metadata: bool = True,
    stability: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[Verdict]:
    """`predict` for many files, `batch_size` at a time through the detector. Each file is read
    once: its bytes go to the detector and to `read_provenance`. A decoded PIL image has no
    file to read, and says so in its reasons."""
    verdicts: list[Verdict] = []
    for start in range(0, len(images), batch_size):
        chunk = [_file_bytes(image) for image in images[start : start + batch_size]]
        judged = detector.predict_batch(chunk, batch_size=batch_size, stability=stability)
        verdicts += [
            weigh_evidence(verdict, _provenance(data),
                           trust_unsigned_metadata=trust_unsigned_metadata)
            for verdict, data in zip(judged, chunk, strict=True)
        ]  # fmt: skip
        if progress is not None:
            progress(len(verdicts), len(images))
    return verdicts


def weigh_explanations(
    explanations: Sequence[Explanation], evidence: Evidence | None, *,
    trust_unsigned_metadata: bool = True,
) -> list[Explanation]:  # fmt: skip
    """The explanations with their verdict weighed (`weigh_evidence`): what a page or report
    that shows heatmaps shows as the decision."""
    return [
        replace(e, verdict=weigh_evidence(e.verdict, evidence,
                                          trust_unsigned_metadata=trust_unsigned_metadata))
        for e in explanations
    ]  # fmt: skip


def weigh_patch_map(patch_map: PatchMap, evidence: Evidence | None, *,
                    trust_unsigned_metadata: bool = True) -> PatchMap:  # fmt: skip
    verdict = weigh_evidence(
        patch_map.verdict, evidence, trust_unsigned_metadata=trust_unsigned_metadata
    )
    return replace(patch_map, verdict=verdict)


def weigh_records(
    verdicts: Sequence[Verdict], records: Sequence[str | None], *,
    trust_unsigned_metadata: bool = True,
) -> list[Verdict]:  # fmt: skip
    """Each verdict weighed with its file's provenance as a dataset scan recorded it
    (`forensics.scan.provenance_record`: JSON, "" where the file claims nothing, None where
    it was not recorded)."""
    return [
        weigh_evidence(verdict, evidence_of_record(record),
                       trust_unsigned_metadata=trust_unsigned_metadata)
        for verdict, record in zip(verdicts, records, strict=True)
    ]  # fmt: skip


def evidence_of_record(record: str | None) -> Evidence | None:
    """The Evidence a scan's provenance cell holds (None: not recorded)."""
    if record is None:
        return None
    if not record:
        return Evidence("none", NO_PROVENANCE)
    return Evidence.from_record(json.loads(record))


def _file_bytes(image: ImageSource) -> ImageSource:
    """The file's bytes (read once here), or a decoded image as it is."""
    if isinstance(image, Image.Image):
        return image
    return _read_bytes(image, MAX_BYTES)


def _provenance(data: ImageSource) -> Evidence | None:
    return read_provenance(data) if isinstance(data, bytes) else None
