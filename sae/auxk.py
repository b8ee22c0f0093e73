"""AuxK, the auxiliary loss of TopK SAEs against dead latents (Gao et al. 2024, appendix A.2)."""

from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae.sparse import dense_from_sparse, sparse_decode


def dead_selection(
    dead_mask: Bool[Tensor, " d_sae"] | None, aux_k: int
) -> tuple[Int[Tensor, " n_dead"] | None, int, float]:
    """(dead latent indices, k_aux = min(aux_k, n_dead), scale = min(n_dead / aux_k, 1));
    (None, 0, 0.0) with no dead latents."""
    if dead_mask is None:
        return None, 0, 0.0
    dead = dead_mask.nonzero().squeeze(1)
    n_dead = dead.numel()
    if n_dead == 0:
        return None, 0, 0.0
    return dead, min(aux_k, n_dead), min(n_dead / aux_k, 1.0)


def auxk_of_selected(
    indices: Int[Tensor, "n k_aux"],
    values: Float[Tensor, "n k_aux"],
    residual: Float[Tensor, "n d_in"],
    W_dec: Float[Tensor, "d_sae d_in"],
    scale: float,
    sparse: bool,
) -> Float[Tensor, ""]:
    """scale * mean_n ||e_n - e_hat_n||^2 with e_hat = relu(values) decoded at `indices`."""
    values = values.relu()
    if sparse:
        e_hat = sparse_decode(indices, values, W_dec)
    else:
        e_hat = dense_from_sparse(indices, values, W_dec.shape[0]) @ W_dec
    return scale * (e_hat - residual.detach().to(e_hat.dtype)).pow(2).sum(-1).mean()


def auxk_loss(
    pre_acts: Float[Tensor, "n d_sae"],
    residual: Float[Tensor, "n d_in"],
    dead_mask: Bool[Tensor, " d_sae"] | None,
    W_dec: Float[Tensor, "d_sae d_in"],
    aux_k: int,
    sparse: bool,
) -> Float[Tensor, ""]:
    """scale * mean_n ||e_n - e_hat_n||^2, the dead latents' reconstruction of the error.

    e = x - x_hat is the main reconstruction's error (detached). e_hat = relu(z) @ W_dec, no bias,
    where z keeps, per token, the k_aux = min(aux_k, n_dead) largest pre-activations among dead
    latents. scale = min(n_dead / aux_k, 1) shrinks the loss while few latents are dead (as
    SAELens). The ReLU matches the TopK activation (as EleutherAI's sparsify); SAELens uses the
    raw pre-activations. Returns 0 with no dead latents.
    """
    dead, k_aux, scale = dead_selection(dead_mask, aux_k)
    if dead is None:
        return pre_acts.new_zeros(())
    # The top k_aux among the dead columns only: a gather of [n, n_dead] instead of masking
    # and searching all d_sae columns (most latents are alive once training is under way).
    values, local = pre_acts.index_select(-1, dead).topk(k_aux, dim=-1, sorted=False)
    return auxk_of_selected(dead[local], values, residual, W_dec, scale, sparse)
