"""BatchTopK SAE (Bussmann et al. 2024): keep the k * n largest activations of a whole batch.

Training (`loss`, and `encode` in train mode) keeps the k * n_tokens largest ReLU'd
pre-activations over the batch, so a token may use more or fewer than k latents. Inference
(`encode` in eval mode) cannot look at a batch; like SAELens it uses a single threshold,
estimated during training as an EMA of each batch's smallest kept activation, and keeps
relu(pre) where pre > threshold. This is a JumpReLU with one shared threshold, and that is how
the SAE is saved (SAELens saves BatchTopK SAEs as jumprelu too).

Under data parallelism the selection is over the global batch: each rank's threshold is the
global k * n-th largest value (`sae.distributed.global_kth_largest`). So in train mode,
`encode` and `loss` are collective operations: every rank must call them together.
Decoder rows are kept at unit norm, as for TopK, and AuxK revives dead latents.
"""

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae.auxk import auxk_loss
from sae.base import SAE, LossTerms
from sae.config import SAEConfig
from sae.distributed import all_reduce_, global_kth_largest, rank_info
from sae.sparse import ragged_sparse_decode, use_sparse_decoder


class BatchTopKSAE(SAE):
    """Train: acts = relu(pre) where relu(pre) >= its (k * n)-th largest value in the batch.
    Eval: acts = relu(pre) * (pre > threshold)."""

    unit_norm_decoder = True

    def __init__(self, cfg: SAEConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator=generator)
        # float64 like SAELens: the EMA takes many small steps.
        device = self.b_enc.device
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64, device=device))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long, device=device))

    @property
    def sparse_decoding(self) -> bool:
        """Whether `loss` decodes with embedding_bag (see `sae.sparse`)."""
        c = self.cfg
        return use_sparse_decoder(c.decoder_impl, c.k, c.d_sae, self.W_dec.device)

    def batch_mask(self, pre: Float[Tensor, "n d_sae"]) -> Bool[Tensor, "n d_sae"]:
        """True at the k * n largest positive entries of relu(pre), n counted over all ranks
        (data-parallel shards are equal, so n = local tokens * world size)."""
        acts = pre.relu()
        n_tokens = pre.shape[0] * rank_info().world_size
        cutoff = global_kth_largest(acts.detach(), self.cfg.k * n_tokens)
        return (acts >= cutoff) & (acts > 0)

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        pre = self.pre_acts(x)
        if self.training:
            flat = pre.reshape(-1, self.cfg.d_sae)
            return (flat.relu() * self.batch_mask(flat)).reshape(pre.shape)
        if int(self.threshold_updates) == 0:
            raise ValueError(
                "BatchTopKSAE in eval mode needs the inference threshold, which is estimated "
                "during training; train it first, call .train() to use batch top-k, or set "
                "`threshold` and `threshold_updates` by hand"
            )
        return pre.relu() * (pre > self.threshold.to(pre.dtype))

    @torch.no_grad()
    def update_threshold_(self, kept_values: Tensor) -> None:
        """Fold this batch's smallest kept activation (over all ranks), m_t, into the threshold:
        an exponential moving average with rate lr, debiased as Adam's moments are,

            threshold_t = sum_i (1 - lr)^(t - i) m_i / sum_i (1 - lr)^(t - i),  i = 1..t.

        The first update gives m_1. After many updates it is the plain EMA that SAELens keeps,
        (1 - lr) threshold + lr m_t; early on it weighs the first batches about equally instead
        of keeping the first one's value (weight (1 - lr)^(t - 1): 0.67 after 40 steps at lr
        0.01), which comes from the untrained encoder and is far too high.
        """
        smallest = kept_values.min() if kept_values.numel() else kept_values.new_tensor(torch.inf)
        smallest = all_reduce_(smallest.to(torch.float64).reshape(1), "min")[0]
        if not torch.isfinite(smallest):
            return
        t = int(self.threshold_updates) + 1
        decay = 1.0 - self.cfg.batchtopk_threshold_lr
        # threshold * (1 - decay^(t-1)) is the un-normalised EMA before this update
        raw = self.threshold * ((1.0 - decay ** (t - 1)) * decay) + (1.0 - decay) * smallest
        self.threshold.copy_(raw / (1.0 - decay**t))
        self.threshold_updates += 1

    def loss(
        self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, " d_sae"] | None = None
    ) -> LossTerms:
        self.check_batch(x)
        pre = self.pre_acts(x)
        mask = self.batch_mask(pre)
        if self.sparse_decoding:
            rows, cols = mask.nonzero(as_tuple=True)
            values = pre[rows, cols]
            x_hat = ragged_sparse_decode(rows, cols, values, x.shape[0], self.W_dec) + self.b_dec
        else:
            values = pre[mask]
            x_hat = self.decode(pre * mask)
        self.update_threshold_(values.detach())
        aux = auxk_loss(
            pre, x - x_hat, dead_mask, self.W_dec, self.cfg.resolved_aux_k, self.sparse_decoding
        )
        return LossTerms(x_hat, self.mse(x, x_hat), pre.new_zeros(()), aux, mask.sum(0))
