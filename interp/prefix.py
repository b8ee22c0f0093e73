"""Run the first blocks once, then branch: several forward passes over the same tokens that
differ only from block `n` on share the output of blocks 0..n-1.

    with shared_prefix(model, n_blocks=13) as prefix:
        clean = model(tokens)                        # runs every block; records blocks 0..12
        with intervene(model, {"blocks.12.hook_resid_post": zero_ablate()}):
            ablated = model(tokens)                  # blocks 0..12 replayed, 13..15 run

The first pass inside the block records what each of the first `n_blocks` blocks' wrapped
module (a HuggingFace decoder layer, under TransformerBridge's `BlockBridge`) returned; later
passes return those outputs without computing them. The bridge's hooks around a replayed block
still fire, so an intervention on the last shared block's output (`blocks.{n-1}.hook_resid_post`)
or on anything after it works as in a full pass.

Checked, so that a replay is never silently wrong:
- every later pass must feed block 0 the recorded input (same tokens, no edited embedding),
  else `PrefixMismatch`;
- no hook may be active inside the shared blocks during a replay (it would not run), other than
  on the last shared block's output, else `PrefixMismatch`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from interp.errors import InterpError


class PrefixMismatch(InterpError):
    """A pass inside `shared_prefix` cannot reuse the recorded blocks."""


class SharedPrefix:
    """Records, then replays, the outputs of the first `n_blocks` blocks (see the module)."""

    def __init__(self, model: Any, n_blocks: int) -> None:
        blocks = getattr(model, "blocks", None)
        if blocks is None or not all(hasattr(b, "original_component") for b in blocks):
            raise PrefixMismatch(
                "shared_prefix needs a TransformerBridge (interp.load_model), whose blocks wrap "
                f"the model's own layers; got {type(model).__name__}"
            )
        if not 1 <= n_blocks <= len(blocks):
            raise PrefixMismatch(f"n_blocks must be in 1..{len(blocks)}, got {n_blocks}")
        self.model, self.n_blocks, self.blocks = model, n_blocks, list(blocks)[:n_blocks]
        self.outputs: list[Any] = []
        self.block0_input: torch.Tensor | None = None
        self.replays = 0

    def _hidden(self, args: tuple, kwargs: dict) -> torch.Tensor:
        return args[0] if args else kwargs["hidden_states"]

    def _wrap(self, index: int, module: Any) -> Any:
        original = module.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            recording = len(self.outputs) < self.n_blocks
            if recording:
                if index == 0:
                    self.block0_input = self._hidden(args, kwargs).detach().clone()
                out = original(*args, **kwargs)
                self.outputs.append(out)
                return out
            if index == 0:
                self._check_replay(self._hidden(args, kwargs))
            return self.outputs[index]

        return forward

    def _check_replay(self, block0_input: torch.Tensor) -> None:
        recorded = self.block0_input
        if (
            recorded is None
            or block0_input.shape != recorded.shape
            or not torch.equal(block0_input, recorded)
        ):
            raise PrefixMismatch(
                "a pass inside shared_prefix fed block 0 another input than the recorded pass "
                "(other tokens, or an edited embedding); the shared blocks cannot be reused"
            )
        allowed = self.blocks[-1].hook_out
        for i, block in enumerate(self.blocks):
            for name, point in block.named_modules():
                if point is allowed or not hasattr(point, "_forward_hooks"):
                    continue
                if type(point).__name__ == "HookPoint" and point._forward_hooks:
                    raise PrefixMismatch(
                        f"a hook is active at blocks.{i}.{name}, inside the {self.n_blocks} "
                        "shared blocks, which are replayed and not run; intervene at or after "
                        f"blocks.{self.n_blocks - 1}.hook_resid_post, or share fewer blocks"
                    )
        self.replays += 1


def shareable_blocks(hook_names: list[str] | tuple[str, ...]) -> int:
    """How many leading blocks passes that intervene at `hook_names` can share: up to and
    including block L for `blocks.L.hook_resid_post`, up to L-1 for another site in block L,
    none for a hook outside the blocks (the embedding, the final norm)."""
    shared = []
    for name in hook_names:
        parts = name.split(".")
        if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
            return 0
        layer = int(parts[1])
        shared.append(layer + 1 if parts[2] == "hook_resid_post" and len(parts) == 3 else layer)
    return min(shared, default=0)


@contextmanager
def shared_prefix(model: Any, n_blocks: int) -> Iterator[SharedPrefix]:
    """Inside the block, the first forward pass records blocks 0..n_blocks-1 and later passes
    (same tokens) replay them. The model is restored on exit, also on an exception."""
    prefix = SharedPrefix(model, n_blocks)
    modules = [block.original_component for block in prefix.blocks]
    for i, module in enumerate(modules):
        module.forward = prefix._wrap(i, module)
    try:
        yield prefix
    finally:
        for module in modules:
            module.__dict__.pop("forward", None)
        prefix.outputs.clear()
