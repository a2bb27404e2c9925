"""Case reports (`python -m forensics report`): every field an analyst hands on, a SHA-256 that
matches the file, nothing fetched from anywhere, a patch model's map, `auto`, and the PDF."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from forensics.card import LIMITS_SECTION, section_markers
from forensics.checkpoint import DEFAULT_CHECKPOINT, METADATA_FILE, shipped_checkpoints
from forensics.cli import main as cli_main
from forensics.detector import load_detector
from forensics.report import build_case, render_case
from tests.conftest import image_bytes, make_image
from tests.test_app import app  # noqa: F401 - a fixture

# Attributes through which a page loads something.
RESOURCE_ATTRIBUTES = {"src", "href", "srcset", "poster", "data", "action", "formaction",
                       "background", "xlink:href", "manifest", "ping"}  # fmt: skip


class _Resources(HTMLParser):
    """Every address the page would load or link to, and every field marked data-field."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[tuple[str, str, str]] = []
        self.fields: dict[str, list[str]] = {}
        self._open: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in RESOURCE_ATTRIBUTES:
                self.addresses.append((tag, name, value or ""))
            if name == "data-field":
                self.fields.setdefault(value, [])
                self._open.append(value)
                return
        self._open.append("")

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for name in self._open:
            if name:
                self.fields[name].append(data)


def parse_report(html: str) -> _Resources:
    parser = _Resources()
    parser.feed(html)
    return parser


def assert_fetches_nothing(html: str) -> None:
    """No resource from anywhere: every address is embedded (data:) or a link within the
    report's own folder; no stylesheet or script is loaded, no CSS url() or @import."""
    parsed = parse_report(html)
    for tag, name, value in parsed.addresses:
        if tag == "a" and name == "href":
            assert not re.match(r"^[a-z][a-z0-9+.-]*:", value, re.I), value  # relative only
        else:
            assert value.startswith("data:image/png;base64,"), (tag, name, value[:80])
    assert "link" not in parsed.tags and "iframe" not in parsed.tags
    for script in re.findall(r"<script[^>]*>", html):
        assert "src" not in script
    for style in re.findall(r"<style>(.*?)</style>", html, re.S):
        assert "url(" not in style and "@import" not in style


def field(parsed: _Resources, name: str) -> str:
    return " ".join(" ".join(parsed.fields[name]).split())


@pytest.fixture
def carded_checkpoint(tiny_checkpoint: Path) -> Path:
    start, end = section_markers(LIMITS_SECTION)
    (tiny_checkpoint / "MODEL_CARD.md").write_text(
        f"# Card\n\n{start}\n## Where it must not be trusted\n\n- on test patterns\n{end}\n"
    )
    return tiny_checkpoint


def test_a_report_holds_every_field_fetches_nothing_and_its_sha256_matches(
    carded_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    image = tmp_path / "suspect.png"
    image.write_bytes(image_bytes(make_image(5, size=40, fake=True), "PNG"))
    out = tmp_path / "case" / "suspect.html"
    methods = ["--method", "gradcam", "--method", "eigencam"]
    code = cli_main(
        ["report", str(image), "--out", str(out), "--checkpoint", str(carded_checkpoint), *methods]
    )
    assert code == 0, capsys.readouterr().err
    html = out.read_text(encoding="utf-8")
    parsed = parse_report(html)
    detector = load_detector(carded_checkpoint)
    verdict = detector.predict(image)
    assert field(parsed, "sha256") == hashlib.sha256(image.read_bytes()).hexdigest()
    assert field(parsed, "size") == f"{image.stat().st_size:,} bytes"
    assert field(parsed, "format").startswith("PNG")
    assert re.search(r"Made \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 \(UTC\)", html)
    assert field(parsed, "checkpoint") == carded_checkpoint.name
    assert field(parsed, "checkpoint_id") == detector.checkpoint_id
    assert field(parsed, "decision") in ("AI-generated", "Real photograph", "Unsure")
    assert field(parsed, "prob_fake").startswith(f"{verdict.prob_fake:.4f}")
    for reason in verdict.reasons:
        assert reason in html
    if not verdict.reasons:
        assert "every check passed" in field(parsed, "reasons")
    # Two methods x (why fake, why real), each with its faithfulness in words.
    assert html.count('data-field="heatmap"') == 4
    assert (
        len(re.findall(r"Removing the marked 20% of the image (lowers|raises|leaves)", html)) == 4
    )
    assert "Provenance (none)" in html and "Error level analysis" in html
    assert field(parsed, "limits") == "- on test patterns"
    assert_fetches_nothing(html)
    assert "http://" not in html and "https://" not in html
    assert f"-> {out}" in capsys.readouterr().out


def test_a_stranger_s_text_is_shown_escaped_never_loaded(tiny_checkpoint: Path) -> None:
    from forensics.report.case import describe_file

    data = image_bytes(make_image(6, size=32), "PNG")
    case = build_case(load_detector(tiny_checkpoint), data, name='<img src="https://x/y.png">')
    html = render_case(case)
    assert_fetches_nothing(html)
    assert "&lt;img src=&#34;https://x/y.png&#34;&gt;" in html
    assert describe_file(data, "x").sha256 == hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def routed():
    """`auto` over the shipped checkpoints (loaded once: the photos model warms up at 512 px)."""
    from forensics.router import load_detector as load_routed

    names = {p.name for p in shipped_checkpoints() if (p / METADATA_FILE).is_file()}
    if not {"default", "photos"} <= names:
        pytest.skip("the shipped default and photos checkpoints are not here")
    return load_routed("auto")


def test_a_patch_model_s_report_shows_its_patch_map_and_its_card(routed) -> None:
    photos = next(d for d in routed.detectors if d.name == "photos")
    photo = image_bytes(make_image(3, size=64).resize((320, 256)), "JPEG", quality=95)
    case = build_case(photos, photo, name="photo.jpg", evidence_views=False)
    assert case.patch_map is not None and case.explanations[0].box is not None
    html = render_case(case)
    assert 'data-field="patch-map"' in html and "native-resolution patches" in html
    assert "Removing the marked 20% of the patch" in html
    assert "Stable Diffusion 1.x" in field(parse_report(html), "limits")  # the photos card
    assert_fetches_nothing(html)


def test_auto_names_the_checkpoint_it_chose_and_quotes_that_card(routed) -> None:
    detector = routed
    data = image_bytes(make_image(4, size=32, fake=True), "JPEG", quality=75)
    case = build_case(detector, data, name="small.jpg", evidence=False)
    chosen = next(d for d in detector.detectors if d.name == case.verdict.checkpoint)
    assert case.checkpoint_dir == str(chosen.checkpoint_dir)
    assert case.verdict.routing in ("chosen", "nearest")
    limits = (chosen.checkpoint_dir / "MODEL_CARD.md").read_text().split("must not be trusted")[1]
    assert limits.split("\n- ")[1][:40] in render_case(case)


def test_unreadable_image_and_bad_arguments_are_reported(tiny_checkpoint: Path, tmp_path: Path,
                                                         capsys) -> None:  # fmt: skip
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "r.html"
    assert cli_main(["report", str(bad), "--out", str(out), "--checkpoint",
                     str(tiny_checkpoint)]) == 1  # fmt: skip
    assert "bad.jpg: error:" in capsys.readouterr().err and not out.exists()
    assert cli_main(["report", str(tmp_path / "none.jpg"), "--out", str(out)]) == 2
    assert cli_main(["report", str(bad), "--out", str(tmp_path / "r.txt")]) == 2


def test_pdf_without_chromium_says_so_and_keeps_the_html(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("CHROMIUM_PATH", str(tmp_path / "no-such-chromium"))
    image = tmp_path / "a.png"
    image.write_bytes(image_bytes(make_image(1, size=32), "PNG"))
    out = tmp_path / "a.html"
    code = cli_main(["report", str(image), "--out", str(out), "--checkpoint",
                     str(tiny_checkpoint), "--pdf"])  # fmt: skip
    assert code == 1 and out.is_file() and not out.with_suffix(".pdf").exists()
    assert "no Chromium found" in capsys.readouterr().err


@pytest.mark.slow
def test_pdf_is_printed_by_chromium(tmp_path: Path, capsys) -> None:
    chromium = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not chromium:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does this)")
    if not (DEFAULT_CHECKPOINT / METADATA_FILE).is_file():
        pytest.skip("the shipped default model is not here")
    image = tmp_path / "a.jpg"
    image.write_bytes(image_bytes(make_image(2, size=32, fake=True), "JPEG"))
    out, pdf = tmp_path / "a.html", tmp_path / "printed" / "case.pdf"
    assert cli_main(["report", str(image), "--out", str(out), "--pdf", str(pdf)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
    assert f"-> {pdf}" in capsys.readouterr().out


def test_the_classify_page_offers_the_case_report_and_says_how_faithful_each_map_is(
    app,  # noqa: F811
) -> None:
    from tests.test_app import upload

    at = upload(app, "sample.png", image_bytes(make_image(5, size=32), "PNG"))
    assert not at.exception, at.exception
    downloads = [b.proto.label for b in at.get("download_button")]
    assert "Case report (HTML: prints to PDF)" in downloads
    faithful = [c.value for c in at.caption if c.value.startswith("Removing the marked 20%")]
    assert len(faithful) == 2, faithful  # under the 'fake' and the 'real' heatmap
