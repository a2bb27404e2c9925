"""Atomic file writes: write to a temporary file in the same folder, then rename into place, so a
crash (even kill -9) leaves either the old file or the new one, never half of one. Also the
file digest that readers use to check that what they read is what was written."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

# Read once at import (os.umask can only be read by setting it): new files get 0666 & ~umask.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)`, then rename the temporary file to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder: rename is atomic only within a filesystem.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        # Some writers (safetensors) create their file 0600 whatever the umask.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
