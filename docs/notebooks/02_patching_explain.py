# %% [markdown]
# # 2. Patching, ablation and an edge circuit; then SHAP, LIME, gradients and attention
#
# The default model completes name stories ("When Mary and John went to the store, John gave
# a drink to" → " Mary"), the indirect-object task of Wang et al. (2022). Which heads do it?
# Causal methods first (activation patching, ablation, edge attribution), then the explainers
# on one of the same prompts. About a minute and a half on a CPU.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import torch
import transformers

import interp
from interp.patching import ablate, attribution_patch, circuit_graph, edge_attribution, exact_patch, heatmap, make_task
from interp.viz.notebook import use_offline_renderer

transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar
use_offline_renderer()  # figures inline; plotly.js embedded in the notebook once, no CDN
model = interp.load_model()

# %% [markdown]
# ## The task
#
# Eight held-out name stories of one token length. The corrupt prompt replaces the second
# subject by the indirect object, which flips the answer; the metric is
# logit(indirect object) − logit(subject) at the last token, averaged over the pairs.

# %%
task = make_task(model, "names", n=8)
print(task.description)
for clean, corrupt in zip(task.clean[:2], task.corrupt[:2]):
    print(repr(model.to_string(clean[1:])), "|", repr(model.to_string(corrupt[1:])))
with torch.no_grad():
    print("clean", round(task.metric(model(task.clean)).mean().item(), 3),
          "corrupt", round(task.metric(model(task.corrupt)).mean().item(), 3))

# %% [markdown]
# ## Activation patching
#
# Each head's clean output is put into the corrupt run, one head at a time (all 64 in a few
# batched passes): how much of the logit difference comes back? `normalised` is the share of
# the clean − corrupt gap.

# %%
heads = exact_patch(model, task.clean, task.corrupt, task.metric, "heads")
print([(cell, round(value, 2)) for cell, value in heads.top(6)])
heatmap(heads).show()

# %% [markdown]
# Attribution patching estimates the same grid from one forward and one backward pass: a
# first-order approximation that ranks the same heads first.

# %%
quick = attribution_patch(model, task.clean, task.corrupt, task.metric, "heads")
print([(cell, round(value, 2)) for cell, value in quick.top(6)])
print("Pearson with exact:", round(torch.corrcoef(torch.stack([heads.effect.flatten(), quick.effect.flatten()]))[0, 1].item(), 3))

# %% [markdown]
# ## Ablation
#
# The other direction: remove one head from the clean run (replace its output by its mean over
# the corrupt prompts) and watch the metric fall.

# %%
ablated = ablate(model, task.clean, task.metric, "heads", kind="mean", reference=task.corrupt)
print([(cell, round(value, 2)) for cell, value in ablated.top(6)])
heatmap(ablated, normalised=False, title="Metric with one head mean-ablated").show()

# %% [markdown]
# ## The edge circuit
#
# Edge attribution patching (EAP) scores all 3,225 sender → receiver edges from one backward
# pass. The top edges draw the circuit: block 1's induction heads find the repeated name and
# L3H1 moves the other name to the output (docs/patching.md has the full study, with exact edge
# patching as the reference).

# %%
edges = edge_attribution(model, task.clean, task.corrupt, task.metric)
for sender, receiver, score in edges.circuit(8):
    print(f"{sender:>6} -> {receiver:<7} {score:+.2f}")
circuit_graph(edges, 12).show()

# %% [markdown]
# ## Explainers on the same prompt
#
# The first story of the task; the target is the same logit difference, for that pair's
# names. The indirect object is the corrupt prompt's replacement token.

# %%
from interp.explain import Target, explain, head_report

position = int((task.clean[0] != task.corrupt[0]).nonzero()[0])
subject = model.to_single_str_token(int(task.clean[0, position]))
indirect = model.to_single_str_token(int(task.corrupt[0, position]))
text = model.to_string(task.clean[0, 1:])
print(repr(text), "->", repr(indirect), "not", repr(subject))

# %% [markdown]
# SHAP (partition explainer over the model's own tokens), LIME, gradient × input and
# integrated gradients, all with masked tokens set to the pad token (id 2). SHAP's values sum
# to f(text) − f(all masked); IG's to f(text) − f(baseline) up to its quadrature error.

# %%
ex = explain(model, text, Target(indirect, contrast=subject), methods=("all",), baseline=2)
for a in ex.attributions:
    print(f"{a.method:<15}", "  ".join(f"{tok!r} {v:+.2f}" for _, tok, v in a.top(3)))
shap_attr = ex.attributions[0]
print("SHAP: sum", round(float(shap_attr.values.sum()), 3), "= f(x) - f(masked)", round(shap_attr.value - shap_attr.base_value, 3))
names, rho = ex.agreement()
print("Spearman rank agreement:", names)
print(rho.round(2))

# %% [markdown]
# Every method on one colour scale, then the attention figures (entropy per head on this text,
# head scores on repeated random tokens, and the patterns of the first previous-token and
# induction heads):

# %%
for fig in ex.figures():
    fig.show()

# %% [markdown]
# The head classes agree with the model card: L0H3 is the previous-token head, block 1 holds
# the four induction heads, the same heads that patching and the circuit put on the path.

# %%
heads_found = head_report(model)
{name: heads_found.classes[name] for name in ("previous_token", "induction")}
