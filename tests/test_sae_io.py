"""SAELens-format folders: our round trip, interop in both directions, atomicity, and the
normalisation fold. Importing sae_lens takes ~10 s, once for this module."""

import json
import shutil
import warnings

import pytest
import torch

from sae.config import SAEConfig
from sae.errors import FileFormatError
from sae.io import load_metrics, load_sae, load_sparsity, save_sae
from sae.normalize import estimate_norm_scaling_factor, folded_copy
from sae.registry import ARCHITECTURES, build_sae

D_IN, D_SAE = 16, 64
TOL = {"atol": 1e-5, "rtol": 1e-5}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sae_lens():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sae_lens
    return sae_lens


def trained_like(arch: str, seed: int = 0):
    """An SAE with non-trivial weights (and a batchtopk threshold), in eval mode."""
    cfg = SAEConfig(
        arch=arch, d_in=D_IN, d_sae=D_SAE, k=4, device="cpu", hook_name="blocks.1.hook_resid_post",
        model_name="tiny", context_size=128,
    )  # fmt: skip
    sae = build_sae(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
        if arch == "jumprelu":
            sae.threshold.uniform_(0.0, 0.3, generator=g)
    if arch == "batchtopk":
        sae.loss(torch.randn(32, D_IN, generator=g) * 3)
    return sae.eval()


def x_raw(seed=1, n=40):
    return 3.0 * torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_round_trip_with_folded_norm(tmp_path, arch):
    sae, s = trained_like(arch), 0.37
    density = torch.rand(D_SAE, generator=torch.Generator().manual_seed(3))
    folder = save_sae(
        sae, tmp_path / arch, feature_density=density, metrics={"l0": 4.0, "bad": float("nan")},
        norm_scaling_factor=s,
    )  # fmt: skip
    loaded = load_sae(folder)
    x = x_raw()
    # The saved SAE reads raw activations: folded(x) == unfolded(x * s) / s.
    torch.testing.assert_close(loaded(x), sae(x * s) / s, **TOL)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x * s), **TOL)
    torch.testing.assert_close(load_sparsity(folder), torch.log10(density + 1e-10))
    assert load_metrics(folder) == {"l0": 4.0, "bad": None}
    assert loaded.cfg.hook_name == "blocks.1.hook_resid_post" and loaded.cfg.context_size == 128
    assert loaded.cfg.normalize_activations == "none"
    assert not loaded.training
    assert loaded.cfg.arch == ("jumprelu" if arch == "batchtopk" else arch)


def test_cfg_json_uses_saelens_names(tmp_path):
    names = {}
    for arch in sorted(ARCHITECTURES):
        cfg = json.loads((save_sae(trained_like(arch), tmp_path / arch) / "cfg.json").read_text())
        names[arch] = cfg["architecture"]
        assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
        assert cfg["metadata"]["interp_sae_config"]["arch"] == arch
    assert names == {
        "relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu",
    }  # fmt: skip


def test_never_overwrites_unless_asked(tmp_path):
    folder = save_sae(trained_like("relu", seed=0), tmp_path / "run")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_sae(trained_like("relu", seed=1), folder)
    assert load_sae(folder).W_enc.allclose(trained_like("relu", seed=0).W_enc)
    save_sae(trained_like("relu", seed=1), folder, overwrite=True)
    assert load_sae(folder).W_enc.allclose(trained_like("relu", seed=1).W_enc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporaries left


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="feature_density"):
        save_sae(trained_like("relu"), tmp_path / "x", feature_density=torch.ones(3))
    untrained = build_sae(SAEConfig(arch="batchtopk", d_in=D_IN, d_sae=D_SAE, device="cpu"))
    with pytest.raises(ValueError, match="no inference threshold"):
        save_sae(untrained, tmp_path / "y")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_our_folder_opens_in_saelens(tmp_path, sae_lens, arch):
    sae, s = trained_like(arch), 0.5
    folder = save_sae(sae, tmp_path / arch, norm_scaling_factor=s)
    theirs = sae_lens.SAE.load_from_disk(str(folder))
    x = x_raw()
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), sae(x * s) / s, **TOL)
        torch.testing.assert_close(theirs.encode(x), sae.encode(x * s), **TOL)


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module


def _saelens_inference_saes(sl):
    saes = sl.saes
    return {
        "standard": saes.StandardSAE(saes.StandardSAEConfig(d_in=D_IN, d_sae=D_SAE)),
        "topk": saes.TopKSAE(saes.TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5)),
        "jumprelu": saes.JumpReLUSAE(saes.JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE)),
    }


def test_saelens_folders_load_into_our_modules(tmp_path, sae_lens):
    for i, (name, theirs) in enumerate(_saelens_inference_saes(sae_lens).items()):
        _randomise(theirs, i)
        if name == "jumprelu":
            with torch.no_grad():
                theirs.threshold.abs_()
        theirs.save_model(tmp_path / name)
        ours = load_sae(tmp_path / name)
        x = x_raw()
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), **TOL)
            torch.testing.assert_close(ours.encode(x), theirs.encode(x), **TOL)


def test_saelens_training_checkpoints_load(tmp_path, sae_lens):
    """SAELens training SAEs rescale by decoder norms (folded on load), and BatchTopK keeps a
    scalar threshold; both must match SAELens's own forward passes."""
    saes = sae_lens.saes
    topk = saes.TopKTrainingSAE(
        saes.TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5, rescale_acts_by_decoder_norm=True)
    )
    btk = saes.BatchTopKTrainingSAE(saes.BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5))
    x = x_raw()
    for i, (name, theirs) in enumerate({"topk": topk, "batchtopk": btk}.items()):
        _randomise(theirs, 10 + i)
        if name == "batchtopk":
            theirs.topk_threshold = torch.tensor(0.2, dtype=torch.double)
        theirs.save_model(tmp_path / name)
        ours = load_sae(tmp_path / name)
        with torch.no_grad():
            if name == "batchtopk":
                ours.train()  # SAELens's training forward is the batch top-k
            torch.testing.assert_close(ours(x), theirs(x), **TOL)
    # And SAELens's inference export of the BatchTopK SAE (a jumprelu folder) agrees in eval mode.
    btk.save_inference_model(tmp_path / "btk_inference")
    ours = load_sae(tmp_path / "batchtopk")
    with torch.no_grad():
        torch.testing.assert_close(load_sae(tmp_path / "btk_inference")(x), ours.eval()(x), **TOL)


def test_saelens_activation_scaler_is_folded(tmp_path, sae_lens):
    saes = sae_lens.saes
    theirs = saes.StandardSAE(
        saes.StandardSAEConfig(
            d_in=D_IN, d_sae=D_SAE, normalize_activations="expected_average_only_in"
        )
    )
    _randomise(theirs, 20)
    theirs.save_model(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 0.25}))
    ours = load_sae(tmp_path / "ckpt")
    x = x_raw()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x * 0.25) / 0.25, **TOL)
    assert ours.cfg.normalize_activations == "none"


def test_unsupported_saelens_architecture_is_named(tmp_path):
    folder = save_sae(trained_like("relu"), tmp_path / "x")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps(cfg | {"architecture": "gated"}))
    with pytest.raises(FileFormatError, match="cfg.json: SAELens architecture 'gated' is not"):
        load_sae(folder)


def edit_cfg(folder, edit):
    cfg = json.loads((folder / "cfg.json").read_text())
    edit(cfg)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_cfg_without_architecture_loads_the_same_sae(tmp_path, arch):
    """Without "architecture", the k (topk), the threshold tensor (jumprelu, batchtopk saved as
    jumprelu) or our saved config (relu) say which SAE it is; the loaded one computes the same
    function as with the field. Before the fix every folder loaded as a ReLU SAE."""
    folder = save_sae(trained_like(arch), tmp_path / arch, norm_scaling_factor=0.5)
    with_field = load_sae(folder)
    without = load_sae(edit_cfg(folder, lambda c: c.pop("architecture")))
    assert without.cfg == with_field.cfg
    x = x_raw()
    assert torch.equal(without(x), with_field(x))


def test_topk_without_architecture_keeps_its_l0(tmp_path):
    """The issue's case: a 512-latent TopK SAE with k=16 loaded as ReLU had L0 ~256-511."""
    cfg = SAEConfig(arch="topk", d_in=D_IN, d_sae=512, k=16, device="cpu")
    sae = build_sae(cfg, seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(1.0)  # every pre-activation positive, so exactly k fire per token
    folder = edit_cfg(save_sae(sae, tmp_path / "topk"), lambda c: c.pop("architecture"))
    loaded = load_sae(folder)
    assert loaded.cfg.arch == "topk" and loaded.cfg.k == 16
    l0 = (loaded.encode(x_raw(n=200)) > 0).sum(-1)
    assert l0.tolist() == [16] * 200


def test_pre6_saelens_cfg_without_architecture_reads_as_saelens_does(tmp_path):
    """SAELens < 6 cfgs had no "architecture": handle_pre_6_0_config makes it "standard", or
    "topk" when activation_fn is topk with a k; ours agrees."""
    sae = trained_like("topk")
    folder = save_sae(sae, tmp_path / "old")
    old_style = {
        "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "hook_point": "blocks.1.hook_resid_post",
        "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}, "context_size": 128,
    }  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(old_style))
    loaded = load_sae(folder)
    assert (loaded.cfg.arch, loaded.cfg.k, loaded.cfg.hook_name) == (
        "topk", 4, "blocks.1.hook_resid_post",
    )  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE}))
    assert load_sae(folder).cfg.arch == "relu"


def test_saelens6_cfg_without_any_sign_of_architecture_is_refused(tmp_path):
    folder = save_sae(trained_like("relu"), tmp_path / "x")
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "metadata": {"sae_lens_version": "6.5.0"}}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(FileFormatError, match=r"cfg.json: field 'architecture' is missing"):
        load_sae(folder)


def _refusal(folder):
    with pytest.raises(FileFormatError) as info:
        load_sae(folder)
    return str(info.value)


def test_bad_folders_are_refused_naming_file_and_field(tmp_path):
    """The issue's cases: each was a KeyError, torch's size mismatch, a SafetensorError
    without a path, a JSONDecodeError or an AttributeError."""
    src = save_sae(trained_like("topk"), tmp_path / "src")

    def copy(name):
        return shutil.copytree(src, tmp_path / name)

    cfg, w = "cfg.json", "sae_weights.safetensors"
    msg = _refusal(edit_cfg(copy("no_d_in"), lambda c: c.pop("d_in")))
    assert msg == f"{tmp_path / 'no_d_in' / cfg}: field 'd_in' is missing"
    msg = _refusal(edit_cfg(copy("d_in"), lambda c: c.update(d_in=D_IN + 1)))
    assert msg.startswith(f"{tmp_path / 'd_in' / w}: tensor W_enc has shape [16, 64], but d_in=17")
    msg = _refusal(edit_cfg(copy("d_in_str"), lambda c: c.update(d_in="16")))
    assert msg == f"{tmp_path / 'd_in_str' / cfg}: field 'd_in' must be an integer, got '16'"
    msg = _refusal(edit_cfg(copy("k"), lambda c: c.update(k=D_SAE + 1)))
    assert msg.startswith(f"{tmp_path / 'k' / cfg}: k must be in [1, d_sae=64]")
    weights = copy("trunc") / w
    weights.write_bytes(weights.read_bytes()[:-100])
    assert _refusal(weights.parent).startswith(f"{weights}: not a readable safetensors file")
    for name, text, problem in [
        ("invalid", '{"d_in": 16,', "not valid JSON"),
        ("list", "[1, 2]", "expected a JSON object, got a JSON array"),
        ("string", '"abc"', "expected a JSON object, got a JSON string"),
        ("binary", b"\xff\xfe{", "not valid JSON"),
    ]:
        folder = copy(name)
        write = (folder / cfg).write_bytes if isinstance(text, bytes) else (folder / cfg).write_text
        write(text)
        assert _refusal(folder).startswith(f"{folder / cfg}: {problem}")
    folder = copy("no_weights")
    (folder / w).unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_sae(folder)  # an OSError with the path, which the CLI prints as one line
    assert info.value.filename == str(folder / w)
    folder = copy("metrics")
    (folder / "metrics.json").write_text("[1]")
    with pytest.raises(FileFormatError, match="metrics.json: expected a JSON object"):
        load_metrics(folder)


def test_norm_factor_estimate_and_fold():
    g = torch.Generator().manual_seed(0)
    batches = [7.0 * torch.randn(50, D_IN, generator=g) for _ in range(4)]
    s = estimate_norm_scaling_factor(batches)
    mean_norm = torch.cat(batches).norm(dim=-1).mean()
    assert (mean_norm * s).item() == pytest.approx(D_IN**0.5, rel=1e-6)
    sae = trained_like("topk")
    x = batches[0]
    torch.testing.assert_close(folded_copy(sae, s)(x), sae(x * s) / s, **TOL)
    with pytest.raises(ValueError, match="no batches"):
        estimate_norm_scaling_factor([])
