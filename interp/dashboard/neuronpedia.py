"""Neuronpedia export: batch files of features in the format that SAEDashboard's
`neuronpedia_runner` writes and Neuronpedia's importer reads.

Format (SAEDashboard, `sae_dashboard/neuronpedia/neuronpedia_dashboard.py`: the `to_dict` of
`NeuronpediaDashboardBatch`, `NeuronpediaDashboardFeature` and `NeuronpediaDashboardActivation`;
`neuronpedia_converter.py` fills them): one `batch-<n>.json` per batch,

    {"model_id", "layer", "sae_set", "features": [{"feature_index", "neg_str", "neg_values",
      "pos_str", "pos_values", "frac_nonzero", "freq_hist_data_bar_values",
      "freq_hist_data_bar_heights", "logits_hist_data_bar_values", "logits_hist_data_bar_heights",
      "n_prompts_total", "n_tokens_in_prompt", "dataset", "correlated_features_indices", ...,
      "activations": [{"bin_min", "bin_max", "bin_contains", "tokens", "values"}]}]}

Top activations carry bin_min -1 and bin_contains -1 with bin_max the largest value, as the
converter writes them; a quantile group carries its activation range and its share of the
firings. Explanations (our rule labels) go to `explanations.jsonl`, one record per feature with
the fields of Neuronpedia's explanation export (modelId, layer, index, description,
explanationModelName, typeName), plus the held-out precision, recall and score.
"""

from pathlib import Path
from typing import Any

from interp.dashboard.records import with_strings
from sae.fsutil import dump_json, write_text_atomically

EXPLAINER = "interp-token-rule"


def _centres(edges: list[float], log: bool) -> list[float]:
    pairs = zip(edges[:-1], edges[1:], strict=True)
    return [round((a * b) ** 0.5 if log and a > 0 else (a + b) / 2, 6) for a, b in pairs]


def _activation(e: dict, lo: float, hi: float, share: float) -> dict[str, Any]:
    return {
        "bin_min": lo,
        "bin_max": hi,
        "bin_contains": share,
        "tokens": e["tokens"],
        "values": e["acts"],
    }


def np_feature(record: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """One feature in the batch format (`record` with token strings)."""
    acts = [_activation(e, -1, record["max"], -1) for e in record["top"]]
    for g in record["quantiles"]:
        acts += [_activation(e, g["min"], g["max"], g["share"]) for e in g["examples"]]
    lg = record["logits"]
    coact = record["coactivating"]
    return {
        "feature_index": record["index"],
        "neuron_alignment_indices": [],
        "neuron_alignment_values": [],
        "neuron_alignment_l1": [],
        "correlated_neurons_indices": [],
        "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [],
        "correlated_features_indices": [c[0] for c in coact],
        "correlated_features_l1": [c[1] for c in coact],
        "correlated_features_pearson": [],
        "neg_str": [t for t, _ in lg["bottom"]],
        "neg_values": [v for _, v in lg["bottom"]],
        "pos_str": [t for t, _ in lg["top"]],
        "pos_values": [v for _, v in lg["top"]],
        "frac_nonzero": record["density"],
        "freq_hist_data_bar_values": _centres(record["hist"]["edges"], True),
        "freq_hist_data_bar_heights": record["hist"]["counts"],
        "logits_hist_data_bar_values": _centres(lg["hist"]["edges"], False),
        "logits_hist_data_bar_heights": lg["hist"]["counts"],
        "n_prompts_total": meta["n_contexts"],
        "n_tokens_in_prompt": meta["ctx_len"],
        "dataset": meta["dataset"],
        "decoder_weights_dist": [],
        "activations": acts,
    }


def source_id(hook: str) -> str:
    """Neuronpedia's layer/source id for a hook: blocks.12.hook_resid_post -> 12-resid_post."""
    parts = hook.split(".")
    if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
        return f"{parts[1]}-{'.'.join(parts[2:]).removeprefix('hook_')}"
    return hook


def write_neuronpedia(
    folder: Path, records: list[dict], vocab: list[str], meta: dict[str, Any], batch: int
) -> list[Path]:
    """batch-<n>.json files of `batch` features each, and explanations.jsonl, under `folder`."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    layer = source_id(meta["hook"])
    paths = []
    for n, start in enumerate(range(0, len(records), batch)):
        chunk = [np_feature(with_strings(r, vocab), meta) for r in records[start : start + batch]]
        path = folder / f"batch-{n}.json"
        dump_json(
            path, {"model_id": meta["model"], "layer": layer, "sae_set": layer, "features": chunk}
        )
        paths.append(path)
    lines = []
    for r in records:
        if r["label"] is None:
            continue
        lab = with_strings(r, vocab)["label"]
        lines.append(
            json.dumps(
                {
                    "modelId": meta["model"],
                    "layer": layer,
                    "index": str(r["index"]),
                    "description": lab["text"],
                    "explanationModelName": EXPLAINER,
                    "typeName": "token-rule",
                    "precision": lab["precision"],
                    "recall": lab["recall"],
                    "score": lab["score"],
                },
                ensure_ascii=False,
            )
        )
    write_text_atomically(folder / "explanations.jsonl", "".join(line + "\n" for line in lines))
    return paths
