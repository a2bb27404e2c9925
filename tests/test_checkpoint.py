"""Checkpoints: exact round trips, float16 storage, atomic writes and a clear CheckpointError for
every way a checkpoint directory can be missing, corrupt, tampered with or incompatible."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from forensics import CheckpointError, load_detector
from forensics.atomic import write_atomic, write_text_atomic
from forensics.checkpoint import (
    METADATA_FILE,
    WEIGHTS_FILE,
    file_sha256,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from forensics.models import ARCHITECTURES, HEADS, STEMS, build_model

CONFIGS = {
    "resnet18": {
        "architecture": "resnet18",
        "head": "linear",
        "stem": "compact",
        "layer4_stride": 1,
    },
    "resnet50": {"architecture": "resnet50", "head": "mlp", "stem": "imagenet", "layer4_stride": 2},
    "simple_cnn": {"architecture": "simple_cnn", "head": "linear"},
}
DATA = {"input_size": 32, "resize": 32}


def _model(config: dict, seed: int = 0) -> nn.Module:
    """A randomly initialised model whose BatchNorm statistics are not the defaults."""
    torch.manual_seed(seed)
    model = build_model(
        config["architecture"],
        head=config.get("head", "linear"),
        stem=config.get("stem", "imagenet"),
        layer4_stride=config.get("layer4_stride", 2),
    )
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def _inputs() -> torch.Tensor:
    torch.manual_seed(42)
    return torch.randn(3, 3, 32, 32)


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(_inputs())


def _save(directory: Path, arch: str = "simple_cnn", seed: int = 0, **meta) -> Path:
    return save_checkpoint(
        directory, _model(CONFIGS[arch], seed), {**CONFIGS[arch], "data": DATA, **meta}
    )


def _edit_metadata(directory: Path, **changes) -> None:
    path = directory / METADATA_FILE
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DELETE:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


_DELETE = object()


def _replace_weights(directory: Path, state: dict[str, torch.Tensor]) -> None:
    """Write crafted weights and record their hash, as a consistent (hostile) checkpoint would."""
    save_file(state, str(directory / WEIGHTS_FILE))
    _edit_metadata(directory, weights_sha256=file_sha256(directory / WEIGHTS_FILE))


def _tmp_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def cnn_checkpoint(tmp_path: Path) -> Path:
    return _save(tmp_path / "cnn")


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_round_trip_gives_identical_logits(tmp_path: Path, arch: str) -> None:
    model = _model(CONFIGS[arch], seed=3)
    expected = _logits(model)
    directory = save_checkpoint(tmp_path / arch, model, {**CONFIGS[arch], "data": DATA})
    assert sorted(p.name for p in directory.iterdir()) == [METADATA_FILE, WEIGHTS_FILE]
    loaded, meta = load_checkpoint(directory)
    assert not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.equal(_logits(loaded), expected)
    assert meta["architecture"] == arch
    assert meta["weights_dtype"] == "float32"
    assert meta["class_names"] == ["real", "fake"]
    assert meta["threshold"] == 0.5
    assert meta["data"]["input_size"] == 32
    assert {"created", "versions", "format_version"} <= set(meta)


@pytest.mark.parametrize("arch", ["resnet18", "simple_cnn"])
def test_half_checkpoint_stores_float16_and_loads_float32(tmp_path: Path, arch: str) -> None:
    model = _model(CONFIGS[arch], seed=4)
    expected = _logits(model)
    full = save_checkpoint(tmp_path / "full", model, {**CONFIGS[arch], "data": DATA})
    half = save_checkpoint(tmp_path / "half", model, {**CONFIGS[arch], "data": DATA}, half=True)
    with safe_open(str(half / WEIGHTS_FILE), framework="pt") as f:
        dtypes = {key: f.get_tensor(key).dtype for key in f.keys()}  # noqa: SIM118
    float_dtypes = {d for k, d in dtypes.items() if not k.endswith("num_batches_tracked")}
    assert float_dtypes == {torch.float16}
    int_dtypes = {d for k, d in dtypes.items() if k.endswith("num_batches_tracked")}
    assert int_dtypes <= {torch.int64}  # integer buffers are left alone
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (full / WEIGHTS_FILE).stat().st_size
    loaded, meta = load_checkpoint(half)
    assert meta["weights_dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    torch.testing.assert_close(_logits(loaded), expected, atol=1e-2, rtol=1e-2)


def test_metadata_overrides_defaults_and_is_kept(tmp_path: Path) -> None:
    directory = _save(tmp_path / "c", threshold=0.3, metrics={"val": {"accuracy": 0.9}})
    meta = read_metadata(directory)
    assert meta["threshold"] == 0.3
    assert meta["metrics"] == {"val": {"accuracy": 0.9}}
    assert load_detector(directory).threshold == 0.3


def test_saving_again_replaces_the_weights(tmp_path: Path) -> None:
    directory = _save(tmp_path / "c", seed=1)
    first = _logits(load_checkpoint(directory)[0])
    second_model = _model(CONFIGS["simple_cnn"], seed=2)
    save_checkpoint(directory, second_model, {**CONFIGS["simple_cnn"], "data": DATA})
    reloaded = _logits(load_checkpoint(directory)[0])
    assert torch.equal(reloaded, _logits(second_model))
    assert not torch.equal(reloaded, first)
    assert _tmp_leftovers(directory) == []


def test_save_refuses_invalid_metadata_and_writes_nothing(tmp_path: Path) -> None:
    model = _model(CONFIGS["simple_cnn"])
    with pytest.raises(CheckpointError, match="architecture"):
        save_checkpoint(tmp_path / "bad", model, {"architecture": "vgg", "data": DATA})
    assert not (tmp_path / "bad" / WEIGHTS_FILE).exists()
    assert not (tmp_path / "bad" / METADATA_FILE).exists()


# ------------------------------------------------------------------------------- bad checkpoints


def _assert_one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message.strip(), message
    return message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found") as info:
        load_checkpoint(tmp_path / "nowhere")
    assert "nowhere" in _assert_one_line(info)


def test_file_instead_of_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(path)


def test_missing_metadata(cnn_checkpoint: Path) -> None:
    (cnn_checkpoint / METADATA_FILE).unlink()
    with pytest.raises(CheckpointError, match=METADATA_FILE) as info:
        load_checkpoint(cnn_checkpoint)
    _assert_one_line(info)


def test_missing_weights(cnn_checkpoint: Path) -> None:
    (cnn_checkpoint / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_checkpoint(cnn_checkpoint)
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_detector(cnn_checkpoint)


@pytest.mark.parametrize("text", ["{not json", "", "\xff\xfe", '{"architecture": "resnet18",'])
def test_invalid_json(cnn_checkpoint: Path, text: str) -> None:
    (cnn_checkpoint / METADATA_FILE).write_text(text, encoding="latin-1")
    with pytest.raises(CheckpointError, match="JSON") as info:
        load_checkpoint(cnn_checkpoint)
    _assert_one_line(info)


@pytest.mark.parametrize("payload", ["[1, 2]", '"resnet18"', "null"])
def test_metadata_must_be_an_object(cnn_checkpoint: Path, payload: str) -> None:
    (cnn_checkpoint / METADATA_FILE).write_text(payload)
    with pytest.raises(CheckpointError, match="JSON object"):
        load_checkpoint(cnn_checkpoint)


def test_implausibly_large_metadata(cnn_checkpoint: Path) -> None:
    meta = json.loads((cnn_checkpoint / METADATA_FILE).read_text())
    meta["padding"] = "x" * (6 * 1024 * 1024)
    (cnn_checkpoint / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="large"):
        load_checkpoint(cnn_checkpoint)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"architecture": "vgg16"}, ["architecture", *ARCHITECTURES]),
        ({"architecture": _DELETE}, ["architecture"]),
        ({"architecture": ["resnet18"]}, ["architecture"]),
        ({"head": "transformer"}, ["head", *HEADS]),
        ({"stem": "giant"}, ["stem", *STEMS]),
        ({"layer4_stride": 3}, ["layer4_stride"]),
        ({"layer4_stride": "1"}, ["layer4_stride"]),
        ({"threshold": 1.5}, ["threshold"]),
        ({"threshold": -0.1}, ["threshold"]),
        ({"threshold": "high"}, ["threshold"]),
        ({"threshold": None}, ["threshold"]),
        ({"class_names": ["fake", "real"]}, ["class_names"]),
        ({"data": {"input_size": 32, "resize": 32, "std": [0, 1, 1]}}, ["preprocessing", "std"]),
        ({"data": {"input_size": 32, "resize": 32, "mean": [0.5]}}, ["preprocessing"]),
        ({"data": {"input_size": 64, "resize": 32}}, ["preprocessing", "input_size"]),
        ({"data": {"input_size": 2}}, ["preprocessing"]),
        ({"data": {"input_size": 32, "resize": 10**9}}, ["preprocessing", "resize"]),
        ({"data": {"input_size": 10**9, "resize": 10**9}}, ["preprocessing", "input_size"]),
        ({"data": {"input_size": 32, "resize": 32, "std": [float("nan")] * 3}}, ["std"]),
        ({"data": {"input_size": 32, "resize": 32, "mean": [float("inf")] * 3}}, ["mean"]),
        ({"data": {"input_size": 32, "resize": 32, "interpolation": "magic"}}, ["interpolation"]),
        ({"data": {"input_size": "big"}}, ["preprocessing"]),
        ({"data": None}, ["preprocessing"]),
        ({"weights_file": "../../../etc/passwd"}, ["weights_file", "path"]),
        ({"model_card": "/etc/shadow"}, ["model_card", "path"]),
        ({"architecture": "../resnet18"}, ["architecture"]),
    ],
)
def test_bad_metadata_values(cnn_checkpoint: Path, changes: dict, words: list[str]) -> None:
    _edit_metadata(cnn_checkpoint, **changes)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(cnn_checkpoint)
    message = _assert_one_line(info)
    for word in words:
        assert word in message, message
    with pytest.raises(CheckpointError):
        load_detector(cnn_checkpoint)


def test_nan_threshold(cnn_checkpoint: Path) -> None:
    path = cnn_checkpoint / METADATA_FILE
    path.write_text(path.read_text().replace('"threshold": 0.5', '"threshold": NaN'))
    with pytest.raises(CheckpointError, match="threshold"):
        load_checkpoint(cnn_checkpoint)


def test_truncated_weights(cnn_checkpoint: Path) -> None:
    weights = cnn_checkpoint / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_checkpoint(cnn_checkpoint)
    _assert_one_line(info)


@pytest.mark.parametrize("size", [0, 7, 8, 4096])
def test_random_bytes_as_weights(cnn_checkpoint: Path, size: int) -> None:
    torch.manual_seed(size)
    junk = bytes(torch.randint(0, 256, (size,), dtype=torch.uint8).tolist())
    (cnn_checkpoint / WEIGHTS_FILE).write_bytes(junk)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(cnn_checkpoint)


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    directory = _save(tmp_path / "c", "simple_cnn")
    _edit_metadata(directory, **CONFIGS["resnet18"])
    with pytest.raises(CheckpointError, match="do not match architecture 'resnet18'") as info:
        load_checkpoint(directory)
    _assert_one_line(info)


@pytest.mark.parametrize("changes", [{"stem": "imagenet"}, {"stem": "cifar"}, {"head": "mlp"}])
def test_weights_of_another_variant(tmp_path: Path, changes: dict) -> None:
    """Same architecture, another stem or head: the shapes or the keys no longer fit."""
    directory = _save(tmp_path / "c", "resnet18")
    _edit_metadata(directory, **changes)
    if changes.get("stem") == "cifar":
        # compact and cifar stems have the same conv shape; only the max-pool differs.
        model, _ = load_checkpoint(directory)
        assert isinstance(model.maxpool, nn.Identity)
        return
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(directory)


def test_layer4_stride_is_rebuilt_from_metadata(tmp_path: Path) -> None:
    directory = _save(tmp_path / "c", "resnet18")
    assert load_checkpoint(directory)[0].layer4[0].conv1.stride == (1, 1)
    _edit_metadata(directory, layer4_stride=2)
    assert load_checkpoint(directory)[0].layer4[0].conv1.stride == (2, 2)


def test_weights_with_a_missing_or_extra_tensor(tmp_path: Path) -> None:
    directory = _save(tmp_path / "c")
    state = load_file(str(directory / WEIGHTS_FILE))
    missing = dict(state)
    missing.pop("classifier.4.bias")
    _replace_weights(directory, missing)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(directory)
    extra = {**state, "backdoor.weight": torch.zeros(3)}
    _replace_weights(directory, extra)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(directory)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_tensor_where_float_is_expected(cnn_checkpoint: Path, dtype: torch.dtype) -> None:
    state = load_file(str(cnn_checkpoint / WEIGHTS_FILE))
    key = "features.0.0.weight"
    state[key] = torch.ones_like(state[key]).to(dtype)
    _replace_weights(cnn_checkpoint, state)
    with pytest.raises(CheckpointError, match="dtype") as info:
        load_checkpoint(cnn_checkpoint)
    assert key in _assert_one_line(info)


def test_float64_weights_are_cast_to_float32(cnn_checkpoint: Path) -> None:
    expected = _logits(load_checkpoint(cnn_checkpoint)[0])
    state = load_file(str(cnn_checkpoint / WEIGHTS_FILE))
    state = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    _replace_weights(cnn_checkpoint, state)
    model, _ = load_checkpoint(cnn_checkpoint)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(_logits(model), expected)


def test_weights_replaced_without_their_metadata(tmp_path: Path) -> None:
    # The state an interrupted save leaves: new weights beside the old model.json.
    first = _save(tmp_path / "a", seed=0)
    second = _save(tmp_path / "b", seed=1)
    (first / WEIGHTS_FILE).write_bytes((second / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256 differs") as info:
        load_checkpoint(first)
    _assert_one_line(info)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_renamed_as_weights_is_never_unpickled(
    cnn_checkpoint: Path, tmp_path: Path, writer: str
) -> None:
    marker = tmp_path / "marker_created_by_unpickling"
    payload = {"features.0.0.weight": _Evil(marker)}
    # Sanity: this payload really does create the marker when unpickled.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()
    weights = cnn_checkpoint / WEIGHTS_FILE
    if writer == "pickle":
        weights.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, weights)
    with pytest.raises(CheckpointError):
        load_checkpoint(cnn_checkpoint)
    with pytest.raises(CheckpointError):
        load_detector(cnn_checkpoint)
    assert not marker.exists()


# ------------------------------------------------------------------------------- atomic writes


def test_no_temporary_files_after_saving(tmp_path: Path) -> None:
    directory = _save(tmp_path / "c")
    _save(tmp_path / "c", seed=5, threshold=0.4)
    assert _tmp_leftovers(directory) == []
    assert sorted(p.name for p in directory.iterdir()) == [METADATA_FILE, WEIGHTS_FILE]


def test_failed_weights_write_keeps_the_previous_checkpoint(
    cnn_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights_before = (cnn_checkpoint / WEIGHTS_FILE).read_bytes()
    meta_before = (cnn_checkpoint / METADATA_FILE).read_bytes()
    logits_before = _logits(load_checkpoint(cnn_checkpoint)[0])
    written: list[Path] = []

    def failing_save_file(state, filename, *args, **kwargs):
        written.append(Path(filename))
        Path(filename).write_bytes(b"half of a file")
        raise OSError(28, "No space left on device")

    import forensics.checkpoint

    monkeypatch.setattr(forensics.checkpoint, "save_file", failing_save_file)
    with pytest.raises(OSError, match="No space"):
        _save(cnn_checkpoint, seed=9, threshold=0.2)
    # It wrote to a temporary file beside the target, never to the target itself.
    assert written and written[0].parent == cnn_checkpoint
    assert written[0].name != WEIGHTS_FILE
    assert (cnn_checkpoint / WEIGHTS_FILE).read_bytes() == weights_before
    assert (cnn_checkpoint / METADATA_FILE).read_bytes() == meta_before
    assert _tmp_leftovers(cnn_checkpoint) == []
    monkeypatch.undo()
    assert torch.equal(_logits(load_checkpoint(cnn_checkpoint)[0]), logits_before)


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_write_atomic_cleans_up_and_keeps_the_old_file(tmp_path: Path, error) -> None:
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "old")

    def write(tmp: Path) -> None:
        tmp.write_text("partial")
        raise error

    with pytest.raises(type(error)):
        write_atomic(target, write)
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_write_atomic_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.bin"
    write_atomic(target, lambda tmp: tmp.write_bytes(b"1"))
    write_atomic(target, lambda tmp: tmp.write_bytes(b"22"))
    assert target.read_bytes() == b"22"
    assert [p.name for p in target.parent.iterdir()] == ["c.bin"]


# ------------------------------------------------------------------ found by mutation testing

_VALID = {"architecture": "simple_cnn", "data": {"input_size": 32, "resize": 32}}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"threshold": 0.0}, {"threshold": 1.0}, {"threshold": 1},
        {"layer4_stride": 1}, {"layer4_stride": 2},
        {"class_names": ["real", "fake"]}, {"input_filter": "npr"}, {"head": "mlp"},
        {"stem": "compact"}, {"patches": None},
        {"patches": {"size": 16, "aggregate": "top_k_mean", "k": 2}},
        {"training": {"data": {"root": "../shared/data/cifake"}}},  # a record names paths
        {"dataset": {"root": "/data/cifake"}}, {"note": "trained on 2 cores"},
    ],
)  # fmt: skip
def test_valid_metadata_at_the_edges_is_accepted(changes: dict) -> None:
    from forensics.checkpoint import validate_metadata

    validate_metadata({**_VALID, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_filter": "sobel"},
         "unknown input filter 'sobel'; valid: ['none', 'npr', 'highpass']"),
        ({"patches": {"size": "big"}}, "invalid patch settings in checkpoint"),
        ({"stem": "giant"}, "unknown stem 'giant'; valid: ['imagenet', 'cifar', 'compact']"),
        ({"layer4_stride": 0}, "layer4_stride must be 1 or 2, got 0"),
        ({"threshold": 1.0001}, "threshold must be a number in [0, 1], got 1.0001"),
        ({"data": [32]},
         "invalid preprocessing settings in checkpoint: 'data' must be a JSON object"),
        ({"head": "a\\b"}, "unknown head 'a\\\\b'"),
        ({"note": "C:\\models\\x"}, "model.json field 'note' holds a path"),
        ({"note": "~root"}, "model.json field 'note' holds a path"),
        ({"note": "..secret"}, "model.json field 'note' holds a path"),
        ({"note": "dir/file"}, "model.json field 'note' holds a path"),
    ],
)  # fmt: skip
def test_invalid_metadata_is_refused_with_its_reason(changes: dict, message: str) -> None:
    from forensics.checkpoint import validate_metadata

    with pytest.raises(CheckpointError) as info:
        validate_metadata({**_VALID, **changes})
    assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(CheckpointError) as info:
        validate_metadata([_VALID])
    assert str(info.value) == "checkpoint metadata must be a JSON object"
