"""Extraction of steering directions from contrastive activations.

Methods, each a pure function of positive and negative activations `[n, d]` (one layer):

- `mean_diff`: difference in means, mean(pos) - mean(neg) (CAA, Rimsky et al. 2024). Its raw
  norm is the distance between the class means.
- `pca_diff`: the first principal direction of the paired differences pos_i - neg_i, uncentred
  (the unit vector v maximising sum_i ((pos_i - neg_i) . v)^2; repeng's `pca_center`, which
  centres each pair on its midpoint), oriented so that the mean difference projects positively.
- `probe`: the weight vector of an L2-regularised logistic regression positive-vs-negative,
  normalised to length 1; for two Gaussian classes with a shared covariance S it tends to
  S^-1 (mu_pos - mu_neg) (the LDA direction), which mean_diff is not.
- SAE: a latent's decoder row (`from_sae`).

`extract(model, pairs, layers, method=...)` reads the activations (`interp.capture`) at the last
token of each text, or their mean over the text's tokens (BOS excluded), and returns a
`SteeringVector` with the mean residual norm per layer, for the "relative" scale convention.
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.steering.concepts import Pairs, check_pairs
from interp.steering.vector import DEFAULT_SITE, SteeringError, SteeringVector, hook_name

Method = Literal["mean-diff", "pca", "probe"]
METHODS = ("mean-diff", "pca", "probe")
ReadAt = Literal["last", "mean"]


def _check(pos: Tensor, neg: Tensor, paired: bool = False) -> None:
    if pos.ndim != 2 or neg.ndim != 2 or pos.shape[1] != neg.shape[1]:
        raise SteeringError(
            f"activations must be [n, d] with one d, got {list(pos.shape)} and {list(neg.shape)}"
        )
    if len(pos) == 0 or len(neg) == 0:
        raise SteeringError("each side needs at least one activation")
    if paired and len(pos) != len(neg):
        raise SteeringError(f"paired differences need equal sides, got {len(pos)} and {len(neg)}")


def mean_diff(pos: Float[Tensor, "n d"], neg: Float[Tensor, "m d"]) -> Float[Tensor, " d"]:
    """mean(pos) - mean(neg), in float32."""
    _check(pos, neg)
    return pos.float().mean(0) - neg.float().mean(0)


def pca_diff(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"]) -> Float[Tensor, " d"]:
    """Unit first right singular vector of the paired differences D = pos - neg (uncentred),
    oriented so that mean(D) . v >= 0."""
    _check(pos, neg, paired=True)
    diffs = pos.double() - neg.double()
    _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
    v = vh[0]
    if diffs.mean(0) @ v < 0:
        v = -v
    return v.float()


def probe(
    pos: Float[Tensor, "n d"], neg: Float[Tensor, "m d"], c: float = 1.0, seed: int = 0
) -> Float[Tensor, " d"]:
    """Unit weight vector of a logistic regression (scikit-learn, L2 penalty `1/c`)
    separating pos (1) from neg (0)."""
    _check(pos, neg)
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([pos, neg]).double().numpy()
    y = [1] * len(pos) + [0] * len(neg)
    clf = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(x, y)
    w = torch.tensor(clf.coef_[0], dtype=torch.float64)
    if w.norm() == 0:
        raise SteeringError("the probe learned a zero weight vector (the sides are inseparable)")
    return (w / w.norm()).float()


DIRECTION: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mean-diff": mean_diff,
    "pca": pca_diff,
    "probe": probe,
}


# --- activations -------------------------------------------------------------------------------


def _by_length(model: Any, texts: Sequence[str]) -> dict[int, list[tuple[int, Tensor]]]:
    groups: dict[int, list[tuple[int, Tensor]]] = defaultdict(list)
    for i, text in enumerate(texts):
        tokens = model.to_tokens(text)[0]
        groups[len(tokens)].append((i, tokens))
    return groups


def read_activations(
    model: Any,
    texts: Sequence[str],
    names: Sequence[str],
    at: ReadAt = "last",
    batch_size: int = 64,
) -> dict[str, Float[Tensor, "n d"]]:
    """{hook name: [len(texts), d]} activations at each text's last token, or averaged over its
    tokens (BOS excluded). Texts are tokenized with `model.to_tokens` and batched by length, so
    no padding enters any activation."""
    from interp.capture import capture

    if at not in ("last", "mean"):
        raise SteeringError(f"positions must be 'last' or 'mean', got {at!r}")
    out = {name: [None] * len(texts) for name in names}
    for _, rows in sorted(_by_length(model, texts).items()):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            tokens = torch.stack([t for _, t in chunk])
            acts = capture(model, tokens, list(names))
            bos = model.tokenizer.bos_token_id
            skip = 1 if bos is not None and bool((tokens[:, 0] == bos).all()) else 0
            for name, act in acts.items():
                act = act.float().cpu()
                vals = act[:, -1] if at == "last" else act[:, skip:].mean(1)
                for (i, _), v in zip(chunk, vals, strict=True):
                    out[name][i] = v
    return {name: torch.stack(vs) for name, vs in out.items()}  # type: ignore[arg-type]


def check_layers(model: Any, layers: Sequence[int]) -> list[int]:
    blocks = int(model.cfg.n_layers)
    if not layers:
        raise SteeringError(f"give at least one layer (valid layers are 0..{blocks - 1})")
    bad = [x for x in layers if not 0 <= x < blocks]
    if bad:
        raise SteeringError(
            f"layers {bad} are outside the model (valid layers are 0..{blocks - 1})"
        )
    if len(set(layers)) != len(layers):
        raise SteeringError(f"layers must be distinct, got {list(layers)}")
    return list(layers)


def extract(
    model: Any,
    pairs: Pairs,
    layers: Sequence[int],
    method: Method = "mean-diff",
    *,
    at: ReadAt = "last",
    site: str = DEFAULT_SITE,
    convention: Literal["absolute", "relative"] = "relative",
    model_id: str | None = None,
    concept: str | None = None,
) -> SteeringVector:
    """A `SteeringVector` from contrastive pairs at `layers` (directions point towards the
    positive side)."""
    if method not in DIRECTION:
        raise SteeringError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    pairs = check_pairs(pairs)
    layers = check_layers(model, layers)
    names = [hook_name(layer, site) for layer in layers]
    from interp.hooks import check_hook_names

    check_hook_names(model, names)
    pos = read_activations(model, pairs.positive, names, at)
    neg = read_activations(model, pairs.negative, names, at)
    directions, norms = [], []
    for name in names:
        directions.append(DIRECTION[method](pos[name], neg[name]))
        both = torch.cat([pos[name], neg[name]])
        norms.append(float(both.norm(dim=-1).mean()))
    return SteeringVector(
        torch.stack(directions),
        tuple(layers),
        model_id=model_id if model_id is not None else _model_name(model),
        d_model=int(model.cfg.d_model),
        n_layers=int(model.cfg.n_layers),
        site=site,
        method=method,
        convention=convention,
        resid_norms=tuple(norms),
        concept=concept,
        source_hash=pairs.source_hash(),
        positions=at,
    )


def _model_name(model: Any) -> str | None:
    name = getattr(model.cfg, "model_name", None)
    return str(name) if name else None


def from_sae(
    folder: str | Path,
    feature: int,
    *,
    model: Any = None,
    model_id: str | None = None,
    norm_texts: Sequence[str] | None = None,
) -> SteeringVector:
    """The decoder direction of SAE latent `feature` (row `W_dec[feature]`) at the SAE's hook.

    With a `model` (and `norm_texts`, default: 64 held-out documents of the default corpus) the
    vector is "relative", scaled by the mean residual norm at that hook; without, "absolute"
    (the decoder row as stored, with SAELens's normalisation folded in by `sae.load_sae`).
    """
    import json

    from sae.errors import SAEError
    from sae.io import load_sae

    folder = Path(folder)
    try:
        sae = load_sae(folder)
        raw = json.loads((folder / "cfg.json").read_text())
    except (SAEError, OSError, ValueError) as err:
        raise SteeringError(f"cannot load the SAE folder {folder}: {err}") from None
    meta = raw.get("metadata", {}) if isinstance(raw.get("metadata"), dict) else {}
    hook = meta.get("hook_name") or raw.get("hook_name")
    from interp.hooks import hook_layer

    layer = hook_layer(hook) if isinstance(hook, str) else None
    if layer is None:
        raise SteeringError(
            f"{folder}/cfg.json names no block hook (hook_name {hook!r}); an SAE on "
            "blocks.L.<site> is needed for a steering direction"
        )
    site = hook.split(".", 2)[2]
    d_sae = int(sae.W_dec.shape[0])
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < d_sae:
        raise SteeringError(
            f"feature {feature!r} is out of range; the SAE has latents 0..{d_sae - 1}"
        )
    direction = sae.W_dec[feature].detach().float()[None]
    extra = {"sae": str(folder.resolve()), "feature": feature}
    kwargs: dict[str, Any] = dict(
        layers=(layer,),
        d_model=int(direction.shape[1]),
        site=site,
        method="sae",
        extra=extra,
        positions="decoder",
    )
    if model is None:
        return SteeringVector(
            direction, model_id=model_id or meta.get("model_name"), convention="absolute", **kwargs
        )
    if int(model.cfg.d_model) != direction.shape[1]:
        raise SteeringError(
            f"the SAE reads width {direction.shape[1]} but the model's residual stream has "
            f"{int(model.cfg.d_model)}; it was trained on another model"
        )
    check_layers(model, [layer])
    texts = list(norm_texts) if norm_texts is not None else neutral_texts(64)
    acts = read_activations(model, texts, [hook], at="mean")[hook]
    return SteeringVector(
        direction,
        model_id=model_id if model_id is not None else _model_name(model),
        n_layers=int(model.cfg.n_layers),
        convention="relative",
        resid_norms=(float(acts.norm(dim=-1).mean()),),
        **kwargs,
    )


def neutral_texts(n: int, seed: int = 0) -> list[str]:
    """`n` held-out documents of the default corpus unrelated to any steering concept (name
    stories, neutral mentions, English prose), for side effects and residual norms."""
    import random

    from interp.organism import corpus

    rng = random.Random(f"steering:neutral:{seed}")
    families = ("names", "mentions", "prose")
    return [corpus.FAMILIES[families[i % 3]](rng, "heldout") for i in range(n)]
