"""The Streamlit app through streamlit.testing.v1.AppTest: pages load, uploads get a verdict and
a heatmap, bad uploads get a clear message, widgets change what is shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from forensics import load_detector
from forensics.ui.common import AUTOMATIC
from tests.conftest import image_bytes, make_image

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
TIMEOUT = 120


@pytest.fixture
def app(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(tiny_checkpoint))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    at.file_uploader[0].set_value((name, data, mime))
    return at.run()


def image_captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def test_classify_page_loads_with_a_prompt(app: AppTest) -> None:
    assert app.title[0].value == "Classify an image"
    assert any("Upload an image" in info.value for info in app.info)


def shown_scores(verdict) -> str:
    """The start of the decision card's caption for `verdict` (forensics/ui/decision.py)."""
    return (
        f"P(fake) = {verdict.prob_fake:.3f} (calibrated; the model's own softmax said "
        f"{verdict.prob_fake_raw:.3f}); thresholded at {verdict.threshold:.2f} the call would be "
        f"'{verdict.label}'."
    )


def score_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("P(fake) = ")]


def test_upload_gives_verdict_probability_and_heatmap(app: AppTest, tiny_checkpoint: Path) -> None:
    data = image_bytes(make_image(5, size=32), "PNG")
    at = upload(app, "sample.png", data)
    assert not at.exception, at.exception
    # The scores shown are the Detector's for this file.
    (caption,) = score_captions(at)
    assert caption.startswith(shown_scores(load_detector(tiny_checkpoint).predict(data))), caption
    verdict = at.metric[0]
    # The tiny checkpoint has no trust profile: the decision is unsure, and says why.
    assert (verdict.label, verdict.value) == ("Decision", "Unsure")
    assert verdict.delta == "not a verdict: see the reasons"
    assert any("no description of its training data" in m.value for m in at.markdown)
    assert any(c.value.startswith("P(fake) = ") and "Model: ckpt" in c.value for c in at.caption)
    captions = image_captions(at)
    assert any("What the model saw" in c for c in captions)
    # By default both heatmaps are shown side by side, each with a plain-language reading.
    assert any("gradcam" in c and "'fake'" in c for c in captions), captions
    assert any("gradcam" in c and "'real'" in c for c in captions), captions
    readings = [c.value for c in at.caption if "attribution" in c.value or "flat" in c.value]
    assert len(readings) == 2, readings
    downloads = [b.proto.label for b in at.get("download_button")]
    assert "JSON record of this verdict" in downloads
    assert "Overlay PNG (fake)" in downloads and "Overlay PNG (real)" in downloads


def test_same_named_uploads_each_get_their_own_verdict(app: AppTest, tiny_checkpoint: Path) -> None:
    # Two cameras' IMG_0001.jpg, and the first one uploaded again: every widget key is built
    # from something unique per upload, not from the file name.
    first, second = (image_bytes(make_image(seed, size=32), "JPEG") for seed in (7, 8))
    app.file_uploader[0].set_value(
        [(name, data, "image/jpeg") for name, data in
         (("IMG_0001.jpg", first), ("IMG_0001.jpg", second), ("IMG_0001.jpg", first))]
    )  # fmt: skip
    at = app.run()
    assert not at.exception, at.exception
    assert len(at.metric) == 3
    assert [h.value for h in at.subheader] == [f"IMG_0001.jpg ({i} of 3)" for i in (1, 2, 3)]
    json_buttons = [b for b in at.get("download_button") if b.proto.label.startswith("JSON")]
    assert len(json_buttons) == 3
    detector = load_detector(tiny_checkpoint)
    expected = [shown_scores(detector.predict(data)) for data in (first, second, first)]
    assert expected[0] != expected[1]  # the two images are told apart by their scores
    captions = score_captions(at)
    assert len(captions) == 3
    for caption, start in zip(captions, expected, strict=True):
        assert caption.startswith(start), (caption, start)


def test_bad_upload_shows_one_clear_error(app: AppTest) -> None:
    at = upload(app, "notes.jpg", b"this is text, not an image", "image/jpeg")
    assert not at.exception, at.exception
    assert len(at.error) == 1
    assert "Cannot read notes.jpg" in at.error[0].value
    assert "not a recognised image format" in at.error[0].value
    assert not at.metric


def test_method_and_target_selectors_change_the_explanation(app: AppTest) -> None:
    at = upload(app, "sample.png", image_bytes(make_image(6, size=32), "PNG"))
    method = next(s for s in at.selectbox if s.label == "CAM method")
    target = next(s for s in at.selectbox if s.label == "Explain")
    assert "scorecam" in method.options[method.options.index("scorecam (slow)")]
    method.set_value("layercam")
    target.set_value("real")
    at.run()
    assert not at.exception, at.exception
    captions = image_captions(at)
    assert any("layercam" in c and "'real'" in c for c in captions), captions


def test_bad_checkpoint_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert any("Cannot load the checkpoint" in e.value for e in at.error)


def _model_card_script() -> None:
    from forensics.ui.common import draw_sidebar
    from forensics.ui.model_card import model_card_page

    draw_sidebar()
    model_card_page()


def test_model_card_page_shows_metadata(app: AppTest, tiny_checkpoint: Path) -> None:
    at = AppTest.from_function(_model_card_script, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Model card"
    assert [m.value for m in at.metric][:2] == ["resnet18", "32 px"]


def test_sidebar_threshold_override_decides_the_verdict(app: AppTest) -> None:
    at = upload(app, "sample.png", image_bytes(make_image(8, size=32), "PNG"))
    scores = next(c.value for c in at.caption if c.value.startswith("P(fake) = "))
    prob = float(scores.split()[2])
    at.sidebar.checkbox[0].check().run()
    threshold = next(s for s in at.sidebar.slider if s.label == "Threshold on P(fake)")
    for value in (0.01 if prob >= 0.01 else 0.99, 0.99 if prob < 0.99 else 0.01):
        threshold.set_value(value).run()
        assert not at.exception, at.exception
        call = "fake" if prob >= value else "real"
        assert any(
            c.value.startswith(f"At the sidebar's threshold {value:.2f} the call would be '{call}'")
            for c in at.caption
        )
        assert at.metric[0].value == "Unsure"  # the decision keeps the checkpoint's own checks


def _sidebar_script() -> None:
    import streamlit as st

    from forensics.ui.common import CHECKPOINT_KEY, draw_sidebar

    draw_sidebar()
    st.write(f"checkpoint={st.session_state[CHECKPOINT_KEY]}")


def test_sidebar_offers_every_shipped_checkpoint_and_a_folder_of_ones_own(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forensics.checkpoint import DEFAULT_CHECKPOINT, shipped_checkpoints

    monkeypatch.delenv("FORENSICS_CHECKPOINT", raising=False)
    at = AppTest.from_function(_sidebar_script, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    picker = at.sidebar.selectbox[0]
    shipped = [path.name for path in shipped_checkpoints()]
    assert shipped[0] == DEFAULT_CHECKPOINT.name
    assert picker.options == [AUTOMATIC, *shipped, "Another folder…"]
    assert picker.value == AUTOMATIC  # the model chosen per image is the default
    assert at.markdown[-1].value == "checkpoint=auto"
    picker.set_value(DEFAULT_CHECKPOINT.name).run()
    assert at.markdown[-1].value == f"checkpoint={DEFAULT_CHECKPOINT}"
    assert not at.sidebar.text_input or all(
        t.label != "Checkpoint directory" for t in at.sidebar.text_input
    )

    picker.set_value("Another folder…").run()
    folder = next(t for t in at.sidebar.text_input if t.label == "Checkpoint directory")
    folder.set_value(str(tiny_checkpoint)).run()
    assert not at.exception, at.exception
    assert at.markdown[-1].value == f"checkpoint={tiny_checkpoint}"


def test_checkpoint_from_the_environment_is_preselected(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(tiny_checkpoint))
    at = AppTest.from_function(_sidebar_script, default_timeout=TIMEOUT).run()
    assert at.sidebar.selectbox[0].value == "Another folder…"
    assert at.markdown[-1].value == f"checkpoint={tiny_checkpoint}"


def test_a_shipped_checkpoint_named_in_the_environment_is_selected_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from forensics.checkpoint import DEFAULT_CHECKPOINT

    monkeypatch.chdir(DEFAULT_CHECKPOINT.parent.parent)
    monkeypatch.setenv("FORENSICS_CHECKPOINT", "checkpoints/default/")  # relative, as typed
    at = AppTest.from_function(_sidebar_script, default_timeout=TIMEOUT).run()
    assert at.sidebar.selectbox[0].value == DEFAULT_CHECKPOINT.name
    assert at.markdown[-1].value == f"checkpoint={DEFAULT_CHECKPOINT}"


def test_upload_limit_matches_the_library_limit() -> None:
    import tomllib

    from forensics.images import MAX_BYTES

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    # The browser refuses bigger files with Streamlit's own message before they are sent.
    assert config["server"]["maxUploadSize"] * 2**20 == MAX_BYTES


def test_upload_over_the_pixel_limit_is_refused_with_a_message(app: AppTest) -> None:
    from tests.hostile import declared_png

    at = upload(app, "huge.png", declared_png(9000, 6000))
    assert not at.exception, at.exception
    assert len(at.error) == 1 and not at.metric
    assert "Cannot read huge.png" in at.error[0].value
    assert "9000x6000 = 54.0 megapixels, over the 50 MP limit" in at.error[0].value


def test_a_patch_model_shows_its_patch_map_and_opens_the_cam_of_any_patch(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    meta = json.loads((tiny_checkpoint / "model.json").read_text())
    meta["patches"] = {"size": 16, "max_patches": 16}
    (tiny_checkpoint / "model.json").write_text(json.dumps(meta))
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(tiny_checkpoint))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at = upload(at, "photo.png", image_bytes(make_image(9, size=64), "PNG"))
    assert not at.exception, at.exception
    captions = image_captions(at)
    assert any("generated texture: 16 native-resolution patches (4 x 4)" in c for c in captions)
    chooser = next(s for s in at.selectbox if s.label.startswith("Open the CAM of a patch"))
    assert len(chooser.options) == 16
    first = chooser.value
    assert any(f"Patch x {first[0]}-{first[2]}, y {first[1]}-{first[3]}" in c for c in captions)
    # The patches are offered most generated-looking first; the CAM follows the choice.
    index = 15 if chooser.index != 15 else 0
    chooser.select_index(index)
    at.run()
    assert not at.exception, at.exception
    box = next(s for s in at.selectbox if s.label.startswith("Open the CAM")).value
    assert box != first
    assert any(f"Patch x {box[0]}-{box[2]}, y {box[1]}-{box[3]}" in c for c in image_captions(at))


def test_try_a_perturbation_shows_the_changed_file_beside_the_original(app: AppTest) -> None:
    at = upload(app, "sample.png", image_bytes(make_image(5, size=32), "PNG"))
    assert not [s for s in at.slider if s.label == "JPEG quality"]  # off until asked for
    at.toggle[0].set_value(True).run()
    assert not at.exception, at.exception
    assert at.toggle[0].label == "Try a perturbation"
    quality = next(s for s in at.slider if s.label == "JPEG quality")
    assert quality.value == 70
    titles = [m.label for m in at.metric]
    assert "As uploaded" in titles and "JPEG quality 70" in titles
    assert any(c.value.startswith("Under JPEG quality 70 the decision ") for c in at.caption)
    captions = image_captions(at)
    assert any(c.startswith("JPEG quality 70: gradcam") for c in captions), captions
    quality.set_value(20).run()
    assert not at.exception, at.exception
    changed = next(m for m in at.metric if m.label == "JPEG quality 20")
    assert changed.delta.startswith("P(fake) = ")
    next(s for s in at.selectbox if s.label == "Perturbation").set_value("blur").run()
    assert next(s for s in at.slider if s.label == "blur sigma (px)").value == 1.0
    assert any(m.label == "blur sigma 1 px" for m in at.metric)


# ---- the file's own evidence in the decision card ------------------------------------------

MIME = {".png": "image/png", ".jpg": "image/jpeg"}


def test_classify_decides_each_file_by_its_evidence_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's six files, uploaded together with "Automatic": each decision card shows what
    the library decides, what decided it (a credential's signer in its first line) and the
    model's own score beneath; with the sidebar's switch off, unsigned metadata decides
    nothing."""
    from forensics.decision import predict as decide
    from tests.evidence_files import DECISION_FILES

    monkeypatch.setenv("FORENSICS_CHECKPOINT", "auto")
    files = [(name, make(), MIME[Path(name).suffix]) for name, (make, _, _) in
             DECISION_FILES.items()]  # fmt: skip
    auto = load_detector("auto")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    for trust_unsigned in (True, False):
        at.sidebar.toggle[0].set_value(trust_unsigned)
        at.file_uploader[0].set_value(files)
        at.run()
        assert not at.exception, at.exception
        cards = [m for m in at.metric if m.label == "Decision"]
        assert len(cards) == len(files)
        for card, (name, data, _) in zip(cards, files, strict=True):
            expected = decide(auto, data, trust_unsigned_metadata=trust_unsigned)
            assert card.value == expected.decision_name, name
            if expected.decided_by == "credential":
                assert card.delta == "by its signed credential", name
            elif expected.decided_by == "metadata":
                assert card.delta == "by its metadata", name
        reasons = " ".join(m.value for m in at.markdown)
        assert "Test Generator Signer" in reasons  # the signer, in the card's first lines
        assert ("anyone could have written it" in reasons) == trust_unsigned
        own = [c.value for c in at.caption if c.value.startswith("Decided by the file's")]
        assert len(own) == (3 if not trust_unsigned else 4)  # the model's score kept beside
    names = [c.value for c in [m for m in at.metric if m.label == "Decision"]]
    assert names[:3] == ["AI-generated", "Partly AI-generated", "Real photograph"]
