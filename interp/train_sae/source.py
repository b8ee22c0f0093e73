"""Where a `train-sae` run's activations and held-out tokens come from.

Live: contexts of `--dataset` packed to `--ctx-len`, run through the model batch by batch; the run
reads just enough contexts for `train.total_tokens` rows (BOS left out), and the held-out
contexts are the ones right after. From a cache (`--from-cache`): the cache's activations, and
held-out contexts from the cache's own text source after the contexts it holds, so that the SAE
is never evaluated on text it was trained on.
"""

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from interp.capture.cache import CacheInfo, iter_cache, open_cache
from interp.capture.core import activation_stream, capture, model_device
from interp.config import TextSource
from interp.data import batched, iter_contexts, prefetch
from interp.errors import CacheError, InterpError
from interp.models import model_id
from interp.train_sae.config import TrainSAEConfig

BatchSource = Callable[[int], Iterator[dict[str, torch.Tensor]]]
"""make_batches(skip_tokens): the run's activation batches after its first `skip_tokens`."""


def text_source(cfg: TrainSAEConfig) -> TextSource:
    """The run's text: the cache's source with --from-cache, else --dataset's."""
    if cfg.from_cache:
        return open_cache(cfg.from_cache).source
    return TextSource(cfg.dataset, cfg.split, cfg.text_field, cfg.seed, cfg.decode_errors)


def contexts(model: Any, source: TextSource, ctx_len: int) -> Iterator[torch.Tensor]:
    """[ctx_len] token contexts of `source`, BOS first, in the source's order."""
    return iter_contexts(source.texts(), model.tokenizer, ctx_len)


def train_contexts_used(cfg: TrainSAEConfig) -> int:
    """The contexts a live run reads: just enough for `tokens` rows with BOS left out. The live
    source ends there, so the shuffle buffer is drained at the end instead of being filled with
    activations that are never trained on; the held-out contexts start right after."""
    return math.ceil(cfg.train.total_tokens / (cfg.ctx_len - 1))


def d_in(model: Any, hooks: list[str]) -> dict[str, int]:
    """The width of each hook's per-token activation (one probe forward pass)."""
    probe = torch.zeros((1, 2), dtype=torch.long)
    return {h: a.shape[-1] for h, a in capture(model, probe, hooks).items()}


def batch_source(model: Any, cfg: TrainSAEConfig, hooks: list[str]) -> BatchSource:
    """make_batches(skip_tokens) over live activations or the cache."""
    batch_tokens = cfg.train.batch_tokens
    on_gpu = model_device(model).type == "cuda"

    def live(
        skip_tokens: int, state: dict[str, torch.Tensor] | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The stream after `skip_tokens`. With a checkpoint's `state` it continues from the
        saved shuffle buffer: the contexts already read are tokenised and skipped, not run.
        Without one, the skipped batches are recomputed and dropped."""
        ctxs = itertools.islice(
            contexts(model, text_source(cfg), cfg.ctx_len), train_contexts_used(cfg)
        )
        batches = batched(ctxs, cfg.batch_size)
        if on_gpu:  # tokenise the next batches on the CPU while the GPU works
            batches = prefetch(batches)
        stream = activation_stream(model, batches, hooks, batch_tokens, seed=cfg.seed, state=state)
        if state is None:
            for _ in range(skip_tokens // batch_tokens):
                next(stream, None)
        return stream

    def cached(skip_tokens: int) -> Iterator[dict[str, torch.Tensor]]:
        stream = iter_cache(cfg.from_cache, hooks, batch_tokens, seed=cfg.seed)
        return itertools.islice(stream, skip_tokens // batch_tokens, None)

    return cached if cfg.from_cache else live


def check_cache(cfg: TrainSAEConfig, hooks: list[str]) -> CacheInfo:
    """The --from-cache folder, checked against the run: model, hooks, context length, enough
    tokens, and the text it came from (its dataset must be the run's --dataset)."""
    info = open_cache(cfg.from_cache, model=model_id(cfg.model), hooks=hooks, ctx_len=cfg.ctx_len)
    source = info.source
    if source.dataset != cfg.dataset:
        raise CacheError(
            f"cache {cfg.from_cache!r} was captured from dataset {source.dataset!r} (split "
            f"{source.split!r}, seed {source.seed}), but --dataset is {cfg.dataset!r}; pass "
            f"--dataset {source.dataset} to train on it, or capture {cfg.dataset!r} first"
        )
    usable = info.n_tokens - info.n_tokens // info.ctx_len  # BOS positions are not trained on
    if usable < cfg.train.total_tokens:
        raise CacheError(
            f"cache {cfg.from_cache!r} holds {usable:,} trainable tokens but --tokens is "
            f"{cfg.train.total_tokens:,}; lower --tokens or capture more"
        )
    return info


def heldout_start(cfg: TrainSAEConfig) -> int:
    """The first held-out context of the run's text source: after the contexts trained on."""
    if cfg.from_cache:
        return open_cache(cfg.from_cache).n_contexts
    return train_contexts_used(cfg)


def eval_batches(model: Any, cfg: TrainSAEConfig, skip_contexts: int) -> list[torch.Tensor]:
    """Held-out contexts: `eval_tokens` worth of contexts after the first `skip_contexts`, in
    batches of `batch_size`."""
    n = math.ceil(cfg.eval_tokens / cfg.ctx_len)
    source = text_source(cfg)
    ctxs = list(
        itertools.islice(contexts(model, source, cfg.ctx_len), skip_contexts, skip_contexts + n)
    )
    if len(ctxs) < n:
        raise InterpError(
            f"the dataset {source.dataset!r} has no {cfg.eval_tokens:,} held-out tokens left after "
            "the training tokens; lower --tokens or --eval-tokens"
        )
    return list(batched(iter(ctxs), cfg.batch_size))
