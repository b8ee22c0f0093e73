"""`interp train-sae` end to end on a tiny Llama, checked against independent references.

- The saved folder opens in SAELens, and SAELens's reconstruction of activations taken with
  TransformerLens's `run_with_cache` gives the explained variance that metrics.json reports.
- ce_clean in metrics.json equals the HF model's own next-token loss on the same contexts.
"""

import dataclasses
import itertools
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.data import iter_contexts, iter_texts
from interp.errors import InterpError
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.source import train_contexts_used

runner = CliRunner()
HOOK = "blocks.1.hook_resid_post"
SMALL = [
    "--tokens",
    "4096",
    "--batch-tokens",
    "512",
    "--eval-tokens",
    "1024",
    "--ctx-len",
    "32",
    "--batch-size",
    "8",
    "--expansion",
    "4",
    "--k",
    "4",
]


def cli(command: str, model_dir: Path, *args: str):
    """`interp <command> --model <model_dir> <args>` in process; returns typer's Result."""
    return runner.invoke(app, [command, "--model", str(model_dir), *args])


@pytest.fixture(scope="module")
def run_dir(tiny_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    res = cli("train-sae", tiny_dirs["llama"], "--layer", "1", "--out", str(out), *SMALL)
    assert res.exit_code == 0, res.output
    return out


def _eval_tokens(tokenizer, cfg: TrainSAEConfig, start: int | None = None) -> torch.Tensor:
    start = train_contexts_used(cfg) if start is None else start
    n = math.ceil(cfg.eval_tokens / cfg.ctx_len)
    contexts = iter_contexts(iter_texts(cfg.dataset, seed=cfg.seed), tokenizer, cfg.ctx_len)
    return torch.stack(list(itertools.islice(contexts, start, start + n)))


def test_folder_layout_and_config_round_trip(run_dir):
    sae_dir = run_dir / "saes" / HOOK
    for name in ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "metrics.json"):
        assert (sae_dir / name).is_file(), name
    assert (run_dir / "report.html").stat().st_size > 100_000  # plotly.js embedded: offline
    cfg = TrainSAEConfig.from_dict(json.loads((run_dir / "cfg.json").read_text()))
    assert TrainSAEConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.layers == (1,) and cfg.sae.k == 4 and cfg.train.total_tokens == 4096


def _check_ev_against_saelens(run_dir: Path, model, start: int) -> dict:
    """SAELens's reconstruction of run_with_cache activations on the held-out contexts (from
    context `start`) gives the explained variance that metrics.json reports."""
    from sae_lens import SAE as LensSAE

    cfg = TrainSAEConfig.from_dict(json.loads((run_dir / "cfg.json").read_text()))
    metrics = json.loads((run_dir / "saes" / HOOK / "metrics.json").read_text())
    assert metrics["eval_contexts_start"] == start
    lens = LensSAE.load_from_disk(str(run_dir / "saes" / HOOK), device="cpu")
    tokens = _eval_tokens(model.tokenizer, cfg, start)
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    x = cache[HOOK][:, 1:].reshape(-1, cache[HOOK].shape[-1])  # BOS excluded, as in training
    with torch.no_grad():
        x_hat = lens(x)
    ev = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert metrics["n_tokens"] == x.shape[0]
    # float32 sums over ~1k tokens: agreement to 1e-4 is float rounding, not method.
    assert metrics["explained_variance"] == pytest.approx(ev.item(), abs=1e-4)
    # Its standard error: the jackknife over held-out contexts, recomputed here from SAELens's
    # reconstruction with each context left out in turn.
    ctx_x = cache[HOOK][:, 1:].double()
    ctx_err = (ctx_x - x_hat.reshape(ctx_x.shape).double()).pow(2)
    loo = []
    for i in range(ctx_x.shape[0]):
        keep = torch.arange(ctx_x.shape[0]) != i
        rest = ctx_x[keep].reshape(-1, ctx_x.shape[-1])
        loo.append(1 - ctx_err[keep].sum() / (rest - rest.mean(0)).pow(2).sum())
    loo = torch.stack(loo)
    n = len(loo)
    se = ((n - 1) / n * (loo - loo.mean()).pow(2).sum()).sqrt().item()
    assert metrics["explained_variance_se"] == pytest.approx(se, rel=1e-3)
    return metrics


def test_metrics_match_saelens_reconstruction(run_dir, tiny_models):
    cfg = TrainSAEConfig.from_dict(json.loads((run_dir / "cfg.json").read_text()))
    _check_ev_against_saelens(run_dir, tiny_models["llama"], train_contexts_used(cfg))


def test_ce_clean_matches_hf(run_dir, tiny_dirs, tiny_models):
    from transformers import AutoModelForCausalLM

    cfg = TrainSAEConfig.from_dict(json.loads((run_dir / "cfg.json").read_text()))
    metrics = json.loads((run_dir / "saes" / HOOK / "metrics.json").read_text())
    hf = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"], dtype=torch.float32)
    tokens = _eval_tokens(tiny_models["llama"].tokenizer, cfg)
    with torch.no_grad():
        loss = hf(tokens, labels=tokens).loss.item()  # HF's mean over all predicted tokens
    assert metrics["ce_clean"] == pytest.approx(loss, abs=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "7"], "0..2"),
        (["--layer", "1", "--site", "resid_pots"], "resid_post"),
        (["--layer", "1", "--arch", "topkk"], "topk"),
        (["--layer", "1", "--d-sae", "8", "--k", "9"], "k=9"),
        (["--layer", "1", "--lr", "-1"], "lr must be > 0"),
        (["--layer", "1", "--ctx-len", "1"], "ctx_len must be at least 2"),
        (["--layer", "1", "--dataset", "missing.jsonl"], "missing.jsonl"),
        (["--layer", "1", "--grad-clip-norm", "zero"], "expected float"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tiny_dirs, tmp_path, args, message):
    out = tmp_path / "run"
    res = cli("train-sae", tiny_dirs["llama"], "--out", str(out), *SMALL, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_existing_run_is_never_overwritten(run_dir, tiny_dirs):
    before = (run_dir / "saes" / HOOK / "sae_weights.safetensors").read_bytes()
    res = cli("train-sae", tiny_dirs["llama"], "--layer", "1", "--out", str(run_dir), *SMALL)
    assert res.exit_code == 2 and "already exists" in res.output
    args = ["--layer", "1", "--resume", str(run_dir), *SMALL[:-2], "--k", "8"]
    res = cli("train-sae", tiny_dirs["llama"], *args)
    assert res.exit_code == 2 and "sae.k: 4 -> 8" in res.output
    assert (run_dir / "saes" / HOOK / "sae_weights.safetensors").read_bytes() == before


def test_cache_from_another_hook_is_refused(tiny_dirs, tmp_path):
    cache = tmp_path / "acts"
    args = ["--layer", "0", "--tokens", "2048", "--ctx-len", "32", "--out", str(cache)]
    res = cli("capture", tiny_dirs["llama"], *args)
    assert res.exit_code == 0, res.output
    from_cache = ["--from-cache", str(cache), "--out", str(tmp_path / "r"), *SMALL]
    res = cli("train-sae", tiny_dirs["llama"], "--layer", "1", *from_cache)
    assert res.exit_code == 2 and HOOK in res.output, res.output
    res = cli("train-sae", tiny_dirs["gpt2"], "--layer", "0", *from_cache)
    assert res.exit_code == 2 and "model" in res.output, res.output
    assert not (tmp_path / "r").exists()


def test_training_from_a_capture_cache(run_dir, tiny_dirs, tiny_models, tmp_path):
    """capture -> train-sae --from-cache: held-out contexts start after the cached ones, the
    saved SAE's explained variance there matches SAELens's reconstruction, and it is as good as
    the SAE trained live on the same config (same activations, another shuffle and eval slice)."""
    cache, out = tmp_path / "acts", tmp_path / "r"
    args = ["--layer", "1", "--ctx-len", "32", "--tokens", "6144", "--out", str(cache)]
    res = cli("capture", tiny_dirs["llama"], *args)
    assert res.exit_code == 0, res.output
    args = ["--layer", "1", "--from-cache", str(cache), "--out", str(out), *SMALL]
    res = cli("train-sae", tiny_dirs["llama"], *args)
    assert res.exit_code == 0, res.output
    metrics = _check_ev_against_saelens(out, tiny_models["llama"], start=6144 // 32)
    live = json.loads((run_dir / "saes" / HOOK / "metrics.json").read_text())
    assert metrics["explained_variance"] == pytest.approx(live["explained_variance"], abs=0.05)


def test_torchrun_two_gloo_ranks_match_one_process(run_dir, tiny_dirs, tmp_path):
    """`torchrun --nproc-per-node 2 -m interp train-sae` (gloo, CPU) on the same global batches
    gives the SAE and held-out metrics of the 1-process run (float32 all-reduce order only)."""
    from safetensors.torch import load_file

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(var, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "interp", "train-sae", "--model", str(tiny_dirs["llama"]), "--layer", "1",
        "--out", str(out), *SMALL,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = load_file(run_dir / "saes" / HOOK / "sae_weights.safetensors")
    two = load_file(out / "saes" / HOOK / "sae_weights.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=1e-4, msg=key)
    m1 = json.loads((run_dir / "saes" / HOOK / "metrics.json").read_text())
    m2 = json.loads((out / "saes" / HOOK / "metrics.json").read_text())
    for key in ("explained_variance", "l0", "ce_spliced", "mse"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-4, abs=1e-5), key


def test_cache_from_another_dataset_is_refused(tiny_dirs, tmp_path):
    """A cache records its text source; training on it under another --dataset is refused, since
    the held-out contexts (the source's, after the cached ones) would be of the wrong text."""
    text = tmp_path / "other.txt"
    text.write_text(
        "\n".join(f"line {i} of another corpus, unlike the default one." for i in range(400))
    )
    cache = tmp_path / "acts"
    args = ["--layer", "1", "--tokens", "2048", "--ctx-len", "32", "--dataset", str(text)]
    res = cli("capture", tiny_dirs["llama"], *args, "--out", str(cache))
    assert res.exit_code == 0, res.output
    out = tmp_path / "r"
    res = cli(
        "train-sae",
        tiny_dirs["llama"],
        "--layer",
        "1",
        "--from-cache",
        str(cache),
        "--out",
        str(out),
        *SMALL,
    )
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert f"was captured from dataset '{text}'" in flat and "but --dataset is 'default'" in flat
    assert not out.exists()


def test_interrupted_run_resumes_from_its_folder_alone_bit_identically(
    run_dir, tiny_dirs, tmp_path, monkeypatch
):
    """SIGINT after step 3: one line naming the checkpoint and the resume command (exit 130);
    `interp train-sae --resume DIR` with no other option finishes the run with the weights and
    the curves (each step once) of the uninterrupted run."""
    import os
    import signal

    from safetensors.torch import load_file

    from interp.train_sae import folder

    original = folder.History.__call__

    def interrupt_at_step_3(self, step, tokens, metrics):
        original(self, step, tokens, metrics)
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(folder.History, "__call__", interrupt_at_step_3)
    out = tmp_path / "r"
    res = cli("train-sae", tiny_dirs["llama"], "--layer", "1", "--out", str(out), *SMALL)
    assert res.exit_code == 130, res.output
    flat = " ".join(res.output.split())
    assert "training stopped by a signal; the checkpoint is" in flat
    assert f"resume with: interp train-sae --resume {out}" in flat
    monkeypatch.setattr(folder.History, "__call__", original)

    res = runner.invoke(app, ["train-sae", "--resume", str(out)])
    assert res.exit_code == 0, res.output
    one = load_file(run_dir / "saes" / HOOK / "sae_weights.safetensors")
    two = load_file(out / "saes" / HOOK / "sae_weights.safetensors")
    assert all(torch.equal(one[k], two[k]) for k in one)
    steps = [row["step"] for row in folder.read_history(out)]
    assert steps == [row["step"] for row in folder.read_history(run_dir)]
    assert len(steps) == len(set(steps))


def test_resume_accepts_a_new_lr_and_nothing_else(run_dir):
    from interp.train_sae.folder import check_resume, saved_config

    saved = saved_config(run_dir)
    lower = dataclasses.replace(
        saved, resume=str(run_dir), train=dataclasses.replace(saved.train, lr=1e-4)
    )
    assert check_resume(lower) == run_dir
    other = dataclasses.replace(lower, sae=dataclasses.replace(saved.sae, k=8))
    with pytest.raises(InterpError, match=r"sae.k: 4 -> 8"):
        check_resume(other)


# Kill moments drawn once from a seeded generator (reproducible): while loading (no folder yet,
# or only cfg.json), and at random points after random checkpoints.
TRAIN_KILLS = [("cfg.json", 0.0)] + [
    (f"checkpoints/step_{2 * rng.randint(1, 3):08d}", rng.uniform(0.0, 0.3))
    for rng in [random.Random(11)]
    for _ in range(2)
]


@pytest.mark.slow
@pytest.mark.parametrize(("appears", "delay"), TRAIN_KILLS)
def test_killed_training_resumes_bit_identically(run_dir, tiny_dirs, tmp_path, appears, delay):
    """A real crash: SIGKILL an `interp train-sae` process when `appears` exists (+ delay), then
    `--resume DIR` alone gives the weights and held-out metrics of the uninterrupted run."""
    import signal
    import time

    from safetensors.torch import load_file

    out = tmp_path / "r"
    args = [sys.executable, "-m", "interp", "train-sae", "--model", str(tiny_dirs["llama"])]
    args += ["--layer", "1", "--out", str(out), "--checkpoint-every", "2", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while not (out / appears).exists() and proc.poll() is None:
        assert time.monotonic() < deadline, f"{appears} never appeared"
        time.sleep(0.002)
    time.sleep(delay)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    res = runner.invoke(app, ["train-sae", "--resume", str(out)])
    assert res.exit_code == 0, res.output
    one = load_file(run_dir / "saes" / HOOK / "sae_weights.safetensors")
    two = load_file(out / "saes" / HOOK / "sae_weights.safetensors")
    assert all(torch.equal(one[k], two[k]) for k in one)
    m1 = json.loads((run_dir / "saes" / HOOK / "metrics.json").read_text())
    m2 = json.loads((out / "saes" / HOOK / "metrics.json").read_text())
    assert m1["explained_variance"] == m2["explained_variance"]
    from interp.train_sae.folder import read_history

    steps = [row["step"] for row in read_history(out)]
    assert len(steps) == len(set(steps))


def test_full_disk_is_one_line_and_leaves_no_temporary_files(tiny_dirs, tmp_path):
    """A run whose --out is on a full (200 kB tmpfs) disk: one `error:` line naming the file,
    no traceback, and no temporary file left."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        out = mnt / "r"
        res = cli(
            "train-sae",
            tiny_dirs["llama"],
            "--layer",
            "1",
            "--out",
            str(out),
            *SMALL,
            "--expansion",
            "64",
        )
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output
        line = " ".join(res.output.split())
        assert "error: No space left on device: " in line and str(out) in line
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_several_saes_share_the_clean_pass_and_get_the_same_metrics(tiny_models):
    """evaluate_saes on two hooks at once equals each SAE evaluated alone (bit for bit), and runs
    1 + 2N forward passes per batch instead of 3N."""
    from interp.interventions import intervene
    from interp.train_sae.evaluate import evaluate_sae, evaluate_saes
    from sae import SAEConfig, build_sae

    model = tiny_models["llama"]
    d = model.cfg.d_model
    hooks = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
    saes = {h: build_sae(SAEConfig(d_in=d, d_sae=4 * d, k=4), seed=i) for i, h in enumerate(hooks)}
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(3, model.cfg.d_vocab, (4, 16), generator=g) for _ in range(2)]

    passes = []
    with intervene(model, {"hook_embed": lambda a, *, hook: passes.append(1)}):
        joint = evaluate_saes(model, saes, batches)
    assert len(passes) == len(batches) * (1 + 2 * len(saes))
    for hook, sae in saes.items():
        alone = evaluate_sae(model, sae, hook, batches)
        assert joint[hook].metrics.scalars() == alone.metrics.scalars()
        assert joint[hook].kl == alone.kl
        assert joint[hook].standard_errors == alone.standard_errors


def test_resume_restores_the_shuffle_buffer_instead_of_recomputing(
    tiny_dirs, tmp_path, monkeypatch
):
    """A run resumed from a mid-run checkpoint runs the model only on the contexts the
    checkpoint's stream had not read (stream.safetensors holds its shuffle buffer), and ends
    with the uninterrupted run's weights, bit for bit."""
    import shutil

    from safetensors.torch import load_file

    import interp.capture.core as core

    args = ["--layer", "1", "--tokens", "2048", "--batch-tokens", "64", "--batch-size", "8"]
    args += ["--ctx-len", "32", "--eval-tokens", "256", "--checkpoint-every", "8"]
    args += ["--keep-checkpoints", "10"]
    whole = tmp_path / "whole"
    assert cli("train-sae", tiny_dirs["llama"], *args, "--out", str(whole)).exit_code == 0

    cut = tmp_path / "cut"  # the same run as if it had been killed right after step 16
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "saes")
    for later in ("step_00000024", "step_00000032"):
        shutil.rmtree(cut / "checkpoints" / later)
    (cut / "checkpoints" / "LATEST").write_text("step_00000016\n")
    history = (cut / "history.jsonl").read_text().splitlines()
    (cut / "history.jsonl").write_text("".join(f"{r}\n" for r in history[:16]))
    saved = load_file(cut / "checkpoints" / "step_00000016" / "stream.safetensors")
    chunks_read = int(saved["counters"][0])

    forwarded = []
    real = core._iter_captures

    def counting(model, batches, names, fast):
        for capture in real(model, batches, names, fast):
            forwarded.append(capture.tokens.shape[0])
            yield capture

    monkeypatch.setattr(core, "_iter_captures", counting)
    res = runner.invoke(app, ["train-sae", "--resume", str(cut)])
    assert res.exit_code == 0, res.output
    total_chunks = math.ceil(math.ceil(2048 / 31) / 8)
    assert 0 < chunks_read < total_chunks
    assert len(forwarded) == total_chunks - chunks_read  # not total_chunks: nothing recomputed
    one = load_file(whole / "saes" / HOOK / "sae_weights.safetensors")
    two = load_file(cut / "saes" / HOOK / "sae_weights.safetensors")
    assert all(torch.equal(one[k], two[k]) for k in one)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma", "qwen"])
def test_branched_evaluation_equals_three_full_runs(tiny_models, arch):
    """Blocks before the hook run once and the spliced and ablated passes replay them
    (interp.prefix.shared_prefix): every metric equals the three full passes' to 1e-5, on each
    architecture; the replayed passes do not run block 0's attention."""
    from interp.train_sae.evaluate import evaluate_sae
    from sae import SAEConfig, build_sae

    model = tiny_models[arch]
    hook = f"blocks.{model.cfg.n_layers - 2}.hook_resid_post"
    sae = build_sae(SAEConfig(d_in=model.cfg.d_model, d_sae=4 * model.cfg.d_model, k=4), seed=0)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(3, model.cfg.d_vocab, (3, 12), generator=g) for _ in range(2)]

    calls = []
    handle = model.blocks[0].attn.register_forward_hook(lambda *a: calls.append(1))
    try:
        branched = evaluate_sae(model, sae, hook, batches, branch=True)
        n_branched = len(calls)
        full = evaluate_sae(model, sae, hook, batches, branch=False)
    finally:
        handle.remove()
    assert n_branched == len(batches) and len(calls) - n_branched == 3 * len(batches)
    got, want = branched.metrics.scalars(), full.metrics.scalars()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key
    assert branched.kl == pytest.approx(full.kl, abs=1e-5)
