"""The trainer: stream contract, multi-SAE runs, checkpoints, resume after signals and crashes,
NaN and divergence stops.

Resumed runs are compared with uninterrupted runs of the same seed; on one CPU thread the
same operations run in the same order, so they agree to float rounding (asserted at 1e-6).
"""

import itertools
import json
import os
import signal

import pytest
import torch

from sae import NonFiniteLossError, SAEConfig, TrainConfig, build_sae, load_sae, resume, train
from sae.checkpoint import latest_checkpoint
from sae.errors import CheckpointWarning, DivergenceError
from sae.training import DIVERGENCE_RATIO, DIVERGENCE_STEPS

D_IN, D_SAE, BATCH, STEPS = 16, 64, 64, 10


pytestmark = pytest.mark.usefixtures("one_thread")


def batch_at(i: int, seed: int = 0) -> torch.Tensor:
    """Batch i of a deterministic stream: anisotropic, offset activations with some outliers."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + i)
    scale = torch.linspace(0.2, 3.0, D_IN)
    return 5.0 * torch.randn(BATCH, D_IN, generator=g) * scale + 2.0


def factory(nan_at: int | None = None):
    """make_batches(skip_tokens) for two SAEs reading different hooks."""

    def make_batches(skip_tokens: int):
        i = skip_tokens // BATCH
        while True:
            x = batch_at(i)
            if i == nan_at:
                x = x.clone()
                x[3, 2] = float("nan")
            yield {"blocks.0.hook_resid_post": x, "blocks.1.hook_resid_post": x.flip(-1) * 0.1}
            i += 1

    return make_batches


def sae_cfgs():
    return {
        "blocks.0.hook_resid_post": SAEConfig(
            arch="batchtopk", d_in=D_IN, d_sae=D_SAE, k=4, device="cpu",
            hook_name="blocks.0.hook_resid_post",
        ),
        "blocks.1.hook_resid_post": SAEConfig(
            arch="jumprelu", d_in=D_IN, d_sae=D_SAE, device="cpu",
            hook_name="blocks.1.hook_resid_post",
        ),
    }  # fmt: skip


def train_cfg(**kw):
    base = dict(
        total_tokens=BATCH * STEPS, batch_tokens=BATCH, lr=3e-3, lr_warmup_steps=2,
        dead_tokens_window=2 * BATCH, checkpoint_every=0, norm_estimation_batches=2,
    )  # fmt: skip
    return TrainConfig(**(base | kw))


def assert_same_saes(a, b):
    assert a.keys() == b.keys()
    for name in a:
        for (n, p), q in zip(
            a[name].state_dict().items(), b[name].state_dict().values(), strict=True
        ):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6, msg=f"{name}.{n}")


@pytest.fixture(scope="module")
def reference():
    """An uninterrupted run, plus every step's metrics."""
    log = []
    result = train(sae_cfgs(), train_cfg(), factory(), on_step=lambda s, t, m: log.append(m))
    return result, log


def test_uninterrupted_run_reports_metrics(reference):
    result, log = reference
    assert result.steps == STEPS and result.tokens_seen == STEPS * BATCH and len(log) == STEPS
    keys = {"loss", "mse", "sparsity", "auxk", "l0", "explained_variance", "dead_fraction", "lr"}
    assert all(set(m) == keys for step in log for m in step.values())
    btk = [m["blocks.0.hook_resid_post"] for m in log]
    assert all(
        m["l0"] == pytest.approx(4.0) for m in btk
    )  # batch top-k keeps k per token on average
    assert any(m["auxk"] > 0 for m in btk)  # the small dead window makes AuxK run
    assert btk[-1]["explained_variance"] > btk[0]["explained_variance"]
    assert [m["lr"] for m in btk[:3]] == pytest.approx([1.5e-3, 3e-3, 3e-3])
    factors = result.norm_scaling_factors
    first_two = torch.cat([batch_at(0), batch_at(1)])
    expected = D_IN**0.5 / first_two.norm(dim=-1).mean().item()
    assert factors["blocks.0.hook_resid_post"] == pytest.approx(expected, rel=1e-6)


def test_sigint_checkpoints_then_resume_matches(tmp_path, reference):
    def interrupt(step, tokens, metrics):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(sae_cfgs(), train_cfg(), factory(), run_dir=tmp_path, on_step=interrupt)
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.name == "step_00000004"
    meta = json.loads((ckpt / "trainer.json").read_text())
    assert meta["tokens_seen"] == 4 * BATCH and meta["sae_names"] == list(sae_cfgs())
    result = resume(tmp_path, factory())
    assert result.steps == STEPS
    assert_same_saes(result.saes, reference[0].saes)
    # The final SAELens folders hold the same (folded) SAEs.
    for name, sae in result.saes.items():
        loaded = load_sae(tmp_path / "saes" / name)
        x = batch_at(99)
        torch.testing.assert_close(loaded(x), sae(x), atol=1e-5, rtol=1e-5)


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, reference):
    with pytest.raises(NonFiniteLossError, match=r"step 6 .*step_00000004") as info:
        train(sae_cfgs(), train_cfg(checkpoint_every=2), factory(nan_at=5), run_dir=tmp_path)
    assert info.value.step == 6
    assert latest_checkpoint(tmp_path).name == "step_00000004"
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert kept == ["step_00000002", "step_00000004"]  # keep_checkpoints=2
    result = resume(tmp_path, factory())  # the clean stream continues from token 4 * BATCH
    assert_same_saes(result.saes, reference[0].saes)


def steps_checked_against_hand_written_adam(clip):
    """Three trainer steps against a reference: loss, backward, decoder-grad projection, the
    gradient scaled to norm `clip` when larger (the norm over all parameters), Adam, row
    renormalisation. Adam's first step ignores a gradient's scale, so clipping shows from the
    second step on, where it changes the moments' mix of old and new gradients."""
    cfg = SAEConfig(
        arch="topk", d_in=D_IN, d_sae=D_SAE, k=4, device="cpu", dtype="float64",
        normalize_activations="none",
    )  # fmt: skip
    xs = [batch_at(i).double() * (1 + 2 * i) for i in range(3)]  # gradient norms differ
    tcfg = train_cfg(
        total_tokens=3 * BATCH, lr_warmup_steps=0, lr_decay_fraction=0.0, grad_clip_norm=clip,
        dead_tokens_window=10**9,  # no dead latents, so no AuxK term
    )  # fmt: skip
    ours = train(build_sae(cfg, seed=3), tcfg, xs).saes["sae"]

    ref = build_sae(cfg, seed=3)
    opt = torch.optim.Adam(ref.parameters(), lr=3e-3)
    for x in xs:
        opt.zero_grad()
        ref.loss(x, torch.zeros(D_SAE, dtype=torch.bool)).mse.backward()
        W, g = ref.W_dec.detach(), ref.W_dec.grad
        g -= (g * W).sum(-1, keepdim=True) * W
        grads = [p.grad for p in ref.parameters()]
        norm = torch.sqrt(sum((gr**2).sum() for gr in grads))
        assert norm > 1.0  # so that clip=1 does clip
        if clip is not None:
            for gr in grads:
                gr *= clip / norm
        opt.step()
        with torch.no_grad():
            ref.W_dec /= ref.W_dec.norm(dim=-1, keepdim=True)
    for (n, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-10, rtol=1e-10, msg=n)
    return ours


def test_steps_equal_hand_written_adam_steps_with_and_without_clipping():
    unclipped = steps_checked_against_hand_written_adam(None)
    clipped = steps_checked_against_hand_written_adam(1.0)
    assert (unclipped.W_enc - clipped.W_enc).abs().max() > 1e-4  # clipping did change them


def test_timed_checkpoints_follow_the_clock(tmp_path, monkeypatch):
    """checkpoint_seconds: a checkpoint at the first step ending 30 s after the last one."""
    import sae.training

    clock = {"now": 0.0}
    monkeypatch.setattr(sae.training.time, "monotonic", lambda: clock["now"])
    seen = []

    def tick(step, tokens, metrics):  # each step "takes" 12 s; the check runs after this
        clock["now"] += 12.0
        ckpt = latest_checkpoint(tmp_path)
        seen.append(int(ckpt.name.split("_")[1]))

    train(sae_cfgs(), train_cfg(checkpoint_seconds=30.0), factory(), run_dir=tmp_path, on_step=tick)
    # written at the start (step 0), then after steps 3 (36 s), 6 (72 s), 9 (108 s); `seen`
    # lags by one step
    assert seen == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]
    assert latest_checkpoint(tmp_path).name == f"step_{STEPS:08d}"  # and the final one


def test_sigterm_with_plain_iterable_single_sae(tmp_path):
    cfg = SAEConfig(arch="topk", d_in=D_IN, d_sae=D_SAE, k=4, device="cpu")
    batches = [batch_at(i) for i in range(STEPS)]
    plain = train(cfg, train_cfg(), batches)
    assert list(plain.saes) == ["sae"]

    def terminate(step, tokens, metrics):
        if step == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SystemExit) as info:
        train(cfg, train_cfg(), batches, run_dir=tmp_path, on_step=terminate)
    assert info.value.code == 128 + signal.SIGTERM
    assert latest_checkpoint(tmp_path).name == "step_00000007"
    resumed = resume(tmp_path, batches)  # a plain iterable is fast-forwarded by skipping
    assert_same_saes(resumed.saes, plain.saes)


def test_stream_errors_are_readable(tmp_path):
    cfg = SAEConfig(arch="relu", d_in=D_IN, d_sae=D_SAE, device="cpu")
    with pytest.raises(ValueError, match="ran out after 192 tokens"):
        train(cfg, train_cfg(), [batch_at(i) for i in range(3)])
    with pytest.raises(ValueError, match="expected the global batch"):
        train(cfg, train_cfg(), [batch_at(0)[:10]] * STEPS)
    with pytest.raises(ValueError, match="lacks"):
        train({"a": cfg, "b": cfg}, train_cfg(), [{"a": batch_at(0)}] * STEPS)
    with pytest.raises(ValueError, match="only one SAE"):
        train({"a": cfg, "b": cfg}, train_cfg(), [batch_at(0)] * STEPS)
    train(cfg, train_cfg(total_tokens=BATCH, lr_warmup_steps=0), [batch_at(0)], run_dir=tmp_path)
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, train_cfg(), [batch_at(0)] * STEPS, run_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resume(tmp_path / "elsewhere", [])


def test_batches_with_leading_dims_and_raw_space_result():
    module = build_sae(SAEConfig(arch="relu", d_in=D_IN, d_sae=D_SAE, device="cpu"), seed=0)
    batches = [batch_at(i).reshape(4, BATCH // 4, D_IN) for i in range(STEPS)]
    result = train(module, train_cfg(), batches)  # a module is trained in place
    s = result.norm_scaling_factors["sae"]
    first_two = torch.cat([b.reshape(-1, D_IN) for b in batches[:2]])
    assert s == pytest.approx(D_IN**0.5 / first_two.norm(dim=-1).mean().item(), rel=1e-6)
    # The returned SAE has the factor folded in: folded(x) == trained(x * s) / s.
    x = batch_at(50)
    torch.testing.assert_close(result.saes["sae"](x), module(x * s) / s, atol=1e-5, rtol=1e-5)
    assert result.saes["sae"] is not module


def assert_identical(a, b):
    """Bit for bit: on one thread a resumed run repeats the same operations on the same values."""
    assert a.keys() == b.keys()
    for name in a:
        for (n, p), q in zip(
            a[name].state_dict().items(), b[name].state_dict().values(), strict=True
        ):
            assert torch.equal(p, q), f"{name}.{n}"


def test_killed_before_the_first_checkpoint_resumes_bit_identical(tmp_path, reference):
    """The step-0 checkpoint is written before the norm estimation reads any batch, so a run
    killed at any moment resumes (before it, such a run had no checkpoint and was lost)."""

    def dies_during_norm_estimation(skip_tokens):
        yield from itertools.islice(factory()(skip_tokens), 1)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(sae_cfgs(), train_cfg(), dies_during_norm_estimation, run_dir=tmp_path / "a")
    assert latest_checkpoint(tmp_path / "a").name == "step_00000000"
    assert_identical(resume(tmp_path / "a", factory()).saes, reference[0].saes)

    def dies_after_step_1(step, tokens, metrics):
        if step == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(sae_cfgs(), train_cfg(), factory(), run_dir=tmp_path / "b", on_step=dies_after_step_1)
    meta = json.loads((latest_checkpoint(tmp_path / "b") / "trainer.json").read_text())
    assert (meta["step"], meta["norm_scaling_factors"]) == (0, {})
    assert_identical(resume(tmp_path / "b", factory()).saes, reference[0].saes)


def test_on_step_is_not_called_again_for_steps_before_the_checkpoint(tmp_path):
    """A resume reports the steps after its checkpoint only. Steps run after the last
    checkpoint and before a crash (here 5-7) are run, and reported, again: a history log that
    appends must drop its rows from the resumed step on."""
    cfg = SAEConfig(arch="topk", d_in=D_IN, d_sae=D_SAE, k=4, device="cpu")
    seen = []

    def crash_after_7(step, tokens, metrics):
        seen.append(step)
        if step == 7:
            raise RuntimeError("killed")

    batches = [batch_at(i) for i in range(STEPS)]
    with pytest.raises(RuntimeError):
        train(cfg, train_cfg(checkpoint_every=4), batches, run_dir=tmp_path, on_step=crash_after_7)
    resume(tmp_path, batches, on_step=lambda step, tokens, metrics: seen.append(step))
    assert seen == [1, 2, 3, 4, 5, 6, 7] + [5, 6, 7, 8, 9, 10]


def test_divergence_stops_the_run_and_keeps_a_checkpoint_from_before(tmp_path):
    """lr 1e6 (the issue: exit 0 with explained variance -2.8e29): the ratio passes 1e29 from
    step 2, so the run stops at step 1 + DIVERGENCE_STEPS; the periodic checkpoints of the
    diverged weights are not written, and the step-0 one is kept. Resuming it with a sane lr
    is, bit for bit, a fresh run at that lr."""
    cfg = SAEConfig(arch="topk", d_in=D_IN, d_sae=D_SAE, k=4, device="cpu")
    batches = [batch_at(i) for i in range(15)]
    with (
        pytest.warns(CheckpointWarning) as record,
        pytest.raises(DivergenceError, match=r"step 11 .*/step_00000000\. Resume") as info,
    ):
        train(cfg, train_cfg(total_tokens=15 * BATCH, lr=1e6, checkpoint_every=2), batches,
              run_dir=tmp_path)  # fmt: skip
    assert info.value.step == 1 + DIVERGENCE_STEPS and info.value.ratio > 1e20
    skipped = [str(w.message).split(":")[0] for w in record]
    assert skipped == [f"no checkpoint written at step {s}" for s in (2, 4, 6, 8, 10)]
    assert [p.name for p in (tmp_path / "checkpoints").glob("step_*")] == ["step_00000000"]

    fresh = train(build_sae(cfg, seed=0), train_cfg(total_tokens=15 * BATCH), batches)
    resumed = resume(tmp_path, batches, lr=3e-3)
    assert_identical(resumed.saes, fresh.saes)
    meta = json.loads((latest_checkpoint(tmp_path) / "trainer.json").read_text())
    assert meta["train_config"]["lr"] == 3e-3  # the override is recorded


def test_diverged_final_weights_are_not_returned():
    """A run too short for DIVERGENCE_STEPS still refuses to return diverged SAEs."""
    cfg = SAEConfig(arch="topk", d_in=D_IN, d_sae=D_SAE, k=4, device="cpu")
    tcfg = train_cfg(total_tokens=4 * BATCH, lr=1e6)
    with pytest.raises(DivergenceError, match="step 4 .* with the final weights, which were not"):
        train(cfg, tcfg, [batch_at(i) for i in range(4)])


def test_a_recoverable_spike_does_not_stop_the_run():
    """JumpReLU at lr 0.1 (x16 latents, uncentred inputs): the error jumps above
    DIVERGENCE_RATIO for a few steps, then training recovers; the run must go on."""
    d_in, n = 64, 256
    g = torch.Generator().manual_seed(0)
    scale, offset = torch.linspace(0.1, 3, d_in), torch.linspace(-20, 20, d_in)
    batches = [torch.randn(n, d_in, generator=g) * scale + offset for _ in range(30)]
    evs = []
    train(
        SAEConfig(arch="jumprelu", d_in=d_in, d_sae=16 * d_in, device="cpu"),
        TrainConfig(total_tokens=30 * n, batch_tokens=n, lr=0.1, norm_estimation_batches=2),
        batches,
        on_step=lambda step, tokens, metrics: evs.append(metrics["sae"]["explained_variance"]),
    )
    # The trainer's ratio sse / sum ||x||^2 is (1 - EV) * variance / sum ||x||^2 (both are
    # invariant to the norm scaling).
    ratios = [
        (1 - ev) * (x - x.mean(0)).pow(2).sum().item() / x.pow(2).sum().item()
        for ev, x in zip(evs, batches, strict=True)
    ]
    spike = [r > DIVERGENCE_RATIO for r in ratios]
    assert 0 < sum(spike) < DIVERGENCE_STEPS
    assert max(ratios) > 1e5 and ratios[-1] < 0.1  # recovered: x_hat is far better than 0


def test_train_refuses_a_folder_with_checkpoints_but_no_latest(tmp_path):
    cfg = SAEConfig(arch="relu", d_in=D_IN, d_sae=D_SAE, device="cpu")
    (tmp_path / "checkpoints" / "step_00000003").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, train_cfg(), [batch_at(i) for i in range(STEPS)], run_dir=tmp_path)
