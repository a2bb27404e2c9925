"""Reports an analyst hands on: a case report for one image (`case`), a batch audit of a folder
(`audit`), in self-contained HTML (`html`) that Chromium can print to PDF (`pdf`)."""

from forensics.report.case import (
    Case,
    FileFacts,
    assemble_case,
    build_case,
    describe_file,
    render_case,
    write_case_report,
)
from forensics.report.pdf import PdfUnavailableError, find_chromium, print_to_pdf

__all__ = [
    "Case",
    "FileFacts",
    "PdfUnavailableError",
    "assemble_case",
    "build_case",
    "describe_file",
    "find_chromium",
    "print_to_pdf",
    "render_case",
    "write_case_report",
]
