"""The grids that patching, attribution and ablation scan: which hook each layer patches and
which axes a cell has.

| grid    | hook                     | cells (by position)   | cells (not by position) |
|---------|--------------------------|-----------------------|-------------------------|
| `resid` | `blocks.L.hook_resid_pre`| layer x pos           | layer                   |
| `attn`  | `blocks.L.hook_attn_out` | layer x pos           | layer                   |
| `mlp`   | `blocks.L.hook_mlp_out`  | layer x pos           | layer                   |
| `heads` | `blocks.L.attn.hook_z`   | layer x pos x head    | layer x head            |

`heads` patches a head's `z` (its attention-weighted values, before W_O), as TransformerLens's
`get_act_patch_attn_head_out_*` do. A cell is (layer, position or None, head or None); None
means every position (every head does not occur: `heads` cells always name one).
"""

from dataclasses import dataclass
from typing import Literal

from interp.patching.inputs import PatchingError

GridName = Literal["resid", "attn", "mlp", "heads"]
GRIDS: dict[str, str] = {
    "resid": "blocks.{}.hook_resid_pre",
    "attn": "blocks.{}.hook_attn_out",
    "mlp": "blocks.{}.hook_mlp_out",
    "heads": "blocks.{}.attn.hook_z",
}
"""Each grid's hook name, formatted with the layer."""
BY_POSITION = {"resid": True, "attn": True, "mlp": True, "heads": False}
"""Whether a grid's cells are per position by default (TransformerLens's defaults)."""

Cell = tuple[int, int | None, int | None]
"""(layer, position or None for all, head or None)."""


@dataclass(frozen=True)
class Grid:
    """A grid resolved for one model and prompt length."""

    name: str
    by_position: bool
    n_layers: int
    n_pos: int
    n_heads: int

    @property
    def axes(self) -> tuple[str, ...]:
        pos = ("pos",) if self.by_position else ()
        head = ("head",) if self.name == "heads" else ()
        return ("layer", *pos, *head)

    @property
    def shape(self) -> tuple[int, ...]:
        sizes = {"layer": self.n_layers, "pos": self.n_pos, "head": self.n_heads}
        return tuple(sizes[a] for a in self.axes)

    def hook(self, layer: int) -> str:
        return GRIDS[self.name].format(layer)

    def hooks(self) -> list[str]:
        return [self.hook(layer) for layer in range(self.n_layers)]

    def cells(self) -> list[Cell]:
        """Every cell, in the row-major order of `shape`."""
        positions = range(self.n_pos) if self.by_position else [None]
        heads = range(self.n_heads) if self.name == "heads" else [None]
        return [(lay, p, h) for lay in range(self.n_layers) for p in positions for h in heads]


def check_grid(name: str) -> str:
    if name not in GRIDS:
        raise PatchingError(f"unknown grid {name!r}; valid grids: {', '.join(GRIDS)} (and 'edges')")
    return name


def make_grid(model, name: str, n_pos: int, by_position: bool | None = None) -> Grid:
    """The grid `name` for `model` and prompts of `n_pos` tokens; `by_position` None takes the
    grid's default (`BY_POSITION`)."""
    check_grid(name)
    by = BY_POSITION[name] if by_position is None else by_position
    return Grid(name, by, int(model.cfg.n_layers), n_pos, int(model.cfg.n_heads))
