"""The command line of reports: `python -m forensics report IMG --out FILE.html [--pdf]` and
`python -m forensics audit DIR --out OUT`. Parsers and runners only; `forensics.cli` dispatches
here, and the work is `forensics.report.case` and `forensics.report.audit`'s."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from forensics.cli import (
    UsageError,
    _add_engine_option,
    _load,
    add_checkpoint_option,
    add_unsigned_metadata_option,
)


def add_commands(commands) -> None:
    from forensics.explain import CAM_METHODS

    report = commands.add_parser(
        "report",
        help="a case report for one image: one self-contained HTML file (optionally a PDF)",
        description="Write a case report for one image: the file's SHA-256, size and format, "
        "the time, the checkpoint and its id, the decision with its probability and reasons, "
        "the heatmaps with their faithfulness, the evidence and the model card's section on "
        "where the model must not be trusted. One HTML file with everything embedded; nothing "
        "is fetched when it is opened.",
        epilog="Exit codes: 0 written; 1 the image could not be read, or --pdf failed (the HTML "
        "is still written); 2 bad arguments or checkpoint.",
    )
    report.add_argument("image", type=Path, help="the image file")
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    add_checkpoint_option(report)
    report.add_argument(
        "--method", action="append", choices=list(CAM_METHODS), default=None,
        help="CAM method (repeat for several; default gradcam)",
    )  # fmt: skip
    report.add_argument(
        "--pdf", nargs="?", type=Path, const=True, default=None, metavar="FILE.pdf",
        help="also print it to PDF with Chromium (default name: the HTML's, with .pdf)",
    )  # fmt: skip
    add_unsigned_metadata_option(report)
    _add_engine_option(report)

    audit = commands.add_parser(
        "audit",
        help="judge and explain every image in a folder: audit.csv, report.html, case reports",
        description="Audit a folder: OUT/audit.csv (one row per file: path, sha256, decision, "
        "what decided it (its content credential, its metadata or the model), the model's "
        "P(fake) and own decision, checkpoint, the first reason, provenance, faithfulness, "
        "case report), "
        "OUT/report.html (counts, a histogram of scores, a sortable row per image with its "
        "thumbnail and heatmap) and a case report per image in OUT/cases/. Files as predict "
        "finds them in a folder (no link is followed out of it); unreadable files are listed "
        "with their reasons. Run the same command again after a crash or kill: finished images "
        "are kept (OUT/parts/).",
        epilog="Exit codes: 0 every file judged; 1 some files could not be read (listed); 2 bad "
        "arguments or checkpoint.",
    )
    audit.add_argument("folder", type=Path, help="the folder to audit")
    audit.add_argument("--out", type=Path, required=True, help="folder for the audit")
    add_checkpoint_option(audit)
    audit.add_argument("--method", choices=list(CAM_METHODS), default="gradcam")
    audit.add_argument("--batch-size", type=int, default=32)
    audit.add_argument(
        "--faithfulness", action="store_true",
        help="also measure each heatmap's faithfulness (more work than the rest of an image's "
        "audit: about half the throughput; an image's own report always measures it)",
    )  # fmt: skip
    audit.add_argument(
        "--no-views", action="store_true",
        help="leave the classic forensic views out of the case reports (metadata is kept)",
    )  # fmt: skip
    add_unsigned_metadata_option(audit)
    _add_engine_option(audit)


def run_report(args: argparse.Namespace) -> int:
    from forensics.images import ImageLoadError
    from forensics.report import PdfUnavailableError, build_case, print_to_pdf, write_case_report

    if not args.image.is_file():
        raise UsageError(f"no such file: {args.image}")
    if args.out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out must name an .html file, got {args.out}")
    detector = _load(args.checkpoint, args.engine)
    try:
        case = build_case(detector, args.image, methods=args.method or ("gradcam",),
                          trust_unsigned_metadata=not args.ignore_unsigned_metadata)  # fmt: skip
    except ImageLoadError as exc:
        print(f"{args.image}: error: {exc}", file=sys.stderr)
        return 1
    write_case_report(case, args.out, command=shlex.join(["python", "-m", "forensics",
                                                          *sys.argv[1:]]))  # fmt: skip
    verdict = case.verdict
    print(f"{args.image}: {verdict.decision} (decided by {verdict.decided_by}; model P(fake) "
          f"{verdict.prob_fake:.4f}, checkpoint {verdict.checkpoint}) -> {args.out}")  # fmt: skip
    if args.pdf is None:
        return 0
    pdf = args.out.with_suffix(".pdf") if args.pdf is True else args.pdf
    try:
        print_to_pdf(args.out, pdf)
    except PdfUnavailableError as exc:
        print(f"error: no PDF: {exc}", file=sys.stderr)
        return 1
    print(f"-> {pdf}")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from forensics.report.audit import run_audit as audit_folder

    if not args.folder.is_dir():
        raise UsageError(f"no such folder: {args.folder}")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.out.resolve().is_relative_to(args.folder.resolve()):
        raise UsageError(
            "--out must lie outside the audited folder: the audit's files must not mix with "
            "the files it describes"
        )
    detector = _load(args.checkpoint, args.engine)
    command = shlex.join(["python", "-m", "forensics", *sys.argv[1:]])
    try:
        result = audit_folder(
            detector, args.folder, args.out, method=args.method,
            faithfulness=args.faithfulness, evidence_views=not args.no_views,
            trust_unsigned_metadata=not args.ignore_unsigned_metadata,
            batch_size=args.batch_size, record={"command": command},
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    table = result.table
    unreadable = table[table["decision"] == "unreadable"]
    for row in unreadable.itertuples():
        print(f"{row.path}: unreadable: {row.reason}", file=sys.stderr)
    counts = table["decision"].value_counts()
    summary = ", ".join(f"{counts[d]} {d}" for d in ("fake", "unsure", "real", "unreadable")
                        if d in counts)  # fmt: skip
    kept = f" ({result.reused} kept from an earlier run)" if result.reused else ""
    print(f"{len(table)} files: {summary}{kept} -> {args.out / 'audit.csv'}, "
          f"{args.out / 'report.html'}")  # fmt: skip
    return 1 if len(unreadable) else 0
