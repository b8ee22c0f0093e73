"""CUDA paths against CPU references. Skipped without a GPU (CI has none); run on a lent GPU
with `python -m pytest tests/test_gpu.py` (docs/benchmarks.md records the last such run).

Tolerances are those of the arithmetic: bf16 operands (autocast) give relative errors between
1e-3 and 1e-2 against float64; float32 on the GPU (TF32 off) stays under 1e-5.
"""

import pytest
import torch

from sae.config import SAEConfig, TrainConfig
from sae.registry import build_sae

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    assert torch.isfinite(a).all()
    return ((a - ref).norm() / ref.norm()).item()


def topk_sae(impl: str, device: str, dtype: str = "float32", seed: int = 0):
    cfg = SAEConfig(
        arch="topk", d_in=256, d_sae=4096, k=32, aux_k=64, dtype=dtype, device=device,
        decoder_impl=impl,
    )  # fmt: skip
    sae = build_sae(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in (sae.W_enc, sae.b_enc, sae.b_dec):
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p))
    return sae


def loss_and_grads(sae, x, dead, autocast: bool):
    ctx = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if autocast
        else torch.autocast("cuda", enabled=False)
    )
    with ctx:
        terms = sae.loss(x, dead)
        total = terms.mse + terms.auxk / 32
    sae.zero_grad()
    total.backward()
    return terms, {n: p.grad.clone() for n, p in sae.named_parameters()}


@pytest.mark.parametrize("impl", ["sparse", "dense"])
def test_topk_on_cuda_float32_matches_float64_cpu(impl):
    """Forward and every gradient of the TopK loss (AuxK on, a fifth of the latents dead) on
    CUDA in float32, sparse or dense decoder, against the same SAE in float64 on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(2048, 256, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    dead = torch.zeros(4096, dtype=torch.bool)
    dead[::5] = True
    ref_terms, ref_grads = loss_and_grads(topk_sae("dense", "cpu", "float64"), x, dead, False)
    terms, grads = loss_and_grads(topk_sae(impl, "cuda"), x.float().cuda(), dead.cuda(), False)
    assert rel_err(terms.x_hat, ref_terms.x_hat) < 1e-5
    assert rel_err(terms.auxk, ref_terms.auxk) < 1e-5
    for name, ref in ref_grads.items():
        assert rel_err(grads[name], ref) < 1e-5, name
    assert torch.equal(terms.fired.cpu(), ref_terms.fired)


@pytest.mark.parametrize("impl", ["sparse", "dense"])
def test_topk_under_bf16_autocast_matches_float64_cpu(impl):
    """The same under bf16 autocast, on inputs whose top-k is unambiguous: each row is a sum of
    k decoder directions with coefficients in [2, 3], so the k chosen latents stand clear of
    the rest by far more than bf16 rounding (on random inputs near-ties at the k-th place flip
    under bf16 and whole decoder rows change). No dead latents, so no AuxK term."""
    d_in, d_sae, k = 256, 1024, 4
    cfg = dict(arch="topk", d_in=d_in, d_sae=d_sae, k=k, decoder_impl=impl)
    ref_sae = build_sae(SAEConfig(**cfg, dtype="float64", device="cpu"), seed=0)
    sae = build_sae(SAEConfig(**cfg, device="cuda"), seed=0)
    g = torch.Generator().manual_seed(5)
    idx = torch.stack([torch.randperm(d_sae, generator=g)[:k] for _ in range(2048)])
    coef = 2 + torch.rand(2048, k, generator=g, dtype=torch.float64)
    x = (coef[..., None] * ref_sae.W_dec.detach()[idx]).sum(1)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    ref_terms, ref_grads = loss_and_grads(ref_sae, x, dead, False)
    terms, grads = loss_and_grads(sae, x.float().cuda(), dead.cuda(), True)
    assert torch.equal(terms.fired.cpu(), ref_terms.fired)
    assert rel_err(terms.x_hat, ref_terms.x_hat) < 1e-2
    # Gradients follow the residual x - x_hat (about 11% of x here), so x_hat's bf16 rounding
    # weighs ~10x more in them. b_dec's gradient is a sum of residuals over 2048 rows that
    # mostly cancel, which amplifies it again (CPU bf16 autocast: 0.13 dense, 0.01 sparse).
    tols = {"W_enc": 5e-2, "W_dec": 5e-2, "b_enc": 5e-2, "b_dec": 0.25}
    for name, ref in ref_grads.items():
        assert rel_err(grads[name], ref) < tols[name], name


def test_training_on_cuda_with_autocast_tracks_cpu_float32():
    """40 Adam steps of a TopK SAE on the same batches: CUDA with bf16 autocast ends within a
    few percent of CPU float32 in reconstruction error, and its weights stay close."""
    from sae.training import train

    g = torch.Generator().manual_seed(0)
    features = torch.randn(512, 128, generator=g)
    features /= features.norm(dim=-1, keepdim=True)

    def batches(n_batches):
        out = []
        for _ in range(n_batches):
            idx = torch.randint(0, 512, (1024, 4), generator=g)
            coef = torch.rand(1024, 4, generator=g) * 3
            out.append((coef[..., None] * features[idx]).sum(1))
        return out

    data = batches(40)
    cfg = TrainConfig(total_tokens=40 * 1024, batch_tokens=1024, lr=3e-3, seed=0)
    results = {}
    for device in ("cpu", "cuda"):
        sae_cfg = SAEConfig(arch="topk", d_in=128, d_sae=1024, k=8, device=device)
        results[device] = train({"x": sae_cfg}, cfg, [b.to(device) for b in data])
    held_out = batches(4)[0]
    mses = {}
    for device, result in results.items():
        sae = result.saes["x"].to("cpu").float()
        with torch.no_grad():
            mses[device] = (sae(held_out) - held_out).pow(2).sum(-1).mean().item()
    assert abs(mses["cuda"] - mses["cpu"]) / mses["cpu"] < 0.05, mses
    # The latents stay the same ones: each decoder row points where its CPU twin does (the
    # relative error of the whole matrix was 0.055 on an H100).
    w_cpu, w_gpu = results["cpu"].saes["x"].W_dec, results["cuda"].saes["x"].W_dec.cpu()
    assert torch.nn.functional.cosine_similarity(w_gpu, w_cpu, dim=-1).mean() > 0.99


def test_fast_capture_on_cuda_matches_cpu(tiny_dirs):
    """The fast (plain HF, sdpa) capture on CUDA in float32 equals the CPU bridge capture."""
    from interp.capture.core import capture
    from interp.models import load_model

    torch.backends.cuda.matmul.allow_tf32 = False
    tokens = torch.randint(3, 300, (4, 32), generator=torch.Generator().manual_seed(0))
    hooks = ["blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"]
    for arch, path in tiny_dirs.items():
        cpu = load_model(str(path), device="cpu", dtype="float32")
        gpu = load_model(str(path), device="cuda", dtype="float32")
        ref = capture(cpu, tokens, hooks, fast=False)
        out = capture(gpu, tokens.cuda(), hooks)
        for h in hooks:
            assert out[h].device.type == "cuda"
            assert rel_err(out[h], ref[h]) < 1e-5, (arch, h)


def test_train_sae_cli_on_cuda(tiny_dirs, tmp_path):
    """`interp train-sae --device cuda` end to end on a tiny model: the run's held-out
    explained variance is recomputed here from the saved SAE on the CPU."""
    import json

    from typer.testing import CliRunner

    from interp.cli import app
    from interp.models import load_model
    from interp.train_sae.config import TrainSAEConfig
    from interp.train_sae.evaluate import evaluate_sae
    from interp.train_sae.source import eval_batches, train_contexts_used
    from sae.io import load_sae

    out = tmp_path / "run"
    args = ["train-sae", "--model", str(tiny_dirs["llama"]), "--layer", "1", "--tokens", "32768",
            "--batch-tokens", "1024", "--ctx-len", "32", "--eval-tokens", "2048",
            "--device", "cuda", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    hook = "blocks.1.hook_resid_post"
    metrics = json.loads((out / "saes" / hook / "metrics.json").read_text())
    cfg = TrainSAEConfig.from_dict(json.loads((out / "cfg.json").read_text()))
    model = load_model(str(tiny_dirs["llama"]), device="cpu", dtype="float32")
    sae = load_sae(out / "saes" / hook, device="cpu")
    batches = eval_batches(model, cfg, train_contexts_used(cfg))
    cpu = evaluate_sae(model, sae, hook, batches).metrics.scalars()
    # the run evaluated with the model in bf16 on the GPU; here float32 on the CPU
    assert abs(metrics["explained_variance"] - cpu["explained_variance"]) < 0.02
    assert metrics["explained_variance"] > 0.5
