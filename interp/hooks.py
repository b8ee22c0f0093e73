"""Hook-name validation: every name the toolkit hooks is checked against `model.hook_dict` first.

Names are TransformerLens's canonical names (`blocks.3.hook_resid_post`). A *site* is the part of
a block's hook name after `blocks.{layer}.`, with or without its `hook_` prefix (`resid_post`,
`hook_mlp_out`, `attn.hook_z`). Unknown names raise `HookNameError` naming the closest valid ones.
"""

import difflib
import re
from collections.abc import Iterable
from typing import Any

from interp.errors import HookNameError

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BEFORE_BLOCKS = ("hook_embed", "hook_pos_embed", "embed.", "pos_embed.", "rotary_emb.")


def n_layers(model: Any) -> int:
    """Number of transformer blocks."""
    return int(model.cfg.n_layers)


def hook_layer(name: str) -> int | None:
    """Block index of a `blocks.{layer}.*` hook name, else None."""
    match = _BLOCK.match(name)
    return int(match.group(1)) if match else None


def block_sites(model: Any) -> list[str]:
    """Valid sites, read from block 0's hook names (every block has the same ones)."""
    return sorted(
        m.group(2) for n in model.hook_dict if (m := _BLOCK.match(n)) and m.group(1) == "0"
    )


def _closest(word: str, candidates: Iterable[str], n: int = 3) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_layer(model: Any, layer: int) -> int:
    """`layer` if it is a valid block index, else `HookNameError` with the valid range."""
    last = n_layers(model) - 1
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= last:
        raise HookNameError(f"layer {layer!r} is out of range; valid layers are 0..{last}")
    return layer


def _gated_reason(model: Any, name: str) -> str | None:
    # TransformerBridge switches some hook points off by default (e.g. attn.hook_result) and
    # silently ignores hooks added to them through a filter; refuse them up front instead.
    gate = getattr(model, "_gated_hook_reason", None)
    return gate(name) if callable(gate) else None


def check_hook_name(model: Any, name: str, hook_dict: dict | None = None) -> str:
    """`name` if `model.hook_dict` has it, else `HookNameError` suggesting the closest names.

    Pass `hook_dict` when checking many names: TransformerBridge rebuilds it on every access.
    """
    if not isinstance(name, str):
        raise HookNameError(f"a hook name must be a string, got {name!r}")
    hook_dict = model.hook_dict if hook_dict is None else hook_dict
    if name not in hook_dict:
        layer = hook_layer(name)
        if layer is not None:
            check_layer(model, layer)
        raise HookNameError(
            f"unknown hook name {name!r}{_closest(name, hook_dict)} "
            f"(valid names: {len(hook_dict)} in model.hook_dict, e.g. 'blocks.0.hook_resid_post')"
        )
    reason = _gated_reason(model, name)
    if reason is not None:
        raise HookNameError(
            f"hook {name!r} is switched off by default; call model.set_{reason}(True) first"
        )
    return name


def check_hook_names(model: Any, names: Iterable[str]) -> list[str]:
    """The names, checked and de-duplicated in order; an empty list is an error."""
    hook_dict = model.hook_dict
    checked = list(dict.fromkeys(check_hook_name(model, n, hook_dict) for n in names))
    if not checked:
        raise HookNameError("no hook names given; pass at least one (e.g. a layer and a site)")
    return checked


def site_hook_name(model: Any, layer: int, site: str) -> str:
    """`blocks.{layer}.{site}`, with `hook_` added to a bare site name, checked."""
    check_layer(model, layer)
    sites = block_sites(model)
    for candidate in (site, f"hook_{site}"):
        if candidate in sites:
            return check_hook_name(model, f"blocks.{layer}.{candidate}")
    short = [s.removeprefix("hook_") for s in sites if s.startswith("hook_")]
    nested = [s for s in sites if not s.startswith("hook_")]
    raise HookNameError(
        f"unknown site {site!r}{_closest(site, short + nested)} (valid sites: {', '.join(short)}; "
        f"sub-module sites such as 'attn.hook_z' are valid too)"
    )


def hook_names(
    model: Any,
    layers: Iterable[int],
    site: str,
    hooks: Iterable[str] = (),
    *,
    purpose: str = "hook",
) -> list[str]:
    """The checked hook names of a command: `layers` x `site` first, then the full names in
    `hooks`, de-duplicated in order. Neither given is an error that says what to pass."""
    layers, hooks = list(layers), list(hooks)
    if not layers and not hooks:
        raise HookNameError(
            f"nothing to {purpose}: give --layer (with --site) or a full --hook name"
        )
    names = [site_hook_name(model, layer, site) for layer in layers] + hooks
    return check_hook_names(model, names)


def resolve_hook(
    model: Any, layer: int | None = None, site: str | None = None, hook_name: str | None = None
) -> str:
    """One checked hook name from either `hook_name` or `layer` + `site`.

    `site` defaults to `resid_post` when only a layer is given. Passing both forms is an error,
    because the two could disagree.
    """
    if hook_name is not None:
        if layer is not None or site is not None:
            raise HookNameError(
                f"pass either a hook name ({hook_name!r}) or a layer and site, not both"
            )
        return check_hook_name(model, hook_name)
    if layer is None:
        raise HookNameError(
            "no hook given; pass a full hook name (e.g. 'blocks.0.hook_resid_post') or a layer "
            f"in 0..{n_layers(model) - 1} with a site (e.g. 'resid_post')"
        )
    return site_hook_name(model, layer, "resid_post" if site is None else site)


def stop_at_layer(model: Any, names: Iterable[str]) -> int | None:
    """The `stop_at_layer` that still runs every hook in `names`: deepest block + 1.

    0 when every name is before the first block (embeddings); None (run the whole model) when a
    name is after the blocks (final norm, unembedding) or the deepest block is the last one.
    """
    deepest = -1
    for name in names:
        layer = hook_layer(name)
        if layer is None and not name.startswith(_BEFORE_BLOCKS):
            return None
        deepest = max(deepest, -1 if layer is None else layer)
    stop = deepest + 1
    return None if stop >= n_layers(model) else stop
