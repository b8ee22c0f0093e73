"""interp.interventions against hand-computed references.

References are the HuggingFace model itself (weights edited by hand) and clean runs plus
arithmetic. The bridge runs HF's own modules with eager attention, so an HF model loaded with
eager attention computes the same operations: tolerances are fp32 round-off only.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp.errors import HookNameError
from interp.interventions import (
    add_direction,
    intervene,
    mean_ablate,
    patch,
    replace,
    store,
    zero_ablate,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def no_hooks_left(model) -> bool:
    points = set(model.hook_dict.values())
    return all(not hp.fwd_hooks and not hp._forward_hooks for hp in points)


def hf_with_mlp_out_zeroed(folder, arch: str, layer: int):
    hf = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    )
    with torch.no_grad():
        if arch == "gpt2":
            proj = hf.transformer.h[layer].mlp.c_proj
            proj.weight.zero_()
            proj.bias.zero_()
        else:
            proj = hf.model.layers[layer].mlp.down_proj
            proj.weight.zero_()
            assert proj.bias is None
    return hf.eval()


def test_zero_ablating_mlp_out_equals_zeroed_weights(model, tiny_dirs, arch, tokens):
    reference = hf_with_mlp_out_zeroed(tiny_dirs[arch], arch, layer=1)(tokens).logits
    with torch.no_grad(), intervene(model, {"blocks.1.hook_mlp_out": zero_ablate()}):
        logits = model(tokens)
    torch.testing.assert_close(logits, reference, **TOL)
    clean = model(tokens)
    assert (clean - reference).abs().max() > 1e-3  # the ablation did change something
    assert no_hooks_left(model)


def test_add_direction_adds_to_the_residual_downstream(model, tokens):
    clean, edited = {}, {}
    vec = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    names = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
    with torch.no_grad():
        with intervene(model, [(n, store(clean, n)) for n in names]):
            model(tokens)
        hooks = [("blocks.0.hook_resid_post", add_direction(vec, scale=2.5, positions=[2]))]
        with intervene(model, hooks + [(n, store(edited, n)) for n in names]):
            model(tokens)
    expected = clean["blocks.0.hook_resid_post"].clone()
    expected[:, 2] += 2.5 * vec
    torch.testing.assert_close(edited["blocks.0.hook_resid_post"], expected, **TOL)
    torch.testing.assert_close(edited["blocks.1.hook_resid_pre"], expected, **TOL)
    # Causal attention: positions before the edit are untouched downstream, the edited one moves.
    after, before = edited["blocks.1.hook_resid_post"], clean["blocks.1.hook_resid_post"]
    torch.testing.assert_close(after[:, :2], before[:, :2], **TOL)
    change = (after - before).abs().amax(dim=-1)  # [batch, pos]
    assert change[:, 2].min() > 0.1  # the edited position carries the direction
    assert change[:, 3:].min() > 1e-5  # later positions see it through attention (weakly at init)


def test_hooks_on_one_point_compose_in_order(model, tokens):
    seen = {}
    mean = torch.arange(model.cfg.d_model, dtype=torch.float32)
    fns = [mean_ablate(mean), add_direction(torch.ones(model.cfg.d_model)), store(seen, "x")]
    with torch.no_grad(), intervene(model, {"blocks.0.hook_mlp_out": fns}):
        model(tokens)
    torch.testing.assert_close(seen["x"], (mean + 1).expand(*tokens.shape, -1))


def test_positions_select_only_those_positions(model, tokens):
    seen, clean = {}, {}
    name = "blocks.1.hook_attn_out"
    with torch.no_grad():
        with intervene(model, {name: store(clean, "x")}):
            model(tokens)
        with intervene(model, {name: [zero_ablate(positions=slice(3, 5)), store(seen, "x")]}):
            model(tokens)
    expected = clean["x"].clone()
    expected[:, 3:5] = 0
    torch.testing.assert_close(seen["x"], expected)


def test_patching_all_of_the_residual_restores_the_clean_run(model, tokens):
    corrupt = tokens.flip(1)
    source = {}
    with torch.no_grad():
        with intervene(model, {"blocks.0.hook_resid_post": store(source, "x")}):
            clean_logits = model(tokens)
        with intervene(model, {"blocks.0.hook_resid_post": patch(source["x"])}):
            patched_logits = model(corrupt)
    torch.testing.assert_close(patched_logits, clean_logits, **TOL)


def test_replace_must_keep_the_shape(model, tokens):
    bad = replace(lambda a: a[..., :4])
    with pytest.raises(ValueError, match="must keep the shape"):
        with torch.no_grad(), intervene(model, {"blocks.0.hook_mlp_out": bad}):
            model(tokens)
    assert no_hooks_left(model)


def test_unknown_name_adds_nothing_and_suggests(model):
    ok = ("blocks.0.hook_mlp_out", zero_ablate())
    with pytest.raises(HookNameError, match="did you mean 'blocks.1.hook_mlp_out'"):
        with intervene(model, [ok, ("blocks.1.hook_mpl_out", zero_ablate())]):
            pass
    assert no_hooks_left(model)


def test_every_hook_is_removed_after_an_exception(model, tokens):
    names = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "hook_embed"]
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(model, {n: zero_ablate() for n in names}):
            assert all(model.hook_dict[n].fwd_hooks for n in names)
            assert all(model.hook_dict[n]._forward_hooks for n in names)
            raise RuntimeError("boom")
    assert no_hooks_left(model)


def test_bad_hook_specs(model):
    with pytest.raises(TypeError, match="callable"):
        with intervene(model, [("blocks.0.hook_mlp_out", "zero")]):
            pass
    with intervene(model, {}) as same:  # an empty intervention is a plain run
        assert same is model
