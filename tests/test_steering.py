"""Steering vectors: extraction against closed forms, application (also with a KV cache),
composition, directional ablation, safetensors and GGUF round trips, and bad input."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.generation import generate
from interp.interventions import intervene, store
from interp.steering.concepts import Pairs, check_pairs, concept_pairs, read_pairs
from interp.steering.extraction import extract, mean_diff, pca_diff, probe
from interp.steering.gguf import read_gguf, write_gguf
from interp.steering.io import load_any
from interp.steering.vector import (
    SteeringError,
    SteeringVector,
    ablation_hooks,
    load_vector,
    project_out,
    steer,
)

# --- extraction methods against closed forms (two Gaussian clusters) --------------------------


def _clusters(n: int, mu: torch.Tensor, cov: torch.Tensor, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov)
    d = len(mu)
    pos = mu / 2 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ chol.T
    neg = -mu / 2 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ chol.T
    return pos, neg


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()))


def test_mean_diff_recovers_the_difference_of_cluster_means():
    d, n, sigma = 16, 4000, 0.5
    mu = torch.zeros(d, dtype=torch.float64)
    mu[3] = 2.0
    pos, neg = _clusters(n, mu, sigma**2 * torch.eye(d, dtype=torch.float64))
    got = mean_diff(pos, neg).double()
    # the sample mean difference has per-coordinate std sigma * sqrt(2 / n)
    assert (got - mu).abs().max() < 5 * sigma * (2 / n) ** 0.5
    assert got.norm() == pytest.approx(2.0, abs=0.05)


def test_pca_of_paired_differences_is_the_top_eigenvector_of_its_second_moment():
    # D = pos - neg has E[D D^T] = mu mu^T + 2 S; with the noise's largest axis orthogonal to
    # mu but smaller than |mu|^2, the uncentred first component is the closed-form eigenvector.
    d, n = 8, 6000
    mu = torch.zeros(d, dtype=torch.float64)
    mu[0], mu[1] = 1.5, 0.5
    cov = torch.diag(torch.tensor([0.1, 0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64))
    pos, neg = _clusters(n, mu, cov, seed=1)
    second = torch.outer(mu, mu) + 2 * cov
    top = torch.linalg.eigh(second).eigenvectors[:, -1]
    got = pca_diff(pos, neg)
    assert got.norm() == pytest.approx(1.0, abs=1e-5)
    assert abs(_cos(got, top)) > 0.995  # an eigenvector's sign is arbitrary
    assert _cos(got, mu) > 0  # oriented towards the positive side


def test_probe_finds_the_lda_direction_which_mean_diff_does_not():
    # shared anisotropic covariance S: the Bayes-optimal separating direction is S^-1 mu
    d, n = 6, 3000
    mu = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    cov = torch.eye(d, dtype=torch.float64)
    cov[0, 0], cov[0, 1], cov[1, 0] = 4.0, 0.8, 0.8
    pos, neg = _clusters(n, mu, cov, seed=2)
    lda = torch.linalg.solve(cov, mu)
    assert _cos(mu, lda) < 0.8  # the two answers really differ
    got = probe(pos, neg, c=100.0)
    assert got.norm() == pytest.approx(1.0, abs=1e-5)
    assert _cos(got, lda) > 0.99
    assert _cos(mean_diff(pos, neg), lda) < 0.85


def test_methods_refuse_bad_activations():
    with pytest.raises(SteeringError, match="equal sides"):
        pca_diff(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(SteeringError, match=r"\[n, d\]"):
        mean_diff(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(SteeringError, match="at least one"):
        mean_diff(torch.zeros(0, 4), torch.zeros(3, 4))


# --- contrastive sets --------------------------------------------------------------------------


def test_builtin_concepts_are_balanced_pairs_from_the_training_split():
    from interp.organism import lexicon as L

    for concept in ("refusal", "sentiment", "gender", "jailbreak"):
        pairs = concept_pairs(concept, 40)
        assert len(pairs.positive) == len(pairs.negative) == 40
        assert all(p != q for p, q in zip(*pairs, strict=True))
    held = L.REQUEST_TEMPLATES_HELDOUT + L.JAILBREAK_PREFIXES_HELDOUT
    texts = [t for c in ("refusal", "jailbreak") for t in sum(concept_pairs(c, 200), [])]
    for marker in held:
        stem = marker.split("{")[0].strip()
        assert not any(stem in t for t in texts), stem
    assert concept_pairs("refusal", 10) == concept_pairs("refusal", 10)  # seeded


def test_contrastive_files_unbalanced_or_empty_sides_are_refused(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(
        '{"positive": "a b", "negative": "c d"}\n\n{"positive": "e", "negative": "f"}\n'
    )
    assert read_pairs(good) == Pairs(["a b", "e"], ["c d", "f"])
    cases = {
        '{"positive": ["a", "b"], "negative": "c"}': "unbalanced: 2 positive and 1 negative",
        '{"positive": [], "negative": []}': "0 positive and 0 negative",
        '{"positive": "a"}': '"positive" and "negative"',
        "not json": "line 1: not valid JSON",
        '{"positive": "", "negative": "x"}': "empty or non-text",
    }
    for i, (line, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text(line + "\n")
        with pytest.raises(SteeringError, match=message):
            read_pairs(path)
    with pytest.raises(SteeringError, match="no contrastive file"):
        read_pairs(tmp_path / "missing.jsonl")
    with pytest.raises(SteeringError, match="unbalanced"):
        check_pairs(Pairs(["a"], ["b", "c"]))


# --- extraction and application on tiny models -------------------------------------------------


def _tiny_pairs() -> Pairs:
    return Pairs(
        ["The food was great.", "I love this place", "What a fine day"],
        [
            "The food was bad.",
            "I hate this place",
            "What an awful day",
        ][:3],
    )


def test_extracted_mean_diff_equals_transformer_lens_run_with_cache(model):
    pairs = _tiny_pairs()
    vector = extract(model, pairs, [1, 2], "mean-diff", convention="absolute")

    caches = {}
    for text in pairs.positive + pairs.negative:
        _, caches[text] = model.run_with_cache(
            model.to_tokens(text), names_filter=lambda n: n.endswith("hook_resid_post")
        )

    def last(texts, layer):
        return torch.stack([caches[t][f"blocks.{layer}.hook_resid_post"][0, -1] for t in texts])

    for i, layer in enumerate((1, 2)):
        ref = last(pairs.positive, layer).mean(0) - last(pairs.negative, layer).mean(0)
        torch.testing.assert_close(vector.directions[i], ref.float(), atol=1e-5, rtol=1e-4)
        both = torch.cat([last(pairs.positive, layer), last(pairs.negative, layer)])
        assert vector.resid_norms[i] == pytest.approx(float(both.norm(dim=-1).mean()), rel=1e-4)
    assert vector.source_hash == pairs.source_hash()
    assert vector.d_model == model.cfg.d_model


def _random_vector(model, layers=(1, 2), convention="relative", seed=0) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    d = int(model.cfg.d_model)
    return SteeringVector(
        torch.randn(len(layers), d, generator=gen),
        tuple(layers),
        model_id="tiny",
        d_model=d,
        n_layers=int(model.cfg.n_layers),
        convention=convention,
        resid_norms=tuple(float(x) for x in torch.rand(len(layers), generator=gen) + 1),
        concept="test",
    )


def test_apply_adds_scale_times_effective_at_its_hooks(model, tokens):
    vector = _random_vector(model)
    scale = 0.7
    eff = vector.effective(1.0)
    # relative convention: |effective| is the recorded residual norm
    torch.testing.assert_close(eff.norm(dim=-1), torch.tensor(vector.resid_norms))
    seen: dict = {}
    # hook the edited resid of layer 1 after the add; compare to a clean run plus the vector
    with intervene(model, [(h, store(seen, "clean")) for h in ["blocks.1.hook_resid_post"]]):
        model(tokens)
    clean = seen["clean"].clone()
    with vector.select([1]).apply(model, scale):
        with intervene(model, {"blocks.1.hook_resid_post": store(seen, "steered")}):
            model(tokens)
    torch.testing.assert_close(seen["steered"], clean + scale * eff[0], atol=1e-5, rtol=1e-5)


def test_steering_during_cached_generation_equals_uncached(model):
    vector = _random_vector(model, seed=3)
    prompt = torch.randint(3, 300, (2, 6), generator=torch.Generator().manual_seed(1))
    for positions in (None, "prompt", "generated"):
        hooks = vector.interventions(2.0, positions)
        cached = generate(model, prompt, hooks, 6, use_cache=True, stop_at_eos=False)
        full = generate(model, prompt, hooks, 6, use_cache=False, stop_at_eos=False)
        assert torch.equal(cached.tokens, full.tokens), positions
    plain = generate(model, prompt, (), 6, stop_at_eos=False)
    gen_only = generate(model, prompt, vector.interventions(2.0, "generated"), 6, stop_at_eos=False)
    # the first new token is predicted at the last prompt position, which "generated" leaves alone
    assert torch.equal(gen_only.tokens[:, : 6 + 1], plain.tokens[:, : 6 + 1])
    everywhere = generate(model, prompt, vector.interventions(8.0), 6, stop_at_eos=False)
    assert not torch.equal(everywhere.tokens, plain.tokens)  # the vector does act


def test_several_vectors_compose_as_their_sum(model, tokens):
    a = _random_vector(model, convention="absolute", seed=4)
    b = _random_vector(model, convention="absolute", seed=5)
    summed = replace(a, directions=0.5 * a.directions - 2.0 * b.directions)
    with steer(model, [(a, 0.5), (b, -2.0)]):
        both = model(tokens)
    with summed.apply(model, 1.0):
        ref = model(tokens)
    torch.testing.assert_close(both, ref, atol=1e-4, rtol=1e-4)


def test_directional_ablation_removes_the_direction_everywhere(model, tokens):
    d = int(model.cfg.d_model)
    direction = torch.randn(d, generator=torch.Generator().manual_seed(6))
    unit = direction / direction.norm()
    x = torch.randn(3, d, dtype=torch.float32)

    class _Hook:
        name = "blocks.0.hook_resid_pre"

    got = project_out(direction)(x[None], hook=_Hook())
    torch.testing.assert_close(got[0], x - torch.outer(x @ unit, unit))
    seen: dict = {}
    last = int(model.cfg.n_layers) - 1
    names = [f"blocks.{layer}.hook_resid_mid" for layer in range(last + 1)]
    names.append(f"blocks.{last}.hook_resid_post")
    with intervene(model, ablation_hooks(model, direction)):
        with intervene(model, [(n, store(seen, n)) for n in names]):
            model(tokens)
    for n in names:
        assert (seen[n] @ unit).abs().max() < 1e-4, n


def test_a_vector_for_another_model_or_layer_is_refused(model):
    vector = _random_vector(model)
    wide = SteeringVector(torch.ones(1, 7), (1,), "other", 7, convention="absolute")
    with pytest.raises(SteeringError, match="width 7"):
        wide.check_model(model)
    far = SteeringVector(
        torch.ones(1, model.cfg.d_model), (40,), "x", model.cfg.d_model, convention="absolute"
    )
    with pytest.raises(SteeringError, match="outside the model"):
        with far.apply(model):
            pass
    with pytest.raises(SteeringError, match="made for model 'tiny'"):
        vector.check_model(model, model_id="another")
    with pytest.raises(SteeringError, match="outside the model"):
        extract(model, _tiny_pairs(), [99])
    with pytest.raises(SteeringError, match="not in this vector"):
        vector.select([0])


# --- safetensors ---------------------------------------------------------------------------------


def test_safetensors_round_trip_is_exact(tmp_path, model):
    vector = _random_vector(model)
    vector = replace(vector, extra={"note": "x", "feature": 3}, source_hash="abc")
    path = vector.save(tmp_path / "v.safetensors")
    back = load_vector(path)
    assert back == vector
    assert back.metadata() == vector.metadata()
    assert torch.equal(back.directions, vector.directions)
    assert load_any(path) == vector
    with pytest.raises(FileExistsError, match="--force"):
        vector.save(path)


def test_malformed_safetensors_say_what_is_wrong(tmp_path):
    from safetensors.torch import save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a file at all" * 10)
    with pytest.raises(SteeringError, match="not a readable safetensors"):
        load_vector(garbage)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(SteeringError, match="not a steering vector"):
        load_vector(other)
    meta = tmp_path / "meta.safetensors"
    save_file(
        {"directions": torch.zeros(1, 4)},
        str(meta),
        metadata={"format": "interp.steering/1", "interp.steering": "{broken"},
    )
    with pytest.raises(SteeringError, match="malformed steering metadata"):
        load_vector(meta)
    shape = tmp_path / "shape.safetensors"
    good = SteeringVector(torch.zeros(1, 4), (1,), "m", 4, convention="absolute").metadata()
    good["d_model"] = 5
    save_file(
        {"directions": torch.zeros(1, 4)},
        str(shape),
        metadata={"format": "interp.steering/1", "interp.steering": json.dumps(good)},
    )
    with pytest.raises(SteeringError, match="expected \\[1, 5\\]"):
        load_vector(shape)
    with pytest.raises(SteeringError, match="no steering vector"):
        load_any(tmp_path / "missing.safetensors")


# --- GGUF -------------------------------------------------------------------------------------------


def test_gguf_follows_llama_cpp_loader_rules_and_round_trips(tmp_path, model):
    import gguf

    vector = replace(_random_vector(model, layers=(2, 1)), extra={"model_type": "llama"})
    path = write_gguf(tmp_path / "v.gguf", vector, scale=1.5)
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.model_hint"].contents() == "llama"
    assert reader.fields["controlvector.layer_count"].contents() == 2
    names = [t.name for t in reader.tensors]
    assert names == ["direction.1", "direction.2"]  # N >= 1, ordered
    eff = vector.effective(1.5)
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert [int(x) for x in t.shape] == [model.cfg.d_model]
        n = int(t.name.split(".")[1])
        np.testing.assert_array_equal(t.data, eff[vector.layers.index(n)].numpy())
    back = read_gguf(path)
    assert back.layers == (1, 2) and back.convention == "absolute"
    torch.testing.assert_close(back.effective(1.0), vector.select([1, 2]).effective(1.5))
    assert back.model_id == vector.model_id and back.method == vector.method
    assert load_any(path).layers == (1, 2)
    with pytest.raises(FileExistsError):
        write_gguf(path, vector)


def _write_raw_gguf(path: Path, tensors: dict, arch: str = "controlvector", count=None):
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string(f"{arch}.model_hint", "llama")
    writer.add_uint32(f"{arch}.layer_count", len(tensors) if count is None else count)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_repeng_style_gguf_reads_back(tmp_path):
    # what repeng's ControlVector.export_gguf writes: model_hint, layer_count, direction.N
    rows = {f"direction.{n}": np.full(4, n, dtype=np.float32) for n in (3, 1, 2)}
    vector = read_gguf(_write_raw_gguf(tmp_path / "repeng.gguf", rows))
    assert vector.layers == (1, 2, 3)
    assert vector.model_id is None and vector.extra["model_hint"] == "llama"
    for i, n in enumerate(vector.layers):
        assert torch.equal(vector.directions[i], torch.full((4,), float(n)))
    assert vector.hook_names() == [f"blocks.{n}.hook_resid_post" for n in (1, 2, 3)]


def test_malformed_gguf_files_say_what_is_wrong(tmp_path):
    f32 = np.ones(4, dtype=np.float32)
    cases = {
        "zero": ({"direction.0": f32}, {}, "layer index 0"),
        "f16": ({"direction.1": f32.astype(np.float16)}, {}, "needs F32"),
        "2d": ({"direction.1": np.ones((2, 2), dtype=np.float32)}, {}, "1-D"),
        "name": ({"direction.1": f32, "bias": f32}, {}, "not named direction.N"),
        "width": ({"direction.1": f32, "direction.2": np.ones(5, np.float32)}, {}, "5 elements"),
        "arch": ({"direction.1": f32}, {"arch": "llama"}, "general.architecture 'llama'"),
        "count": ({"direction.1": f32}, {"count": 3}, "layer_count is 3"),
    }
    for name, (tensors, kw, message) in cases.items():
        path = _write_raw_gguf(tmp_path / f"{name}.gguf", tensors, **kw)
        with pytest.raises(SteeringError, match=message):
            read_gguf(path)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 40)
    with pytest.raises(SteeringError, match="not a readable GGUF"):
        read_gguf(junk)


def test_gguf_export_refuses_what_llama_cpp_cannot_express(tmp_path, model):
    with pytest.raises(SteeringError, match="block 0"):
        write_gguf(tmp_path / "a.gguf", _random_vector(model, layers=(0, 1)))
    mid = replace(_random_vector(model, layers=(1,)), site="hook_resid_mid")
    with pytest.raises(SteeringError, match="hook_resid_post"):
        write_gguf(tmp_path / "b.gguf", mid)
    assert not list(tmp_path.iterdir())  # nothing half-written


# --- SAE decoder directions -------------------------------------------------------------------------


def test_sae_decoder_direction_is_the_latents_row(tmp_path, model):
    from interp.steering.extraction import from_sae
    from sae import SAE, SAEConfig
    from sae.io import save_sae

    d = int(model.cfg.d_model)
    sae = SAE(SAEConfig(arch="relu", d_in=d, d_sae=4 * d, hook_name="blocks.2.hook_resid_post"))
    folder = save_sae(sae, tmp_path / "sae")
    vector = from_sae(folder, 5)
    assert vector.layers == (2,) and vector.site == "hook_resid_post" and vector.method == "sae"
    torch.testing.assert_close(vector.directions[0], sae.W_dec[5].detach().float())
    relative = from_sae(folder, 5, model=model, norm_texts=["a b c", "the cat sat"])
    assert relative.convention == "relative" and relative.resid_norms[0] > 0
    with pytest.raises(SteeringError, match="out of range"):
        from_sae(folder, 4 * d)


# --- command line (no model needed) -----------------------------------------------------------------


def test_cli_export_writes_a_loadable_gguf_and_bad_input_is_one_line(tmp_path, model):
    from typer.testing import CliRunner

    from interp.cli import app

    runner = CliRunner()
    vector = _random_vector(model, layers=(1, 2))
    src = vector.save(tmp_path / "v.safetensors")
    out = tmp_path / "v.gguf"
    args = ["steer", "export", "--vector", str(src), "--out", str(out), "--scale", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "direction.1, direction.2" in res.output
    torch.testing.assert_close(read_gguf(out).effective(1.0), vector.effective(2.0))
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nonsense")
    res = runner.invoke(
        app, ["steer", "export", "--vector", str(bad), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "not a readable safetensors" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["steer", "extract", "--concept", "refusal", "--pairs", str(bad)])
    assert res.exit_code == 2 and "exactly one source" in res.output
    res = runner.invoke(app, ["steer", "export", "--vector", str(src), "--layers", "x-y"])
    assert res.exit_code == 2 and "not a layer list" in res.output


def test_teacher_forced_score_steers_generated_positions_as_explicit_ones(model):
    from interp.steering.evaluate import Target, _scores

    vector = _random_vector(model, seed=7)
    prompt, completion = "the cat sat on", " the mat today"
    t = Target("t", [prompt], [1], lambda i, x: True, [completion])
    plen = model.to_tokens(prompt).shape[1]
    total = model.to_tokens(prompt + completion).shape[1]
    explicit = list(range(plen, total))
    plain = _scores(model, t, lambda rows: ())
    generated = _scores(model, t, lambda rows: vector.interventions(4.0, "generated"))
    by_index = _scores(model, t, lambda rows: vector.interventions(4.0, explicit))
    assert generated == pytest.approx(by_index, abs=1e-5)
    assert generated != pytest.approx(plain, abs=1e-3)
