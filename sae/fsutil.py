"""Atomic writes: a folder or file appears complete or not at all, never half-written."""

import contextlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_dir_atomically(folder: Path, write: Callable[[Path], None], overwrite: bool) -> Path:
    """Call write(tmp) on a fresh temporary folder beside `folder`, then rename it to `folder`.

    An existing `folder` raises FileExistsError unless `overwrite`; then it is moved aside, the
    new folder renamed in, and the old one deleted. On any error the temporary folder is removed
    and `folder` is left as it was.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} already exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        os.chmod(tmp, 0o755)
        write(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a hidden temporary file beside it and `os.replace`, so that
    readers see the old file or the new one, never a part. The temporary file is removed on any
    error (a full disk, an interrupt)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomically(path: Path, text: str) -> None:
    """`write_bytes_atomically` of UTF-8 text."""
    write_bytes_atomically(path, text.encode())


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def dump_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN and inf written as null, which every parser accepts), indented, written
    atomically."""
    text = json.dumps(_finite_or_none(data), indent=2, allow_nan=False) + "\n"
    write_text_atomically(path, text)
