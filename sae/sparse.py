"""Decoding from sparse latents, (indices, values), without building the dense [n, d_sae] matrix.

Both paths use `F.embedding_bag(mode="sum", per_sample_weights=values)`, which computes
sum_j values[n, j] * W_dec[indices[n, j]] and whose backward gives gradients to both `values`
and `W_dec` (an index_add into W_dec's rows). `python -m sae.bench_decode` measures it; on the
shared 2-core CPU with one thread (docs/sae.md has the table), a whole TopK training step
(loss + backward, AuxK on) at tokens=4096, d_sae=4096, d_in=512 took 1.55 s sparse against
2.93 s dense for k=32 and 2.57 s against 4.49 s for k=512 (k/d_sae = 1/8); at d_sae=16384,
d_in=768, k=64, 2048 tokens, 3.7 s against 11.6 s. Below k/d_sae = 1/8 sparse won or tied
everywhere measured, hence `use_sparse_decoder`. On an H100 (bf16 autocast, AuxK on, Adam) it
loses: a whole step at tokens=4096, d_in=768, d_sae=24576, k=32 took 17.8 ms sparse against
12.4 ms dense, and 40.6 against 42.2 ms at d_sae=98304, k=64 (embedding_bag's backward adds
into W_dec's rows with atomics), so 'auto' is dense on CUDA.
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


def use_sparse_decoder(impl: str, k: int, d_sae: int, device: torch.device | None = None) -> bool:
    """Whether a topk-style SAE should decode sparsely: 'sparse', 'dense', or 'auto', which
    picks sparse off CUDA when k / d_sae <= 1/8 (see the module docstring)."""
    if impl == "auto":
        return 8 * k <= d_sae and (device is None or device.type != "cuda")
    return impl == "sparse"


def sparse_decode(
    indices: Int[Tensor, "n k"], values: Float[Tensor, "n k"], W_dec: Float[Tensor, "d_sae d_in"]
) -> Float[Tensor, "n d_in"]:
    """out[n] = sum_j values[n, j] * W_dec[indices[n, j]] (no bias), k latents per row."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def ragged_sparse_decode(
    rows: Int[Tensor, " nnz"],
    cols: Int[Tensor, " nnz"],
    values: Float[Tensor, " nnz"],
    n_rows: int,
    W_dec: Float[Tensor, "d_sae d_in"],
) -> Float[Tensor, "n_rows d_in"]:
    """out[r] = sum over entries e with rows[e] == r of values[e] * W_dec[cols[e]] (no bias).

    `rows` must be sorted ascending (as `nonzero()` returns them); rows with no entries give 0.
    """
    counts = torch.bincount(rows, minlength=n_rows)
    offsets = torch.cumsum(counts, 0) - counts
    return F.embedding_bag(
        cols, W_dec, offsets, per_sample_weights=values.to(W_dec.dtype), mode="sum"
    )


def dense_from_sparse(
    indices: Int[Tensor, "n k"], values: Float[Tensor, "n k"], d_sae: int
) -> Float[Tensor, "n d_sae"]:
    """The dense [n, d_sae] activations with values[n, j] at column indices[n, j], else 0."""
    out = values.new_zeros(values.shape[0], d_sae)
    return out.scatter(-1, indices, values)
