"""`python -m forensics.datasets`: a fake kagglehub serves tiny synthetic copies of the Kaggle
layouts, so nothing here touches the network."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import make_image

from forensics import datasets
from forensics.datasets import DATASETS, find_layout_root, get_dataset_spec, main
from forensics.scan import build_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Folder (relative to the download) -> (split discovery should report, label 0/1), as Kaggle
# publishes each dataset.
KAGGLE_LAYOUTS = {
    "cifake": {
        "train/REAL": ("train", 0),
        "train/FAKE": ("train", 1),
        "test/REAL": ("test", 0),
        "test/FAKE": ("test", 1),
    },
    "faces140k": {
        f"real_vs_fake/real-vs-fake/{folder}/{label}": (split, value)
        for folder, split in (("train", "train"), ("valid", "val"), ("test", "test"))
        for label, value in (("real", 0), ("fake", 1))
    },
}


def write_kaggle_download(root: Path, name: str, *, per_folder: int = 2) -> dict[str, int]:
    """A tiny copy of dataset `name` as kagglehub unpacks it; returns sha256 -> label."""
    labels = {}
    seed = 100
    for folder, (_, value) in KAGGLE_LAYOUTS[name].items():
        (root / folder).mkdir(parents=True)
        for i in range(per_folder):
            seed += 1
            image = make_image(seed, size=32, fake=value == 1)
            # Both formats, and file names that say nothing about the class: labels must come
            # from the folders.
            path = root / folder / (f"{seed:05d}.png" if i % 2 else f"{seed:05d}.jpg")
            image.save(path)
            labels[hashlib.sha256(path.read_bytes()).hexdigest()] = value
    if name == "faces140k":  # the Kaggle download also carries CSV indexes beside the images
        (root / "train.csv").write_text("id,label\n")
    return labels


def install_fake_kagglehub(
    monkeypatch: pytest.MonkeyPatch, *, returns: Path | None = None, raises: Exception | None = None
) -> list[str]:
    """Put a stand-in `kagglehub` module in sys.modules; returns the list of handles asked for."""
    calls: list[str] = []

    def dataset_download(handle: str, path: str | None = None, *, force_download: bool = False):
        calls.append(handle)
        if raises is not None:
            raise raises
        return str(returns)

    module = types.ModuleType("kagglehub")
    module.dataset_download = dataset_download
    monkeypatch.setitem(sys.modules, "kagglehub", module)
    return calls


def one_error_line(err: str) -> str:
    """The single message line on stderr (tqdm bars, redrawn with \\r, are ignored)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.split("\n") if line.strip() and "\r" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def leftovers(parent: Path) -> list[str]:
    """Staging folders a failed placement might have left beside the target."""
    return [p.name for p in parent.iterdir() if p.name.endswith(".partial")]


# ------------------------------------------------------------------------------- registry


def test_registry_names_handles_and_licences() -> None:
    assert DATASETS["cifake"].kaggle_handle == (
        "birdy654/cifake-real-and-ai-generated-synthetic-images"
    )
    assert DATASETS["faces140k"].kaggle_handle == "xhlulu/140k-real-and-fake-faces"
    assert "CIFAR-10" in DATASETS["cifake"].licence
    assert "Bird" in DATASETS["cifake"].citation
    assert "CC BY-NC-SA 4.0" in DATASETS["faces140k"].licence
    with pytest.raises(TypeError):
        DATASETS["other"] = DATASETS["cifake"]  # type: ignore[index]


def test_unknown_name_raises_value_error_naming_valid_ones() -> None:
    with pytest.raises(ValueError, match="cifake, faces140k"):
        get_dataset_spec("imagenet")


def test_list_shows_each_dataset_with_handle_size_and_licence(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for spec in DATASETS.values():
        assert spec.name in out
        assert spec.kaggle_handle in out
        assert spec.size in out
        assert spec.licence in out


# ------------------------------------------------------------------------------- download


@pytest.mark.parametrize("name", sorted(KAGGLE_LAYOUTS))
def test_download_places_a_layout_discovery_reads_with_the_right_labels(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cache = tmp_path / "kagglehub" / name / "versions" / "3"
    expected = write_kaggle_download(cache, name)
    calls = install_fake_kagglehub(monkeypatch, returns=cache)
    target = tmp_path / "data" / name

    assert main(["download", name, "--to", str(target)]) == 0
    out, _ = capsys.readouterr()

    assert calls == [DATASETS[name].kaggle_handle]
    manifest = build_manifest(target, progress=False).manifest
    assert dict(zip(manifest["sha256"], manifest["label"], strict=True)) == expected
    wanted = {(split, label) for split, label in KAGGLE_LAYOUTS[name].values()}
    assert set(zip(manifest["split"], manifest["label"], strict=True)) == wanted
    # The split folders sit directly under the target, whatever the nesting on Kaggle.
    assert {p.name for p in target.iterdir()} == {f.split("/")[-2] for f in KAGGLE_LAYOUTS[name]}
    assert str(target) in out
    assert f"discovery finds {len(expected)} images" in out
    assert DATASETS[name].licence in out
    assert leftovers(target.parent) == []


def test_download_prints_counts_per_split_and_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "faces140k", per_folder=3)
    install_fake_kagglehub(monkeypatch, returns=cache)
    assert main(["download", "faces140k", "--to", str(tmp_path / "faces")]) == 0
    rows = {
        line.split()[0]: line.split()[1:]
        for line in capsys.readouterr().out.splitlines()
        if line.split() and line.split()[0] in ("split", "train", "val", "test")
    }
    assert rows["split"] == ["real", "fake", "total"]
    for split in ("train", "val", "test"):
        assert rows[split] == ["3", "3", "6"]


def test_files_are_hard_links_by_default_and_copies_with_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    install_fake_kagglehub(monkeypatch, returns=cache)
    source = next((cache / "train" / "REAL").iterdir())

    assert main(["download", "cifake", "--to", str(tmp_path / "linked")]) == 0
    linked = tmp_path / "linked" / "train" / "REAL" / source.name
    assert linked.stat().st_ino == source.stat().st_ino  # no second copy on disk

    assert main(["download", "cifake", "--to", str(tmp_path / "copied"), "--copy"]) == 0
    copied = tmp_path / "copied" / "train" / "REAL" / source.name
    assert copied.stat().st_ino != source.stat().st_ino
    assert copied.read_bytes() == source.read_bytes()


def test_hard_link_refused_falls_back_to_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    install_fake_kagglehub(monkeypatch, returns=cache)

    def refuse(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    assert main(["download", "cifake", "--to", str(tmp_path / "data")]) == 0
    assert "copied from" in capsys.readouterr().out
    assert len(build_manifest(tmp_path / "data", progress=False).manifest) == 8


def test_layout_nested_one_level_deeper_is_still_found(tmp_path: Path) -> None:
    write_kaggle_download(tmp_path / "download" / "extra", "cifake")
    root = find_layout_root(tmp_path / "download", DATASETS["cifake"])
    assert root == (tmp_path / "download" / "extra").resolve()


def test_force_adds_to_a_non_empty_folder_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    install_fake_kagglehub(monkeypatch, returns=cache)
    target = tmp_path / "data"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    assert main(["download", "cifake", "--to", str(target), "--force"]) == 0
    assert (target / "notes.txt").read_text() == "mine"
    assert len(build_manifest(target, progress=False).manifest) == 8


def test_no_verify_skips_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    install_fake_kagglehub(monkeypatch, returns=cache)
    scans: list[Path] = []
    monkeypatch.setattr(
        "forensics.scan.load_or_build_manifest", lambda root, **kw: scans.append(root)
    )
    assert main(["download", "cifake", "--to", str(tmp_path / "data"), "--no-verify"]) == 0
    assert scans == []
    assert "discovery finds" not in capsys.readouterr().out


# ------------------------------------------------------------------------------- failures


def test_missing_kagglehub_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # makes `import kagglehub` fail
    target = tmp_path / "data"
    assert main(["download", "cifake", "--to", str(target)]) == 1
    assert "pip install kagglehub" in one_error_line(capsys.readouterr().err)
    assert not target.exists()


class FakeRequestsConnectionError(OSError):
    """Like requests.ConnectionError: an OSError subclass that is not the builtin one."""


class UnauthenticatedError(Exception):
    """Named like kagglehub.exceptions.UnauthenticatedError (matched by name)."""


class FakeHTTPError(OSError):
    """Like requests.HTTPError: carries the response, whose status says what went wrong."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.response = types.SimpleNamespace(status_code=status)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (ConnectionError("[Errno 111] Connection refused"), "network"),
        (FakeRequestsConnectionError("Max retries exceeded\nwith url: /api"), "network"),
        (TimeoutError("timed out"), "network"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "network"),
        (UnauthenticatedError("User is not authenticated"), "credentials"),
        (FakeHTTPError("401 Client Error.\n\nYou don't have permission", 401), "credentials"),
        (FakeHTTPError("404 Client Error", 404), "no dataset"),
        (FakeHTTPError("503 Server Error", 503), "HTTP 503"),
        (OSError(errno.ENOSPC, "No space left on device"), "KAGGLEHUB_CACHE"),
        (RuntimeError("something unexpected"), "kagglehub failed"),
    ],
)
def test_kagglehub_failures_give_one_line_and_exit_1(
    error: Exception, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    install_fake_kagglehub(monkeypatch, raises=error)
    target = tmp_path / "data"
    assert main(["download", "faces140k", "--to", str(target)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert says in line
    assert DATASETS["faces140k"].kaggle_handle in line
    assert not target.exists()


def test_non_empty_target_is_refused_before_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    calls = install_fake_kagglehub(monkeypatch, returns=cache)
    target = tmp_path / "data"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    assert main(["download", "cifake", "--to", str(target)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "not empty" in line and "--force" in line
    assert calls == []  # refused before a (possibly multi-GB) download
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"


def test_an_empty_existing_target_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    install_fake_kagglehub(monkeypatch, returns=cache)
    (tmp_path / "data").mkdir()
    assert main(["download", "cifake", "--to", str(tmp_path / "data")]) == 0
    assert len(build_manifest(tmp_path / "data", progress=False).manifest) == 8


def test_target_that_is_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    calls = install_fake_kagglehub(monkeypatch, returns=tmp_path)
    target = tmp_path / "data"
    target.write_text("a file")
    assert main(["download", "cifake", "--to", str(target), "--force"]) == 1
    assert "not a folder" in one_error_line(capsys.readouterr().err)
    assert calls == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["download", "imagenet", "--to", "x"], "cifake"),
        (["download", "cifake"], "--to"),
        (["fetch"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_1(argv: list[str], says: str, capsys) -> None:
    assert main(argv) == 1
    line = one_error_line(capsys.readouterr().err)
    assert says in line
    if "imagenet" in argv:
        assert "faces140k" in line


def test_unexpected_download_layout_is_reported_and_nothing_is_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")  # not the faces layout
    install_fake_kagglehub(monkeypatch, returns=cache)
    target = tmp_path / "data"
    assert main(["download", "faces140k", "--to", str(target)]) == 1
    assert "layout" in one_error_line(capsys.readouterr().err)
    assert not target.exists()


def test_a_download_path_that_is_not_a_folder_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    install_fake_kagglehub(monkeypatch, returns=tmp_path / "gone")
    assert main(["download", "cifake", "--to", str(tmp_path / "data")]) == 1
    assert "not a folder" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "data").exists()


def test_folders_without_readable_images_fail_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    for path in (cache / "test" / "FAKE").iterdir():
        path.write_bytes(b"not an image")  # a truncated download
    install_fake_kagglehub(monkeypatch, returns=cache)
    assert main(["download", "cifake", "--to", str(tmp_path / "data")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "fake images in test" in line


def test_a_write_failure_leaves_no_half_placed_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cache = tmp_path / "cache"
    write_kaggle_download(cache, "cifake")
    install_fake_kagglehub(monkeypatch, returns=cache)
    copied: list[Path] = []
    real_copy = shutil.copy2

    def copy_then_fill_the_disk(src, dst, **kwargs):
        if len(copied) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        copied.append(Path(dst))
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy_then_fill_the_disk)
    target = tmp_path / "data"
    assert main(["download", "cifake", "--to", str(target), "--copy"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "could not write" in line and "No space left" in line
    assert len(copied) == 3
    assert not target.exists()
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------- as a module


def test_runs_as_a_module_without_a_traceback(tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "forensics.datasets", "list"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert DATASETS["faces140k"].kaggle_handle in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "forensics.datasets", "download", "nope", "--to", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "faces140k" in one_error_line(bad.stderr)


def test_module_has_no_mutable_registry() -> None:
    assert isinstance(datasets.DATASETS, types.MappingProxyType)
