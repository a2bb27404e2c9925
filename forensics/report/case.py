"""A case report for one image: everything an analyst hands on, in one self-contained HTML file
(`python -m forensics report IMG --out FILE.html`, and the Classify page's download).

`build_case` gathers it: the file's SHA-256, size and format, the time, the checkpoint used and
its id, the decision (the file's own evidence weighed in: `forensics.decision`) with what
decided it, the model's probability and reasons, the heatmaps with their faithfulness, a
patch model's patch map, the model-independent evidence, and the checkpoint card's section on
where the model must not be trusted. `render_case` writes it as HTML (`forensics.report.html`):
pictures embedded, nothing fetched, printable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forensics.atomic import write_text_atomic
from forensics.card import LIMITS_HEADING, read_card_limits
from forensics.decision import weigh_explanations, weigh_patch_map
from forensics.evidence import Evidence, gather_evidence
from forensics.explain import check_method, check_target
from forensics.images import MAX_BYTES, ImageSource, _read_bytes, inspect_image
from forensics.report.html import png_data_uri, render
from forensics.verdicts import DECIDER_NAMES, Explanation, PatchMap, Verdict
from forensics.verdicts import DECISION_NAMES as VERDICT_DECISION_NAMES

DEFAULT_TARGETS = ("fake", "real")
# A verdict's decisions, and an audit's row for a file no model could read.
DECISION_NAMES = {**VERDICT_DECISION_NAMES, "unreadable": "Unreadable"}


@dataclass(frozen=True)
class FileFacts:
    """What the file is, independent of any model."""

    name: str
    sha256: str
    size: int  # bytes
    format: str | None
    width: int
    height: int
    jpeg_quality: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Case:
    """One image's case: the file, the verdict and its explanations, the evidence, the limits."""

    file: FileFacts
    created: str  # UTC, ISO 8601
    verdict: Verdict
    explanations: tuple[Explanation, ...]
    checkpoint_dir: str  # the checkpoint that judged it (for `auto`: the one chosen)
    patch_map: PatchMap | None = None
    evidence: Evidence | None = None
    limits: str | None = None  # markdown of the card's section, None where it has none
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: everything but the pictures."""
        return {
            "file": self.file.to_dict(),
            "created": self.created,
            **self.verdict.to_dict(),
            "checkpoint_dir": self.checkpoint_dir,
            "heatmaps": [explanation.to_dict() for explanation in self.explanations],
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
            "limits": self.limits,
        }


def describe_file(data: bytes, name: str) -> FileFacts:
    """FileFacts of a file's bytes; ImageLoadError where they are not a readable image."""
    info = inspect_image(data)
    return FileFacts(name, hashlib.sha256(data).hexdigest(), len(data), info.format,
                     info.width, info.height, info.jpeg_quality)  # fmt: skip


def build_case(
    detector,
    source: ImageSource,
    *,
    name: str | None = None,
    methods: Sequence[str] = ("gradcam",),
    targets: Sequence[str] = DEFAULT_TARGETS,
    evidence: bool = True,
    evidence_views: bool = True,
    trust_unsigned_metadata: bool = True,
    created: datetime | None = None,
) -> Case:
    """The case of one image file (path, bytes or binary file-like: the file's own bytes are
    hashed and read for evidence) judged by `detector` (a Detector or `auto`), with one heatmap
    per method and target; the evidence is weighed into the decision (`assemble_case`). Raises
    ImageLoadError for an unreadable file, ValueError for an unknown method or target."""
    for method in methods:
        check_method(method)
    for target in targets:
        check_target(target)
    if not methods or not targets:
        raise ValueError("a case report needs at least one CAM method and one target")
    if name is None:
        name = Path(source).name if isinstance(source, (str, Path)) else "image"
    data = _read_bytes(source, MAX_BYTES)
    facts = describe_file(data, name)
    explanations = tuple(
        detector.explain(data, method, target) for method in methods for target in targets
    )
    used = chosen_checkpoint(detector, explanations[0].verdict)
    patch_map = None
    if explanations[0].box is not None:  # a patch model: its map over the whole photograph
        patch_map = used.patch_map(data)
    board = gather_evidence(data, views=evidence_views) if evidence else None
    return assemble_case(detector, facts, explanations, patch_map=patch_map, evidence=board,
                         trust_unsigned_metadata=trust_unsigned_metadata,
                         created=created)  # fmt: skip


def assemble_case(
    detector,
    facts: FileFacts,
    explanations: Sequence[Explanation],
    *,
    patch_map: PatchMap | None = None,
    evidence: Evidence | None = None,
    trust_unsigned_metadata: bool = True,
    created: datetime | None = None,
) -> Case:
    """A Case from what was already computed (the Classify page's explanations, an audit's
    batch): the verdict is the first explanation's with `evidence` weighed in
    (`forensics.decision.weigh_evidence`; None: not read, the model decides), the card the
    chosen checkpoint's."""
    if not explanations:
        raise ValueError("a case needs at least one explanation")
    options = {"trust_unsigned_metadata": trust_unsigned_metadata}
    explanations = weigh_explanations(explanations, evidence, **options)
    if patch_map is not None:
        patch_map = weigh_patch_map(patch_map, evidence, **options)
    verdict = explanations[0].verdict
    used = chosen_checkpoint(detector, verdict)
    when = created or datetime.now(UTC)
    return Case(
        file=facts,
        created=when.astimezone(UTC).isoformat(timespec="seconds"),
        verdict=verdict,
        explanations=tuple(explanations),
        checkpoint_dir=str(used.checkpoint_dir) if used.checkpoint_dir is not None else "",
        patch_map=patch_map,
        evidence=evidence,
        limits=read_card_limits(used.checkpoint_dir),
    )


def chosen_checkpoint(detector, verdict: Verdict):
    """The Detector that gave `verdict`: `detector` itself, or for `auto` the checkpoint it
    chose (named in the verdict)."""
    for candidate in getattr(detector, "detectors", None) or [detector]:
        if candidate.name == verdict.checkpoint:
            return candidate
    return detector


def render_case(case: Case, *, command: str | None = None) -> str:
    """The case as one self-contained HTML page."""
    heatmaps = []
    for explanation in case.explanations:
        heatmaps.append({
            "method": explanation.method,
            "target": explanation.target,
            "overlay": png_data_uri(explanation.overlay),
            "faithfulness": explanation.faithfulness,
            "reading": explanation.describe_faithfulness()
            if explanation.faithfulness is not None
            else "Faithfulness was not measured for this heatmap (an audit measures it only "
            "with --faithfulness; python -m forensics report always does).",
        })  # fmt: skip
    first = case.explanations[0]
    box = first.box
    seen = "What the model saw (after its resize and crop)"
    if box is not None:
        seen = f"The patch explained: x {box[0]}-{box[2]}, y {box[1]}-{box[3]} (native pixels)"
    patch_map = None
    if case.patch_map is not None:
        rows, columns = case.patch_map.grid
        patch_map = {
            "image": png_data_uri(case.patch_map.overlay, max_side=1024),
            "caption": f"{len(case.patch_map.boxes)} native-resolution patches ({rows} x "
            f"{columns}): red = P(fake) above the threshold, green = below, stronger = further "
            "from it",
        }
    evidence = None
    if case.evidence is not None:
        evidence = {
            "provenance": case.evidence.provenance,
            "summary": case.evidence.summary,
            "findings": case.evidence.findings,
            "credential": case.evidence.content_credential,
            "views": [_view(view) for view in case.evidence.views],
        }
    limits = case.limits
    if limits is not None and limits.startswith(LIMITS_HEADING):
        limits = limits[len(LIMITS_HEADING) :].strip("\n")
    return render(
        CASE_TEMPLATE,
        case=case,
        verdict=case.verdict,
        view=png_data_uri(first.view),
        seen=seen,
        heatmaps=heatmaps,
        patch_map=patch_map,
        evidence=evidence,
        limits=limits,
        command=command,
        decided_by=DECIDER_NAMES[case.verdict.decided_by],
        model_decision=DECISION_NAMES[case.verdict.model_decision],
    )


def _view(view) -> dict:
    return {"title": view.title, "image": png_data_uri(view.image, max_side=512),
            "reading": view.reading, "limits": view.limits}  # fmt: skip


def write_case_report(case: Case, path: str | Path, *, command: str | None = None) -> Path:
    """`render_case` written to `path` atomically (a crash leaves no half report)."""
    path = Path(path)
    write_text_atomic(path, render_case(case, command=command))
    return path


CASE_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Case report: {{ case.file.name }}</title>
<style>{{ style | safe }}</style></head>
<body>
<h1>Case report: <span class="mono">{{ case.file.name }}</span></h1>
<p class="note">Made {{ case.created }} (UTC){% if command %} by <span class="mono">{{ command }}
</span>{% endif %}. A verdict is a statistical score from a model, not proof; the heatmaps
explain the model, not the image.</p>

<section><h2>The file</h2>
<table class="facts">
<tr><th>SHA-256</th><td class="mono" data-field="sha256">{{ case.file.sha256 }}</td></tr>
<tr><th>Size</th><td data-field="size">{{ "{:,}".format(case.file.size) }} bytes</td></tr>
<tr><th>Format</th><td data-field="format">{{ case.file.format or "unknown" }}{% if
 case.file.jpeg_quality %}, quality about {{ case.file.jpeg_quality }}{% endif %}</td></tr>
<tr><th>Dimensions</th><td>{{ case.file.width }} x {{ case.file.height }} pixels</td></tr>
</table></section>

<section><h2>The decision</h2>
<p><span class="decision d-{{ verdict.decision }}" data-field="decision">{{
 verdict.decision_name }}</span></p>
<table class="facts">
<tr><th>Decided by</th><td data-field="decided_by" data-value="{{ verdict.decided_by }}">{{
 decided_by }}{% if verdict.decided_by != "model" %}: {{ verdict.reasons[0] }}{% endif %}</td></tr>
{% if verdict.provenance %}<tr><th>Provenance</th><td data-field="provenance-summary">{{
 verdict.provenance }}</td></tr>{% endif %}
<tr><th>The model's own decision</th><td data-field="model_decision">{{ model_decision }}</td></tr>
<tr><th>P(fake)</th><td data-field="prob_fake">{{ verdict.prob_fake | num(4) }} (the model's,
 calibrated; its raw score {{ verdict.prob_fake_raw | num(4) }}); threshold {{ verdict.threshold |
 num(2) }}</td></tr>
<tr><th>Thresholded call</th><td>{{ verdict.label }}</td></tr>
<tr><th>Checkpoint</th><td data-field="checkpoint">{{ verdict.checkpoint or "?" }}{% if
 verdict.routing == "nearest" %} (automatic choice: no shipped model covers this image; this
 is the nearest model's score, not a verdict){% elif verdict.routing %} (chosen automatically: its
 input domain admits the image){% endif %}</td></tr>
<tr><th>Checkpoint id</th><td class="mono" data-field="checkpoint_id">{{ verdict.checkpoint_id }}
 </td></tr>
<tr><th>Checkpoint folder</th><td class="mono">{{ case.checkpoint_dir }}</td></tr>
{% if verdict.perturbed %}<tr><th>Stability check</th><td>{% for name, p in
 verdict.perturbed.items() %}{{ name }}: P(fake) {{ p | num(3) }}{% if not loop.last %}; {% endif
 %}{% endfor %}</td></tr>{% endif %}
</table>
<h3>Reasons</h3>
{% if verdict.reasons %}<ul data-field="reasons">{% for reason in verdict.reasons %}
<li>{{ reason }}</li>{% endfor %}</ul>
{% else %}<p data-field="reasons">None: the model answers with confidence (every check passed).
</p>{% endif %}
<p class="note">What a decision rests on, in this order: a valid signed content credential; a
generator's metadata, which is unsigned (anyone could write it); then the model's score with
its checks. A missing credential or stripped metadata proves nothing.</p>
</section>

<section><h2>Heatmaps and their faithfulness</h2>
<p class="note">Each heatmap marks the regions that raised the score of one class. Its
faithfulness says whether it reflects what the model used: the marked share of the image and
the unmarked share are each removed (filled in from their surroundings, pytorch-grad-cam's ROAD
metric) and the class's probability measured again. Positive: removing what the map marks
matters more.</p>
<div class="figures">
<figure><img alt="what the model saw" src="{{ view }}"><figcaption>{{ seen }}</figcaption></figure>
{% for h in heatmaps %}
<figure data-field="heatmap"><img alt="{{ h.method }} heatmap for {{ h.target }}"
 src="{{ h.overlay }}"><figcaption><b>{{ h.method }}: regions pushing towards '{{ h.target }}'
 </b><br><span data-field="faithfulness" data-value="{{ h.faithfulness }}">{{ h.reading }}</span>
 </figcaption></figure>
{% endfor %}
</div>
{% if patch_map %}
<h3>Patch map</h3>
<figure class="wide" data-field="patch-map"><img alt="patch map" src="{{ patch_map.image }}">
<figcaption>{{ patch_map.caption }}</figcaption></figure>
{% endif %}
</section>

<section><h2>Evidence from the file itself</h2>
{% if evidence %}
<p class="note">Independent of the model: what the file says about where it came from, and what
classic forensic views show. Metadata can be stripped or forged.</p>
<p data-field="provenance"><b>Provenance ({{ evidence.provenance }}):</b> {{ evidence.summary }}</p>
{% if evidence.credential %}<p>C2PA credential: {{ evidence.credential.validation }}{% for problem
 in evidence.credential.problems %}; {{ problem }}{% endfor %} ({{
 "signed by a certificate on a trust list" if evidence.credential.trusted
 else "the signer is not checked against a trust list" }}).
</p>{% endif %}
{% if evidence.findings %}<table><tr><th>Where</th><th>What it says</th><th>Raw value</th></tr>
{% for f in evidence.findings %}<tr><td>{{ f.source }}</td><td>{{ f.claim }}</td>
<td class="mono">{{ f.value[:500] }}</td></tr>{% endfor %}</table>{% endif %}
<div class="figures">{% for v in evidence.views %}
<figure><img alt="{{ v.title }}" src="{{ v.image }}"><figcaption><b>{{ v.title }}</b><br>
{{ v.reading }}<br><i>Limits: {{ v.limits }}</i></figcaption></figure>{% endfor %}</div>
{% else %}<p>Not gathered for this report.</p>{% endif %}
</section>

<section><h2>Where this model must not be trusted</h2>
{% if limits %}<div class="limits" data-field="limits">{{ limits }}</div>
{% else %}<p data-field="limits">The checkpoint's model card says nothing on this; treat every
verdict on images unlike its training data as unsupported.</p>{% endif %}
</section>
</body></html>
"""
