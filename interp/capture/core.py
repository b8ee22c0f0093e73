"""Activations from forward passes: many hook points in one pass, stopping after the last one.

- `capture(model, tokens, hooks)`: one batch -> `{hook_name: activation [batch, pos, ...]}`.
- `recording(model, hooks)`: the same for many batches under one hook registration.
- `iter_captures(model, batches, hooks)`: `Capture(tokens, acts)` per batch of contexts.
- `activation_stream(model, batches, hooks, ...)`: the feed of SAE training, batches of
  `{hook_name: Tensor[batch_tokens, d]}` rows (one row per token), shuffled at token level
  through a seeded buffer, BOS positions dropped by default.
- `rebatch(chunks, ...)`: the shuffle buffer itself, shared with the on-disk cache reader.

Hooks are added only inside `interp.interventions.intervene` (for one forward pass, or for the
`with` block of `recording`), so none is left on the model after the call or after an error.
Block inputs and outputs of a TransformerBridge (`resid_pre`, `resid_post`, `attn_out`,
`mlp_out`) are by default read from its HuggingFace modules run directly, with fused attention
and without the bridge's hooks (`interp.capture.fast`); the activations are the same to fp32
round-off, and the pass was 1.6x faster on the embedded model on CPU (docs/benchmarks.md).
The forward pass runs under `torch.no_grad` rather than `inference_mode`: the activations are
handed to user code (an SAE trainer may normalise them in place, which inference tensors
forbid), and in an interleaved timing of the bridge forward pass the two were equal within the
noise of the 2-core test machine.
"""

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.capture.fast import Collected, fast_runner
from interp.errors import HookNameError
from interp.hooks import check_hook_names, stop_at_layer
from interp.interventions import HookFn, intervene, store

Rows = dict[str, Float[Tensor, "n d"]]
"""One row per token, per hook; every hook's tensor has the same rows in the same order."""


class Capture(NamedTuple):
    """The tokens of one batch and the activations they produced at each hook."""

    tokens: Int[Tensor, "batch pos"]
    acts: dict[str, Float[Tensor, "batch pos ..."]]


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (where its input tokens must go)."""
    return next(model.parameters()).device


def check_per_token(acts: dict[str, Tensor], tokens: Tensor) -> dict[str, Tensor]:
    """`acts` if every activation is `[batch, pos, ...]` for `tokens` `[batch, pos]`."""
    for name, act in acts.items():
        if tuple(act.shape[:2]) != tuple(tokens.shape):
            raise HookNameError(
                f"hook {name!r} gives activations of shape {tuple(act.shape)}, not "
                f"[batch, pos, ...] for tokens {tuple(tokens.shape)}; capture per-token "
                "hooks (resid, mlp_out, attn_out, attn.hook_z, ...)"
            )
    return acts


def _collector(found: dict[str, Tensor], name: str, n_names: int, stop: bool) -> HookFn:
    keep = store(found, name)

    def hook(activation: Tensor, *, hook: Any) -> None:
        keep(activation, hook=hook)
        if stop and len(found) == n_names:
            raise Collected

    return hook


def _forward_kwargs(model: Any, stop: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"return_type": None, "stop_at_layer": stop}
    if getattr(model, "original_model", None) is not None:
        # TransformerBridge passes this to HF: a capture needs no KV cache, and building one
        # costs a concatenation per layer.
        kwargs["use_cache"] = False
    return kwargs


@contextmanager
def recording(
    model: Any, hooks: Sequence[str], stop_early: bool = True, fast: bool = True
) -> Iterator[Callable[[Tensor], dict[str, Tensor]]]:
    """Hooks that store activations, for the duration of a `with` block.

    Yields `run(tokens) -> {hook: activation}`, one forward pass per call under `no_grad`.
    With `stop_early` the pass ends as soon as every hook has fired: `stop_at_layer` skips the
    blocks after the deepest one, and the last storing hook raises to skip the rest of its own
    block (and the final norm and unembedding when a hook is in the last block). TransformerLens
    stops `run_with_cache` with an exception from a hook the same way. Registering the hooks
    once for many passes saves TransformerBridge's per-registration cost.

    With `fast`, hooks that are block inputs or outputs (`resid_pre`, `resid_post`, `attn_out`,
    `mlp_out`) of a TransformerBridge are read from its HuggingFace modules run directly, with
    fused attention (`interp.capture.fast`); any other hook, or a bridge with hooks or processed
    weights, takes the bridge path.
    """
    names = check_hook_names(model, hooks)
    with _recording(model, names, stop_early, fast) as run:
        yield run


@contextmanager
def _recording(
    model: Any, names: list[str], stop_early: bool = True, fast: bool = True
) -> Iterator[Callable[[Tensor], dict[str, Tensor]]]:
    """`recording` with `names` already checked (TransformerBridge rebuilds `hook_dict`, the
    check's source, on every access: milliseconds per batch)."""
    found: dict[str, Tensor] = {}
    fast_run = fast_runner(model, names, found, stop_early) if fast else None
    if fast_run is not None:
        with torch.no_grad():
            yield _finisher(fast_run, names, found, model_device(model), "fast path")
        return
    stop = stop_at_layer(model, names) if stop_early else None
    kwargs = _forward_kwargs(model, stop)
    collectors = [(n, _collector(found, n, len(names), stop_early)) for n in names]
    with torch.no_grad(), intervene(model, collectors):
        yield _finisher(
            lambda tokens: model(tokens, **kwargs),
            names,
            found,
            model_device(model),
            f"stop={stop}",
        )


def _finisher(
    forward: Callable[[Tensor], Any],
    names: list[str],
    found: dict[str, Tensor],
    device: torch.device,
    how: str,
) -> Callable[[Tensor], dict[str, Tensor]]:
    """`run(tokens)`: one forward pass that fills `found`, checked to have every hook."""

    def run(tokens: Int[Tensor, "batch pos"]) -> dict[str, Tensor]:
        found.clear()
        try:
            forward(tokens.to(device))
        except Collected:
            pass
        missing = [n for n in names if n not in found]
        if missing:
            raise HookNameError(f"hooks {missing} did not fire in the forward pass ({how})")
        return {n: found[n] for n in names}

    return run


def capture(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    hooks: Sequence[str],
    stop_early: bool = True,
    fast: bool = True,
) -> dict[str, Float[Tensor, "batch pos ..."]]:
    """Activations at `hooks` from one forward pass on `tokens` (no BOS is added).

    With `stop_early`, the pass stops as soon as every hook has fired; `fast` is as in
    `recording`.
    """
    with recording(model, hooks, stop_early, fast) as run:
        return run(tokens)


def iter_captures(
    model: Any, batches: Iterable[Int[Tensor, "batch pos"]], hooks: Sequence[str], fast: bool = True
) -> Iterator[Capture]:
    """`Capture` per batch of token contexts; every activation must be `[batch, pos, ...]`.

    The hooks are on the model only during each forward pass, not while the caller holds a
    batch, so the model can be used for other things between batches.
    """
    names = check_hook_names(model, hooks)  # here, not at the first batch
    return _iter_captures(model, batches, names, fast)


def _iter_captures(
    model: Any, batches: Iterable[Tensor], names: list[str], fast: bool
) -> Iterator[Capture]:
    for tokens in batches:
        with _recording(model, names, fast=fast) as run:
            acts = check_per_token(run(tokens), tokens)
        yield Capture(tokens, acts)


def keep_mask(tokens: Int[Tensor, "batch pos"], bos_id: int | None) -> torch.Tensor:
    """Flat `[batch * pos]` mask that drops position 0 where it holds BOS.

    Only position 0 is tested, so a tokenizer whose BOS is also its EOS (GPT-2) keeps the EOS
    tokens that separate documents inside a context.
    """
    keep = torch.ones_like(tokens, dtype=torch.bool)
    if bos_id is not None:
        keep[:, 0] = tokens[:, 0] != bos_id
    return keep.reshape(-1)


def to_rows(
    tokens: Int[Tensor, "batch pos"], acts: dict[str, Tensor], bos_id: int | None, exclude_bos: bool
) -> Rows:
    """Flatten `[batch, pos, ...]` activations to `[n_tokens, d]` rows, optionally without BOS."""
    rows = {n: a.reshape(a.shape[0] * a.shape[1], -1) for n, a in acts.items()}
    if not exclude_bos or bos_id is None:
        return rows
    keep = keep_mask(tokens, bos_id).to(next(iter(rows.values())).device)
    return {n: r[keep] for n, r in rows.items()}


def _n(rows: Rows) -> int:
    return next(iter(rows.values())).shape[0]


def _take(rows: Rows, index: Tensor | slice) -> Rows:
    if isinstance(index, Tensor):
        return {n: r[index.to(r.device)] for n, r in rows.items()}
    return {n: r[index] for n, r in rows.items()}


def _cat(a: Rows | None, b: Rows) -> Rows:
    return b if a is None else {n: torch.cat([a[n].to(b[n].device), b[n]]) for n in a}


def rebatch(
    chunks: Iterable[Rows],
    batch_tokens: int,
    shuffle: bool = True,
    buffer_tokens: int | None = None,
    seed: int = 0,
    state: dict[str, Tensor] | None = None,
) -> "Rebatcher":
    """Cut row chunks into batches of exactly `batch_tokens` rows; the tail is dropped.

    With `shuffle`, rows pass through a buffer of `buffer_tokens` rows (default 16 batches):
    when it is full it is permuted (seeded, the same permutation for every hook) and all but
    half of it is emitted, so a row can stay for several rounds and mix with later chunks.

    The result's `state_dict()` is the stream's position: the rows read but not yet emitted,
    the shuffle generator and the number of chunks read. `rebatch(rest, ..., state=saved)`, with
    `rest` the chunks after the first `saved["chunks"]`, continues with exactly the batches the
    original stream would have emitted next (a resumed training run recomputes nothing).
    """
    buffer_tokens = 16 * batch_tokens if buffer_tokens is None else buffer_tokens
    if batch_tokens < 1 or (shuffle and buffer_tokens < batch_tokens):
        raise ValueError(
            f"need batch_tokens >= 1 and buffer_tokens >= batch_tokens, got {batch_tokens} "
            f"and {buffer_tokens}"
        )
    return Rebatcher(iter(chunks), batch_tokens, shuffle, buffer_tokens, seed, state)


class Rebatcher(Iterator[Rows]):
    """The iterator `rebatch` returns; its state is explicit, so it can be saved and restored."""

    def __init__(
        self,
        chunks: Iterator[Rows],
        batch_tokens: int,
        shuffle: bool,
        buffer_tokens: int,
        seed: int,
        state: dict[str, Tensor] | None = None,
    ) -> None:
        self.chunks, self.batch_tokens = chunks, batch_tokens
        self.shuffle, self.buffer_tokens = shuffle, buffer_tokens
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer: Rows | None = None  # rows read and not yet emitted, the next ones first
        self.ready = 0  # rows at the head of `buffer` that are due out before the next chunk
        self.chunks_read = 0
        self.ended = False
        if state is not None:
            self._load(state)

    def __next__(self) -> Rows:
        while self.ready < self.batch_tokens:
            if self.ended:
                raise StopIteration
            self._refill()
        batch = _take(self.buffer, slice(0, self.batch_tokens))
        self.buffer = _take(self.buffer, slice(self.batch_tokens, None))
        self.ready -= self.batch_tokens
        return batch

    def _refill(self) -> None:
        chunk = next(self.chunks, None)
        if chunk is None:
            self.ended = True
            if self.buffer is not None:
                if self.shuffle:
                    self._permute()
                self.ready = _n(self.buffer) // self.batch_tokens * self.batch_tokens
            return
        self.chunks_read += 1
        self.buffer = _cat(self.buffer, chunk)
        n = _n(self.buffer)
        if n < (self.buffer_tokens if self.shuffle else self.batch_tokens):
            return
        if self.shuffle:
            self._permute()
            self.ready = (n - self.buffer_tokens // 2) // self.batch_tokens * self.batch_tokens
        else:
            self.ready = n // self.batch_tokens * self.batch_tokens

    def _permute(self) -> None:
        self.buffer = _take(self.buffer, torch.randperm(_n(self.buffer), generator=self.generator))

    def state_dict(self) -> dict[str, Tensor]:
        """The stream's position as CPU tensors (safetensors-ready): `buffer.<hook>` rows not yet
        emitted, `generator`, and `counters` = [chunks read, rows due out, ended]."""
        state = {
            "generator": self.generator.get_state(),
            "counters": torch.tensor([self.chunks_read, self.ready, int(self.ended)]),
        }
        if self.buffer is not None:
            state |= {f"buffer.{n}": r.detach().cpu().contiguous() for n, r in self.buffer.items()}
        return state

    def _load(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.chunks_read, self.ready, ended = (int(v) for v in state["counters"].tolist())
        self.ended = bool(ended)
        rows = {k.removeprefix("buffer."): v for k, v in state.items() if k.startswith("buffer.")}
        self.buffer = rows or None


def activation_stream(
    model: Any,
    batches: Iterable[Int[Tensor, "batch pos"]],
    hooks: Sequence[str],
    batch_tokens: int = 4096,
    shuffle: bool = True,
    buffer_tokens: int | None = None,
    seed: int = 0,
    exclude_bos: bool = True,
    fast: bool = True,
    state: dict[str, Tensor] | None = None,
) -> "Rebatcher":
    """Batches of `{hook: Tensor[batch_tokens, d]}` for SAE training, on the model's device.

    `batches` are token contexts `[batch, pos]` (e.g. `interp.data.context_batches`); each one
    is a single forward pass. Shuffling is as in `rebatch`; `exclude_bos` drops position 0 of
    every context when it holds the tokenizer's BOS token; `fast` is as in `recording`.

    `state`: a `state_dict()` of an earlier stream over the same `batches`; the token batches it
    had read are skipped without a forward pass, and the stream continues where it stood.
    """
    if state is not None:
        batches = itertools.islice(batches, int(state["counters"][0]), None)
    bos_id = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    rows = (
        to_rows(c.tokens, c.acts, bos_id, exclude_bos)
        for c in iter_captures(model, batches, hooks, fast)
    )
    return rebatch(rows, batch_tokens, shuffle, buffer_tokens, seed, state)
