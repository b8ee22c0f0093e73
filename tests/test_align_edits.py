"""Weight edits (interp.align.edits) against the hooks they replace, and the aligned-model folder.

- `bake(model, v, s)` equals `v.apply(bridge, s)` (the vector added at every position) and
  `orthogonalize(model, d)` equals `interp.steering.ablate(bridge, d)` (the direction projected
  out at every block's resid_pre and resid_mid and the last resid_post): the same logits within
  fp32 round-off, on the default model (tied embeddings, no biases) and on tiny random GPT-2,
  Llama and Qwen2 folders (tests/conftest.py); Gemma 3 (norms after attention and MLP) and,
  for bake, Qwen2 (no bias route) are refused with the supported list.
- `write_aligned` writes a folder that transformers and `interp.load_model` reopen with the same
  logits; its evaluation of an unchanged model shows zero drift (KL 0, the same LM losses).
- Bad input: a vector for another width, model or layer range, a non-resid_post site, an
  existing --out without --force (left untouched), a failed write (nothing left behind).
"""

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from interp.align.edits import bake, changed_parameters, orthogonalize, residual_writers
from interp.align.errors import AlignError
from interp.align.folder import check_out, write_aligned
from interp.models import load_hf, load_model, model_id
from interp.steering.vector import SteeringError, SteeringVector, ablate

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = {"atol": 1e-4, "rtol": 1e-4}
"""fp32: the bridge and the edited HF model sum in different orders (and the edits round each
weight once to fp32); logits are O(10)."""


def _vector(d_model: int, layers: tuple[int, ...], n_layers: int, mid: str | None, seed: int = 0):
    """A random 'relative' vector (so `effective` rescales by per-layer norms)."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(len(layers), d_model, generator=gen)
    norms = tuple(float(x) for x in 1 + torch.rand(len(layers), generator=gen))
    return SteeringVector(
        d, layers, mid, d_model, n_layers, convention="relative", resid_norms=norms
    )


def _tokens(vocab: int, seed: int = 1, shape=(3, 12)) -> torch.Tensor:
    return torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _hf(folder) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def default():
    """(bridge, HF model, tokenizer) of the default model, float32 on CPU."""
    bridge = load_model("default", device="cpu", dtype="float32")
    hf, tok = load_hf("default", device="cpu", dtype="float32")
    return bridge, hf, tok


# --- the default model ---------------------------------------------------------------------


@torch.no_grad()
def test_bake_equals_steering_on_the_default_model(default):
    bridge, hf, _ = default
    v = _vector(128, (3, 13), 16, "default")
    tokens = _tokens(500)
    clean = bridge(tokens, return_type="logits")
    with v.apply(bridge, 1.5):
        steered = bridge(tokens, return_type="logits")
    before = hf(tokens).logits
    baked = bake(hf, v, 1.5, model_id="default")
    assert (steered - clean).abs().max() > 1.0  # the vector does something
    torch.testing.assert_close(baked(tokens).logits, steered, **TOL)
    torch.testing.assert_close(hf(tokens).logits, before, rtol=0, atol=0)  # input untouched
    assert baked.config.mlp_bias and not hf.config.mlp_bias
    # closed form of what changed: zero gate/up/down biases in every layer, d_model nonzero
    # entries per baked layer
    per_layer = 2 * hf.config.intermediate_size + 128
    assert changed_parameters(hf, baked) == {
        "changed": 2 * 128,
        "added": 16 * per_layer,
        "total": sum(p.numel() for p in hf.parameters()) + 16 * per_layer,
    }
    torch.testing.assert_close(
        baked.model.layers[13].mlp.down_proj.bias, v.effective(1.5)[1], rtol=0, atol=0
    )


@torch.no_grad()
def test_orthogonalize_equals_ablation_on_the_default_model(default):
    bridge, hf, _ = default
    v = _vector(128, (6, 10, 13), 16, "default", seed=3)
    tokens = _tokens(500)
    clean = bridge(tokens, return_type="logits")
    with ablate(bridge, v):  # the middle layer's direction, as orthogonalize's default
        ablated = bridge(tokens, return_type="logits")
    edited = orthogonalize(hf, v, model_id="default")
    assert (ablated - clean).abs().max() > 0.1
    torch.testing.assert_close(edited(tokens).logits, ablated, **TOL)
    # the default model ties lm_head to the embedding: the edit unties it, and lm_head keeps
    # the original rows (the hooks never touch the unembedding)
    assert hf.config.tie_word_embeddings and hf.lm_head.weight is hf.model.embed_tokens.weight
    assert not edited.config.tie_word_embeddings
    assert torch.equal(edited.lm_head.weight, hf.lm_head.weight)
    u = v.unit()[1].double()
    for name, param, how in residual_writers(edited):
        along = param.double() @ u if how == "rows" else u @ param.double()
        assert along.abs().max() < 1e-5, name


def _gram_schmidt(rows: torch.Tensor) -> list[torch.Tensor]:
    basis: list[torch.Tensor] = []
    for r in rows.double():
        for b in basis:
            r = r - (r @ b) * b
        basis.append(r / r.norm())
    return basis


@torch.no_grad()
def test_orthogonalizing_several_layers_removes_their_span(default):
    """Two layers' directions: the model equals ablating an orthonormal basis of their span one
    direction after the other (Gram-Schmidt here, QR in the library)."""
    bridge, hf, _ = default
    v = _vector(128, (2, 3), 16, "default", seed=9)
    tokens = _tokens(500)
    a, b = (x.float() for x in _gram_schmidt(v.directions))
    with ablate(bridge, a), ablate(bridge, b):
        ablated = bridge(tokens, return_type="logits")
    with ablate(bridge, a):
        only_a = bridge(tokens, return_type="logits")
    edited = orthogonalize(hf, v, [2, 3])
    assert (ablated - only_a).abs().max() > 0.1  # the second direction matters
    torch.testing.assert_close(edited(tokens).logits, ablated, **TOL)
    with pytest.raises(AlignError, match="span only 1 dimensions"):
        orthogonalize(hf, torch.stack([v.directions[0], 2 * v.directions[0]]))


@torch.no_grad()
def test_saved_folders_reload_with_the_same_logits(default, tmp_path):
    bridge, hf, tok = default
    v = _vector(128, (2,), 16, "default", seed=5)
    tokens = _tokens(500)
    for name, edited in (
        ("baked", bake(hf, v, 2.0)),
        ("ortho", orthogonalize(hf, v.directions[0])),
    ):
        report = write_aligned(
            tmp_path / name, edited, tok, cfg={"scale": 2.0}, metrics={"m": 1}, suites=""
        )
        assert report.eval is None and report.path == tmp_path / name
        expected = edited(tokens).logits
        torch.testing.assert_close(_hf(tmp_path / name)(tokens).logits, expected, rtol=0, atol=0)
        again = load_model(str(tmp_path / name), device="cpu", dtype="float32")
        torch.testing.assert_close(again(tokens, return_type="logits"), expected, **TOL)
        assert json.loads((tmp_path / name / "cfg.json").read_text()) == {"scale": 2.0}
        assert json.loads((tmp_path / name / "metrics.json").read_text()) == {"m": 1, "eval": None}
        assert not (tmp_path / name / "report.html").exists()
    reloaded = _hf(tmp_path / "ortho")
    assert reloaded.lm_head.weight.data_ptr() != reloaded.model.embed_tokens.weight.data_ptr()
    assert _hf(tmp_path / "baked").config.mlp_bias


@torch.no_grad()
def test_the_evaluation_of_an_unchanged_model_shows_no_drift(default, tmp_path):
    """A bake at scale 0 is the original model: metrics.json's drift rows equal the baseline's
    (same LM loss per family, KL 0), and report.html holds interp eval's figures."""
    _, hf, tok = default
    v = _vector(128, (4,), 16, "default")
    seen = []
    report = write_aligned(
        tmp_path / "same",
        bake(hf, v, 0.0),
        tok,
        cfg={},
        metrics={},
        suites="drift",
        n=10,
        on_suite=lambda done, total, name: seen.append((done, total)),
    )
    assert seen[-1] == (2, 2)  # the model, then the baseline
    rows = {c.name: c for c in report.eval.comparisons}
    kl = rows.pop("KL(baseline || model), neutral text")
    assert kl.model.value == pytest.approx(0, abs=1e-6) and kl.baseline is None
    assert rows and all(c.diff == pytest.approx(0, abs=1e-5) for c in rows.values())
    saved = json.loads((tmp_path / "same" / "metrics.json").read_text())
    assert saved["eval"]["model"] == str(tmp_path / "same")
    assert len(saved["eval"]["rows"]) == len(report.after) == len(report.before) + 1
    assert len(report.rows()) == len(report.after)
    html = (tmp_path / "same" / "report.html").read_text()
    assert html.count("plotly") > 3 and "KL(baseline || model)" in html


# --- other architectures ---------------------------------------------------------------------


def _tiny(tiny_models, tiny_dirs, arch):
    bridge = tiny_models[arch]
    return bridge, _hf(tiny_dirs[arch]), model_id(str(tiny_dirs[arch]))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@torch.no_grad()
def test_bake_equals_steering_on_tiny_models(tiny_models, tiny_dirs, arch):
    bridge, hf, mid = _tiny(tiny_models, tiny_dirs, arch)
    v = _vector(32, (0, 2), 3, mid, seed=7)
    tokens = _tokens(300)
    with v.apply(bridge, -2.0):
        steered = bridge(tokens, return_type="logits")
    baked = bake(hf, v, -2.0, model_id=mid)
    assert (steered - bridge(tokens, return_type="logits")).abs().max() > 0.01
    torch.testing.assert_close(baked(tokens).logits, steered, **TOL)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen"])
@torch.no_grad()
def test_orthogonalize_equals_ablation_on_tiny_models(tiny_models, tiny_dirs, arch, tmp_path):
    bridge, hf, mid = _tiny(tiny_models, tiny_dirs, arch)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(11))
    tokens = _tokens(300)
    with ablate(bridge, direction):
        ablated = bridge(tokens, return_type="logits")
    edited = orthogonalize(hf, direction)
    assert (ablated - bridge(tokens, return_type="logits")).abs().max() > 1e-3
    torch.testing.assert_close(edited(tokens).logits, ablated, **TOL)
    if arch == "gpt2":  # position embeddings and biases are writers too; tied wte is untied
        names = {name for name, _, _ in residual_writers(edited)}
        assert {"transformer.wpe.weight", "transformer.h.0.mlp.c_proj.bias"} <= names
        edited.save_pretrained(tmp_path / "g")
        torch.testing.assert_close(_hf(tmp_path / "g")(tokens).logits, edited(tokens).logits)


@pytest.mark.parametrize(
    ("arch", "edit", "words"),
    [
        ("gemma", "bake", "gemma3_text"),
        ("gemma", "orthogonalize", "post_feedforward_layernorm"),
        ("qwen", "bake", "no bias on o_proj or down_proj"),
    ],
)
def test_architectures_without_an_exact_edit_are_refused(tiny_dirs, arch, edit, words):
    hf = _hf(tiny_dirs[arch])
    v = _vector(32, (1,), 3, None)
    with pytest.raises(AlignError, match=words) as err:
        bake(hf, v, 1.0) if edit == "bake" else orthogonalize(hf, v)
    assert "supports the model types" in str(err.value)


# --- bad input -----------------------------------------------------------------------------


def test_vectors_that_do_not_fit_are_refused(default):
    _, hf, _ = default
    with pytest.raises(SteeringError, match="width 64 but the model's residual stream has 128"):
        bake(hf, _vector(64, (3,), None, None), 1.0)
    with pytest.raises(SteeringError, match=r"layers \[20\] are outside the model"):
        bake(hf, _vector(128, (20,), None, None), 1.0)
    with pytest.raises(SteeringError, match="made for model '/x/other'"):
        orthogonalize(hf, _vector(128, (3,), 16, "/x/other"), model_id="default")
    at_mid = replace(_vector(128, (3,), 16, "default"), site="hook_resid_mid")
    with pytest.raises(AlignError, match="this vector is at 'hook_resid_mid'"):
        bake(hf, at_mid, 1.0)
    with pytest.raises(AlignError, match=r"layers \[5\] are not in this vector"):
        orthogonalize(hf, _vector(128, (3,), 16, "default"), layer=5)
    with pytest.raises(AlignError, match="width 128"):
        orthogonalize(hf, torch.ones(7))
    with pytest.raises(AlignError, match="zero or non-finite"):
        orthogonalize(hf, torch.zeros(128))


def test_an_existing_folder_is_never_overwritten_without_force(default, tmp_path):
    _, hf, tok = default
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(AlignError, match="already exists; pass --force to replace it"):
        check_out(out, force=False)
    with pytest.raises(AlignError, match="already exists"):
        write_aligned(out, hf, tok, cfg={}, metrics={}, suites="")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(AlignError, match="is not a folder"):
        check_out(tmp_path / "file", force=True)

    class Broken:
        def save_pretrained(self, folder):
            (folder / "half.json").write_text("{")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # nothing is left behind, out unchanged
        write_aligned(out, hf, Broken(), cfg={}, metrics={}, suites="", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_aligned(out, hf, tok, cfg={}, metrics={}, suites="", force=True)
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists()


# --- the command line ------------------------------------------------------------------------


def test_cli_bake_and_orthogonalize_write_folders_equal_to_the_hooks(
    tiny_models, tiny_dirs, tmp_path
):
    from interp.cli import app

    runner = CliRunner()
    bridge, hf, mid = _tiny(tiny_models, tiny_dirs, "llama")
    v = _vector(32, (1,), 3, mid, seed=2)
    v.save(tmp_path / "v.safetensors")
    base = ["--model", str(tiny_dirs["llama"]), "--vector", str(tmp_path / "v.safetensors")]
    tokens = _tokens(300)
    res = runner.invoke(
        app,
        ["align", "bake", *base, "--scale", "3", "--out", str(tmp_path / "b"), "--suites", "none"],
    )
    assert res.exit_code == 0, res.output
    assert "32 parameters changed" in res.output
    with torch.no_grad(), v.apply(bridge, 3.0):
        steered = bridge(tokens, return_type="logits")
    with torch.no_grad():
        torch.testing.assert_close(_hf(tmp_path / "b")(tokens).logits, steered, **TOL)
    saved = json.loads((tmp_path / "b" / "cfg.json").read_text())
    assert saved["scale"] == 3.0 and saved["vector"] == str(tmp_path / "v.safetensors")

    res = runner.invoke(
        app, ["align", "orthogonalize", *base, "--out", str(tmp_path / "o"), "--suites", ""]
    )
    assert res.exit_code == 0, res.output
    with torch.no_grad(), ablate(bridge, v):
        ablated = bridge(tokens, return_type="logits")
    with torch.no_grad():
        torch.testing.assert_close(_hf(tmp_path / "o")(tokens).logits, ablated, **TOL)

    # errors: one line, exit 2, nothing written or overwritten
    before = sorted(p.name for p in (tmp_path / "b").iterdir())
    again = runner.invoke(app, ["align", "bake", *base, "--out", str(tmp_path / "b")])
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == before
    bad = runner.invoke(
        app, ["align", "bake", *base, "--layers", "2", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "layers [2] are not in this vector" in bad.output
    bad = runner.invoke(
        app, ["align", "bake", *base, "--suites", "nope", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "unknown suite 'nope'" in bad.output
    _vector(128, (3,), 16, "/x/other").save(tmp_path / "w.safetensors")  # default model's width
    other = ["--vector", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "x")]
    bad = runner.invoke(app, ["align", "orthogonalize", *other])
    assert bad.exit_code == 2 and "made for model '/x/other', not 'default'" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "x").exists()
