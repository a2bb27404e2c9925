"""Detector and explanations: verdicts from every kind of input, batches, every CAM method on
every architecture, hooks released, thread safety, overlays, and run_evaluation."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import image_bytes, make_image
from PIL import Image

from forensics import Detector, Explanation, ImageLoadError, Verdict, load_detector
from forensics.checkpoint import save_checkpoint
from forensics.evaluation import run_evaluation
from forensics.explain import CAM_METHODS, SLOW_METHODS, TARGET_INDEPENDENT_METHODS, overlay_heatmap
from forensics.measure import rss_mb
from forensics.models import build_model
from forensics.perturb import STABILITY_PERTURBATIONS
from forensics.scan import build_manifest

INPUT_SIZE = 32
ARCH_CONFIGS = {
    "resnet18": {"architecture": "resnet18", "stem": "compact", "layer4_stride": 1},
    "resnet50": {"architecture": "resnet50"},
    "simple_cnn": {"architecture": "simple_cnn"},
}
TARGETS = ("predicted", "fake", "real")


def _make_checkpoint(directory: Path, architecture: str, *, threshold: float = 0.5) -> Path:
    config = ARCH_CONFIGS[architecture]
    torch.manual_seed(0)
    model = build_model(
        architecture,
        stem=config.get("stem", "imagenet"),
        layer4_stride=config.get("layer4_stride", 2),
    )
    # One pass in train mode gives BatchNorm non-trivial statistics, like a trained model.
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, INPUT_SIZE, INPUT_SIZE))
    meta = {
        **config,
        "threshold": threshold,
        "data": {"input_size": INPUT_SIZE, "resize": INPUT_SIZE},
    }
    return save_checkpoint(directory, model.eval(), meta)


@pytest.fixture(scope="module")
def detectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Detector]:
    root = tmp_path_factory.mktemp("detectors")
    return {arch: load_detector(_make_checkpoint(root / arch, arch)) for arch in ARCH_CONFIGS}


@pytest.fixture
def detector(tiny_checkpoint: Path) -> Detector:
    return load_detector(tiny_checkpoint)


def _images(n: int, size: int = 40) -> list[Image.Image]:
    return [make_image(100 + i, size=size, fake=i % 2 == 1) for i in range(n)]


def _hook_count(model: torch.nn.Module) -> int:
    count = 0
    for module in model.modules():
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
            "_forward_pre_hooks_with_kwargs",
        ):
            count += len(getattr(module, name, {}) or {})
    for tensor in [*model.parameters(), *model.buffers()]:
        count += len(tensor._backward_hooks or {})
        count += len(getattr(tensor, "_post_accumulate_grad_hooks", None) or {})
    from torch.nn.modules import module as module_mod

    for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        count += len(getattr(module_mod, name, {}) or {})
    return count


def _check_explanation(explanation: Explanation, method: str, target: str) -> None:
    assert isinstance(explanation, Explanation)
    assert explanation.method == method
    heatmap = explanation.heatmap
    assert heatmap.dtype == np.float32
    assert heatmap.shape == (INPUT_SIZE, INPUT_SIZE)
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert explanation.view.dtype == np.uint8
    assert explanation.view.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert explanation.overlay.dtype == np.uint8
    assert explanation.overlay.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    verdict = explanation.verdict
    assert verdict.label in ("real", "fake")
    expected_target = verdict.label if target == "predicted" else target
    assert explanation.target == expected_target


# ------------------------------------------------------------------------------- verdicts


def test_predict_every_input_kind(detector: Detector, tmp_path: Path) -> None:
    image = make_image(7, size=48)
    path = tmp_path / "image.png"
    image.save(path)
    data = path.read_bytes()
    sources = {
        "path": path,
        "str": str(path),
        "bytes": data,
        "bytearray": bytearray(data),
        "file-like": io.BytesIO(data),
        "open file": path.open("rb"),
        "PIL": image,
    }
    verdicts = {name: detector.predict(source) for name, source in sources.items()}
    sources["open file"].close()
    reference = verdicts["path"]
    for name, verdict in verdicts.items():
        assert isinstance(verdict, Verdict), name
        assert 0.0 <= verdict.prob_fake <= 1.0
        assert verdict.threshold == 0.5
        assert verdict.label == ("fake" if verdict.prob_fake >= verdict.threshold else "real")
        # A PNG is lossless: every route sees the same pixels.
        assert verdict.prob_fake == pytest.approx(reference.prob_fake, abs=1e-6), name
    record = reference.to_dict()
    assert json.loads(json.dumps(record)) == record  # plain JSON, as the CLI prints it
    assert {k: record[k] for k in ("label", "prob_fake", "threshold", "checkpoint")} == {
        "label": reference.label,
        "prob_fake": reference.prob_fake,
        "threshold": 0.5,
        "checkpoint": detector.name,
    }
    assert record["decision"] in ("real", "fake", "unsure") and isinstance(record["reasons"], list)
    assert 0.5 <= reference.confidence <= 1.0


def test_predict_jpeg_bytes_and_non_rgb_modes_as_their_pixels_in_rgb(detector: Detector) -> None:
    """Each input predicts exactly as the RGB image of the same pixels, made here independently:
    greyscale copied to three channels, palette colours looked up, JPEG decoded, and a
    half-transparent RGBA composited over white (alpha rises from 0 to 255 across the image)."""
    image = make_image(8)
    rgb = np.asarray(image)
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]), (rgb.shape[0], 1)).astype(np.uint8)
    a = alpha[..., None].astype(float) / 255
    grey, palette, jpeg = image.convert("L"), image.convert("P"), image_bytes(image, "JPEG")
    cases = {
        "greyscale": (grey, np.repeat(np.asarray(grey)[..., None], 3, axis=2)),
        "palette": (palette, np.asarray(palette.getpalette()).reshape(-1, 3)[np.asarray(palette)]),
        "JPEG": (jpeg, np.asarray(Image.open(io.BytesIO(jpeg)))),
        "opaque RGBA": (image.convert("RGBA"), rgb),
        "RGBA": (
            Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
            np.round(rgb * a + 255 * (1 - a)),
        ),
    }
    original = detector.predict(image).prob_fake
    for name, (source, pixels) in cases.items():
        expected = detector.predict(Image.fromarray(pixels.astype(np.uint8), "RGB"))
        verdict = detector.predict(source)
        assert verdict.prob_fake == pytest.approx(expected.prob_fake, abs=1e-6), name
        assert verdict.label == expected.label, name
        if name in ("greyscale", "RGBA"):  # the pixels differ enough for the model to tell
            assert abs(verdict.prob_fake - original) > 1e-3, name


def test_predict_matches_the_model_on_the_transformed_tensor(detector: Detector) -> None:
    image = make_image(9)
    tensor = detector.transform(image).unsqueeze(0)
    assert tensor.shape == (1, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        probs = torch.softmax(detector.model(tensor), dim=1)[0]
    assert detector.predict(image).prob_fake == pytest.approx(float(probs[1]), abs=1e-6)


@pytest.mark.parametrize(("threshold", "label"), [(0.0, "fake"), (1.0, "real")])
def test_threshold_from_the_checkpoint_decides_the_label(
    tmp_path: Path, threshold: float, label: str
) -> None:
    detector = load_detector(_make_checkpoint(tmp_path / "c", "simple_cnn", threshold=threshold))
    assert detector.threshold == threshold
    for verdict in detector.predict_batch(_images(4)):
        assert verdict.threshold == threshold
        assert verdict.label == label
        assert verdict.label == ("fake" if verdict.prob_fake >= threshold else "real")


@pytest.mark.parametrize("batch_size", [1, 2, 3, 32])
def test_predict_batch_equals_single_predictions(detector: Detector, batch_size: int) -> None:
    images = _images(5)
    singles = [detector.predict(image) for image in images]
    seen: list[tuple[int, int]] = []
    shapes: list[int] = []
    original = detector.score_pixels

    def spy(batch: torch.Tensor):
        shapes.append(batch.shape[0])
        return original(batch)

    detector.score_pixels = spy  # type: ignore[method-assign]
    try:
        batch = detector.predict_batch(
            images, batch_size=batch_size, progress=lambda d, t: seen.append((d, t))
        )
    finally:
        del detector.score_pixels
    views = 1 + len(STABILITY_PERTURBATIONS)  # each image and its perturbed copies
    assert len(batch) == len(images)
    for single, batched in zip(singles, batch, strict=True):
        assert batched.prob_fake == pytest.approx(single.prob_fake, abs=1e-5)
        assert batched.label == single.label
    assert all(n <= batch_size * views for n in shapes)
    assert sum(shapes) == len(images) * views
    assert len(shapes) == -(-len(images) // batch_size)
    assert [d for d, _ in seen] == list(np.cumsum(shapes) // views)
    assert all(t == len(images) for _, t in seen)


def test_predict_batch_empty_and_bad_batch_size(detector: Detector) -> None:
    assert detector.predict_batch([]) == []
    with pytest.raises(ValueError, match="batch_size"):
        detector.predict_batch(_images(1), batch_size=0)


def _bad_inputs(tmp_path: Path) -> dict[str, object]:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    png = image_bytes(make_image(1), "PNG")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    return {
        "text renamed .jpg": text,
        "missing file": tmp_path / "missing.png",
        "folder": folder,
        "empty bytes": b"",
        "random bytes": bytes(range(256)) * 4,
        "truncated png": png[: len(png) // 2],
        "text file-like": io.StringIO("hello"),
        "number": 42,
    }


def test_bad_input_raises_image_load_error(detector: Detector, tmp_path: Path) -> None:
    for name, source in _bad_inputs(tmp_path).items():
        with pytest.raises(ImageLoadError) as info:
            detector.predict(source)
        assert str(info.value), name
        assert isinstance(info.value, ValueError)
    with pytest.raises(ImageLoadError):
        detector.predict_batch([make_image(1), b"garbage"])
    with pytest.raises(ImageLoadError):
        detector.explain(b"garbage")


# ------------------------------------------------------------------------------- explanations


@pytest.mark.parametrize("method", list(CAM_METHODS))
@pytest.mark.parametrize("architecture", list(ARCH_CONFIGS))
def test_every_method_on_every_architecture(
    detectors: dict[str, Detector], architecture: str, method: str
) -> None:
    detector = detectors[architecture]
    image = make_image(21, size=40, fake=True)
    before = detector.predict(image)
    hooks_before = _hook_count(detector.model)
    modules_before = [id(m) for m in detector.model.modules()]
    # The slow methods run one pass per channel: on the ResNets one explicit target is enough to
    # cover them (target resolution is method-independent and covered by the fast methods).
    targets = TARGETS if method not in SLOW_METHODS or architecture == "simple_cnn" else ("real",)
    heatmaps = {}
    for target in targets:
        explanation = detector.explain(image, method=method, target=target, batch_size=128)
        _check_explanation(explanation, method, target)
        assert explanation.verdict == before
        heatmaps[target] = explanation.heatmap
    if method in TARGET_INDEPENDENT_METHODS:
        np.testing.assert_allclose(heatmaps["fake"], heatmaps["real"], atol=1e-5)
    if "predicted" in heatmaps:
        np.testing.assert_allclose(heatmaps["predicted"], heatmaps[before.label], atol=1e-5)
    # No hooks left behind, the model structure is restored and its verdicts are unchanged.
    assert _hook_count(detector.model) == hooks_before
    assert [id(m) for m in detector.model.modules()] == modules_before
    assert not detector.model.training
    assert all(p.grad is None for p in detector.model.parameters()), "gradients left behind"
    assert detector.predict(image).prob_fake == pytest.approx(before.prob_fake, abs=1e-6)


def test_gradcam_heatmap_depends_on_the_target(detectors: dict[str, Detector]) -> None:
    detector = detectors["resnet18"]
    differs = 0
    for seed in range(4):
        image = make_image(300 + seed, fake=seed % 2 == 0)
        fake = detector.explain(image, method="gradcam", target="fake").heatmap
        real = detector.explain(image, method="gradcam", target="real").heatmap
        differs += not np.allclose(fake, real, atol=1e-4)
    assert differs >= 1


def test_explain_shows_the_view_the_model_saw(detector: Detector) -> None:
    image = make_image(31, size=64)
    explanation = detector.explain(image)
    # The 64 px image is resized to the checkpoint's 32 px input: the view is that, not the
    # original.
    assert explanation.view.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    resized = np.asarray(image.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR), dtype=float)
    assert np.abs(explanation.view.astype(float) - resized).mean() < 8
    assert explanation.verdict == detector.predict(image)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_heatmap_is_not_constant_for_a_resnet_with_a_spatial_map(
    detector: Detector, method: str
) -> None:
    spreads = [
        float(
            np.ptp(detector.explain(make_image(s, fake=True), method=method, target="fake").heatmap)
        )
        for s in range(3)
    ]
    assert max(spreads) > 0


def test_unknown_method_and_target_raise(detector: Detector) -> None:
    image = make_image(1)
    with pytest.raises(ValueError) as info:
        detector.explain(image, method="magiccam")
    assert all(name in str(info.value) for name in CAM_METHODS)
    with pytest.raises(ValueError) as info:
        detector.explain(image, target="both")
    assert all(name in str(info.value) for name in TARGETS)
    with pytest.raises(ValueError, match="opacity"):
        detector.explain(image, opacity=2.0)


def test_explain_does_not_leave_hooks_or_grad_mode(detector: Detector) -> None:
    before = _hook_count(detector.model)
    for method in CAM_METHODS:
        if method in SLOW_METHODS:
            continue
        detector.explain(make_image(2), method=method)
        assert _hook_count(detector.model) == before, method
    assert torch.is_grad_enabled()
    with torch.inference_mode():
        # The caller's inference mode must not break CAM (it needs gradients).
        explanation = detector.explain(make_image(3), method="gradcam")
    assert explanation.heatmap.shape == (INPUT_SIZE, INPUT_SIZE)
    assert _hook_count(detector.model) == before


def test_explain_failure_releases_hooks(
    detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _hook_count(detector.model)
    import pytorch_grad_cam.base_cam as base_cam

    def broken(self, *args, **kwargs):
        raise RuntimeError("simulated failure inside the CAM")

    monkeypatch.setattr(base_cam.BaseCAM, "forward", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        detector.explain(make_image(4), method="gradcam")
    monkeypatch.undo()
    assert _hook_count(detector.model) == before
    assert all(p.grad is None for p in detector.model.parameters())
    # The detector still works afterwards (its lock was released).
    assert detector.explain(make_image(4)).heatmap.shape == (INPUT_SIZE, INPUT_SIZE)


# ------------------------------------------------------------------------------- threads


def test_concurrent_predict_and_explain_match_single_threaded(detector: Detector) -> None:
    jobs = [
        ("explain", "gradcam", "predicted"),
        ("predict", None, None),
        ("explain", "gradcam++", "fake"),
        ("explain", "layercam", "real"),
        ("predict", None, None),
        ("explain", "eigencam", "predicted"),
        ("explain", "hirescam", "fake"),
        ("explain", "fullgrad", "real"),
    ]
    images = [make_image(500 + i, fake=i % 2 == 0) for i in range(len(jobs))]
    repeats = 3

    def run(i: int):
        kind, method, target = jobs[i]
        if kind == "predict":
            return detector.predict(images[i]).prob_fake
        explanation = detector.explain(images[i], method=method, target=target)
        return explanation.verdict.prob_fake, explanation.target, explanation.heatmap

    expected = [run(i) for i in range(len(jobs))]
    results: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def worker(i: int) -> None:
        try:
            start.wait(timeout=30)
            for r in range(repeats):
                results[(i, r)] = run(i)
        except BaseException as exc:  # reported below, with the thread's job
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "deadlock: threads still running"
    assert not errors, errors
    for i, want in enumerate(expected):
        for r in range(repeats):
            got = results[(i, r)]
            if jobs[i][0] == "predict":
                assert got == pytest.approx(want, abs=1e-6)
            else:
                assert got[0] == pytest.approx(want[0], abs=1e-6)
                assert got[1] == want[1]
                np.testing.assert_allclose(got[2], want[2], atol=1e-4, err_msg=str(jobs[i]))


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_two_hundred_concurrent_calls_leave_no_hooks_and_no_memory_behind(
    detector: Detector,
) -> None:
    # 8 threads x 25 calls: plain predictions interleaved with every fast CAM method, so a
    # prediction often runs while another thread's CAM would have its hooks on the model.
    methods = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "fullgrad"]
    targets = ["predicted", "fake", "real"]
    images = [make_image(700 + i, fake=i % 2 == 0) for i in range(8)]
    expected = {i: detector.predict(images[i]).prob_fake for i in range(8)}
    hooks_before = _hook_count(detector.model)

    def worker(i: int, start: threading.Barrier, errors: list) -> None:
        try:
            start.wait(timeout=30)
            for call in range(25):
                if call % 2 == 0:
                    got = detector.predict(images[i]).prob_fake
                else:
                    method = methods[(i + call) % len(methods)]
                    target = targets[(i + call) % len(targets)]
                    got = detector.explain(
                        images[i], method=method, target=target
                    ).verdict.prob_fake
                assert got == pytest.approx(expected[i], abs=1e-6), (i, call)
        except BaseException as exc:  # reported below
            errors.append(exc)

    # One pool of 8 threads throughout, as a server keeps its workers: memory then measures
    # the detector, not the C allocator's per-thread arenas for threads that come and go.
    with ThreadPoolExecutor(max_workers=8) as pool:

        def two_hundred_calls() -> None:
            start, errors = threading.Barrier(8), []
            calls = [pool.submit(worker, i, start, errors) for i in range(8)]
            _, pending = wait(calls, timeout=300)
            assert not pending, "deadlock: calls still running"
            assert not errors, errors
            assert _hook_count(detector.model) == hooks_before
            assert all(p.grad is None for p in detector.model.parameters())

        for _ in range(2):  # the first rounds fill the allocator pools
            two_hundred_calls()
        memory_before = rss_mb() * 2**20
        for _ in range(2):
            two_hundred_calls()
    growth = rss_mb() * 2**20 - memory_before
    assert growth < 32 * 2**20, f"resident memory grew by {growth / 2**20:.0f} MB in 400 calls"


# ------------------------------------------------------------------------------- overlays


def _dark_view() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 100, size=(16, 16, 3), dtype=np.uint8)


def test_overlay_opacity_zero_is_the_view() -> None:
    view = _dark_view()
    heatmap = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    overlay = overlay_heatmap(view, heatmap, opacity=0.0)
    assert overlay.dtype == np.uint8 and overlay.shape == view.shape
    assert np.abs(overlay.astype(int) - view.astype(int)).max() <= 1


def test_overlay_opacity_one_ignores_the_view_and_half_blends() -> None:
    heatmap = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    dark, bright = _dark_view(), 255 - _dark_view()
    full_dark = overlay_heatmap(dark, heatmap, opacity=1.0)
    full_bright = overlay_heatmap(bright, heatmap, opacity=1.0)
    assert np.abs(full_dark.astype(int) - full_bright.astype(int)).max() <= 1
    half = overlay_heatmap(dark, heatmap, opacity=0.5).astype(int)
    # A blend lies between its two ends.
    low = np.minimum(dark, full_dark).astype(int) - 1
    high = np.maximum(dark, full_dark).astype(int) + 1
    assert ((half >= low) & (half <= high)).all()


@pytest.mark.parametrize("opacity", [-0.1, 1.01, 5])
def test_overlay_invalid_opacity_raises(opacity: float) -> None:
    with pytest.raises(ValueError, match="opacity"):
        overlay_heatmap(_dark_view(), np.zeros((16, 16), np.float32), opacity=opacity)


def test_overlay_size_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ"):
        overlay_heatmap(_dark_view(), np.zeros((8, 8), np.float32))


# ------------------------------------------------------------------------------- run_evaluation


def test_run_evaluation_matches_predict(tiny_dataset: Path, detector: Detector) -> None:
    manifest = build_manifest(tiny_dataset, progress=False).manifest
    calls: list[tuple[int, int]] = []
    table, metrics = run_evaluation(
        detector,
        tiny_dataset,
        manifest,
        batch_size=5,
        progress=False,
        progress_callback=lambda done, total: calls.append((done, total)),
    )
    assert len(table) == len(manifest) == 16
    assert list(table["path"]) == list(manifest["path"])
    assert list(table["label"]) == list(manifest["label"])
    assert metrics["n"] == len(table)
    assert metrics["accuracy"] == pytest.approx(table["correct"].mean())
    assert metrics["checkpoint_id"] == detector.checkpoint_id
    assert calls[-1] == (16, 16) and len(calls) == 4
    direct = detector.predict_batch([tiny_dataset / p for p in table["path"]])
    np.testing.assert_allclose(table["prob_fake"], [v.prob_fake for v in direct], atol=1e-5)
    assert list(table["predicted"]) == [v.label for v in direct]
    expected_correct = [
        v.label == ("fake" if label == 1 else "real")
        for v, label in zip(direct, table["label"], strict=True)
    ]
    assert list(table["correct"]) == expected_correct
    errors = table.loc[~table["correct"], "error"]
    assert set(errors) <= {"false_positive", "false_negative"}


def test_run_evaluation_refuses_an_empty_selection(tiny_dataset: Path, detector: Detector) -> None:
    manifest = build_manifest(tiny_dataset, progress=False).manifest
    with pytest.raises(ValueError, match="nothing to evaluate"):
        run_evaluation(detector, tiny_dataset, manifest.iloc[:0], progress=False)


def test_interrupted_ablationcam_leaves_the_model_intact(tmp_path, monkeypatch) -> None:
    """AblationCAM swaps the target layer out while it runs; an exception midway must not
    leave the shared model with the ablation layer in place."""
    import pytorch_grad_cam.ablation_cam as ablation_module

    from forensics.explain import compute_cam
    from forensics.models import build_model, get_cam_target_layer

    model = build_model("simple_cnn").eval()
    layer = get_cam_target_layer(model)

    def broken_batch(*args, **kwargs):
        raise RuntimeError("interrupted")

    original = ablation_module.AblationCAM.assemble_ablation_scores
    monkeypatch.setattr(ablation_module.AblationCAM, "assemble_ablation_scores", broken_batch)
    with pytest.raises(RuntimeError, match="interrupted"):
        compute_cam(model, layer, torch.zeros(1, 3, 32, 32), method="ablationcam", class_index=1)
    monkeypatch.setattr(ablation_module.AblationCAM, "assemble_ablation_scores", original)
    assert get_cam_target_layer(model) is layer
    assert not any(type(m).__name__ == "AblationLayer" for m in model.modules())


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
def test_explain_batch_equals_explaining_each_image(detector: Detector, method: str) -> None:
    images = _images(6)
    probs = [detector.predict(image).prob_fake for image in images]
    detector.threshold = float(np.median(probs))  # so "predicted" means both classes here
    batch = detector.explain_batch(images, method, "predicted")
    assert {e.target for e in batch} == {"fake", "real"}
    for image, explained in zip(images, batch, strict=True):
        single = detector.explain(image, method, "predicted")
        assert explained.target == single.target == explained.verdict.label
        assert explained.verdict.prob_fake == pytest.approx(single.verdict.prob_fake, abs=1e-6)
        np.testing.assert_allclose(explained.heatmap, single.heatmap, atol=1e-4)
        np.testing.assert_array_equal(explained.view, single.view)
    assert detector.explain_batch([], method) == []
    with pytest.raises(ImageLoadError):
        detector.explain_batch([images[0], b"not an image"], method)
