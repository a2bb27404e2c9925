"""Batch audit of a folder (`python -m forensics audit DIR --out OUT`): every image file judged
and explained, with OUT/audit.csv (one row per file), OUT/report.html (counts per decision, a
histogram of scores, then one sortable row per image with its thumbnail and heatmap) and one
case report per image in OUT/cases/.

Files are found as `predict DIR` finds them (`forensics.data.images_in_folder`: by extension,
hidden folders skipped, no link followed out of DIR). A file that cannot be read is a row with
decision `unreadable` and the reason, never a stop.

Resumable the way a robustness sweep is: each finished image leaves OUT/parts/<id>.json, written
atomically after its case report, holding its row and thumbnails and the audit's key (checkpoint,
trust profile, method, checks). A rerun keeps every part whose key and file digest still match,
so an audit killed midway redoes only the images it had not finished; the final files are
written from the parts, in file order, and are the same as an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forensics.atomic import write_atomic, write_text_atomic
from forensics.data import images_in_folder
from forensics.evidence import gather_evidence
from forensics.explain import check_method
from forensics.images import MAX_BYTES, ImageLoadError, _read_bytes
from forensics.report.case import (
    DECISION_NAMES,
    assemble_case,
    chosen_checkpoint,
    describe_file,
    write_case_report,
)
from forensics.report.html import histogram_bars, png_data_uri, render
from forensics.verdicts import DECIDER_NAMES, DECIDERS

AUDIT_FILE, REPORT_FILE, RECORD_FILE = "audit.csv", "report.html", "audit.json"
PARTS, CASES = "parts", "cases"
COLUMNS = (
    "path", "sha256", "decision", "decided_by", "prob_fake", "model_decision", "checkpoint",
    "checkpoint_id", "reason", "provenance", "faithfulness", "case",
)  # fmt: skip
DECISIONS = ("fake", "unsure", "real", "unreadable")
THUMBNAIL = 96  # px, the longest side of a thumbnail in report.html
AUDIT_VERSION = 2  # 2: decisions weigh the file's provenance (decided_by, model_decision)


@dataclass(frozen=True)
class AuditResult:
    table: pd.DataFrame  # COLUMNS, one row per file in file order
    reused: int  # images read back from OUT/parts, not judged again
    out: Path


def audit_key(detector, *, method: str, faithfulness: bool, evidence_views: bool,
              trust_unsigned_metadata: bool = True) -> dict:  # fmt: skip
    """What a stored part must match to be reused."""
    return {"version": AUDIT_VERSION, "checkpoint_id": detector.checkpoint_id,
            "trust_id": detector.trust_id, "method": method, "faithfulness": faithfulness,
            "evidence_views": evidence_views,
            "trust_unsigned_metadata": trust_unsigned_metadata}  # fmt: skip


def run_audit(
    detector,
    folder: str | Path,
    out: str | Path,
    *,
    method: str = "gradcam",
    faithfulness: bool = False,
    evidence_views: bool = True,
    trust_unsigned_metadata: bool = True,
    batch_size: int = 32,
    record: dict | None = None,
    progress: bool = True,
    on_image: Callable[[int, int], None] | None = None,
) -> AuditResult:
    """Audit every image file under `folder` into `out` (see the module's description), resuming
    from OUT/parts. `faithfulness` measures each heatmap's: off by default, as it costs more
    than the rest of an image's audit (it would halve the throughput; benchmarks.audit measures
    both), while the evaluation page's comparison says how faithful the method is for the model
    in general, and an image's own report measures it. `evidence_views` adds the classic views
    to each case report. Each decision weighs the file's provenance (`forensics.decision`;
    `trust_unsigned_metadata=False`: only pixels and signed credentials decide), read from the
    bytes the row's SHA-256 is computed from. `on_image(done, total)` is called after each
    image. ValueError where `folder` holds no image file."""
    from tqdm.auto import tqdm

    check_method(method)
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = sorted(images_in_folder(folder))
    if not files:
        raise ValueError(f"no image files under {folder}")
    key = audit_key(detector, method=method, faithfulness=faithfulness,
                    evidence_views=evidence_views,
                    trust_unsigned_metadata=trust_unsigned_metadata)  # fmt: skip
    parts: dict[str, dict] = {}
    reused = 0
    command = (record or {}).get("command") or f"python -m forensics audit {folder}"
    with tqdm(total=len(files), desc="auditing", unit="img", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            todo = []
            for path in chunk:
                rel = path.relative_to(folder).as_posix()
                data, error = _read(path)
                stored = _stored_part(out, rel, key, data)
                if stored is not None:
                    parts[rel] = stored
                    reused += 1
                elif data is None:
                    parts[rel] = _keep(out, rel, key, _unreadable(rel, None, error))
                else:
                    todo.append((rel, data))
            for rel, part in _audit_images(detector, todo, out, method=method,
                                           faithfulness=faithfulness,
                                           evidence_views=evidence_views,
                                           trust_unsigned_metadata=trust_unsigned_metadata,
                                           command=command):  # fmt: skip
                parts[rel] = _keep(out, rel, key, part)
            bar.update(len(chunk))
            if on_image is not None:
                on_image(min(start + batch_size, len(files)), len(files))
    rows = [parts[path.relative_to(folder).as_posix()] for path in files]
    table = pd.DataFrame([row["row"] for row in rows], columns=list(COLUMNS))
    write_audit(out, table, rows, {**(record or {}), **key, "folder": str(folder)})
    return AuditResult(table, reused, out)


def _read(path: Path) -> tuple[bytes | None, str | None]:
    try:
        return _read_bytes(path, MAX_BYTES), None
    except ImageLoadError as exc:
        return None, str(exc)


def part_file(out: Path, rel: str) -> Path:
    """OUT/parts/<digest of the relative path>.json: one per file, any name made safe."""
    return out / PARTS / f"{hashlib.sha256(rel.encode('utf-8')).hexdigest()[:24]}.json"


def _stored_part(out: Path, rel: str, key: dict, data: bytes | None) -> dict | None:
    """The finished part of `rel` when it was made under `key` from these same bytes."""
    try:
        part = json.loads(part_file(out, rel).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sha = None if data is None else hashlib.sha256(data).hexdigest()
    if not isinstance(part, dict) or part.get("key") != key or part.get("path") != rel:
        return None
    row = part.get("row") or {}
    if row.get("sha256") != sha and not (data is None and row.get("decision") == "unreadable"):
        return None
    case = row.get("case")
    if case and not (out / case).is_file():
        return None
    return part


def _keep(out: Path, rel: str, key: dict, part: dict) -> dict:
    part = {"path": rel, "key": key, **part}
    write_text_atomic(part_file(out, rel), json.dumps(part) + "\n")
    return part


def _unreadable(rel: str, sha256: str | None, reason: str | None) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(path=rel, sha256=sha256 or "", decision="unreadable", reason=reason or "")
    return {"row": row}


def _audit_images(detector, todo, out: Path, *, method: str, faithfulness: bool,
                  evidence_views: bool, trust_unsigned_metadata: bool, command: str):  # fmt: skip
    """(rel, part) for each (rel, bytes): explained together, else (an unreadable file among
    them) one by one, so that each unreadable file is named with its reason."""
    if not todo:
        return
    options = {"faithfulness": faithfulness}
    try:
        explained = detector.explain_batch([data for _, data in todo], method, "predicted",
                                           **options)  # fmt: skip
    except ImageLoadError:
        explained = []
        for _, data in todo:
            try:
                explained.append(detector.explain(data, method, "predicted", **options))
            except ImageLoadError as exc:
                explained.append(exc)
    for (rel, data), explanation in zip(todo, explained, strict=True):
        if isinstance(explanation, ImageLoadError):
            yield rel, _unreadable(rel, hashlib.sha256(data).hexdigest(), str(explanation))
            continue
        try:  # the case part hashes the file itself, for its row and report
            yield rel, _case_part(detector, rel, data, explanation, out,
                                  evidence_views=evidence_views,
                                  trust_unsigned_metadata=trust_unsigned_metadata,
                                  command=command)  # fmt: skip
        except ImageLoadError as exc:  # readable by the model, not by the evidence board
            yield rel, _unreadable(rel, hashlib.sha256(data).hexdigest(), str(exc))


def _case_part(detector, rel: str, data: bytes, explanation, out: Path, *,
               evidence_views: bool, trust_unsigned_metadata: bool,
               command: str) -> dict:  # fmt: skip
    """Write the image's case report; return its part: the CSV row and the thumbnails. The
    evidence is read from the same bytes as the SHA-256, and weighed into the decision."""
    facts = describe_file(data, Path(rel).name)
    patch_map = None
    if explanation.box is not None:  # a patch model: its map over the whole photograph
        patch_map = chosen_checkpoint(detector, explanation.verdict).patch_map(data)
    evidence = gather_evidence(data, views=evidence_views)
    case = assemble_case(detector, facts, [explanation], patch_map=patch_map, evidence=evidence,
                         trust_unsigned_metadata=trust_unsigned_metadata)  # fmt: skip
    verdict = case.verdict
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(rel).stem)[:60]
    case_path = Path(CASES) / f"{stem}-{facts.sha256[:12]}.html"
    write_case_report(case, out / case_path, command=command)
    row = {
        "path": rel,
        "sha256": facts.sha256,
        "decision": verdict.decision,
        "decided_by": verdict.decided_by,
        "prob_fake": round(float(verdict.prob_fake), 6),
        "model_decision": verdict.model_decision,
        "checkpoint": verdict.checkpoint,
        "checkpoint_id": verdict.checkpoint_id,
        "reason": verdict.reasons[0] if verdict.reasons else "",
        "provenance": evidence.provenance,
        "faithfulness": ""
        if explanation.faithfulness is None
        else round(float(explanation.faithfulness), 4),
        "case": case_path.as_posix(),
    }
    return {
        "row": row,
        "view": png_data_uri(explanation.view, max_side=THUMBNAIL),
        "overlay": png_data_uri(explanation.overlay, max_side=THUMBNAIL),
        "target": explanation.target,
        "summary": evidence.summary,
        "decision_name": verdict.decision_name,
    }


def write_audit(out: Path, table: pd.DataFrame, parts: Sequence[dict], record: dict) -> None:
    """audit.csv, report.html, then audit.json (last, with the table's digest: a folder whose
    json is missing or does not match holds no finished audit)."""
    from forensics.atomic import file_sha256

    table_file = out / AUDIT_FILE
    write_atomic(table_file, lambda tmp: table.to_csv(tmp, index=False))
    write_text_atomic(out / REPORT_FILE, render_audit(table, parts, record))
    counts = Counter(table["decision"])
    deciders = Counter(table.loc[table["decision"] != "unreadable", "decided_by"])
    record = {**record, "n": len(table), "counts": {d: counts.get(d, 0) for d in DECISIONS},
              "decided_by": {by: deciders.get(by, 0) for by in DECIDERS},
              "audit_sha256": file_sha256(table_file)}  # fmt: skip
    write_text_atomic(out / RECORD_FILE, json.dumps(record, indent=2) + "\n")


def render_audit(table: pd.DataFrame, parts: Sequence[dict], record: dict) -> str:
    """report.html: the summary, a histogram of P(fake) by decision, one row per image."""
    judged = table[table["decision"] != "unreadable"]
    counts = Counter(table["decision"])
    histogram = histogram_bars(
        judged["prob_fake"].to_numpy(dtype=np.float64),
        judged["decision"].to_numpy(dtype=str),
        order=("real", "unsure", "fake"),
    )
    rows = [part for part in parts if part["row"]["decision"] != "unreadable"]
    unreadable = [part["row"] for part in parts if part["row"]["decision"] == "unreadable"]
    deciders = Counter(judged["decided_by"])
    return render(
        AUDIT_TEMPLATE,
        record=record,
        total=len(table),
        counts=[(d, DECISION_NAMES[d], counts.get(d, 0)) for d in DECISIONS],
        deciders=[(by, DECIDER_NAMES[by], deciders.get(by, 0)) for by in DECIDERS],
        histogram=histogram,
        rows=rows,
        unreadable=unreadable,
        decision_names=DECISION_NAMES,
        checkpoints=sorted({str(c) for c in judged["checkpoint"]}),
    )


AUDIT_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit of {{ record.folder }}</title>
<style>{{ style | safe }}
.hist rect.real { fill: #3c9a5a; } .hist rect.unsure { fill: #d8a521; }
.hist rect.fake { fill: #c8432f; } .hist text { font-size: 3px; fill: #444; }
#images td.mono { min-width: 14em; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }
</style></head>
<body>
<h1>Audit of <span class="mono">{{ record.folder }}</span></h1>
<p class="note">{{ total }} files; checkpoint {{ checkpoints | join(", ") or "none" }}; heatmaps by
{{ record.method }} for each image's own call{% if record.get("command") %}; made by
<span class="mono">{{ record.command }}</span>{% endif %}. Each row opens the image's case report.
A verdict is a statistical score, not proof.</p>

<section><h2>Summary</h2>
<table id="counts"><tr>{% for d, name, n in counts %}<th>{{ name }}</th>{% endfor %}</tr>
<tr>{% for d, name, n in counts %}<td data-decision="{{ d }}">{{ n }}</td>{% endfor %}</tr></table>
<p id="deciders">Decided by {% for by, name, n in deciders %}{{ name }}: <span
 data-decided-by="{{ by }}">{{ n }}</span>{% if not loop.last %}; {% endif %}{% endfor %}. A
signed content credential decides first, then a generator's unsigned metadata{% if not
 record.get("trust_unsigned_metadata", True) %} (not counted in this audit){% endif %}, then the
model.</p>
<h3>P(fake) of the judged images, by decision</h3>
<svg class="hist" viewBox="-8 -4 116 52" width="580" height="260" role="img"
 aria-label="histogram of P(fake)">
<line x1="0" y1="40" x2="100" y2="40" stroke="#888" stroke-width="0.3"/>
<g transform="scale(1 0.4)">
{% for bar in histogram.bars %}<rect class="{{ bar.group }}" x="{{ '%.3f' % bar.x }}"
 y="{{ '%.3f' % bar.y }}" width="{{ '%.3f' % bar.width }}" height="{{ '%.3f' % bar.height }}"
 stroke="#fff" stroke-width="0.2"><title>P(fake) {{ bar.range }}: {{ bar.count }} {{
 bar.group }}</title></rect>
{% endfor %}</g>
<text x="0" y="45">0</text><text x="47" y="45">0.5</text><text x="97" y="45">1</text>
<text x="-7" y="2">{{ histogram.top }}</text><text x="-7" y="41">0</text>
</svg>
<p class="legend"><span style="background:#3c9a5a"></span>real<span
 style="background:#d8a521"></span>unsure<span style="background:#c8432f"></span>fake
 ({{ histogram.bins }} bins; the tallest holds {{ histogram.top }})</p>
</section>

{% if unreadable %}<section><h2>Files that could not be read ({{ unreadable | length }})</h2>
<table id="unreadable"><tr><th>File</th><th>Why</th></tr>{% for row in unreadable %}
<tr class="unreadable-row"><td class="mono">{{ row.path }}</td><td>{{ row.reason }}</td></tr>
{% endfor %}</table></section>{% endif %}

<section><h2>Images ({{ rows | length }})</h2>
<p class="note no-print">Click a column's title to sort by it.</p>
<table id="images" class="sortable"><thead><tr><th data-type="text">File</th><th>Image</th>
<th>Heatmap</th><th data-type="text">Decision</th><th data-type="text">Decided by</th>
<th data-type="number">P(fake)</th>
<th data-type="number">Faithfulness</th><th data-type="text">Checkpoint</th>
<th data-type="text">Provenance</th><th data-type="text">Reason</th></tr></thead><tbody>
{% for part in rows %}{% set row = part.row %}
<tr class="image-row"><td class="mono" data-sort="{{ row.path }}"><a href="{{ row.case }}">{{
 row.path }}</a></td>
<td><img class="thumb" alt="" src="{{ part.view }}"></td>
<td><img class="thumb" alt="{{ record.method }} for {{ part.target }}"
 src="{{ part.overlay }}"></td>
<td data-sort="{{ row.decision }}"><span class="decision d-{{ row.decision }}"
 style="font-size:12px">{{ part.decision_name }}</span></td>
<td data-sort="{{ row.decided_by }}" data-field="decided_by">{{ row.decided_by }}{% if
 row.decided_by != "model" %} (the model alone: {{ row.model_decision }}){% endif %}</td>
<td data-sort="{{ row.prob_fake }}">{{ row.prob_fake | num(3) }}</td>
<td data-sort="{{ row.faithfulness if row.faithfulness != '' else -9 }}">{{ row.faithfulness
 | signed if row.faithfulness != '' else 'n/a' }}</td>
<td data-sort="{{ row.checkpoint }}">{{ row.checkpoint }}</td>
<td data-sort="{{ row.provenance }}" title="{{ part.summary }}">{{ row.provenance }}</td>
<td data-sort="{{ row.reason }}">{{ row.reason }}</td></tr>
{% endfor %}</tbody></table></section>
<script>
document.querySelectorAll("table.sortable th[data-type]").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.dataset.type === "number", up = th.dataset.order !== "asc";
    th.dataset.order = up ? "asc" : "desc";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].dataset.sort || "", y = b.cells[index].dataset.sort || "";
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return up ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
</script>
</body></html>
"""
