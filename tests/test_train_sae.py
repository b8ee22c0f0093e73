"""`interp train-sae` end to end on a tiny Llama, checked against independent references.

- The saved folder opens in SAELens, and SAELens's reconstruction of activations taken with
  TransformerLens's `run_with_cache` gives the explained variance that metrics.json reports.
- ce_clean in metrics.json equals the HF model's own next-token loss on the same contexts.
"""

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.data import iter_contexts, iter_texts
from interp.sae_run import TrainSAEConfig, _train_contexts_used

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


@pytest.fixture(scope="module")
def run_dir(tiny_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    res = runner.invoke(
        app,
        [
            "train-sae",
            "--model",
            str(tiny_dirs["llama"]),
            "--layer",
            "1",
            "--out",
            str(out),
            *SMALL,
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def _eval_tokens(tokenizer, cfg: TrainSAEConfig) -> torch.Tensor:
    start = _train_contexts_used(cfg)
    n = math.ceil(cfg.eval_tokens / cfg.ctx_len)
    contexts = iter_contexts(iter_texts(cfg.dataset, seed=cfg.seed), tokenizer, cfg.ctx_len)
    return torch.stack(list(itertools.islice(contexts, start, start + n)))


def test_folder_layout_and_config_round_trip(run_dir):
    sae_dir = run_dir / "saes" / HOOK
    for name in ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "metrics.json"):
        assert (sae_dir / name).is_file(), name
    assert (run_dir / "report.html").stat().st_size > 100_000  # plotly.js embedded: offline
    cfg = TrainSAEConfig.from_dict(json.loads((run_dir / "train_sae.json").read_text()))
    assert TrainSAEConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.layers == (1,) and cfg.k == 4


def test_metrics_match_saelens_reconstruction(run_dir, tiny_models):
    from sae_lens import SAE as LensSAE

    model = tiny_models["llama"]
    cfg = TrainSAEConfig.from_dict(json.loads((run_dir / "train_sae.json").read_text()))
    metrics = json.loads((run_dir / "saes" / HOOK / "metrics.json").read_text())
    lens = LensSAE.load_from_disk(str(run_dir / "saes" / HOOK), device="cpu")
    tokens = _eval_tokens(model.tokenizer, cfg)
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    x = cache[HOOK][:, 1:].reshape(-1, cache[HOOK].shape[-1])  # BOS excluded, as in training
    with torch.no_grad():
        x_hat = lens(x)
    ev = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert metrics["n_tokens"] == x.shape[0]
    # float32 sums over ~1k tokens: agreement to 1e-4 is float rounding, not method.
    assert metrics["explained_variance"] == pytest.approx(ev.item(), abs=1e-4)


def test_ce_clean_matches_hf(run_dir, tiny_dirs, tiny_models):
    from transformers import AutoModelForCausalLM

    cfg = TrainSAEConfig.from_dict(json.loads((run_dir / "train_sae.json").read_text()))
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
        (["--layer", "1", "--layers", "1,2"], "not both"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tiny_dirs, tmp_path, args, message):
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["train-sae", "--model", str(tiny_dirs["llama"]), "--out", str(out), *SMALL, *args]
    )
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_existing_run_is_never_overwritten(run_dir, tiny_dirs):
    before = (run_dir / "saes" / HOOK / "sae_weights.safetensors").read_bytes()
    res = runner.invoke(
        app,
        [
            "train-sae",
            "--model",
            str(tiny_dirs["llama"]),
            "--layer",
            "1",
            "--out",
            str(run_dir),
            *SMALL,
        ],
    )
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(
        app,
        [
            "train-sae",
            "--model",
            str(tiny_dirs["llama"]),
            "--layer",
            "1",
            "--resume",
            str(run_dir),
            *SMALL[:-2],
            "--k",
            "8",
        ],
    )
    assert res.exit_code == 2 and "k: run has 4, asked for 8" in res.output
    assert (run_dir / "saes" / HOOK / "sae_weights.safetensors").read_bytes() == before


def test_cache_from_another_hook_is_refused(tiny_dirs, tmp_path):
    cache = tmp_path / "acts"
    res = runner.invoke(
        app,
        [
            "capture",
            "--model",
            str(tiny_dirs["llama"]),
            "--layer",
            "0",
            "--tokens",
            "2048",
            "--ctx-len",
            "32",
            "--out",
            str(cache),
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "train-sae",
            "--model",
            str(tiny_dirs["llama"]),
            "--layer",
            "1",
            "--from-cache",
            str(cache),
            "--out",
            str(tmp_path / "r"),
            *SMALL,
        ],
    )
    assert res.exit_code == 2 and HOOK in res.output, res.output
    res = runner.invoke(
        app,
        [
            "train-sae",
            "--model",
            str(tiny_dirs["gpt2"]),
            "--layer",
            "0",
            "--from-cache",
            str(cache),
            "--out",
            str(tmp_path / "r"),
            *SMALL,
        ],
    )
    assert res.exit_code == 2 and "model" in res.output, res.output
    assert not (tmp_path / "r").exists()
