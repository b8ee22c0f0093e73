"""TopK SAE (Gao et al. 2024): keep the k largest pre-activations of each token, then ReLU.

Sparsity is set by k, so there is no penalty term; the AuxK loss revives dead latents.
Decoder rows are kept at unit norm (`unit_norm_decoder`): without it the model could trade
encoder scale against decoder scale inside the top-k selection. Activations and the
reconstruction are computed from (indices, values) and, for large dictionaries, decoded with
`embedding_bag` (`sae.sparse`) instead of a dense [n, d_sae] @ [d_sae, d_in] matmul.
"""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae.auxk import auxk_loss, auxk_of_selected, dead_selection
from sae.base import SAE, LossTerms, firing_counts
from sae.sparse import TopKEncode, dense_from_sparse, sparse_decode, use_sparse_decoder


class TopKSAE(SAE):
    """acts = scatter(top-k indices, relu(top-k values of pre_acts)); x_hat = acts @ W_dec + b_dec."""

    unit_norm_decoder = True

    @property
    def sparse_decoding(self) -> bool:
        """Whether `loss` and `decode_topk` use the embedding_bag path (see `sae.sparse`)."""
        c = self.cfg
        return use_sparse_decoder(c.decoder_impl, c.k, c.d_sae, self.W_dec.device)

    def encode_topk(
        self, x: Float[Tensor, "*batch d_in"]
    ) -> tuple[Int[Tensor, "*batch k"], Float[Tensor, "*batch k"]]:
        """(indices, relu(values)) of the k largest pre-activations of each token."""
        return self._topk(self.pre_acts(x))

    def _topk(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return indices, values.relu()

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        pre = self.pre_acts(x)
        indices, values = self._topk(pre)
        return torch.zeros_like(pre).scatter(-1, indices, values)

    def decode_topk(
        self, indices: Int[Tensor, "*batch k"], values: Float[Tensor, "*batch k"]
    ) -> Float[Tensor, "*batch d_in"]:
        """decode() of the dense activations that (indices, values) describe."""
        lead = indices.shape[:-1]
        indices, values = (
            indices.reshape(-1, indices.shape[-1]),
            values.reshape(-1, values.shape[-1]),
        )
        if self.sparse_decoding:
            out = sparse_decode(indices, values, self.W_dec)
        else:
            out = dense_from_sparse(indices, values, self.cfg.d_sae) @ self.W_dec
        return (out + self.b_dec).reshape(*lead, self.cfg.d_in)

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_in"]:
        return self.decode_topk(*self.encode_topk(x))

    def sparse_encoder_grad(self, x: Tensor) -> bool:
        """Whether `loss` uses `sae.sparse.TopKEncode`, whose backward forms W_enc's and
        b_enc's gradients from the selected entries only: with the sparse decoder (so on the
        CPU by default; CUDA keeps the dense path it was measured on), without autocast, and
        for inputs that need no gradient of their own."""
        return (
            self.sparse_decoding
            and not x.requires_grad
            and not torch.is_autocast_enabled(x.device.type)
        )

    def loss(
        self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, " d_sae"] | None = None
    ) -> LossTerms:
        self.check_batch(x)
        sparse = self.sparse_decoding
        if self.sparse_encoder_grad(x):
            x_in, bias = self.encoder_inputs(x)
            dead, k_aux, scale = dead_selection(dead_mask, self.cfg.resolved_aux_k)
            values, indices, aux_values, aux_indices = TopKEncode.apply(
                x_in, self.W_enc, bias, self.cfg.k, dead, k_aux
            )
            values = values.relu()
            x_hat = self.decode_topk(indices, values)
            if dead is None:
                aux = x_hat.new_zeros(())
            else:
                aux = auxk_of_selected(
                    aux_indices, aux_values, x - x_hat, self.W_dec, scale, sparse
                )
        else:
            pre = self.pre_acts(x)
            indices, values = self._topk(pre)
            x_hat = self.decode_topk(indices, values)
            aux = auxk_loss(pre, x - x_hat, dead_mask, self.W_dec, self.cfg.resolved_aux_k, sparse)
        fired = firing_counts(indices, values, self.cfg.d_sae)
        return LossTerms(x_hat, self.mse(x, x_hat), x_hat.new_zeros(()), aux, fired)
