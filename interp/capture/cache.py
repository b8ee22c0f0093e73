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
sha256 is in the manifest and is checked whenever the shard is read.
"""

import hashlib
import json
from collections.abc import Iterator, Sequence
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
from sae.fsutil import write_bytes_atomically

FORMAT = "interp-activations"
VERSION = 1
MANIFEST = "manifest.json"
TOKENS_KEY = "tokens"


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def write_shard(path: Path, tensors: dict[str, Tensor]) -> str:
    """Save tensors atomically as safetensors; returns the file's sha256."""
    # Serialised in memory (peak memory is twice the shard) and written with Python's open, so
    # the file follows the umask (safetensors.save_file creates files 0600) and is hashed
    # without being read back.
    data = safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()})
    write_bytes_atomically(path, data)
    return hashlib.sha256(data).hexdigest()


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files left by an interrupted write."""
    for tmp in folder.glob(".*.tmp-*"):
        tmp.unlink()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a cache folder; `CacheError` if there is none or it is unreadable."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CacheError(
            f"no activation cache at {str(folder)!r} (no {MANIFEST}); write one with "
            f"`interp capture --out {folder}`"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CacheError(f"{path} is not valid JSON ({err.msg}); the cache is corrupt") from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CacheError(
            f"{path} is not an {FORMAT} v{VERSION} manifest (format={manifest.get('format')!r}, "
            f"version={manifest.get('version')!r})"
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
    """One shard's tensors after checking its sha256: "tokens" and one entry per hook."""
    entry = info.shards[index]
    path = info.path / entry["file"]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CacheError(
            f"shard {str(path)!r} is corrupt (its sha256 differs from the manifest's); delete "
            f"it and run `interp capture --resume --out {info.path}` with the same options"
        )
    return safetensors.torch.load(data)


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
