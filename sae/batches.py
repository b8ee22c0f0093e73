"""The trainer's input contract: where activation batches come from and how they are split.

A batch is a Tensor [n, d_in] (one SAE) or a mapping hook_name -> Tensor [n, d_in] (several
SAEs fed by one forward pass). Leading dims are flattened, so [batch, pos, d_in] works too.
Each batch holds either the global batch (n == batch_tokens), of which every data-parallel rank
takes its contiguous shard, or this rank's shard already (n == batch_tokens / world_size).

A batch source is either
- a factory `make_batches(skip_tokens: int) -> Iterable[Batch]` whose stream starts after the
  first `skip_tokens` global tokens (resume calls it with the tokens already trained on), or
- a plain iterable, which the trainer fast-forwards by reading and dropping batches.

A factory may also take a keyword `state` and return an iterator with a `state_dict()` method
(tensors): the trainer then saves the stream's state in each checkpoint (`stream.safetensors`),
and a resume calls `make_batches(skip_tokens, state=saved)`, so the stream continues where it
stood instead of recomputing the batches it skips (`interp`'s live activation stream does this:
its shuffle buffer is part of the state).
"""

import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping

from jaxtyping import Float
from torch import Tensor

Batch = Float[Tensor, "n d_in"] | Mapping[str, Float[Tensor, "n d_in"]]
BatchFactory = Callable[[int], Iterable[Batch]]
BatchSource = BatchFactory | Iterable[Batch]


def takes_state(source: BatchSource) -> bool:
    """Whether `source` is a factory that accepts `state=` (a resumable stream)."""
    if not callable(source):
        return False
    try:
        return "state" in inspect.signature(source).parameters
    except (TypeError, ValueError):
        return False


def open_stream(
    source: BatchSource,
    skip_tokens: int,
    batch_tokens: int,
    state: dict[str, Tensor] | None = None,
) -> Iterator[Batch]:
    """Batches starting after `skip_tokens` global tokens (a multiple of batch_tokens); with a
    saved stream `state` and a factory that takes it, the factory restores the stream from it."""
    if skip_tokens % batch_tokens:
        raise ValueError(f"skip_tokens={skip_tokens} is not a multiple of {batch_tokens}")
    if state is not None and takes_state(source):
        return iter(source(skip_tokens, state=state))
    if callable(source):
        return iter(source(skip_tokens))
    if not isinstance(source, Iterable):
        raise TypeError(
            f"batches must be a factory make_batches(skip_tokens) or an iterable, got {source!r}"
        )
    it = iter(source)
    return itertools.islice(it, skip_tokens // batch_tokens, None)


def local_shards(
    batch: Batch, names: list[str], batch_tokens: int, rank: int, world_size: int
) -> dict[str, Tensor]:
    """This rank's [batch_tokens / world_size, d_in] rows of the batch, per SAE name."""
    if isinstance(batch, Tensor):
        if len(names) != 1:
            raise ValueError(
                f"a Tensor batch can feed only one SAE, but {len(names)} are trained "
                f"({names}); yield a dict hook_name -> Tensor instead"
            )
        batch = {names[0]: batch}
    missing = [n for n in names if n not in batch]
    if missing:
        raise ValueError(f"batch lacks {missing}; it has {sorted(batch)}, the SAEs are {names}")
    local = batch_tokens // world_size
    out = {}
    for name in names:
        x = batch[name]
        x = x.reshape(-1, x.shape[-1])
        if x.shape[0] == batch_tokens:
            x = x[rank * local : (rank + 1) * local]
        elif x.shape[0] != local:
            raise ValueError(
                f"batch[{name!r}] has {x.shape[0]} tokens; expected the global batch "
                f"({batch_tokens}) or this rank's shard ({local})"
            )
        out[name] = x
    return out
