"""Atomic writes (a folder or file appears complete or not at all, never half-written), and
reads that name the file when it is not what it should be."""

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae.errors import FileFormatError


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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a hidden temporary file beside it and `os.replace`, so that
    readers see the old file or the new one, never a part. The temporary file is removed on any
    error (a full disk, an interrupt)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        # Name the file the caller asked for, not the hidden temporary one.
        named = err if err.filename != str(tmp) else type(err)(err.errno, err.strerror, str(path))
        raise oserror_with_path(named, path) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomically(path: Path, text: str) -> None:
    """`write_bytes_atomically` of UTF-8 text."""
    write_bytes_atomically(path, text.encode())


def finite_or_none(value: Any) -> Any:
    """`value` with every NaN or infinite float (in nested dicts and lists too) made None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def dump_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN and inf written as null, which every parser accepts), indented, written
    atomically."""
    text = json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n"
    write_text_atomically(path, text)


def load_json(path: Path, expect: type = dict) -> Any:
    """The JSON value in `path`, which must be an `expect` (a dict: a JSON object). Text that is
    not UTF-8, not JSON, or JSON of another shape raises FileFormatError naming the file; an
    unreadable or missing file raises OSError with its path."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode())
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError, JSONDecodeError, ...
        raise FileFormatError(path, f"not valid JSON ({err})") from err
    if not isinstance(data, expect):
        raise FileFormatError(path, f"expected a JSON {_KIND[expect]}, got {json_kind(data)}")
    return data


def read_jsonl(path: Path, error: Callable[[str], Exception]) -> list[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line of a JSON-lines file. A file that is
    not UTF-8, or a line that is not JSON, raises `error(message)` naming the file and line
    ("x.jsonl, line 2: not valid JSON (...)"); checking each value's shape is the caller's."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode().splitlines()
    except UnicodeDecodeError as err:
        raise error(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except (ValueError, RecursionError) as err:
            raise error(f"{path}, line {number}: not valid JSON ({err})") from None
    return rows


_KIND = {dict: "object", list: "array", str: "string", int: "number", float: "number"}


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("a JSON array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a JSON boolean"
    return f"a JSON {_KIND.get(type(value), type(value).__name__)}"


def oserror_with_path(err: OSError, path: Path) -> OSError:
    """`err` itself when it names a file, else an OSError of its type that names `path`
    (safetensors' errors do not)."""
    if err.filename is not None:
        return err
    if err.errno is None:
        return type(err)(f"{err}: {path}")
    return type(err)(err.errno, err.strerror or str(err), str(path))


def save_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """safetensors serialised in memory and written with Python's own file I/O, so that a full
    disk or an unwritable folder is an `OSError` with the path (safetensors' `save_file` raises
    its own SafetensorError without one)."""
    import safetensors.torch

    data = safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()}, metadata)
    try:
        Path(path).write_bytes(data)
    except OSError as err:
        raise oserror_with_path(err, Path(path)) from err
