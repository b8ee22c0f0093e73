"""ReLU SAE with the decoder-norm-weighted L1 penalty (Anthropic's April 2024 update; SAELens's
"standard" architecture).

The penalty sum_i f_i * ||W_dec[i]|| makes the loss invariant to trading encoder scale against
decoder scale, so the decoder rows need no norm constraint (`unit_norm_decoder` is False) and
are initialised at norm `decoder_init_norm`.
"""

from jaxtyping import Bool, Float
from torch import Tensor

from sae.base import SAE, LossTerms


class ReLUSAE(SAE):
    """acts = relu(pre_acts(x)); x_hat = acts @ W_dec + b_dec."""

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        return self.pre_acts(x).relu()

    def loss(
        self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, " d_sae"] | None = None
    ) -> LossTerms:
        """sparsity = l1_coefficient * mean_n sum_i acts[n, i] * ||W_dec[i]||.

        dead_mask is unused: ReLU SAEs have no dead-latent loss here.
        """
        self.check_batch(x)
        acts = self.encode(x)
        x_hat = self.decode(acts)
        l1 = (acts * self.W_dec.norm(dim=-1)).sum(-1).mean()
        zero = acts.new_zeros(())
        return LossTerms(
            x_hat, self.mse(x, x_hat), self.cfg.l1_coefficient * l1, zero, (acts > 0).sum(0)
        )
