"""What every SAE architecture shares: parameters, the protocol, and the decoder-norm rules.

Parameters use SAELens's names and layouts: W_enc [d_in, d_sae], b_enc [d_sae],
W_dec [d_sae, d_in] (row i, "decoder direction i", is what latent i writes), b_dec [d_in].

The protocol, the same for every architecture:
- `encode(x) -> acts` and `decode(acts) -> x_hat` for inference, on any leading dims;
- `forward(x) -> x_hat`, a drop-in replacement for the activation it reconstructs;
- `loss(x, dead_mask) -> LossTerms` for training on a [tokens, d_in] batch. The trainer adds
  `loss = mse + sparsity_scale * sparsity + aux_k_coefficient * auxk` and backpropagates it;
- `project_decoder_grad_()` before the optimiser step, `after_step_()` after it, which keep the
  decoder rows at unit norm for architectures with `unit_norm_decoder`;
- `fold_input_scale_(s)`, so that an SAE trained on x * s works on raw x.
"""

from typing import ClassVar, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from sae.config import SAEConfig
from sae.device import DTYPES, resolve_device


def firing_counts(
    indices: Int[Tensor, "n k"], values: Float[Tensor, "n k"], d_sae: int
) -> Int[Tensor, " d_sae"]:
    """How many rows each latent is non-zero on, from (indices, values) of k latents per row.
    An index_add of 0/1 instead of bincount(indices[values > 0]), whose boolean indexing
    would wait for the GPU."""
    hits = (values > 0).reshape(-1).long()
    return torch.zeros(d_sae, dtype=torch.long, device=indices.device).index_add_(
        0, indices.reshape(-1), hits
    )


class LossTerms(NamedTuple):
    """One training forward pass. All losses are means over the batch's tokens."""

    x_hat: Float[Tensor, "batch d_in"]
    """Reconstruction of the (normalised) input."""
    mse: Float[Tensor, ""]
    """mean_n ||x_n - x_hat_n||^2 (sum over d_in, mean over tokens, as SAELens)."""
    sparsity: Float[Tensor, ""]
    """Coefficient * sparsity penalty (relu: L1, jumprelu: L0); 0 for topk/batchtopk."""
    auxk: Float[Tensor, ""]
    """Unweighted AuxK loss of topk/batchtopk (0 for relu/jumprelu, or with no dead latents)."""
    fired: Int[Tensor, " d_sae"]
    """Number of tokens of this batch on which each latent was non-zero."""


class SAE(nn.Module):
    """Base class. Subclasses implement `encode` and `loss`."""

    unit_norm_decoder: ClassVar[bool] = False
    """Whether decoder rows are kept at unit norm during training (topk, batchtopk)."""

    def __init__(self, cfg: SAEConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        device, dtype = resolve_device(cfg.device), DTYPES[cfg.dtype]
        # Random unit directions drawn on the CPU so a seed gives the same SAE on every device.
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=generator, dtype=torch.float64)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        # W_enc = W_dec^T (Anthropic's April 2024 update; Gao et al. 2024 for TopK), scaled
        # down where decoder rows stay at unit norm (see SAEConfig.encoder_init_scale).
        if self.unit_norm_decoder:
            W_enc = W_dec.T * cfg.encoder_init_scale
        else:
            W_dec *= cfg.decoder_init_norm
            W_enc = W_dec.T
        self.W_enc = nn.Parameter(W_enc.contiguous().to(device, dtype))
        self.W_dec = nn.Parameter(W_dec.to(device, dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dtype))

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError naming the expected shape unless x is [..., d_in]."""
        if x.ndim == 0 or x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"{type(self).__name__} expects activations of shape [..., d_in={self.cfg.d_in}], "
                f"got {tuple(x.shape)}"
            )

    def pre_acts(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """(x - b_dec) @ W_enc + b_enc (without the b_dec shift if apply_b_dec_to_input is off)."""
        x, bias = self.encoder_inputs(x)
        if x.ndim == 2 and not torch.is_autocast_enabled(x.device.type):
            # One GEMM with the bias added inside it: no separate passes over [n, d_sae] for
            # the add and, in the backward, its gradient (15% of a CPU TopK step at d_sae 1024).
            # Under autocast the bias would be rounded to bf16 with the product; the sum below
            # keeps it in float32.
            return torch.addmm(bias, x, self.W_enc)
        return x @ self.W_enc + bias

    def encoder_inputs(
        self, x: Float[Tensor, "*batch d_in"]
    ) -> tuple[Float[Tensor, "*batch d_in"], Float[Tensor, " d_sae"]]:
        """(x', bias) with pre_acts(x) = x' @ W_enc + bias; x' does not depend on b_dec."""
        self.check_input(x)
        x = x.to(self.W_enc.dtype)
        bias = self.b_enc
        if self.cfg.apply_b_dec_to_input:
            # = (x - b_dec) @ W_enc + b_enc. The big product takes b_dec detached, so autograd
            # needs no gradient of the [n, d_in] input there (a third [n, d_sae] x [d_sae, d_in]
            # matmul per step); the bias gains a term that is zero in value and gives b_dec its
            # gradient, -(column sums of the pre-activation gradient) @ W_enc^T, a
            # vector-matrix product. Centring before the product keeps its precision under bf16
            # autocast.
            b = self.b_dec
            x = x - b.detach()
            bias = bias - (b - b.detach()) @ self.W_enc
        return x, bias

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Latent activations (dense) for inference."""
        raise NotImplementedError

    def decode(self, acts: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_in"]:
        """acts @ W_dec + b_dec."""
        return acts.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_in"]:
        """The reconstruction decode(encode(x))."""
        return self.decode(self.encode(x))

    def loss(
        self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, " d_sae"] | None = None
    ) -> LossTerms:
        """Training forward pass on a batch of tokens; `dead_mask` marks latents for AuxK."""
        raise NotImplementedError

    def check_batch(self, x: Tensor) -> None:
        """Training batches are [tokens, d_in]."""
        self.check_input(x)
        if x.ndim != 2:
            raise ValueError(f"loss() takes a [tokens, d_in] batch, got shape {tuple(x.shape)}")

    @staticmethod
    def mse(x: Tensor, x_hat: Tensor) -> Tensor:
        """mean over tokens of the squared error summed over d_in."""
        return (x_hat - x.to(x_hat.dtype)).pow(2).sum(-1).mean()

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove from W_dec.grad the component parallel to each (unit) decoder row.

        Gao et al. 2024: with rows kept at unit norm, the parallel component only changes the
        norm, which the renormalisation after the step undoes; removing it keeps Adam's moments
        for the directions only.
        """
        if not self.unit_norm_decoder or self.W_dec.grad is None:
            return
        W, g = self.W_dec, self.W_dec.grad
        g -= (g * W).sum(-1, keepdim=True) * W

    @torch.no_grad()
    def after_step_(self) -> None:
        """Re-project parameters onto their constraint set after an optimiser step."""
        if self.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        """Make the SAE trained on x * scale act on raw x: W_enc *= s, W_dec /= s, b_dec /= s.

        Then pre_acts(x) is unchanged, and the new reconstruction of x is the old reconstruction
        of x * s divided by s. Thresholds and b_enc live in pre-activation units and do not move.
        """
        self.W_enc *= scale
        self.W_dec /= scale
        self.b_dec /= scale

    def extra_repr(self) -> str:
        return f"arch={self.cfg.arch}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"
