"""The on-disk activation cache: a folder of safetensors shards and a `manifest.json`.

Layout of a cache folder (written by `interp.capture.run.capture_to_disk`):

    manifest.json            model, hooks, dtype, ctx_len, token count, shard list, config
    cfg.json                 the CaptureConfig that wrote it (so the run can be repeated)
    metrics.json             tokens/s of the last capture session
    shard_00000.safetensors  "tokens" [n_ctx, ctx_len] int64 and, per hook name,
    shard_00001.safetensors  activations [n_ctx, ctx_len, *shape] in the model's dtype
    ...

Shards hold contexts in document order. Every file is written to a temporary name and moved
into place with `os.replace`, so a shard or manifest is either complete or absent. Each shard's
sha256 is in the manifest and is checked whenever the shard is read. A manifest or shard that is
unreadable, of the wrong shape or inconsistent is refused with a `CacheError` naming the file.

While a capture writes the folder it holds an exclusive `flock` on `.capture.lock` in it
(`interp.capture.run`), so a second capture into the same folder is refused.
"""

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.capture.core import Rows, rebatch, to_rows
from interp.config import TextSource
from interp.errors import CacheError
from sae.fsutil import json_kind, write_bytes_atomically

FORMAT = "interp-activations"
VERSION = 1
MANIFEST = "manifest.json"
TOKENS_KEY = "tokens"
LOCK = ".capture.lock"


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def write_file(path: Path, data: bytes) -> None:
    """`write_bytes_atomically` (no temporary file is left on an error), with an `OSError` (a
    full disk, a read-only folder) turned into a `CacheError` that names the file."""
    try:
        write_bytes_atomically(path, data)
    except OSError as err:
        raise CacheError(
            f"could not write {path} ({err.strerror or err}); make room or fix the folder, then "
            "run the same capture with --resume to continue"
        ) from err


def write_json(path: Path, data: Any) -> None:
    write_file(path, json.dumps(data, indent=1).encode())


def write_shard(path: Path, tensors: dict[str, Tensor]) -> str:
    """Save tensors atomically as safetensors; returns the file's sha256."""
    # Serialised in memory (peak memory is twice the shard) and written with Python's open, so
    # the file follows the umask (safetensors.save_file creates files 0600) and is hashed
    # without being read back.
    data = safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()})
    write_file(path, data)
    return hashlib.sha256(data).hexdigest()


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files left by an interrupted write."""
    for tmp in folder.glob(".*.tmp-*"):
        tmp.unlink()


def _count(least: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


def _names(v: list) -> bool:
    return bool(v) and all(isinstance(h, str) for h in v) and len(set(v)) == len(v)


def _shape(v: Any) -> bool:
    return isinstance(v, list) and all(_count(1)(n) for n in v)


def _shapes(v: Any) -> bool:
    return isinstance(v, dict) and all(_shape(shape) for shape in v.values())


def _source(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    strings = all(isinstance(v.get(k, ""), str) for k in ("dataset", "split", "text_field"))
    return strings and _count(0)(v.get("seed", 0))


_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "model": ("a string", lambda v: isinstance(v, str)),
    "hooks": ("a list of hook names", lambda v: isinstance(v, list) and _names(v)),
    "shapes": ("an object {hook: [size, ...]}", _shapes),
    "dtype": ("a string", lambda v: isinstance(v, str)),
    "ctx_len": ("an integer >= 2", _count(2)),
    "bos_token_id": ("an integer or null", lambda v: v is None or _count(0)(v)),
    "n_contexts": ("an integer >= 0", _count(0)),
    "n_tokens": ("an integer >= 0", _count(0)),
    "complete": ("true or false", lambda v: isinstance(v, bool)),
    "shard_contexts": ("an integer >= 1", _count(1)),
    "shards": ("a list", lambda v: isinstance(v, list)),
    "source": ("an object {dataset, split, text_field, seed}", _source),
    "config": ("an object", lambda v: isinstance(v, dict)),
}
"""What each manifest field must hold; `read_manifest` refuses anything else."""
_OPTIONAL = ("source",)
"""Fields that caches written before them lack (`CacheInfo.source` falls back on `config`)."""
_SHA256 = re.compile("[0-9a-f]{64}")


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest, or None."""
    if not isinstance(manifest, dict):
        return f"it holds {json_kind(manifest)}, not an object"
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        return (
            f"it is not an {FORMAT} v{VERSION} manifest (format={manifest.get('format')!r}, "
            f"version={manifest.get('version')!r})"
        )
    for key, (what, ok) in _FIELDS.items():
        if key not in manifest:
            if key in _OPTIONAL:
                continue
            return f"it has no {key!r} field"
        if not ok(manifest[key]):
            return f"{key!r} should be {what}, not {json.dumps(manifest[key])[:60]}"
    for index, entry in enumerate(manifest["shards"]):
        if problem := _entry_problem(entry, index, manifest["shard_contexts"]):
            return f"shard entry {index} {problem}"
    return _consistency_problem(manifest)


def _entry_problem(entry: Any, index: int, shard_contexts: int) -> str | None:
    if not isinstance(entry, dict):
        return f"is {json_kind(entry)}, not an object"
    if entry.get("file") != shard_name(index):
        return f"names file {entry.get('file')!r}, not {shard_name(index)!r}"
    n = entry.get("n_contexts")
    if not _count(1)(n) or n > shard_contexts:
        return f"has n_contexts {n!r}, not an integer in 1..{shard_contexts}"
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        return f"has sha256 {entry.get('sha256')!r}, not 64 hex digits"
    return None


def _consistency_problem(manifest: dict[str, Any]) -> str | None:
    listed = sum(entry["n_contexts"] for entry in manifest["shards"])
    if manifest["n_contexts"] != listed:
        return f"n_contexts is {manifest['n_contexts']}, but its shards hold {listed}"
    if manifest["n_tokens"] != listed * manifest["ctx_len"]:
        return f"n_tokens is {manifest['n_tokens']}, not n_contexts * ctx_len"
    hooks, shaped = manifest["hooks"], set(manifest["shapes"])
    if not shaped <= set(hooks) or (manifest["shards"] and shaped != set(hooks)):
        return f"its shapes are for {sorted(shaped)}, but its hooks are {hooks}"
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a cache folder, checked field by field; `CacheError` naming the file if
    there is none, or it is unreadable, of the wrong shape or inconsistent."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CacheError(
            f"no activation cache at {str(folder)!r} (no {MANIFEST}); write one with "
            f"`interp capture --out {folder}`"
        )
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as err:  # not UTF-8, not JSON, too deep
        problem: str | None = f"it is not valid JSON ({getattr(err, 'msg', err)})"
    else:
        problem = _manifest_problem(manifest)
    if problem:
        raise CacheError(
            f"{path} is corrupt: {problem}. Delete the folder and capture again (or restore "
            "the file)"
        )
    return manifest


@dataclass(frozen=True)
class CacheInfo:
    """A checked cache folder: what it holds and where its shards are."""

    path: Path
    manifest: dict[str, Any]

    @property
    def hooks(self) -> list[str]:
        return list(self.manifest["hooks"])

    @property
    def ctx_len(self) -> int:
        return int(self.manifest["ctx_len"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def bos_token_id(self) -> int | None:
        return self.manifest["bos_token_id"]

    @property
    def shards(self) -> list[dict[str, Any]]:
        return list(self.manifest["shards"])

    @property
    def source(self) -> TextSource:
        """The text the cache was captured from (dataset, split, text field, seed)."""
        cfg = self.manifest.get("source") or self.manifest.get("config") or {}
        fields = {k: cfg[k] for k in TextSource._fields if k in cfg}
        return TextSource(**fields)

    @property
    def n_contexts(self) -> int:
        return int(self.manifest["n_contexts"])

    def d(self, hook: str) -> int:
        """Width of one row of `hook`'s activations (the product of its per-token shape)."""
        return int(torch.Size(self.manifest["shapes"][hook]).numel())


def _check_expected(manifest: dict[str, Any], folder: Path, **expected: Any) -> None:
    found = {
        "model": manifest["model"],
        "hooks": manifest["hooks"],
        "ctx_len": manifest["ctx_len"],
    }
    for key, want in expected.items():
        if want is None:
            continue
        if key == "hooks":
            missing = [h for h in want if h not in found["hooks"]]
            if missing:
                raise CacheError(
                    f"cache {str(folder)!r} has no activations for {missing}; it holds "
                    f"{found['hooks']}. Capture those hooks into another folder"
                )
        elif want != found[key]:
            raise CacheError(
                f"cache {str(folder)!r} was captured with {key}={found[key]!r}, but "
                f"{key}={want!r} was asked for; capture again into another folder"
            )


def open_cache(
    folder: str | Path,
    model: str | None = None,
    hooks: Sequence[str] | None = None,
    ctx_len: int | None = None,
) -> CacheInfo:
    """Check a cache folder and describe it.

    Refused with `CacheError`: no manifest, an interrupted (incomplete) capture, a missing shard
    file, or a cache captured from another model (`model` is a spec as for `load_model`,
    compared by `interp.models.model_id`), without one of `hooks`, or with another `ctx_len`.
    Checksums are checked when shards are read.
    """
    from interp.models import model_id

    folder = Path(folder)
    manifest = read_manifest(folder)
    if not manifest["complete"]:
        raise CacheError(
            f"cache {str(folder)!r} is incomplete (the capture was interrupted after "
            f"{len(manifest['shards'])} shards); finish it with `interp capture --resume "
            f"--out {folder}` and the same options"
        )
    model = None if model is None else model_id(model)
    _check_expected(manifest, folder, model=model, hooks=hooks, ctx_len=ctx_len)
    missing = [s["file"] for s in manifest["shards"] if not (folder / s["file"]).is_file()]
    if missing:
        raise CacheError(f"cache {str(folder)!r} lacks shard files {missing}; capture it again")
    return CacheInfo(folder, manifest)


def load_shard(info: CacheInfo, index: int) -> dict[str, Tensor]:
    """One shard's tensors after checking its sha256: "tokens" and one entry per hook, each of
    the shape and dtype the manifest gives."""
    entry = info.shards[index]
    path = info.path / entry["file"]
    repair = f"delete it and run `interp capture --resume --out {info.path}` with the same options"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CacheError(f"shard {str(path)!r} is missing; {repair}") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CacheError(
            f"shard {str(path)!r} is corrupt (its sha256 differs from the manifest's); {repair}"
        )
    try:
        shard = safetensors.torch.load(data)
        problem = _shard_problem(info, shard, entry["n_contexts"])
    except (safetensors.SafetensorError, ValueError, RuntimeError, TypeError) as err:
        problem = f"it is not a readable safetensors file ({err})"
    if problem:
        raise CacheError(f"shard {str(path)!r} is corrupt: {problem}; {repair}")
    return shard


def _shard_problem(info: CacheInfo, shard: dict[str, Tensor], n_contexts: int) -> str | None:
    want = {TOKENS_KEY: [n_contexts, info.ctx_len]}
    want |= {h: [n_contexts, info.ctx_len, *info.manifest["shapes"][h]] for h in info.hooks}
    for key, shape in want.items():
        if key not in shard:
            return f"it has no {key!r} tensor"
        if list(shard[key].shape) != shape:
            return f"{key!r} has shape {list(shard[key].shape)}, not {shape}"
    dtypes = {TOKENS_KEY: "int64"} | {h: info.manifest["dtype"] for h in info.hooks}
    for key, dtype in dtypes.items():
        if str(shard[key].dtype).removeprefix("torch.") != dtype:
            return f"{key!r} is {shard[key].dtype}, not {dtype}"
    return None


def iter_shard_contexts(
    info: CacheInfo, hooks: Sequence[str] | None = None
) -> Iterator[tuple[Int[Tensor, "n_ctx ctx_len"], dict[str, Float[Tensor, "n_ctx ctx_len ..."]]]]:
    """(tokens, {hook: activations}) per shard, in document order, exactly as captured."""
    hooks = info.hooks if hooks is None else list(hooks)
    _check_expected(info.manifest, info.path, hooks=hooks)
    for index in range(len(info.shards)):
        shard = load_shard(info, index)
        yield shard[TOKENS_KEY], {h: shard[h] for h in hooks}


def _shard_order(n: int, shuffle: bool, seed: int) -> list[int]:
    if not shuffle:
        return list(range(n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def iter_cache(
    folder: str | Path | CacheInfo,
    hooks: Sequence[str] | None = None,
    batch_tokens: int = 4096,
    shuffle: bool = True,
    buffer_tokens: int | None = None,
    seed: int = 0,
    exclude_bos: bool = True,
    device: str | torch.device = "cpu",
) -> Iterator[Rows]:
    """One pass over a cache as batches `{hook: Tensor[batch_tokens, d]}`, like
    `interp.capture.activation_stream` (the `--from-cache` feed of SAE training).

    With `shuffle`, shards are read in a seeded random order and rows go through the seeded
    token-level buffer of `interp.capture.rebatch`. The last incomplete batch is dropped.
    """
    info = folder if isinstance(folder, CacheInfo) else open_cache(folder)
    hooks = info.hooks if hooks is None else list(hooks)
    _check_expected(info.manifest, info.path, hooks=hooks)
    bos = info.bos_token_id

    def chunks() -> Iterator[Rows]:
        for index in _shard_order(len(info.shards), shuffle, seed):
            shard = load_shard(info, index)
            tokens = shard[TOKENS_KEY]
            acts = {h: shard[h].to(device) for h in hooks}
            yield to_rows(tokens, acts, bos, exclude_bos)

    return rebatch(chunks(), batch_tokens, shuffle, buffer_tokens, seed)
