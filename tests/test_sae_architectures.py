"""Each architecture against a naive reference written here from the papers' formulas,
forward values and gradients, in float64 (tolerances 1e-10: only summation order differs)."""

import pytest
import torch

from sae.config import SAEConfig
from sae.registry import ARCHITECTURES, build_sae
from sae.sparse import (
    dense_from_sparse,
    ragged_sparse_decode,
    sparse_decode,
    sparse_weight_grad,
)

D_IN, D_SAE, K, N = 12, 48, 5, 20
TOL = {"atol": 1e-10, "rtol": 1e-10}


pytestmark = pytest.mark.usefixtures("one_thread")


def make(arch: str, impl: str = "dense", seed: int = 0, **kw):
    cfg = SAEConfig(
        arch=arch, d_in=D_IN, d_sae=D_SAE, k=K, dtype="float64", device="cpu",
        decoder_impl=impl, **kw,
    )  # fmt: skip
    sae = build_sae(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # move away from the symmetric init so every term is exercised
        for p in (sae.W_enc, sae.b_enc, sae.b_dec):
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return sae


def params(sae):
    return {n: p.detach().clone().requires_grad_() for n, p in sae.named_parameters()}


def grads_of(sae, loss):
    sae.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in sae.named_parameters()}


def ref_grads(p, loss):
    loss.backward()
    return {n: t.grad for n, t in p.items()}


def ref_pre(p, x):
    return (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]


def ref_auxk(p, pre, x, x_hat, dead, aux_k):
    """Dead latents' top-aux_k pre-activations (found by sorting), ReLU, decoded without bias,
    fitted to the detached residual; scaled by min(n_dead / aux_k, 1)."""
    n_dead = int(dead.sum())
    k_aux = min(aux_k, n_dead)
    dead_pre = torch.where(dead, pre, torch.full_like(pre, -1e300))
    order = dead_pre.argsort(dim=-1, descending=True)[:, :k_aux]
    z = torch.zeros_like(pre)
    for n in range(pre.shape[0]):
        z[n, order[n]] = pre[n, order[n]].clamp_min(0)
    e_hat = z @ p["W_dec"]
    return min(n_dead / aux_k, 1.0) * ((x - x_hat).detach() - e_hat).pow(2).sum(-1).mean()


def x_batch(seed=2):
    return torch.randn(N, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_registry_names_every_architecture():
    assert sorted(ARCHITECTURES) == ["batchtopk", "jumprelu", "relu", "topk"]
    with pytest.raises(ValueError, match="choose one of"):
        SAEConfig(arch="gated")


def test_relu_matches_reference():
    sae, x = make("relu", l1_coefficient=0.7), x_batch()
    terms = sae.loss(x)
    ours = grads_of(sae, terms.mse + terms.sparsity)
    p = params(sae)
    acts = ref_pre(p, x).clamp_min(0)
    x_hat = acts @ p["W_dec"] + p["b_dec"]
    mse = ((x - x_hat) ** 2).sum(-1).mean()
    l1 = 0.7 * (acts * p["W_dec"].pow(2).sum(-1).sqrt()).sum(-1).mean()
    torch.testing.assert_close(terms.x_hat, x_hat, **TOL)
    torch.testing.assert_close(terms.sparsity, l1, **TOL)
    torch.testing.assert_close(sae(x), x_hat, **TOL)
    for n, g in ref_grads(p, mse + l1).items():
        torch.testing.assert_close(ours[n], g, **TOL)
    assert torch.equal(terms.fired, (acts > 0).sum(0))


@pytest.mark.parametrize("impl", ["dense", "sparse"])
def test_topk_matches_reference_with_auxk(impl):
    sae, x = make("topk", impl, aux_k=6), x_batch()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    terms = sae.loss(x, dead)
    ours = grads_of(sae, terms.mse + terms.auxk / 32)
    p = params(sae)
    pre = ref_pre(p, x)
    mask = torch.zeros_like(pre).scatter(-1, pre.topk(K, dim=-1).indices, 1.0)
    acts = pre.clamp_min(0) * mask
    x_hat = acts @ p["W_dec"] + p["b_dec"]
    mse = ((x - x_hat) ** 2).sum(-1).mean()
    aux = ref_auxk(p, pre, x, x_hat, dead, 6)
    assert aux.item() > 0
    torch.testing.assert_close(terms.x_hat, x_hat, **TOL)
    torch.testing.assert_close(terms.auxk, aux, **TOL)
    torch.testing.assert_close(sae(x), x_hat, **TOL)
    torch.testing.assert_close(sae.encode(x), acts, **TOL)
    for n, g in ref_grads(p, mse + aux / 32).items():
        torch.testing.assert_close(ours[n], g, **TOL)
    assert torch.equal(terms.fired, (acts > 0).sum(0))


def test_auxk_is_zero_without_dead_latents_and_scaled_with_few():
    sae, x = make("topk", aux_k=6), x_batch()
    assert sae.loss(x).auxk.item() == 0.0
    assert sae.loss(x, torch.zeros(D_SAE, dtype=torch.bool)).auxk.item() == 0.0
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:2] = True  # 2 dead < aux_k = 6: scale 1/3
    p = params(sae)
    pre = ref_pre(p, x)
    x_hat = sae.loss(x).x_hat.detach()
    torch.testing.assert_close(sae.loss(x, dead).auxk, ref_auxk(p, pre, x, x_hat, dead, 6), **TOL)


@pytest.mark.parametrize("impl", ["dense", "sparse"])
def test_batchtopk_matches_reference(impl):
    sae, x = make("batchtopk", impl, aux_k=6), x_batch()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[1::4] = True
    terms = sae.loss(x, dead)
    ours = grads_of(sae, terms.mse + terms.auxk / 32)
    p = params(sae)
    pre = ref_pre(p, x)
    flat = pre.clamp_min(0).flatten()
    keep = flat.topk(K * N).indices
    acts = torch.zeros_like(flat).scatter(0, keep, flat[keep]).view_as(pre)
    x_hat = acts @ p["W_dec"] + p["b_dec"]
    mse = ((x - x_hat) ** 2).sum(-1).mean()
    aux = ref_auxk(p, pre, x, x_hat, dead, 6)
    torch.testing.assert_close(terms.x_hat, x_hat, **TOL)
    torch.testing.assert_close(terms.auxk, aux, **TOL)
    for n, g in ref_grads(p, mse + aux / 32).items():
        torch.testing.assert_close(ours[n], g, **TOL)
    assert int(terms.fired.sum()) == K * N
    # The first update sets the inference threshold to the smallest kept activation.
    assert sae.threshold.item() == pytest.approx(flat[keep].min().item())


def test_batchtopk_threshold_ema_and_eval_mode():
    sae = make("batchtopk")
    with pytest.raises(ValueError, match="threshold"):
        sae.eval().encode(x_batch())
    sae.train()
    # The threshold is the debiased EMA of each batch's smallest kept activation m_i: weights
    # (1 - lr)^(t - i), normalised. Computed here directly from the m_i, over 5 batches.
    smallest = []
    for seed in range(2, 7):
        x = x_batch(seed)
        with torch.no_grad():
            kept = sae.pre_acts(x).clamp_min(0).flatten().topk(K * N).values
        smallest.append(kept.min().item())
        sae.loss(x)
    lr = sae.cfg.batchtopk_threshold_lr
    weights = [(1 - lr) ** (len(smallest) - 1 - i) for i in range(len(smallest))]
    expected = sum(w * m for w, m in zip(weights, smallest, strict=True)) / sum(weights)
    assert sae.threshold.item() == pytest.approx(expected, rel=1e-12)
    assert int(sae.threshold_updates) == 5
    sae.eval()
    pre = sae.pre_acts(x)
    expected = pre.clamp_min(0) * (pre > sae.threshold.item())
    torch.testing.assert_close(sae.encode(x), expected, **TOL)


def test_jumprelu_forward_and_straight_through_gradients():
    eps, coef = 0.3, 0.05
    sae = make("jumprelu", jumprelu_bandwidth=eps, l0_coefficient=coef)
    with torch.no_grad():
        sae.threshold.uniform_(0.0, 0.5, generator=torch.Generator().manual_seed(5))
    x = x_batch()
    terms = sae.loss(x)
    ours = grads_of(sae, terms.mse + terms.sparsity)
    p = params(sae)
    pre = ref_pre(p, x)
    theta = p["threshold"]
    gate = (pre > theta).double()
    acts_leaf = (pre * gate).detach().requires_grad_()
    x_hat = acts_leaf @ p["W_dec"] + p["b_dec"]
    mse = ((x - x_hat) ** 2).sum(-1).mean()
    torch.testing.assert_close(terms.x_hat, x_hat, **TOL)
    torch.testing.assert_close(terms.sparsity, coef * gate.sum(-1).mean(), **TOL)
    torch.testing.assert_close(sae.encode(x), pre * gate, **TOL)
    mse.backward()
    dl_dacts = acts_leaf.grad
    # Rajamanoharan et al. 2024, rectangle kernel K:
    # d acts / d theta = -(theta/eps) K((pre-theta)/eps),
    # d H / d theta = -(1/eps) K((pre-theta)/eps); the L0 term is mean over tokens.
    kernel = (((pre - theta) / eps).abs() < 0.5).double().detach()
    expected_theta = (dl_dacts * -(theta.detach() / eps) * kernel).sum(0)
    expected_theta += coef / N * (-(1 / eps) * kernel).sum(0)
    assert (expected_theta != 0).sum() > D_SAE // 2  # the kernel is exercised
    torch.testing.assert_close(ours["threshold"], expected_theta, **TOL)
    # Every other parameter sees pre only through acts = pre * gate (gate constant).
    p2 = params(sae)
    acts = ref_pre(p2, x) * gate
    mse2 = ((x - (acts @ p2["W_dec"] + p2["b_dec"])) ** 2).sum(-1).mean()
    for n, g in ref_grads(p2, mse2).items():
        if n != "threshold":
            torch.testing.assert_close(ours[n], g, **TOL)


def test_jumprelu_threshold_clamped_after_step():
    sae = make("jumprelu")
    with torch.no_grad():
        sae.threshold.fill_(-0.2)
    sae.after_step_()
    assert (sae.threshold == 0).all()


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_unit_norm_decoder_projection(arch):
    sae = make(arch)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE, dtype=torch.float64))
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.project_decoder_grad_()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(-1)
    torch.testing.assert_close(parallel, torch.zeros_like(parallel), **TOL)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.after_step_()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE, dtype=torch.float64))


def test_relu_decoder_is_not_constrained():
    sae = make("relu")
    assert sae.W_dec.norm(dim=-1).allclose(torch.full((D_SAE,), 0.1, dtype=torch.float64))
    sae.W_dec.grad = g = torch.randn_like(sae.W_dec)
    sae.project_decoder_grad_()
    assert torch.equal(sae.W_dec.grad, g)


def test_sparse_decode_equals_dense_values_and_grads():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D_SAE, D_IN, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.stack([torch.randperm(D_SAE, generator=g)[:K] for _ in range(N)])
    vals = torch.rand(N, K, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    out = sparse_decode(idx, vals, W)
    (out * upstream).sum().backward()
    grads = W.grad.clone(), vals.grad.clone()
    W.grad = vals.grad = None
    ref = dense_from_sparse(idx, vals, D_SAE) @ W
    (ref * upstream).sum().backward()
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grads[0], W.grad, **TOL)
    torch.testing.assert_close(grads[1], vals.grad, **TOL)


def test_ragged_sparse_decode_handles_empty_rows():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(D_SAE, D_IN, generator=g, dtype=torch.float64)
    acts = torch.rand(6, D_SAE, generator=g, dtype=torch.float64) * (
        torch.rand(6, D_SAE, generator=g) < 0.1
    )
    acts[2] = 0  # a token with no active latent
    rows, cols = acts.nonzero(as_tuple=True)
    out = ragged_sparse_decode(rows, cols, acts[rows, cols], 6, W)
    torch.testing.assert_close(out, acts @ W, **TOL)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_wrong_input_width_raises_readable_error(arch):
    sae = make(arch)
    with pytest.raises(ValueError, match=rf"d_in={D_IN}"):
        sae(torch.randn(3, D_IN + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="tokens, d_in"):
        sae.loss(torch.randn(2, 3, D_IN, dtype=torch.float64))


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu"])
def test_encode_accepts_leading_dims(arch):
    sae = make(arch)
    x = torch.randn(2, 3, D_IN, dtype=torch.float64)
    torch.testing.assert_close(sae(x), sae(x.reshape(6, D_IN)).reshape(2, 3, D_IN), **TOL)
    assert sae.encode(x).shape == (2, 3, D_SAE)


def test_same_seed_same_init_different_seed_different():
    a, b, c = (build_sae(SAEConfig(d_in=8, d_sae=16, k=2, device="cpu"), seed=s) for s in (1, 1, 2))
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, c.W_dec)
    torch.testing.assert_close(a.W_dec.norm(dim=1), torch.ones(16))
    torch.testing.assert_close(a.W_enc, 0.5 * a.W_dec.T)  # encoder_init_scale's default


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_init_scales(arch):
    cfg = SAEConfig(arch=arch, d_in=8, d_sae=16, k=2, device="cpu", encoder_init_scale=0.25)
    sae = build_sae(cfg, seed=0)
    norms = sae.W_dec.norm(dim=1)
    if arch in ("topk", "batchtopk"):  # unit decoder rows, encoder scaled
        torch.testing.assert_close(norms, torch.ones(16))
        torch.testing.assert_close(sae.W_enc, 0.25 * sae.W_dec.T)
    else:  # decoder rows at decoder_init_norm, encoder its transpose
        torch.testing.assert_close(norms, torch.full((16,), cfg.decoder_init_norm))
        torch.testing.assert_close(sae.W_enc, sae.W_dec.T)


def test_fold_input_scale():
    for arch in sorted(ARCHITECTURES):
        sae, x = make(arch), x_batch()
        if arch == "batchtopk":
            sae.loss(x)
            sae.eval()
        expected = sae(x * 2.5) / 2.5
        sae.fold_input_scale_(2.5)
        torch.testing.assert_close(sae(x), expected, **TOL)


def test_auto_decoder_is_sparse_on_cpu_for_small_k_and_dense_on_cuda():
    """The measured crossovers (docs/sae.md): sparse on the CPU when k / d_sae <= 1/8, dense on
    CUDA at any k (embedding_bag's atomic backward lost to the matmul on an H100)."""
    from sae.sparse import use_sparse_decoder

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert use_sparse_decoder("auto", 16, 1024, cpu)
    assert not use_sparse_decoder("auto", 256, 1024, cpu)
    assert not use_sparse_decoder("auto", 32, 24576, cuda)
    assert use_sparse_decoder("sparse", 32, 24576, cuda)
    assert not use_sparse_decoder("dense", 16, 1024, cpu)


def test_pre_acts_centre_before_the_bf16_product():
    """Under bf16 autocast, x - b_dec is formed in float32 before the encoder product, so a
    large shared offset (which b_dec learns) costs no precision. Forming x @ W_enc - b_dec @
    W_enc instead would round two large products to bf16 and lose the difference."""
    cfg = SAEConfig(arch="topk", d_in=64, d_sae=256, k=8, device="cpu")
    sae = build_sae(cfg, seed=0)
    g = torch.Generator().manual_seed(1)
    offset = 50 * torch.randn(64, generator=g)
    with torch.no_grad():
        sae.b_dec.copy_(offset)
    x = offset + torch.randn(512, 64, generator=g)
    W, b_enc = sae.W_enc.detach().double(), sae.b_enc.detach().double()
    ref = (x.double() - offset.double()) @ W + b_enc
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pre = sae.pre_acts(x)
        naive = x @ sae.W_enc - offset @ sae.W_enc + sae.b_enc

    def rel(a):
        return ((a.double() - ref).norm() / ref.norm()).item()

    assert rel(pre) < 1e-2
    assert rel(naive) > 10 * rel(pre)  # the reason for the formulation


def test_sparse_weight_grad_equals_dense_with_repeated_columns():
    # G holds grads[n, j] at column indices[n, j]; a column repeated within a row adds (the
    # TopK encoder's main and AuxK selections can both pick a latent for the same token).
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    indices = torch.randint(0, D_SAE, (N, 7), generator=g)
    indices[:, 6] = indices[:, 0]
    grads = torch.randn(N, 7, generator=g, dtype=torch.float64)
    dense = torch.zeros(N, D_SAE, dtype=torch.float64).scatter_add_(1, indices, grads)
    weight_grad, bias_grad = sparse_weight_grad(x, indices, grads, D_SAE)
    torch.testing.assert_close(weight_grad, x.T @ dense, **TOL)
    torch.testing.assert_close(bias_grad, dense.sum(0), **TOL)


@pytest.mark.parametrize("dead_every", [1, 3, 0])
def test_topk_sparse_encoder_grad_equals_autograd(dead_every):
    # The same sparse-decoder SAE with TopKEncode's backward and with autograd's (dense) one,
    # with every latent dead (AuxK over all columns overlaps the main top-k), a third, none.
    sae, x = make("topk", "sparse", aux_k=6), x_batch()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    if dead_every:
        dead[::dead_every] = True
    assert sae.sparse_encoder_grad(x)
    terms = sae.loss(x, dead)
    ours = grads_of(sae, terms.mse + terms.auxk / 32)
    x_req = x.clone().requires_grad_()  # an input needing its own gradient: autograd's path
    assert not sae.sparse_encoder_grad(x_req)
    ref = sae.loss(x_req, dead)
    theirs = grads_of(sae, ref.mse + ref.auxk / 32)
    torch.testing.assert_close(terms.auxk, ref.auxk, **TOL)
    for name, grad in theirs.items():
        torch.testing.assert_close(ours[name], grad, **TOL)
