"""Fast capture of block-level sites by running a TransformerBridge's HuggingFace model directly.

TransformerBridge swaps each HuggingFace module for a hooked wrapper that computes attention step
by step (eager, with score and pattern hooks), and that forward pass is nearly all of capture's
time. When every requested hook is one that a plain HF module gives as its input or output, the
same weights can run through stock HF modules with fused (sdpa) attention instead:

| hook                      | HF module (GPT-2 / Llama)            | taken from              |
|---------------------------|--------------------------------------|-------------------------|
| `blocks.L.hook_resid_pre` | decoder layer L (`h[L]`/`layers[L]`) | input `hidden_states`   |
| `blocks.L.hook_resid_post`| decoder layer L                      | output (`[0]` if tuple) |
| `blocks.L.hook_attn_out`  | layer L's attention (`attn`/`self_attn`) | output `[0]`        |
| `blocks.L.hook_mlp_out`   | layer L's MLP (`mlp`)                | output                  |

`HFRunner` is that plain model: a skeleton of the bridge's base model class (no LM head) built on
the meta device, whose parameters and buffers are the bridge's own tensors (shared, not copied),
so it costs no memory and sees in-place weight edits. It is called like the bridge calls HF,
`base(input_ids, use_cache=False)` with no attention mask, so positions are HF's default arange
and attention is causal, exactly as in the bridge's pass on a token tensor.

For a plain `LlamaModel` (the embedded model's class) the skeleton is not run through its own
modules: `interp.capture.fused_llama.forward` computes the same layers from the same shared tensors with
fewer, larger kernels (stacked q/k/v and gate/up products, fused RMSNorm, residual adds inside
the output products, rotary embeddings as one complex multiply) and stores the four sites
directly. Any other architecture runs the skeleton with forward hooks on the modules above.

`fast_runner(model, names)` returns None, and capture takes the bridge path, whenever the fast
path could differ from the bridge: another hook name, weights processed by the bridge
(`process_weights`, compatibility mode), a hook on any of the bridge's hook points (e.g. an
intervention active around the capture), or a model that is not a bridge over an HF model.
Raw torch hooks put on the wrapped HF modules by hand are not seen; pass `fast=False` for those.
"""

import copy
import re
import weakref
from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor, nn

from interp.capture import fused_llama

_SITE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post|attn_out|mlp_out)$")
_WRAPPED = re.compile(r"(^|\.)_original_component(?=\.|$)")
_RUNNERS: "weakref.WeakKeyDictionary[nn.Module, HFRunner | None]" = weakref.WeakKeyDictionary()
"""Per bridge: its runner, or None once building one failed (not retried at every batch)."""


class Collected(Exception):
    """Raised by the last storing hook to end a forward pass that has nothing left to give."""


def _unwrapped(name: str) -> str:
    """A bridge module path without its `_original_component` steps: the HF path."""
    return _WRAPPED.sub("", name).lstrip(".")


def _signature(base: nn.Module) -> tuple[list[nn.Module], list[tuple[dict, str, Any]]]:
    """The modules under `base` and each tensor slot's (table, name, tensor): cheap to re-check
    (one module walk and identity tests), unlike listing `parameters()` and `buffers()`."""
    modules = list(base.modules())
    slots = [
        (table, attr, tensor)
        for m in modules
        for table in (m._parameters, m._buffers)
        for attr, tensor in table.items()
    ]
    return modules, slots


def _hf_path(base: nn.Module, target: nn.Module, skeleton: nn.Module) -> str:
    """Path in `skeleton` of the HF module that the bridge wraps as `target`.

    The bridge reaches a module under several names (its own aliases such as `attn`, and the
    HF names through `_original_component`); the HF one is the one that exists in `skeleton`.
    """
    hf_class = type(getattr(target, "_original_component", target))
    for name, module in base.named_modules(remove_duplicate=False):
        if module is target:
            path = _unwrapped(name)
            try:
                found = skeleton.get_submodule(path)
            except AttributeError:
                continue
            if type(found) is hf_class:
                return path
    raise LookupError(f"no HF module of class {hf_class.__name__} for a bridge component")


class HFRunner:
    """The bridge's HF base model rebuilt from stock modules, sharing the bridge's tensors."""

    def __init__(self, bridge: nn.Module) -> None:
        base = bridge.original_model.base_model
        config = copy.deepcopy(base.config)
        # sdpa where the architecture supports it; Gemma 2 refuses it (attention soft-capping).
        sdpa = getattr(type(base), "_supports_sdpa", False)
        config._attn_implementation = "sdpa" if sdpa else "eager"
        with torch.device("meta"):
            skeleton = type(base)(config)
        skeleton.eval()
        shared = {_unwrapped(n): t for n, t in base.named_parameters(remove_duplicate=False)}
        shared |= {_unwrapped(n): t for n, t in base.named_buffers(remove_duplicate=False)}
        for name, _ in [*skeleton.named_parameters(), *skeleton.named_buffers()]:
            owner, _, attr = name.rpartition(".")
            module = skeleton.get_submodule(owner)
            tensor = shared[name]  # KeyError: a layout we do not know; caller falls back
            if isinstance(tensor, nn.Parameter):
                setattr(module, attr, tensor)
            else:
                module._buffers[attr] = tensor
        self.skeleton = skeleton
        self.signature = _signature(base)
        self.bridge_base = base
        self.blocks = [_hf_path(base, block, skeleton) for block in bridge.blocks]
        self.fused = fused_llama.supports(skeleton) and self.blocks == [
            f"layers.{i}" for i in range(len(self.blocks))
        ]
        """Whether `interp.capture.fused_llama.forward` runs the skeleton instead of its own forward."""

    def is_current(self) -> bool:
        """Whether the bridge still holds the very tensors shared (not moved, not replaced)."""
        modules, slots = self.signature
        return list(self.bridge_base.modules()) == modules and all(
            table.get(attr) is tensor for table, attr, tensor in slots
        )

    def module(self, bridge: nn.Module, layer: int, site: str) -> nn.Module:
        """The skeleton's module whose input or output is `blocks.{layer}.hook_{site}`."""
        block = self.skeleton.get_submodule(self.blocks[layer])
        if site in ("resid_pre", "resid_post"):
            return block
        part = bridge.blocks[layer].attn if site == "attn_out" else bridge.blocks[layer].mlp
        return self.skeleton.get_submodule(_hf_path(self.bridge_base, part, self.skeleton))


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _eligible(model: Any, names: list[str]) -> bool:
    original = getattr(model, "original_model", None)
    if not isinstance(original, nn.Module) or not hasattr(model, "blocks"):
        return False
    if getattr(original, "hf_device_map", None):  # split over devices by accelerate's hooks
        return False
    if getattr(model, "_weights_processed", False) or getattr(model, "compatibility_mode", False):
        return False
    if not all(_SITE.match(n) for n in names):
        return False
    return not has_active_hooks(model)


def has_active_hooks(model: nn.Module) -> bool:
    """Whether a hook is on any of the bridge's hook points (e.g. an intervention is active).

    Only `HookPoint`s count: the bridge and HF keep torch hooks of their own on the wrapped
    modules (output capture for `output_attentions` and the like), which change nothing.
    """
    from transformer_lens.hook_points import HookPoint

    return any(
        isinstance(m, HookPoint) and (m._forward_hooks or m._forward_pre_hooks)
        for m in model.modules()
    )


def runner_for(model: Any) -> HFRunner | None:
    """The cached `HFRunner` of a bridge, rebuilt if its tensors changed; None if unsupported."""
    if model in _RUNNERS:
        runner = _RUNNERS[model]
        if runner is None or runner.is_current():
            return runner
    try:
        runner = HFRunner(model)
    except (LookupError, ValueError):  # KeyError included
        # A layout this path does not know (a bridge module with no HF counterpart, an HF tensor
        # the bridge does not hold, a config HF refuses to rebuild): the bridge path gives the
        # same activations.
        runner = None
    _RUNNERS[model] = runner
    return runner


def _store_hook(
    found: dict[str, Tensor], name: str, n_names: int, stop: bool, pre: bool
) -> Callable[..., None]:
    def keep(tensor: Tensor) -> None:
        found[name] = tensor
        if stop and len(found) == n_names:
            raise Collected

    if pre:
        return lambda module, args, kwargs: keep(args[0] if args else kwargs["hidden_states"])
    return lambda module, args, output: keep(_first(output))


def _refuse_new_hooks(model: nn.Module) -> None:
    if has_active_hooks(model):
        raise RuntimeError(
            "a hook was added to the model's hook points after the capture started; the "
            "fast capture path would skip it. Add it before `recording`, or pass fast=False"
        )


def fast_runner(
    model: Any, names: list[str], found: dict[str, Tensor], stop_early: bool
) -> Callable[[Int[Tensor, "batch pos"]], None] | None:
    """`run(tokens)` filling `found` from the plain HF modules, or None to use the bridge.

    Hooks go on the skeleton (never on the bridge) only for the duration of each call. With
    `stop_early` the last hook to fire raises `Collected`, which `run` lets through.
    """
    if not _eligible(model, names):
        return None
    runner = runner_for(model)
    if runner is None:
        return None
    if runner.fused:  # stops after the deepest wanted layer whether or not stop_early
        wanted: dict[int, dict[str, str]] = {}
        for name in names:
            layer, site = _SITE.match(name).groups()  # type: ignore[union-attr]
            wanted.setdefault(int(layer), {})[site] = name

        def run_fused(tokens: Int[Tensor, "batch pos"]) -> None:
            _refuse_new_hooks(model)
            fused_llama.forward(runner.skeleton, tokens, wanted, found)

        return run_fused
    sites = [(n, runner.module(model, int(m[1]), m[2])) for n in names if (m := _SITE.match(n))]

    def run(tokens: Int[Tensor, "batch pos"]) -> None:
        _refuse_new_hooks(model)
        handles = []
        try:
            for name, module in sites:
                pre = name.endswith("resid_pre")
                hook = _store_hook(found, name, len(names), stop_early, pre)
                if pre:
                    handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
                else:
                    handles.append(module.register_forward_hook(hook))
            runner.skeleton(tokens, use_cache=False)
        finally:
            for handle in handles:
                handle.remove()

    return run
