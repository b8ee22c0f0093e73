"""Weight edits that move a steering vector into a HuggingFace model, exactly.

- `bake(model, vector, scale)`: the vector at `scale` becomes a bias. Decoder layer L's output
  (the residual stream after block L, `blocks.L.hook_resid_post`) gets `vector.effective(scale)[L]`
  at every position, as `vector.apply(bridge, scale)` adds it. The bias goes on the last linear
  map of the block's MLP, whose output is added straight to the residual stream:
  GPT-2's `mlp.c_proj.bias` (present already), Llama's `mlp.down_proj.bias` (with
  `config.mlp_bias = True`, so that gate/up/down get biases in every layer: zero, except
  down_proj's at the vector's layers). The saved folder reloads with the bias in place.
- `orthogonalize(model, direction)`: Arditi et al. (2024)'s weight orthogonalisation. Every
  matrix that writes to the residual stream (token and position embeddings, attention output,
  MLP output, and their biases) gets W <- W - u uᵀ W (u = direction / |direction|, along the
  residual dimension), so no component can write the direction and the model equals the
  directional-ablation hooks of `interp.steering.ablate` (every block's resid_pre and resid_mid
  and the last resid_post). The unembedding reads the residual stream, so it keeps its weights:
  a tied embedding is untied first (`tie_word_embeddings = False`, lm_head keeps the original).

Both return a new model (a deep copy); the input is left untouched. Only architectures where the
edit is exact are accepted: a model whose attention or MLP output passes through a norm before it
reaches the residual stream (Gemma 2/3's sandwich norms) has no exact edit of either kind, and
Qwen2's HF code has no bias on o_proj or down_proj; both are refused with the supported list.
"""

import copy
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.align.errors import AlignError
from interp.steering.vector import DEFAULT_SITE, SteeringVector

BAKE_ARCHS = ("gpt2", "llama")
"""HF `model_type`s whose config gives the residual stream an exact bias route."""
ORTHO_ARCHS = ("gpt2", "llama", "qwen2")
"""HF `model_type`s whose every residual writer is a plain linear map or embedding."""
_NO_ROUTE = {
    "gemma2": "its attention and MLP outputs pass through a norm (post_attention_layernorm, "
    "post_feedforward_layernorm) before the residual add, so no weight edit is exact",
    "gemma3_text": "its attention and MLP outputs pass through a norm (post_attention_layernorm, "
    "post_feedforward_layernorm) before the residual add, so no weight edit is exact",
    "qwen2": "transformers' Qwen2 code has no bias on o_proj or down_proj (the maps that write "
    "the residual stream) and no config switch for one",
}


def model_type(model: Any) -> str:
    return str(getattr(model.config, "model_type", type(model).__name__))


def _check_arch(model: Any, supported: tuple[str, ...], what: str) -> str:
    kind = model_type(model)
    if kind not in supported:
        why = _NO_ROUTE.get(kind, "it is not one of the architectures checked to be exact")
        raise AlignError(
            f"{what} supports the model types {', '.join(supported)}; this model is {kind!r}: {why}"
        )
    return kind


def _shape(model: Any) -> tuple[int, int]:
    """(d_model, n_layers) from the HF config."""
    cfg = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    return int(cfg.hidden_size), int(cfg.num_hidden_layers)


def check_vector(model: Any, vector: SteeringVector, model_id: str | None = None) -> None:
    """`SteeringVector.check_model`'s checks (width, layers, the model it was made for) against
    a HuggingFace model: a vector that does not fit raises its `SteeringError`."""
    d_model, n_layers = _shape(model)
    vector.check_model(
        SimpleNamespace(cfg=SimpleNamespace(d_model=d_model, n_layers=n_layers)), model_id
    )


def _blocks(model: Any) -> list[Any]:
    if model_type(model) == "gpt2":
        return list(model.transformer.h)
    return list(model.model.layers)


# --- bake ------------------------------------------------------------------------------------


def _biased(linear: nn.Linear) -> nn.Linear:
    """The same linear map with a zero bias (the weight Parameter is kept)."""
    if linear.bias is not None:
        return linear
    w = linear.weight
    new = nn.Linear(
        linear.in_features, linear.out_features, bias=True, device=w.device, dtype=w.dtype
    )
    new.weight = w
    with torch.no_grad():
        new.bias.zero_()
    return new


def _mlp_out_bias(model: Any, layer: int) -> Tensor:
    """The bias added to the residual stream by block `layer`'s MLP (made if absent)."""
    block = _blocks(model)[layer]
    if model_type(model) == "gpt2":
        return block.mlp.c_proj.bias
    return block.mlp.down_proj.bias


def _add_llama_mlp_biases(model: Any) -> None:
    """config.mlp_bias = True with the biases it implies, all zero (an identical model)."""
    if getattr(model.config, "mlp_bias", False):
        return
    for block in _blocks(model):
        for name in ("gate_proj", "up_proj", "down_proj"):
            setattr(block.mlp, name, _biased(getattr(block.mlp, name)))
    model.config.mlp_bias = True


def bake(
    model: Any,
    vector: SteeringVector,
    scale: float = 1.0,
    *,
    layers: list[int] | None = None,
    model_id: str | None = None,
) -> Any:
    """A copy of the HF `model` in which `vector` at `scale` is a bias: the output of decoder
    layer L gets `vector.effective(scale)[L]` at every position, for each of the vector's layers
    (or `layers`). Equals `vector.apply(bridge, scale)` on the same weights.

    Raises `AlignError` for a site other than hook_resid_post or an architecture without an
    exact bias route, and the vector's `SteeringError` for another model, width or layer range.
    """
    vector = vector.select(layers)
    if vector.site != DEFAULT_SITE:
        raise AlignError(
            f"bake adds to the output of a decoder layer (site {DEFAULT_SITE}); this vector is at "
            f"{vector.site!r}. Extract it at {DEFAULT_SITE} (the default of interp steer extract)"
        )
    kind = _check_arch(model, BAKE_ARCHS, "bake")
    check_vector(model, vector, model_id)
    if not torch.isfinite(torch.tensor(float(scale))):
        raise AlignError(f"scale must be a finite number, got {scale}")
    edited = copy.deepcopy(model)
    if kind == "llama":
        _add_llama_mlp_biases(edited)
    effective = vector.effective(float(scale))
    with torch.no_grad():
        for row, layer in enumerate(vector.layers):
            bias = _mlp_out_bias(edited, layer)
            bias.add_(effective[row].to(bias.device, torch.float64).to(bias.dtype))
    return edited


# --- orthogonalize -----------------------------------------------------------------------------


def orthonormal_basis(directions: Tensor, d_model: int) -> Tensor:
    """An orthonormal basis [k, d_model] (float64) of the span of `directions` ([d_model] or
    [n, d_model]), by QR; ablating its rows one after another (in any order: the projections
    commute) removes the whole span."""
    directions = directions.detach().to("cpu", torch.float64)
    directions = directions[None] if directions.ndim == 1 else directions
    if directions.ndim != 2 or directions.shape[1] != d_model:
        raise AlignError(
            f"the direction has shape {list(directions.shape)}; the model's residual stream has "
            f"width {d_model}"
        )
    if not torch.isfinite(directions).all() or (directions.norm(dim=1) == 0).any():
        raise AlignError("cannot orthogonalise against a zero or non-finite direction")
    q, r = torch.linalg.qr(directions.T)
    rank = int((r.diagonal().abs() > 1e-9 * directions.norm(dim=1).max()).sum())
    if rank < len(directions):
        raise AlignError(
            f"the {len(directions)} directions span only {rank} dimensions; give independent ones"
        )
    return q.T.contiguous()


def _project_rows(weight: Tensor, basis: Tensor) -> None:
    """weight[..., d_model] <- weight (I - Q^T Q): every row loses its component in span(Q)."""
    w = weight.data.to(torch.float64)
    q = basis.to(w.device)
    weight.data.copy_((w - (w @ q.T) @ q).to(weight.dtype))


def _project_cols(weight: Tensor, basis: Tensor) -> None:
    """weight[d_model, k] <- (I - Q^T Q) weight: every column loses its component in span(Q)."""
    w = weight.data.to(torch.float64)
    q = basis.to(w.device)
    weight.data.copy_((w - q.T @ (q @ w)).to(weight.dtype))


def _untie(model: Any) -> None:
    """Give lm_head its own copy of a tied embedding, and record it in the config."""
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    if head is not None and head.weight is embed.weight:
        head.weight = nn.Parameter(embed.weight.detach().clone())
    model.config.tie_word_embeddings = False
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text is not None and text is not model.config:
        text.tie_word_embeddings = False


def residual_writers(model: Any) -> list[tuple[str, Tensor, str]]:
    """(name, parameter, how) of everything that writes to the residual stream: how is "rows"
    (the residual dimension is the last axis: embeddings, GPT-2's Conv1D weights, biases) or
    "cols" (nn.Linear weights [d_model, in])."""
    out: list[tuple[str, Tensor, str]] = []
    if model_type(model) == "gpt2":
        t = model.transformer
        out += [("transformer.wte.weight", t.wte.weight, "rows")]
        out += [("transformer.wpe.weight", t.wpe.weight, "rows")]
        for i, block in enumerate(t.h):
            for part in (block.attn.c_proj, block.mlp.c_proj):  # Conv1D: y = x W + b, W [in, out]
                prefix = (
                    f"transformer.h.{i}.{'attn' if part is block.attn.c_proj else 'mlp'}.c_proj"
                )
                out.append((f"{prefix}.weight", part.weight, "rows"))
                if part.bias is not None:
                    out.append((f"{prefix}.bias", part.bias, "rows"))
        return out
    out.append(("model.embed_tokens.weight", model.model.embed_tokens.weight, "rows"))
    for i, block in enumerate(model.model.layers):
        for prefix, part in (
            (f"model.layers.{i}.self_attn.o_proj", block.self_attn.o_proj),
            (f"model.layers.{i}.mlp.down_proj", block.mlp.down_proj),
        ):
            out.append((f"{prefix}.weight", part.weight, "cols"))
            if part.bias is not None:
                out.append((f"{prefix}.bias", part.bias, "rows"))
    return out


def orthogonalize(
    model: Any,
    direction: "Float[Tensor, '*k d_model'] | SteeringVector",
    layer: int | Sequence[int] | None = None,
    *,
    model_id: str | None = None,
) -> Any:
    """A copy of the HF `model` that cannot write `direction` into its residual stream: it
    equals `interp.steering.ablate(bridge, direction)` on the same weights. A `SteeringVector`
    gives its direction at `layer` (default, as `ablate`: its only layer, or the middle one).

    Several directions (a [k, d_model] tensor, or several layers of a vector) remove their whole
    span: the model equals `ablate` with each row of `orthonormal_basis(directions)` in turn.
    The embedding is untied from the unembedding first (`config.tie_word_embeddings = False`;
    lm_head keeps the original weights, as the hooks leave the unembedding alone).
    """
    _check_arch(model, ORTHO_ARCHS, "orthogonalize")
    d_model, _ = _shape(model)
    if isinstance(direction, SteeringVector):
        direction = vector_directions(model, direction, layer, model_id)
    basis = orthonormal_basis(torch.as_tensor(direction), d_model)
    edited = copy.deepcopy(model)
    _untie(edited)
    with torch.no_grad():
        for _, param, how in residual_writers(edited):
            (_project_rows if how == "rows" else _project_cols)(param, basis)
    return edited


def vector_directions(
    model: Any,
    vector: SteeringVector,
    layer: int | Sequence[int] | None = None,
    model_id: str | None = None,
) -> Tensor:
    """The vector's directions [k, d_model] at `layer` (one layer or several; default: its only
    layer, or the middle one of several, as `interp.steering.ablate`), checked against `model`."""
    check_vector(model, vector, model_id)
    if layer is None:
        layers = [vector.layers[len(vector.layers) // 2]]
    else:
        layers = [layer] if isinstance(layer, int) else list(layer)
    missing = [x for x in layers if x not in vector.layers]
    if missing or not layers:
        raise AlignError(
            f"layers {missing} are not in this vector; it has layers {list(vector.layers)}"
        )
    return vector.select(layers).directions


def changed_parameters(before: Any, after: Any) -> dict[str, int]:
    """How much an edit touched: `changed`, the weights (elements) whose value differs from the
    original (a new parameter counts where it is not zero); `added`, the elements of parameters
    the original did not have (zero biases included); `total`, the edited model's parameters
    (a weight untied from another counts once more)."""
    old = dict(before.named_parameters(remove_duplicate=False))
    changed = added = 0
    for name, param in after.named_parameters(remove_duplicate=False):
        if name in old:
            changed += int((param.detach() != old[name].detach().to(param.device)).sum())
        else:
            added += param.numel()
            changed += int((param.detach() != 0).sum())
    total = sum(p.numel() for p in after.parameters())
    return {"changed": changed, "added": added, "total": total}
