"""`capture_to_disk(cfg)`: capture activations from a text source into a sharded cache folder.

The run is a plan of shards: shard i holds contexts [i * S, (i + 1) * S) of the packed text
stream, S = `shard_tokens // ctx_len`, each computed in forward passes of `batch_size` contexts
that start at the shard's first context. The stream is deterministic, so a resumed capture
re-reads the text, skips the contexts of shards already on disk (checked against the
manifest's sha256) and writes the rest byte for byte as an uninterrupted run would have.

Nothing is overwritten without asking: a folder that holds a cache is continued only with
`resume`, and a resume with fewer `tokens` than the cache holds is refused unless `force`. While
a capture writes its folder it holds an exclusive flock on the folder's `.capture.lock`, so two
captures never write one folder. Every input (the folder, the text source, the model, its hooks
and its maximum context) is checked before the folder is created.
"""

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from interp.capture import cache as ac
from interp.capture.config import RESUMABLE_CHANGES, CaptureConfig
from interp.capture.core import check_per_token, recording
from interp.config import config_diff
from interp.data import batched, iter_contexts
from interp.errors import CacheError, InterpError
from interp.hooks import hook_names
from sae.fsutil import sha256_file


class CaptureResult(NamedTuple):
    """What one call wrote; `tokens_per_s` counts only the shards computed in this call."""

    out: Path
    n_tokens: int
    n_shards: int
    shards_written: int
    shards_skipped: int
    seconds: float
    tokens_per_s: float
    exhausted: bool
    """True when the dataset ended before `tokens` were captured (the cache holds fewer)."""


Progress = Callable[[int, int], None]
"""progress(tokens_done, tokens_total), called after every forward pass."""


def _acquire(path: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CacheError(
                f"{str(path.parent)!r} is being written by another capture (pid {holder}); wait "
                "for it to end or stop it, or choose another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)  # its holder removed the file between our open and flock: lock the new one


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the cache folder's capture lock, or raise `CacheError` naming the holder's pid.

    An flock, not a pid file alone: the kernel releases it when its process ends, however it
    ends, so the lock file a killed capture leaves behind blocks nobody.
    """
    path = Path(folder) / ac.LOCK
    try:
        fd = _acquire(path)
    except OSError as err:
        raise CacheError(f"cannot write to {str(folder)!r} ({err.strerror or err})") from err
    try:
        with contextlib.suppress(OSError):  # the pid only names the holder in the message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still locked, so no one else holds a lock on this file
        os.close(fd)


def _check_writable(out: Path) -> None:
    """`CacheError` now if `out` cannot be created or written (probed with an empty folder in
    the nearest existing parent, removed at once), rather than after the model has loaded."""
    parent = next(p for p in (out, *out.parents) if p.exists())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".interp-probe-", dir=parent))
    except OSError as err:
        raise CacheError(
            f"cannot write --out {str(out)!r} ({err.strerror or err}: {parent}); choose a "
            "folder you can write to"
        ) from err


def _check_out(cfg: CaptureConfig) -> dict[str, Any] | None:
    """The manifest to resume from, or None for a fresh capture; errors for a bad `out`."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise CacheError(f"--out {cfg.out!r} is a file; give a folder")
    if not (out / ac.MANIFEST).is_file():
        # cfg.json and hidden temporaries are what a capture leaves before its first shard.
        foreign = [p.name for p in out.glob("*") if p.name != "cfg.json" and p.name[0] != "."]
        if foreign:
            raise CacheError(
                f"--out {cfg.out!r} is not empty and holds no activation cache "
                f"(found {sorted(foreign)[:5]}); choose an empty or new folder"
            )
        return None
    if not cfg.resume:
        raise CacheError(
            f"--out {cfg.out!r} already holds an activation cache; pass --resume to continue "
            "it or choose another folder"
        )
    manifest = ac.read_manifest(out)
    _check_resumable(cfg, manifest)
    return manifest


def _check_resumable(cfg: CaptureConfig, manifest: dict[str, Any]) -> None:
    # A field missing from an older cache's config had its default then.
    saved, asked = {**CaptureConfig().to_dict(), **manifest["config"]}, cfg.to_dict()
    allowed = RESUMABLE_CHANGES
    if saved["decode_errors"] == "strict":
        allowed += ("decode_errors",)  # see RESUMABLE_CHANGES
    changed = config_diff(saved, asked, allowed)
    if changed:
        raise CacheError(f"cannot resume {cfg.out!r} with other options ({', '.join(changed)})")
    held = manifest["n_contexts"] * manifest["ctx_len"]
    if cfg.n_contexts < manifest["n_contexts"] and not cfg.force:
        raise CacheError(
            f"--out {cfg.out!r} holds {held:,} tokens but --tokens is {cfg.tokens:,}; resuming "
            f"would delete the shards past them. Pass --force to shrink the cache, or --tokens "
            f"{held} or more to keep it"
        )


_POSITION_FIELDS = (
    "n_positions",
    "max_position_embeddings",
    "max_context_length",
    "seq_length",
    "max_sequence_length",
)
"""HF config fields that hold a model's longest context (as transformer_lens reads them; its
`max_length` is left out, as in HF configs it is a generation default)."""


def _max_positions(model: Any) -> int | None:
    """The longest context the model takes, from its HF config (None when the config gives none,
    as for ALiBi models); the bridge's `cfg.n_ctx` when there is no HF model (its 2048 fallback
    for configs without a limit would refuse contexts such models take)."""
    hf = getattr(getattr(model, "original_model", None), "config", None)
    if hf is None:
        n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None
    for name in _POSITION_FIELDS:
        value = getattr(hf, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_ctx_len(cfg: CaptureConfig, model: Any) -> None:
    most = _max_positions(model)
    if most is not None and cfg.ctx_len > most:
        raise InterpError(
            f"ctx_len={cfg.ctx_len} is longer than model {cfg.model!r} takes (at most {most} "
            f"positions); pass --ctx-len {most} or less"
        )


def _manifest(
    cfg: CaptureConfig, model: Any, hooks: list[str], shapes: dict, shards: list, complete: bool
) -> dict[str, Any]:
    from interp.models import model_id

    n_contexts = sum(s["n_contexts"] for s in shards)
    return {
        "format": ac.FORMAT,
        "version": ac.VERSION,
        "model": model_id(cfg.model),
        "hooks": hooks,
        "shapes": shapes,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "ctx_len": cfg.ctx_len,
        "bos_token_id": model.tokenizer.bos_token_id,
        "n_contexts": n_contexts,
        "n_tokens": n_contexts * cfg.ctx_len,
        "complete": complete,
        "shard_contexts": cfg.shard_contexts,
        "shards": shards,
        "source": cfg.source._asdict(),
        "config": cfg.to_dict(),
    }


def _shard_is_done(out: Path, done: dict[str, Any] | None, n_contexts: int) -> bool:
    return (
        done is not None
        and done["n_contexts"] == n_contexts
        and (out / done["file"]).is_file()
        and sha256_file(out / done["file"]) == done["sha256"]
    )


def _compute_shard(
    model: Any, contexts: torch.Tensor, hooks: list[str], batch_size: int, on_batch: Callable
) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    with recording(model, hooks) as run:
        for tokens in batched(iter(contexts), batch_size):
            acts = check_per_token(run(tokens), tokens)
            for h in hooks:
                parts[h].append(acts[h].cpu())
            on_batch(tokens.numel())
    return {ac.TOKENS_KEY: contexts, **{h: torch.cat(parts[h]) for h in hooks}}


def _next_contexts(contexts: Iterator[torch.Tensor], n: int) -> torch.Tensor | None:
    taken = [c for _, c in zip(range(n), contexts, strict=False)]
    return torch.stack(taken) if taken else None


def _texts(cfg: CaptureConfig) -> Iterator[str]:
    return cfg.source.texts()


def _load(cfg: CaptureConfig) -> tuple[Any, list[str]]:
    """The model and hook names, with the text source and context length checked."""
    from interp.models import load_model

    cfg.source.check()
    model = load_model(cfg.model, cfg.device, cfg.dtype)
    hooks = hook_names(model, cfg.layer, cfg.site, cfg.hook, purpose="capture")
    _check_ctx_len(cfg, model)
    return model, hooks


def capture_to_disk(cfg: CaptureConfig, progress: Progress | None = None) -> CaptureResult:
    """Capture `cfg.tokens` tokens of activations into the cache folder `cfg.out`.

    Everything is checked (the state of `out`, dataset, model, hook names, context length)
    before the folder is created, so bad input leaves no files behind. The folder is locked
    while the capture writes it (`CacheError` if another capture holds it).
    """
    out = Path(cfg.out)
    with contextlib.ExitStack() as held:
        existed = out.is_dir()
        if existed:  # lock before reading its state
            held.enter_context(locked(out))
        _check_out(cfg)
        _check_writable(out)
        model, hooks = _load(cfg)
        if not existed:
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(locked(out))
        resume_from = _check_out(cfg)  # again: another capture may have written it meanwhile
        ac.remove_stale_temporaries(out)
        ac.write_file(out / "cfg.json", json.dumps(cfg.to_dict(), indent=2).encode())
        return _run_shards(cfg, model, hooks, resume_from, progress or (lambda done, total: None))


def _run_shards(
    cfg: CaptureConfig, model: Any, hooks: list[str], resume_from: dict | None, progress: Progress
) -> CaptureResult:
    out, total = Path(cfg.out), cfg.n_contexts * cfg.ctx_len
    old = resume_from["shards"] if resume_from else []
    shapes: dict[str, list[int]] = resume_from["shapes"] if resume_from else {}
    contexts = iter_contexts(_texts(cfg), model.tokenizer, cfg.ctx_len)
    shards: list[dict[str, Any]] = []
    done, written, computed, seconds = 0, 0, 0, 0.0
    live = 0  # tokens done, counted batch by batch inside a shard

    def on_batch(n_tokens: int) -> None:
        nonlocal live
        live += n_tokens
        progress(live, total)

    while (remaining := cfg.n_contexts - sum(s["n_contexts"] for s in shards)) > 0:
        index = len(shards)
        batch = _next_contexts(contexts, min(cfg.shard_contexts, remaining))
        if batch is None:
            break
        entry = old[index] if index < len(old) else None
        if not _shard_is_done(out, entry, len(batch)):
            start = time.perf_counter()
            tensors = _compute_shard(model, batch, hooks, cfg.batch_size, on_batch)
            shapes = {h: list(tensors[h].shape[2:]) for h in hooks}
            sha = ac.write_shard(out / ac.shard_name(index), tensors)
            entry = {"file": ac.shard_name(index), "n_contexts": len(batch), "sha256": sha}
            seconds += time.perf_counter() - start
            written, computed = written + 1, computed + batch.numel()
        shards.append(entry)
        done += batch.numel()
        live = done
        progress(done, total)
        # Old entries past this one stay listed, so a second crash does not forget them.
        manifest = _manifest(cfg, model, hooks, shapes, shards + old[index + 1 :], complete=False)
        ac.write_json(out / ac.MANIFEST, manifest)
    return _finish(cfg, model, hooks, shapes, shards, (written, computed, seconds))


def _finish(
    cfg: CaptureConfig, model: Any, hooks: list[str], shapes: dict, shards: list, work: tuple
) -> CaptureResult:
    written, computed, seconds = work
    out = Path(cfg.out)
    for stale in sorted(out.glob("shard_*.safetensors"))[len(shards) :]:
        stale.unlink()  # left by an earlier run that planned more shards
    manifest = _manifest(cfg, model, hooks, shapes, shards, complete=True)
    ac.write_json(out / ac.MANIFEST, manifest)
    result = CaptureResult(
        out=out,
        n_tokens=manifest["n_tokens"],
        n_shards=len(shards),
        shards_written=written,
        shards_skipped=len(shards) - written,
        seconds=seconds,
        tokens_per_s=computed / seconds if seconds else 0.0,
        exhausted=manifest["n_contexts"] < cfg.n_contexts,
    )
    metrics = {k: (str(v) if isinstance(v, Path) else v) for k, v in result._asdict().items()}
    ac.write_file(out / "metrics.json", json.dumps(metrics, indent=2).encode())
    return result
