"""interp.interventions against hand-computed references.

References are the HuggingFace model itself (weights edited by hand), clean runs plus arithmetic,
loops over single entries, and `torch.autograd.grad`. The bridge runs HF's own modules with eager
attention, so an HF model loaded with eager attention computes the same operations: tolerances
are fp32 round-off only. Generation is tested in test_generation.py.
"""

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from interp.errors import HookNameError, InterpError
from interp.interventions import (
    Intervention,
    Select,
    SelectionError,
    add_direction,
    grad_store,
    intervene,
    load_interventions,
    mean_ablate,
    patch,
    replace,
    save_interventions,
    store,
    zero_ablate,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")  # 2 threads on a shared CPU stall 10-50x


def no_hooks_left(model) -> bool:
    points = set(model.hook_dict.values())
    fwd = all(not hp.fwd_hooks and not hp._forward_hooks for hp in points)
    return fwd and all(not hp.bwd_hooks and not hp._backward_hooks for hp in points)


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


# --- backward hooks -----------------------------------------------------------------------------


def loss_of(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1].log_softmax(-1)[:, 7].sum()


@pytest.mark.parametrize("name", ["blocks.1.hook_resid_post", "blocks.0.attn.hook_z", "hook_embed"])
def test_grad_store_equals_autograd(model, tokens, name):
    forward, grads = {}, {}

    def keep(a, *, hook):  # returned, so the stored tensor is the one the model goes on with
        forward["a"] = a
        return a

    with intervene(model, {name: keep}, bwd_hooks={name: grad_store(grads, "g")}):
        loss = loss_of(model(tokens))
        (reference,) = torch.autograd.grad(loss, forward["a"], retain_graph=True)
        loss.backward()
    assert grads["g"].shape == forward["a"].shape
    torch.testing.assert_close(grads["g"], reference, atol=0, rtol=0)
    assert reference.abs().max() > 0
    model.zero_grad(set_to_none=True)
    assert no_hooks_left(model)


def test_backward_hooks_are_removed_and_refuse_to_run_late(model, tokens):
    grads, name = {}, "blocks.1.hook_mlp_out"
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(model, bwd_hooks=[(name, grad_store(grads, "g"))]):
            assert model.hook_dict[name].bwd_hooks and model.hook_dict[name]._backward_hooks
            raise RuntimeError("boom")
    assert no_hooks_left(model)
    # torch keeps a module's backward hooks in the graph of a forward pass run inside the block.
    with intervene(model, bwd_hooks=[(name, grad_store(grads, "g"))]):
        late = loss_of(model(tokens))
    with pytest.raises(InterpError, match="ran after its `intervene` block closed"):
        late.backward()
    loss_of(model(tokens)).backward()  # a graph built after the block: no hook at all
    assert not grads and no_hooks_left(model)
    model.zero_grad(set_to_none=True)


# --- selections ---------------------------------------------------------------------------------


def run(model, tokens, hooks, names):
    found = {}
    with torch.no_grad(), intervene(model, list(hooks) + [(n, store(found, n)) for n in names]):
        logits = model(tokens)
    return logits, found


def test_row_selection_patches_exactly_those_rows(model, tokens):
    corrupt = tokens.flip(1)
    name = "blocks.0.hook_resid_post"
    clean_logits, clean = run(model, tokens, [], [name])
    corrupt_logits, _ = run(model, corrupt, [], [name])
    patched, _ = run(model, corrupt, [(name, patch(clean[name], rows=[1, 3]))], [])
    for row in (0, 2):  # untouched rows: bit-identical to the corrupt run
        assert torch.equal(patched[row], corrupt_logits[row])
    torch.testing.assert_close(patched[[1, 3]], clean_logits[[1, 3]], **TOL)
    # One clean row, shared by all rows of a folded batch through a size-1 batch axis.
    folded, _ = run(model, corrupt, [(name, patch(clean[name][2:3], rows=slice(1, None)))], [])
    assert torch.equal(folded[0], corrupt_logits[0])
    for row in (1, 2, 3):
        torch.testing.assert_close(folded[row], clean_logits[2], **TOL)


def test_rows_positions_heads_select_the_cartesian_product(model, tokens):
    name = "blocks.1.attn.hook_z"
    rows, positions, heads = [0, 2], [1, 5, 9], torch.tensor([False, True, False, True])
    _, clean = run(model, tokens, [], [name])
    _, edited = run(model, tokens, [(name, zero_ablate(positions, rows=rows, heads=heads))], [name])
    expected = clean[name].clone()
    for r in rows:
        for p in positions:
            for h in (1, 3):
                expected[r, p, h] = 0
    assert torch.equal(edited[name], expected)


def test_per_head_patching_equals_the_output_projection_by_hand(model, tokens, arch):
    layer, z, out = 1, "blocks.1.attn.hook_z", "blocks.1.hook_attn_out"
    corrupt = tokens.flip(1)
    _, clean = run(model, tokens, [], [z])
    _, base = run(model, corrupt, [], [z])
    _, patched = run(model, corrupt, [(z, patch(clean[z], positions=[3, 4], heads=[2]))], [z, out])
    manual = base[z].clone()
    for p in (3, 4):
        manual[:, p, 2] = clean[z][:, p, 2]
    assert torch.equal(patched[z], manual)
    hf = model.original_model
    proj = (
        hf.transformer.h[layer].attn.c_proj
        if arch == "gpt2"
        else hf.model.layers[layer].self_attn.o_proj
    )
    with torch.no_grad():
        by_hand = proj(manual.flatten(2))
    torch.testing.assert_close(patched[out], by_hand, **TOL)


def test_heads_on_a_pattern_index_its_head_axis(model, tokens):
    name = "blocks.0.attn.hook_pattern"
    _, clean = run(model, tokens, [], [name])
    _, edited = run(model, tokens, [(name, zero_ablate(heads=[1], positions=[4]))], [name])
    expected = clean[name].clone()
    expected[:, 1, 4] = 0  # [batch, head, query_pos, key_pos]
    assert torch.equal(edited[name], expected)


@pytest.mark.parametrize(
    ("hook", "select", "message"),
    [
        ("blocks.0.hook_resid_post", {"rows": [4]}, r"rows \[4\] out of range at "
         r"blocks.0.hook_resid_post \(shape \(4, 16, 32\)\); valid rows are 0..3"),
        ("blocks.0.attn.hook_z", {"heads": [0, 4]}, r"heads \[0, 4\] out of range at "
         r"blocks.0.attn.hook_z \(shape \(4, 16, 4, 8\)\); valid heads are 0..3"),
        ("blocks.0.hook_mlp_out", {"positions": -17}, r"valid positions are 0..15 \(or -16..-1\)"),
        ("blocks.0.hook_mlp_out", {"heads": 0}, r"heads= needs a per-head site.*hook_mlp_out"),
    ],
)  # fmt: skip
def test_out_of_range_selections_name_hook_shape_and_range(model, tokens, hook, select, message):
    with pytest.raises(SelectionError, match=message):
        run(model, tokens, [(hook, zero_ablate(**select))], [])
    assert no_hooks_left(model)


def test_bad_selections_are_refused_when_made():
    with pytest.raises(SelectionError, match="unknown positions selection 'generate'"):
        zero_ablate(positions="generate")
    with pytest.raises(SelectionError, match="step >= 1"):
        Select(rows=slice(None, None, -1))
    with pytest.raises(SelectionError, match="bad heads selection"):
        Select(heads=[1.5])


def test_position_words_outside_generation(model, tokens):
    name = "blocks.1.hook_resid_post"
    clean, _ = run(model, tokens, [], [])
    same, _ = run(model, tokens, [(name, zero_ablate("generated"))], [])
    assert torch.equal(same, clean)  # a plain forward pass has no generated tokens
    _, found = run(model, tokens, [(name, zero_ablate("prompt"))], [name])
    assert not found[name].any()


def test_hook_functions_see_the_name_they_were_given(model, tokens):
    names = []
    with (
        torch.no_grad(),
        intervene(model, {"blocks.0.attn.hook_z": lambda a, *, hook: names.append(hook.name)}),
    ):
        model(tokens)
    assert names == ["blocks.0.attn.hook_z"]


# --- interventions as values --------------------------------------------------------------------


def some_interventions(model) -> list[Intervention]:
    g = torch.Generator().manual_seed(4)
    d = model.cfg.d_model
    return [
        Intervention("add", "blocks.0.hook_resid_post", {"direction": torch.randn(d, generator=g)},
                     scale=3.0, positions=slice(2, None, 2), rows=[0, 3]),
        Intervention("mean", "blocks.1.attn.hook_z", {"mean": torch.randn(4, 8, generator=g)},
                     heads=torch.tensor([0, 2]), positions="prompt"),
        Intervention("zero", "blocks.2.hook_mlp_out", positions=5),
    ]  # fmt: skip


def test_saved_interventions_reapply_to_identical_logits(model, tokens, tmp_path):
    ivs = some_interventions(model)
    with torch.no_grad():
        clean = model(tokens)
        with intervene(model, ivs):
            before = model(tokens)
    path = save_interventions(tmp_path / "edits.safetensors", ivs)
    loaded = load_interventions(path)
    assert loaded == ivs
    with torch.no_grad(), intervene(model, loaded):
        after = model(tokens)
    assert torch.equal(after, before) and not torch.equal(before, clean)
    with safe_open(str(path), framework="pt") as f:  # plain safetensors with JSON metadata
        meta = f.metadata()
        assert sorted(f.keys()) == ["0.direction", "1.mean"]
    listed = json.loads(meta["interventions"])
    assert [d["kind"] for d in listed] == ["add", "mean", "zero"]
    assert listed[0]["positions"] == {"start": 2, "stop": None, "step": 2}
    assert listed[1]["heads"] == [0, 2] and listed[2]["positions"] == [5]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_interventions(path, ivs)


def test_an_intervention_equals_its_factory(model, tokens):
    vec = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(6))
    name = "blocks.1.hook_resid_pre"
    iv = Intervention("add", name, {"direction": vec}, scale=2.0, rows=[1], positions=[0, 3])
    by_value, _ = run(model, tokens, [iv], [])
    by_factory, _ = run(model, tokens, [(name, add_direction(vec, 2.0, [0, 3], rows=[1]))], [])
    assert torch.equal(by_value, by_factory)
    assert Intervention.from_dict(iv.to_dict(), {"direction": vec}) == iv


def test_bad_interventions_say_what_is_valid(tmp_path):
    with pytest.raises(ValueError, match="unknown kind 'ablate'; valid kinds: zero, mean, add"):
        Intervention("ablate", "blocks.0.hook_resid_post")
    with pytest.raises(ValueError, match=r"takes the tensors \['direction'\], got \['dir'\]"):
        Intervention("add", "blocks.0.hook_resid_post", {"dir": torch.ones(3)})
    with pytest.raises(ValueError, match="scale applies to 'add' only"):
        Intervention("zero", "blocks.0.hook_resid_post", scale=2.0)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(other))
    with pytest.raises(InterpError, match="not an interventions file"):
        load_interventions(other)


def test_an_unknown_intervention_hook_adds_nothing(model):
    iv = Intervention("zero", "blocks.1.hook_resid_psot")
    with pytest.raises(HookNameError, match="did you mean 'blocks.1.hook_resid_post'"):
        with intervene(model, [iv]):
            pass
    assert no_hooks_left(model)
