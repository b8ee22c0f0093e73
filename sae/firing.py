"""Per-latent firing statistics during training: dead latents and feature density."""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


class FiringStats:
    """Tracks, per latent, tokens since it last fired and how often it fired recently.

    Density is measured over the current window plus the previous complete one, so once one
    window of `window_tokens` has passed it always covers between one and two windows.
    All tensors live on the CPU; counts passed to `update` are global (summed over ranks).
    """

    def __init__(self, d_sae: int, window_tokens: int) -> None:
        self.window_tokens = window_tokens
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.long)
        self.counts = torch.zeros(2, d_sae, dtype=torch.float64)  # previous, current window
        self.tokens = torch.zeros(2, dtype=torch.long)

    def update(self, fired: Int[Tensor, " d_sae"], n_tokens: int) -> None:
        """Add one batch: `fired[i]` tokens of `n_tokens` on which latent i was non-zero."""
        fired = fired.detach().cpu()
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired > 0] = 0
        self.counts[1] += fired.double()
        self.tokens[1] += n_tokens
        if self.tokens[1] >= self.window_tokens:
            self.counts[0], self.tokens[0] = self.counts[1].clone(), self.tokens[1].clone()
            self.counts[1].zero_()
            self.tokens[1].zero_()

    def dead_mask(self) -> Bool[Tensor, " d_sae"]:
        """Latents that have not fired in the last `window_tokens` tokens."""
        return self.tokens_since_fired >= self.window_tokens

    def feature_density(self) -> Float[Tensor, " d_sae"]:
        """Fraction of recent tokens each latent fired on (zeros before any update)."""
        total = int(self.tokens.sum())
        return (self.counts.sum(0) / max(total, 1)).float()

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors to checkpoint."""
        return {
            "tokens_since_fired": self.tokens_since_fired,
            "counts": self.counts,
            "tokens": self.tokens,
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Inverse of `state_dict`."""
        self.tokens_since_fired = state["tokens_since_fired"].clone()
        self.counts = state["counts"].clone()
        self.tokens = state["tokens"].clone()
