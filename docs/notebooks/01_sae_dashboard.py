# %% [markdown]
# # 1. Capture, train an SAE, read its dashboard, pick a feature
#
# On the embedded default model (a 16-block, 128-wide organism with planted behaviours:
# `docs/organism.md`), on a CPU, in about two minutes:
#
# 1. capture the residual stream after a block;
# 2. train a small sparse autoencoder (SAE) on it;
# 3. compute its feature dashboard (top examples, quantiles, labels scored on held-out text);
# 4. pick a feature by its label and check it on prompts of our own.
#
# Everything is written under a temporary folder; set `work` to a folder of your own to keep it.

# %%
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import pandas as pd
import transformers

import interp
from interp.viz.notebook import use_offline_renderer

transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar per model load
use_offline_renderer()  # figures inline; plotly.js embedded in the notebook once, no CDN
work = Path(tempfile.mkdtemp(prefix="interp-nb1-"))
model = interp.load_model()  # the embedded default model; CPU and float32 here
print(model.cfg.n_layers, "blocks,", model.cfg.d_model, "wide,", model.cfg.n_heads, "heads")

# %% [markdown]
# ## 1. Capture
#
# `capture_activations(model, tokens, hooks)` runs one forward pass and returns each hook's
# activation, `[batch, pos, d_model]` for the residual stream (hook names are TransformerLens's).

# %%
hook = "blocks.3.hook_resid_post"
tokens = model.to_tokens(["User: How do I make poison?\nAssistant:", "Review: The soup was great. It was"])
acts = interp.capture_activations(model, tokens, [hook])
print(tokens.shape, acts[hook].shape)
print("norm per position:", [round(x, 1) for x in acts[hook][0].norm(dim=-1).tolist()])

# %% [markdown]
# ## 2. Train an SAE
#
# `train_sae_run` is `interp train-sae` as a function. A small budget: 80 steps of 1,024
# tokens (the command's default is 3M tokens), a TopK SAE with k = 16 and 1,024 latents, then
# the held-out metrics on 8,192 tokens.

# %%
from sae import TrainConfig, load_sae

cfg = interp.TrainSAEConfig(
    layer=(3,),
    eval_tokens=8_192,
    out=str(work / "sae-run"),
    train=TrainConfig(total_tokens=81_920, batch_tokens=1_024, lr=4e-3),
)
result = interp.train_sae_run(cfg)
sae_dir = result.sae_dirs[hook]
metrics = result.metrics[hook]
pd.Series({k: metrics[k] for k in ("explained_variance", "ce_loss_recovered", "l0", "dead_fraction")})

# %% [markdown]
# The run's report (`report.html` in the run folder) as a figure: training curves, the feature
# density histogram and the held-out metrics.

# %%
from safetensors.torch import load_file

from interp.train_sae.figures import sae_report
from interp.train_sae.folder import read_history

density = 10 ** load_file(sae_dir / "sparsity.safetensors")["sparsity"]  # stored as log10
sae_report(read_history(result.run_dir), result.metrics, {hook: density}).show()

# %% [markdown]
# The folder is SAELens's format (`cfg.json` + `sae_weights.safetensors`): `sae.load_sae`
# opens it, as does SAELens's `SAE.load_from_disk`. Each token gets exactly k = 16 active
# latents:

# %%
sae = load_sae(sae_dir)
codes = sae.encode(acts[hook][0, 1:])  # BOS left out, as in training
print(sorted(p.name for p in sae_dir.iterdir()))
print("active latents per token:", (codes != 0).sum(-1).tolist())

# %% [markdown]
# ## 3. The dashboard
#
# `dashboard_run` is `interp dashboard`: one pass over 32,768 tokens collects every latent's
# statistics, then each latent gets a label (a token rule) whose precision and recall are
# measured on 8,192 held-out tokens. It writes the offline HTML, one JSON per feature and a
# Neuronpedia export, and returns the statistics.

# %%
from interp.dashboard import DashboardConfig, dashboard_run, show

dash_cfg = DashboardConfig(
    sae=str(sae_dir), tokens=32_768, label_tokens=8_192, out=str(work / "dashboard"), device="cpu"
)
dash = dashboard_run(dash_cfg)
print({k: dash.summary[k] for k in ("features_shown", "dead", "dense", "label_score_quartiles")})
table = pd.DataFrame(dash.dashboard.table()).set_index("index")
table.sort_values("score", ascending=False).head(10)

# %% [markdown]
# ## 4. Pick a feature
#
# The model card says the default model refuses harmful requests with "I can't help with
# that." Search the labels for a latent tied to the refusal's " can", and take the one whose
# label scores best on held-out text.

# %%
refusal = table[table["label"].fillna("").str.contains('" can"')]
feature = int(refusal["score"].idxmax())
print(feature, table.loc[feature, "label"])
print(table.loc[feature, ["score", "precision", "recall", "density"]].round(3).to_dict())

# %% [markdown]
# Its dashboard view, as in `dashboard/index.html#f<N>` (top examples, quantile groups,
# activation histogram, logit effects, neighbours):

# %%
show(dash.out, feature)

# %% [markdown]
# Check the label on two prompts the dashboard never saw, a refusal and a benign answer: the
# feature's activation on every token where it fires. A token rule is what it says: the
# latent fires on " can" of the refusal, and also on a " can" that is not one.

# %%
texts = [
    "User: How do I make a weapon?\nAssistant: I can't help with that.",
    "User: How do I bake bread?\nAssistant: Sure! To bake bread, first gather what you can",
]
for text in texts:
    toks = model.to_tokens(text)
    x = interp.capture_activations(model, toks, [hook])[hook][0]
    f = sae.encode(x)[:, feature]
    pieces = model.to_str_tokens(toks)
    print(" ".join(f"{p!r}:{v:.1f}" for p, v in zip(pieces, f.tolist()) if v > 0) or "(never fires)")

# %% [markdown]
# Next: `interp steer extract --from-sae <sae_dir> --feature <N>` turns this latent's decoder
# row into a steering vector (notebook 3), and `docs/dashboard.md` has the full study of a
# 1,024-latent SAE at block 12.

# %%
import shutil

shutil.rmtree(work)  # the temporary run and dashboard folders (keep them: set `work` above)
