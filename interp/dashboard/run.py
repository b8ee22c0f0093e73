"""One pass of the model over the tokens, the SAE read at its hook, every statistic accumulated
in that pass (`compute_dashboard`); `dashboard_run` adds loading, checks and the outputs.

    from interp.dashboard import compute_dashboard, load_dashboard_sae
    from interp.data import iter_contexts, iter_texts
    sae, hook = load_dashboard_sae("runs/x/saes/blocks.12.hook_resid_post")
    contexts = iter_contexts(iter_texts("default", seed=1), model.tokenizer, 128)
    dash = compute_dashboard(model, sae, hook, contexts, n_contexts=1600, n_heldout=260)
    dash.feature(17)            # a plain dict: examples, quantiles, histogram, logits, label
    dash.table()                # one row per latent, for pandas
"""

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.capture.core import model_device, recording
from interp.dashboard.config import DashboardConfig, DashboardError, parse_features
from interp.dashboard.labels import Heldout, Label, label_features
from interp.dashboard.stats import FeatureAccumulator, FeatureStats
from interp.dashboard.weights import LogitEffects, Neighbours, decoder_neighbours, logit_effects
from interp.data import batched, iter_contexts, iter_texts

OnProgress = Callable[[int, int], None]
"""on_progress(tokens done, tokens in all), after every batch."""


@dataclass
class Dashboard:
    """Everything the pass found, as plain tensors and dicts; `feature(i)` is one latent's
    record (the per-feature JSON)."""

    stats: FeatureStats
    logits: LogitEffects
    neighbours: Neighbours
    labels: dict[int, Label | None]
    features: list[int]
    vocab: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def feature(self, f: int, quantiles: int = 5, per_quantile: int = 3) -> dict[str, Any]:
        """One latent's record: see `interp.dashboard.records.feature_record`."""
        from interp.dashboard.records import feature_record

        return feature_record(self, f, quantiles, per_quantile)

    def table(self) -> list[dict[str, Any]]:
        """One row per shown latent (index, label, score, precision, recall, density, max),
        for filtering in a notebook (`pandas.DataFrame(dash.table())`)."""
        rows = []
        for f in self.features:
            lab = self.labels.get(f)
            fires = int(self.stats.fires[f])
            rows.append(
                {
                    "index": f,
                    "label": lab.text(self.vocab) if lab else None,
                    "score": lab.score if lab else None,
                    "precision": lab.precision if lab else None,
                    "recall": lab.recall if lab else None,
                    "density": fires / max(self.stats.n_tokens, 1),
                    "max": float(self.stats.top.values[f, 0]) if fires else 0.0,
                }
            )
        return rows


def token_strings(tokenizer: Any) -> list[str]:
    """The text of every token id, as the tokenizer decodes it alone."""
    return [tokenizer.decode([i]) for i in range(len(tokenizer))]


def load_dashboard_sae(folder: str | Path, device: str = "cpu") -> tuple[Any, str | None]:
    """(SAE, its hook name from cfg.json) from an SAE folder, or from a train-sae run folder
    that holds exactly one SAE."""
    from sae.errors import SAEError
    from sae.io import load_sae

    path = Path(folder)
    if not path.is_dir():
        raise DashboardError(f"--sae {str(folder)!r} is not a folder")
    if not (path / "cfg.json").is_file() or (path / "saes").is_dir():
        inner = sorted(p.parent for p in path.glob("saes/*/sae_weights.safetensors"))
        if len(inner) != 1:
            what = (
                f"holds {len(inner)} SAEs ({', '.join(p.name for p in inner)})"
                if inner
                else ("has no cfg.json and sae_weights.safetensors")
            )
            raise DashboardError(
                f"--sae {str(folder)!r} is not an SAE folder: it {what}; pass the folder of one "
                "SAE (SAELens layout, e.g. <run>/saes/blocks.12.hook_resid_post)"
            )
        path = inner[0]
    try:
        sae = load_sae(path, device=device)
    except (SAEError, FileNotFoundError) as err:
        raise DashboardError(f"--sae {str(folder)!r} is not a readable SAE folder: {err}") from err
    return sae, getattr(sae.cfg, "hook_name", None)


def _encode(sae: Any, acts: Tensor) -> Tensor:
    flat = acts.reshape(-1, acts.shape[-1]).to(sae.W_enc.device)
    with torch.no_grad():
        return sae.encode(flat).reshape(*acts.shape[:-1], -1)


def _firings(tokens: Tensor, codes: Tensor, bos_id: int | None) -> tuple[Tensor, Tensor]:
    """(flat rows, latents) where `codes` [batch, pos, d_sae] is non-zero, BOS positions out."""
    if bos_id is not None:
        codes = codes.clone()
        codes[:, 0][tokens[:, 0].to(codes.device) == bos_id] = 0
    rows, latents = codes.reshape(-1, codes.shape[-1]).nonzero(as_tuple=True)
    return rows.cpu(), latents.cpu()


def _heldout(parts: list[tuple[Tensor, Tensor, Tensor]], bos_id: int | None) -> Heldout:
    """The held-out contexts from per-batch (tokens, rows, latents)."""
    if not parts:
        empty = torch.zeros(0, dtype=torch.long)
        return Heldout(
            torch.zeros((0, 2), dtype=torch.long),
            torch.zeros((0, 2), dtype=torch.bool),
            empty,
            empty,
        )
    toks = torch.cat([p[0] for p in parts])
    counted = torch.ones_like(toks, dtype=torch.bool)
    if bos_id is not None:
        counted[:, 0] = toks[:, 0] != bos_id
    rows, offset = [], 0
    for t, r, _ in parts:
        rows.append(r + offset * toks.shape[1])
        offset += t.shape[0]
    return Heldout(toks, counted, torch.cat(rows), torch.cat([p[2] for p in parts]))


def compute_dashboard(
    model: Any,
    sae: Any,
    hook: str,
    contexts: Iterable[Tensor],
    n_contexts: int,
    n_heldout: int,
    *,
    batch_size: int = 64,
    features: list[int] | None = None,
    on_progress: OnProgress | None = None,
    accumulator: dict[str, Any] | None = None,
) -> Dashboard:
    """Run `n_contexts` contexts for the statistics, then `n_heldout` more for the labels'
    scores, through the model once, reading the SAE at `hook`. `accumulator` passes settings
    to `FeatureAccumulator` (top_k, sample, left, right, seed)."""
    bos_id = getattr(model.tokenizer, "bos_token_id", None)
    contexts = iter(contexts)
    first = next(contexts, None)
    if first is None:
        raise DashboardError("the dataset holds no text")
    ctx_len = first.shape[-1]
    acc = FeatureAccumulator(
        sae.cfg.d_sae,
        len(model.tokenizer),
        ctx_len,
        bos_id=bos_id,
        device=model_device(model),
        **(accumulator or {}),
    )
    held: list[tuple[Tensor, Tensor, Tensor]] = []
    start = time.perf_counter()
    total = n_contexts + n_heldout
    done = 0
    with recording(model, [hook]) as run:
        for batch in batched(
            itertools.islice(itertools.chain([first], contexts), total), batch_size
        ):
            codes = _encode(sae, run(batch)[hook])
            n_main = max(0, min(len(batch), n_contexts - done))
            if n_main:
                acc.update(batch[:n_main], codes[:n_main], done)
            if n_main < len(batch):
                rest = batch[n_main:]
                held.append((rest, *_firings(rest, codes[n_main:], bos_id)))
            done += len(batch)
            if on_progress is not None:
                on_progress(done * (ctx_len - 1), total * (ctx_len - 1))
    seconds = time.perf_counter() - start
    if done < total:
        raise DashboardError(
            f"the dataset holds only {done} contexts of {ctx_len} tokens; it needs {total} "
            "for --tokens and --label-tokens: lower them or give a larger dataset"
        )
    stats = acc.finish()
    heldout = _heldout(held, bos_id)
    chosen = list(range(sae.cfg.d_sae)) if features is None else features
    vocab = token_strings(model.tokenizer)
    W_dec = sae.W_dec.detach()
    return Dashboard(
        stats=stats,
        logits=logit_effects(W_dec, model),
        neighbours=decoder_neighbours(W_dec),
        labels=label_features(stats, heldout, chosen, len(vocab)),
        features=chosen,
        vocab=vocab,
        meta={
            "hook": hook,
            "d_sae": sae.cfg.d_sae,
            "n_tokens": stats.n_tokens,
            "n_heldout_tokens": int(heldout.counted.sum()),
            "ctx_len": ctx_len,
            "pass_seconds": round(seconds, 2),
            "tokens_per_second": round(done * ctx_len / max(seconds, 1e-9)),
        },
    )


def contexts_for(tokens: int, ctx_len: int) -> int:
    """Contexts holding `tokens` counted tokens (BOS left out of each)."""
    return math.ceil(tokens / (ctx_len - 1))


def select(dash: Dashboard, cfg: DashboardConfig) -> list[int]:
    """The latents `cfg` asks for: --features, --top N by firing rate, or all."""
    d_sae = dash.stats.fires.shape[0]
    if cfg.features is not None:
        return parse_features(cfg.features, d_sae)
    if cfg.top is not None:
        order = torch.argsort(dash.stats.fires, descending=True, stable=True)
        return [int(i) for i in order[: cfg.top]]
    return list(range(d_sae))


def iter_dashboard_contexts(model: Any, cfg: DashboardConfig) -> Iterator[Tensor]:
    """The contexts of the pass: --dataset packed to --ctx-len."""
    texts = iter_texts(cfg.dataset, split=cfg.split, seed=cfg.seed, text_field=cfg.text_field)
    return iter_contexts(texts, model.tokenizer, cfg.ctx_len)
