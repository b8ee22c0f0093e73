"""Decoding from sparse latents, (indices, values), without building the dense [n, d_sae] matrix.

Both paths use `F.embedding_bag(mode="sum", per_sample_weights=values)`, which computes
sum_j values[n, j] * W_dec[indices[n, j]] and whose backward gives gradients to both `values`
and `W_dec` (an index_add into W_dec's rows). `python experiments/bench/decode.py` measures it; on the
shared 2-core CPU with one thread (docs/sae.md has the table), a whole TopK training step
(loss + backward, AuxK on) at tokens=4096, d_sae=4096, d_in=512 took 1.55 s sparse against
2.93 s dense for k=32 and 2.57 s against 4.49 s for k=512 (k/d_sae = 1/8); at d_sae=16384,
d_in=768, k=64, 2048 tokens, 3.7 s against 11.6 s. Below k/d_sae = 1/8 sparse won or tied
everywhere measured, hence `use_sparse_decoder`. On an H100 (bf16 autocast, AuxK on, Adam) it
loses: a whole step at tokens=4096, d_in=768, d_sae=24576, k=32 took 17.8 ms sparse against
12.4 ms dense, and 40.6 against 42.2 ms at d_sae=98304, k=64 (embedding_bag's backward adds
into W_dec's rows with atomics), so 'auto' is dense on CUDA.

The encoder side: `TopKEncode` selects the top-k of the dense pre-activations and, in its
backward, forms W_enc's and b_enc's gradients from the selected entries only
(`sparse_weight_grad`, a CSR product) instead of a dense [n, d_sae] gradient matrix.
"""

import warnings

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


def sparse_weight_grad(
    inputs: Float[Tensor, "n d_in"],
    indices: Int[Tensor, "n j"],
    grads: Float[Tensor, "n j"],
    d_sae: int,
) -> tuple[Float[Tensor, "d_in d_sae"], Float[Tensor, " d_sae"]]:
    """(inputs^T @ G, column sums of G) for the [n, d_sae] matrix G that holds grads[n, j] at
    column indices[n, j] (repeated columns in a row add), without building G.

    The rows of G^T, one per latent, are formed as a CSR matrix (one argsort of the n * j
    indices) and multiplied with `inputs`: n * j * d_in multiply-adds instead of the dense
    n * d_sae * d_in, and no [n, d_sae] buffer to zero, fill and sum. At n = 4096, d_in = 128,
    d_sae = 1024, j = 16 on the 2-core CPU: 2.0 ms against 8.3 ms for zeros + scatter + matmul.
    """
    n, per_row = indices.shape
    flat = indices.reshape(-1)
    order = flat.argsort()
    cols = flat[order]
    counts = torch.bincount(cols, minlength=d_sae)
    crow = torch.zeros(d_sae + 1, dtype=torch.long, device=flat.device)
    torch.cumsum(counts, 0, out=crow[1:])
    values = grads.reshape(-1)[order].to(inputs.dtype)
    tokens = torch.div(order, per_row, rounding_mode="floor")
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        g_t = torch.sparse_csr_tensor(crow, tokens, values, (d_sae, n), check_invariants=False)
        weight_grad = (g_t @ inputs).t().contiguous()
    bias_grad = torch.zeros(d_sae, dtype=values.dtype, device=flat.device)
    return weight_grad, bias_grad.index_add_(0, flat, grads.reshape(-1).to(values.dtype))


class TopKEncode(torch.autograd.Function):
    """(values, indices) of the k largest entries of pre = x @ W_enc + bias per row, and
    (aux_values, aux_indices) of the k_aux largest among the columns `dead` (AuxK's), with a
    backward that touches only the selected entries (`sparse_weight_grad`).

    Autograd's own backward of `topk(x @ W_enc + bias)` scatters the gradient into a dense
    [n, d_sae] zero matrix and multiplies it with x; this one forms the same W_enc and bias
    gradients from the n * (k + k_aux) selected entries. `x` gets no gradient (the caller
    passes it detached; b_dec's gradient reaches it through `bias`).
    """

    @staticmethod
    def forward(ctx, x, W_enc, bias, k, dead, k_aux):  # type: ignore[override]
        pre = torch.addmm(bias, x, W_enc)
        values, indices = pre.topk(k, dim=-1, sorted=False)
        if dead is not None and k_aux > 0:
            aux_values, local = pre.index_select(-1, dead).topk(k_aux, dim=-1, sorted=False)
            aux_indices = dead[local]
        else:
            aux_values = pre.new_zeros(pre.shape[0], 0)
            aux_indices = indices.new_zeros(pre.shape[0], 0)
        ctx.save_for_backward(x, indices, aux_indices)
        ctx.d_sae = pre.shape[1]
        ctx.mark_non_differentiable(indices, aux_indices)
        return values, indices, aux_values, aux_indices

    @staticmethod
    def backward(ctx, g_values, _g_indices, g_aux, _g_aux_indices):  # type: ignore[override]
        x, indices, aux_indices = ctx.saved_tensors
        if g_values is None:
            g_values = torch.zeros(indices.shape, dtype=x.dtype, device=x.device)
        if g_aux is None:
            g_aux = torch.zeros(aux_indices.shape, dtype=x.dtype, device=x.device)
        weight_grad, bias_grad = sparse_weight_grad(
            x, torch.cat([indices, aux_indices], 1), torch.cat([g_values, g_aux], 1), ctx.d_sae
        )
        return None, weight_grad, bias_grad, None, None, None
