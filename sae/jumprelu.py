"""JumpReLU SAE (Rajamanoharan et al. 2024) with an L0 penalty trained by straight-through
estimators.

acts_i = relu(pre_i) * H(pre_i - theta_i), with a learned threshold theta_i >= 0 per latent. H has
no useful gradient, so the backward pass uses the paper's pseudo-derivatives with a rectangle kernel
K(u) = 1[|u| < 1/2] of bandwidth eps:
    d acts_i / d theta_i  := -(theta_i / eps) * K((pre_i - theta_i) / eps)
    d H(pre_i - theta_i) / d theta_i := -(1 / eps) * K((pre_i - theta_i) / eps)
and pre gets the ordinary gradient H(pre - theta) through acts and none through the L0 term
(DeepMind's choice; SAELens's default `jumprelu_ste_to_input=False`).

The sparsity penalty is the plain step L0, l0_coefficient * mean_n sum_i H(pre_ni - theta_i)
(DeepMind's "step" mode, SAELens's default), not Anthropic's tanh. It does not depend on
decoder norms, and neither does the reconstruction once the encoder side is rescaled, so no
decoder-norm constraint is needed; rows start at `decoder_init_norm`. The threshold is the
parameter itself (not its log, as SAELens since #494) and is clamped to >= 0 after each step.
"""

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from sae.base import SAE, LossTerms
from sae.config import SAEConfig


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """relu(pre) * H(pre - theta), with the straight-through threshold gradient above.

    The relu only matters for a negative threshold, which training never leaves (it clamps to
    >= 0); it makes loaded SAEs with negative thresholds match SAELens's inference JumpReLU.
    """

    @staticmethod
    def forward(ctx: Any, pre: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre.relu() * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * ((pre > theta) & (pre > 0)).to(grad.dtype)
        kernel = _rectangle((pre - theta) / eps)
        grad_theta = (-(theta / eps) * kernel * grad).reshape(-1, pre.shape[-1]).sum(0)
        return grad_pre, grad_theta, None


class StepFunction(torch.autograd.Function):
    """H(pre - theta); gradient only to theta, by the straight-through estimator above."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel = _rectangle((pre - theta) / eps)
        grad_theta = (-(1.0 / eps) * kernel * grad).reshape(-1, pre.shape[-1]).sum(0)
        return None, grad_theta, None


class JumpReLUSAE(SAE):
    """acts = relu(pre) * (pre > threshold); x_hat = acts @ W_dec + b_dec."""

    def __init__(self, cfg: SAEConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__(cfg, generator=generator)
        self.threshold = nn.Parameter(
            torch.full_like(self.b_enc, cfg.jumprelu_init_threshold), requires_grad=True
        )

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        pre = self.pre_acts(x)
        return JumpReLUFunction.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth)

    def loss(
        self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, " d_sae"] | None = None
    ) -> LossTerms:
        """sparsity = l0_coefficient * mean_n sum_i H(pre_ni - theta_i). dead_mask is unused."""
        self.check_batch(x)
        pre = self.pre_acts(x)
        eps = self.cfg.jumprelu_bandwidth
        acts = JumpReLUFunction.apply(pre, self.threshold, eps)
        x_hat = self.decode(acts)
        l0 = StepFunction.apply(pre, self.threshold, eps).sum(-1).mean()
        zero = pre.new_zeros(())
        return LossTerms(
            x_hat, self.mse(x, x_hat), self.cfg.l0_coefficient * l0, zero, (acts != 0).sum(0)
        )

    @torch.no_grad()
    def after_step_(self) -> None:
        """Clamp thresholds to >= 0: below 0 the gate would pass negative pre-activations."""
        super().after_step_()
        self.threshold.clamp_(min=0.0)
