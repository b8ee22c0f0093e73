"""One latent's record: the plain dict behind its HTML view, its JSON file and its Neuronpedia
entry. Tokens are ids here; `with_strings` swaps in their text for the per-feature JSON."""

import shlex
from typing import Any

import torch

from interp.dashboard.stats import Examples, hist_edges

N_COACT = 5


def _r(x: float) -> float:
    """Three significant digits: enough to read, and a small page."""
    return float(f"{x:.3g}")


def _example(e: Examples, f: int, i: int, left: int) -> dict[str, Any]:
    toks, acts = e.tokens[f, i].tolist(), e.acts[f, i].tolist()
    inside = [j for j, t in enumerate(toks) if t >= 0]
    a, b = inside[0], inside[-1] + 1
    return {
        "row": int(e.rows[f, i]),
        "value": _r(float(e.values[f, i])),
        "at": left - a,
        "tokens": toks[a:b],
        "acts": [_r(v) for v in acts[a:b]],
    }


def quantile_groups(e: Examples, f: int, groups: int, per_group: int, left: int) -> list[dict]:
    """Groups of the latent's sampled firings by rank (the sample is sorted by value): group g
    holds ranks [g n / groups, (g + 1) n / groups); `per_group` examples evenly spaced in it."""
    n = int((e.rows[f] >= 0).sum())
    out = []
    for g in range(groups):
        lo, hi = g * n // groups, (g + 1) * n // groups
        if hi <= lo:
            continue
        picks = sorted({lo + (hi - lo) * (2 * j + 1) // (2 * per_group) for j in range(per_group)})
        out.append(
            {
                "quantile": [g / groups, (g + 1) / groups],
                "min": _r(float(e.values[f, lo])),
                "max": _r(float(e.values[f, hi - 1])),
                "share": (hi - lo) / n,
                "examples": [_example(e, f, i, left) for i in picks],
            }
        )
    return out


def _histogram(counts: torch.Tensor) -> dict[str, list]:
    edges = hist_edges()
    used = counts.nonzero().flatten()
    if len(used) == 0:
        return {"edges": [], "counts": []}
    a, b = int(used.min()), int(used.max()) + 1
    return {
        "edges": [_r(float(x)) for x in edges[a : b + 1]],
        "counts": [int(c) for c in counts[a:b]],
    }


def _coactivating(dash, f: int) -> list[list]:
    fires = int(dash.stats.fires[f])
    if fires == 0:
        return []
    row = dash.stats.coact.row(f)
    row[f] = -1
    best = row.topk(min(N_COACT, len(row) - 1))
    return [
        [int(g), _r(int(c) / fires), int(c)]
        for g, c in zip(best.indices, best.values, strict=True)
        if c > 0
    ]


def steer_command(sae_folder: str | None, f: int) -> str:
    """The command that turns latent `f` into a steering vector."""
    folder = shlex.quote(str(sae_folder)) if sae_folder else "SAE_FOLDER"
    return f"interp steer extract --from-sae {folder} --feature {f}"


def _label(dash, f: int) -> dict[str, Any] | None:
    lab = dash.labels.get(f)
    if lab is None:
        return None
    return {
        "text": lab.text(dash.vocab),
        "kind": lab.kind,
        "keys": lab.keys,
        "shares": [_r(x) for x in lab.shares],
        "precision": _r(lab.precision),
        "recall": _r(lab.recall),
        "score": _r(lab.score),
        "estimated_f1": _r(lab.estimated_f1),
        "lift": [[t, v] for t, v in lab.lift],
        "next_token": lab.next_token,
    }


def feature_record(dash, f: int, quantiles: int = 5, per_quantile: int = 3) -> dict[str, Any]:
    """Everything about latent `f` as a JSON-ready dict (token ids, not strings)."""
    s, lg = dash.stats, dash.logits
    fires = int(s.fires[f])
    n_top = int((s.top.rows[f] >= 0).sum())
    return {
        "index": f,
        "label": _label(dash, f),
        "fires": fires,
        "density": fires / max(s.n_tokens, 1),
        "max": _r(float(s.top.values[f, 0])) if n_top else 0.0,
        "mean": _r(float(s.act_sum[f]) / fires) if fires else 0.0,
        "top": [_example(s.top, f, i, s.left) for i in range(n_top)],
        "quantiles": quantile_groups(s.sample, f, quantiles, per_quantile, s.left),
        "hist": _histogram(s.hist[f]),
        "logits": {
            "top": [
                [int(t), _r(float(v))] for t, v in zip(lg.top_ids[f], lg.top_values[f], strict=True)
            ],
            "bottom": [
                [int(t), _r(float(v))]
                for t, v in zip(lg.bottom_ids[f], lg.bottom_values[f], strict=True)
            ],
            "hist": {
                "edges": [_r(float(x)) for x in lg.hist_edges[f]],
                "counts": [int(c) for c in lg.hist_counts[f]],
            },
        },
        "neighbours": [
            [int(g), _r(float(c))]
            for g, c in zip(dash.neighbours.ids[f], dash.neighbours.cosine[f], strict=True)
        ],
        "coactivating": _coactivating(dash, f),
        "steer": steer_command(dash.meta.get("sae"), f),
    }


def with_strings(record: dict[str, Any], vocab: list[str]) -> dict[str, Any]:
    """The record with token ids replaced by their text (the per-feature JSON file)."""
    out = dict(record)

    def ex(e: dict) -> dict:
        return {**e, "tokens": [vocab[t] for t in e["tokens"]]}

    out["top"] = [ex(e) for e in record["top"]]
    out["quantiles"] = [
        {**g, "examples": [ex(e) for e in g["examples"]]} for g in record["quantiles"]
    ]
    logits = record["logits"]
    out["logits"] = {
        **logits,
        "top": [[vocab[t], v] for t, v in logits["top"]],
        "bottom": [[vocab[t], v] for t, v in logits["bottom"]],
    }
    if record["label"] is not None:
        lab = record["label"]
        nxt = lab["next_token"]
        out["label"] = {
            **lab,
            "lift": [[vocab[t], v] for t, v in lab["lift"]],
            "next_token": None if nxt is None else vocab[nxt],
        }
    return out
