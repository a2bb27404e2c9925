"""Model-independent evidence, one module per kind: metadata (EXIF, XMP, IPTC, PNG text), c2pa
(content credentials), and the classic views ela, noise, spectrum and jpeg. `gather_evidence`
(in board) puts them together for one image."""

from forensics.evidence.board import PROVENANCES, Evidence, gather_evidence
from forensics.evidence.c2pa import ContentCredential
from forensics.evidence.findings import Finding, View

__all__ = ["PROVENANCES", "ContentCredential", "Evidence", "Finding", "View", "gather_evidence"]
