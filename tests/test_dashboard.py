"""`interp dashboard` on a tiny random model and SAE: the one-pass statistics against a brute-force
recomputation from `interp.capture.capture`, logit effects and decoder neighbours against the
full matrices, labels on planted firing rules, the page's size and escaping, the Neuronpedia
export's fields, and the command's answers to bad input."""

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp.capture import capture
from interp.dashboard.labels import Heldout, label_features
from interp.dashboard.page import dashboard_html
from interp.dashboard.records import feature_record
from interp.dashboard.run import compute_dashboard
from interp.dashboard.stats import FeatureAccumulator, hist_edges
from interp.dashboard.weights import decoder_neighbours, logit_effects
from interp.data import iter_contexts, iter_texts
from interp.viz.html import plotly_script

HOOK = "blocks.1.hook_resid_post"
CTX, N_MAIN, N_HELD = 24, 20, 6
HOSTILE = "<img src=x onerror=alert(1)>"


def _sae(d_in: int, model_name: str, d_sae: int = 40, k: int = 4):
    from sae.config import SAEConfig
    from sae.registry import build_sae

    cfg = SAEConfig(arch="topk", d_in=d_in, d_sae=d_sae, k=k, hook_name=HOOK, model_name=model_name)
    sae = build_sae(cfg, seed=0).eval()
    with torch.no_grad():
        sae.b_enc.add_(torch.randn(d_sae, generator=torch.Generator().manual_seed(1)) * 0.05)
    return sae


def _contexts(model, n: int) -> torch.Tensor:
    texts = iter_texts("default", seed=3)
    ctxs = iter_contexts(texts, model.tokenizer, CTX)
    return torch.stack([next(ctxs) for _ in range(n)])


@pytest.fixture(scope="module")
def tiny(tiny_models, tiny_dirs):
    model = tiny_models["llama"]
    sae = _sae(32, str(tiny_dirs["llama"]))
    contexts = _contexts(model, N_MAIN + N_HELD)
    dash = compute_dashboard(
        model,
        sae,
        HOOK,
        iter(contexts),
        N_MAIN,
        N_HELD,
        batch_size=7,
        accumulator={"top_k": 5, "sample": 8, "left": 4, "right": 2},
    )
    return model, sae, contexts, dash


def test_pass_statistics_equal_brute_force_from_capture(tiny):
    model, sae, contexts, dash = tiny
    acts = capture(model, contexts[:N_MAIN], [HOOK])[HOOK]
    with torch.no_grad():
        codes = sae.encode(acts.reshape(-1, 32)).reshape(N_MAIN, CTX, -1)
    codes[:, 0] = 0  # BOS positions are not counted
    flat = codes.reshape(-1, codes.shape[-1]).numpy()
    fired = flat > 0
    s = dash.stats
    assert s.n_tokens == N_MAIN * (CTX - 1)
    np.testing.assert_array_equal(s.fires.numpy(), fired.sum(0))
    np.testing.assert_array_equal(s.coact.matrix().numpy(), fired.T.astype(int) @ fired.astype(int))
    edges = hist_edges().numpy()
    for f in range(flat.shape[1]):
        want_hist, _ = np.histogram(flat[fired[:, f], f], bins=edges)
        np.testing.assert_array_equal(s.hist[f].numpy(), want_hist)
        rows = np.flatnonzero(fired[:, f])
        top = rows[np.argsort(-flat[rows, f], kind="stable")][:5]
        assert s.top.rows[f, : len(top)].tolist() == top.tolist()
        # the capture path and the SAE agree to float32 round-off, not bit for bit
        np.testing.assert_allclose(s.top.values[f, : len(top)].numpy(), flat[top, f], rtol=1e-4)
    held = dash.meta["n_heldout_tokens"]
    assert held == N_HELD * (CTX - 1)


def test_logit_effects_and_neighbours_equal_full_matrices(tiny):
    model, sae, _, dash = tiny
    hf = model.original_model
    norm = hf.model.norm  # Llama RMSNorm: d / rms(d) * w
    W_dec = sae.W_dec.detach()
    rms = (W_dec.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).sqrt()
    full = (W_dec / rms * norm.weight) @ hf.lm_head.weight.T
    eff = dash.logits
    assert torch.equal(eff.top_ids, full.topk(10, dim=1).indices)
    torch.testing.assert_close(eff.bottom_values, full.topk(10, dim=1, largest=False).values)
    assert (eff.hist_counts.sum(1) == full.shape[1]).all()
    unit = torch.nn.functional.normalize(W_dec, dim=1)
    cos = unit @ unit.T
    cos.fill_diagonal_(-2)
    assert torch.equal(dash.neighbours.ids, cos.topk(5, dim=1).indices)
    assert torch.equal(decoder_neighbours(W_dec, chunk=7).ids, dash.neighbours.ids)
    small = logit_effects(W_dec, model, chunk=3)
    assert torch.equal(small.top_ids, eff.top_ids)


def _planted(n_ctx: int, seed: int):
    """Contexts of tokens 3..19 where latent 0 fires on token 7, latent 1 on the token after 9,
    latent 2 on the bigram (3, 4), latent 3 never."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, 20, (n_ctx, 16), generator=g)
    tokens[:, 0] = 0
    acts = torch.zeros(n_ctx, 16, 4)
    acts[..., 0] = (tokens == 7) * (1 + torch.rand(n_ctx, 16, generator=g))
    prev = torch.cat([torch.full((n_ctx, 1), -1), tokens[:, :-1]], dim=1)
    acts[..., 1] = (prev == 9) * 2.0
    acts[..., 2] = ((prev == 3) & (tokens == 4)) * 3.0
    acts[:, 0] = 0
    return tokens, acts


def test_labels_recover_planted_rules_with_exact_heldout_scores():
    tokens, acts = _planted(60, 0)
    acc = FeatureAccumulator(4, 20, 16, bos_id=0, sample=40, left=3, right=2)
    acc.update(tokens, acts, 0)
    stats = acc.finish()
    held_t, held_a = _planted(30, 1)
    rows, latents = held_a.reshape(-1, 4).nonzero(as_tuple=True)
    counted = torch.ones_like(held_t, dtype=torch.bool)
    counted[:, 0] = False
    labels = label_features(stats, Heldout(held_t, counted, rows, latents), range(4), 20)
    assert (labels[0].kind, labels[0].keys) == ("token", [7])
    assert (labels[1].kind, labels[1].keys) == ("prev", [9])
    assert (labels[2].kind, labels[2].keys) == ("bigram", [3 * 20 + 4])
    for f in range(3):
        assert labels[f].precision == 1.0 and labels[f].recall == 1.0 and labels[f].score == 1.0
    assert labels[3] is None
    assert labels[0].lift[0][0] == 7


def test_quantile_groups_hold_only_firings_in_rank_order(tiny):
    _, _, _, dash = tiny
    for f in dash.features:
        record = feature_record(dash, f, quantiles=4, per_quantile=2)
        values = [e["value"] for g in record["quantiles"] for e in g["examples"]]
        assert all(v > 0 for v in values) and values == sorted(values)
        assert len(record["top"]) == min(5, int(dash.stats.fires[f]))


def test_page_escapes_tokens_and_stays_small(tiny):
    _, _, _, dash = tiny
    records = [feature_record(dash, f) for f in dash.features]
    vocab = list(dash.vocab)
    first = next(r for r in records if r["top"])["top"][0]
    vocab[first["tokens"][first["at"]]] = HOSTILE
    html = dashboard_html(records, vocab, dash.meta)
    assert "<img" not in html.replace(plotly_script(), "")
    assert html.count("<script>") == 2  # plotly.js once, the page's script once
    assert "cdn" not in html.replace(plotly_script(), "").lower()
    per_feature = (len(html) - len(plotly_script())) / len(records)
    assert per_feature < 50_000


def test_dashboard_table_is_plain_rows(tiny):
    _, _, _, dash = tiny
    rows = dash.table()
    assert len(rows) == dash.stats.fires.shape[0]
    assert {r["index"] for r in rows if r["density"] == 0} == set(
        torch.nonzero(dash.stats.fires == 0).flatten().tolist()
    )


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def sae_dir(tiny_dirs, tmp_path_factory):
    from sae.io import save_sae

    folder = tmp_path_factory.mktemp("dash_sae") / "sae"
    save_sae(_sae(32, str(tiny_dirs["llama"])), folder)
    return folder


def _cli(*args):
    from interp.cli import app

    return CliRunner().invoke(app, ["dashboard", *map(str, args)])


@pytest.fixture(scope="module")
def written(sae_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dash_out") / "dash"
    result = _cli(
        "--sae",
        sae_dir,
        "--tokens",
        400,
        "--label-tokens",
        100,
        "--ctx-len",
        24,
        "--out",
        out,
        "--device",
        "cpu",
        "--neuronpedia-batch",
        16,
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_command_writes_html_json_and_neuronpedia(written):
    out, output = written
    assert "features shown" in output and "dead" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["features_shown"] == 40
    record = json.loads((out / "features" / "5.json").read_text())
    shown = [json.loads(p.read_text()) for p in (out / "features").glob("*.json")]
    assert len(shown) == 40
    example = next(r for r in shown if r["top"])["top"][0]
    assert all(isinstance(t, str) for t in example["tokens"])
    assert record["steer"].endswith("--feature 5") and "--from-sae" in record["steer"]
    batches = sorted((out / "neuronpedia").glob("batch-*.json"))
    assert len(batches) == 3  # 40 features, 16 a batch
    feature = json.loads(batches[0].read_text())["features"][0]
    for key in (
        "feature_index",
        "activations",
        "pos_str",
        "neg_str",
        "pos_values",
        "neg_values",
        "frac_nonzero",
        "freq_hist_data_bar_values",
        "freq_hist_data_bar_heights",
        "logits_hist_data_bar_values",
        "logits_hist_data_bar_heights",
        "n_prompts_total",
        "n_tokens_in_prompt",
        "dataset",
    ):
        assert key in feature
    if feature["activations"]:
        assert set(feature["activations"][0]) >= {
            "bin_min",
            "bin_max",
            "bin_contains",
            "tokens",
            "values",
        }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tokens", 0], "--tokens must be a positive integer"),
        (["--features", "0-40"], "feature 40 is out of range"),
        (["--features", "x"], "is not an index"),
        (["--top", 3, "--features", "1"], "give one of"),
    ],
)
def test_command_refuses_bad_options(sae_dir, tmp_path, args, message):
    result = _cli("--sae", sae_dir, "--out", tmp_path / "new", "--device", "cpu", *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()


def test_command_refuses_bad_folders(sae_dir, tiny_dirs, tmp_path, written):
    out, _ = written
    before = (out / "index.html").stat().st_mtime_ns
    cases = [
        (["--sae", sae_dir, "--out", out], "already exists"),
        (["--sae", tmp_path, "--out", tmp_path / "a"], "is not an SAE folder"),
        (["--sae", sae_dir, "--out", tmp_path / "b", "--hook", "blocks.1.hook_attn_out.x"], "hook"),
    ]
    wide = tmp_path / "wide"
    from sae.io import save_sae

    save_sae(_sae(16, str(tiny_dirs["llama"])), wide)
    cases.append((["--sae", wide, "--out", tmp_path / "c"], "16-wide"))
    for args, message in cases:
        result = _cli(*args, "--device", "cpu")
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert (out / "index.html").stat().st_mtime_ns == before
    assert not any((tmp_path / n).exists() for n in "abc")


# ----------------------------------------------------------------------------- in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
const __ce = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); __ce(...a); };
window.addEventListener('load', () => setTimeout(() => {
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({resources: performance.getEntriesByType('resource')
    .map(r => r.name), errors: window.__errors});
  document.body.append(p);
}, 300));
</script>"""


def chromium_dom(page: Path, fragment: str) -> tuple[str, str]:
    """(DOM after the page's scripts ran, Chromium's log) for `page` opened at `#fragment`."""
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            f"{page.as_uri()}#{fragment}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run.stdout, run.stderr


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: chromium)"
)
def test_page_in_headless_chromium(tiny, tmp_path):
    _, _, _, dash = tiny
    records = [feature_record(dash, f) for f in dash.features]
    record = next(r for r in records if r["top"])
    example = record["top"][0]
    vocab = list(dash.vocab)
    vocab[example["tokens"][example["at"]]] = HOSTILE
    html = dashboard_html(records, vocab, dash.meta).replace("<head>", "<head>" + PROBE, 1)
    page = tmp_path / "index.html"
    page.write_text(html)
    dom, log = chromium_dom(page, f"f{record['index']}")
    probe = json.loads(unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))
    assert probe == {"resources": [], "errors": []}  # no network request, no script error
    console = [line for line in log.splitlines() if ":CONSOLE" in line or "Refused" in line]
    assert console == []
    main = dom[dom.index('<div id="main">') :]
    assert f"<h2>Feature {record['index']}</h2>" in main
    first = re.search(r'<div class="top"><div class="ex">(.*?)</div>', main, re.S).group(1)
    shown = unescape(re.sub(r"<[^>]+>", "", first))
    assert shown == "".join(vocab[t] for t in example["tokens"]).replace("\n", "\u23ce")
    assert "&lt;img src=x onerror=alert(1)&gt;" in first  # the hostile token, as text
    assert "<img" not in dom


def test_show_renders_one_feature_from_a_dashboard_or_its_folder(tiny, written):
    from interp.dashboard import show

    _, _, _, dash = tiny
    f = next(f for f in dash.features if int(dash.stats.fires[f]) > 0)
    view = show(dash, f)
    data = json.loads(
        re.search(r'id="dash-data" type="application/json">(.*?)</script>', view.html, re.S).group(
            1
        )
    )
    assert [r["index"] for r in data["features"]] == [f]
    assert data["features"][0]["top"] == dash.feature(f)["top"]
    assert view._repr_html_().startswith('<iframe srcdoc="') and "<script" not in view._repr_html_()
    out, _ = written
    record = json.loads((out / "features" / f"{f}.json").read_text())
    page = show(out, f).html
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', page, re.S).group(1))
    shown = data["features"][0]
    assert [data["vocab"][t] for t in shown["top"][0]["tokens"]] == record["top"][0]["tokens"]
