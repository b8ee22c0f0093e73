"""`train_sae_run(cfg)`: capture activations and train SAEs on them, then evaluate and report.

One LM forward pass feeds every SAE of a run (one per hook). The run folder holds:

    <out>/train_sae.json          the TrainSAEConfig (the run repeats from it)
    <out>/checkpoints/            every 10 min, on SIGINT/SIGTERM, at the end (--resume <out>)
    <out>/saes/<hook>/            SAELens folders: cfg.json, sae_weights.safetensors,
                                  sparsity.safetensors, metrics.json
    <out>/history.jsonl           training curves (tokens, loss, L0, explained variance, ...)
    <out>/report.html             curves and feature-density histograms, self-contained

Held-out evaluation uses the contexts of the dataset that come right after the ones trained on.
"""

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from interp.capture.cache import iter_cache, open_cache
from interp.capture.core import activation_stream, capture, model_device
from interp.config import JSONConfig
from interp.data import batched, check_source, iter_contexts, iter_texts, prefetch
from interp.errors import InterpError
from interp.hooks import check_hook_names, site_hook_name
from interp.models import load_model, model_id
from sae.config import SAEConfig, TrainConfig
from sae.registry import ARCHITECTURES

CHECKPOINT_SECONDS = 600.0
"""A run writes a checkpoint every 10 minutes, on SIGINT/SIGTERM and at the end. Step-based
checkpoints cost too much on a GPU: a 24576-latent SAE's weights and Adam state are 300 MB."""

RESUMABLE_CHANGES = ("resume", "out", "device")
"""Fields that may differ between a run's saved config and the one that resumes it."""


@dataclass(frozen=True)
class TrainSAEConfig(JSONConfig):
    """Options of `interp train-sae`, saved as the run's `train_sae.json`."""

    model: str = "default"
    """'default' (the embedded model), a local HF model folder, or a hub name."""
    layers: tuple[int, ...] = (12,)
    """Blocks whose `site` activations get an SAE each (one forward pass feeds all)."""
    site: str = "resid_post"
    """Hook site inside each block, e.g. resid_post, mlp_out, attn_out."""
    hooks: tuple[str, ...] = ()
    """Full hook names to train on instead of layers x site, e.g. blocks.3.hook_mlp_out."""
    arch: str = "topk"
    """SAE architecture (see `sae.registry.ARCHITECTURES`)."""
    expansion: int = 8
    """d_sae = expansion * d_in, unless d_sae is given."""
    d_sae: int | None = None
    """Number of latents; overrides expansion."""
    k: int = 16
    """topk / batchtopk: active latents per token."""
    l1_coefficient: float = 5.0
    """relu: weight of the decoder-norm-weighted L1 penalty."""
    l0_coefficient: float = 2e-3
    """jumprelu: weight of the L0 penalty."""
    tokens: int = 3_000_000
    """Training tokens (BOS positions excluded)."""
    batch_tokens: int = 4096
    """Tokens per optimiser step."""
    lr: float = 4e-3
    """Peak Adam learning rate (warm-up 1%, linear decay over the last 20%)."""
    ctx_len: int = 128
    """Tokens per context, BOS included."""
    batch_size: int = 64
    """Contexts per LM forward pass."""
    dataset: str = "default"
    """'default' (the embedded corpus), a local .txt/.jsonl/.parquet file, or a hub dataset."""
    eval_tokens: int = 65_536
    """Held-out tokens for the final metrics (the contexts after the training ones)."""
    from_cache: str | None = None
    """Train on an activation cache written by `interp capture` instead of capturing live."""
    out: str | None = None
    """Run folder; default runs/<model>-<arch>-<hooks>, numbered if it exists."""
    resume: str | None = None
    """Continue the interrupted run in this folder (same options)."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:N'."""
    seed: int = 0
    """Seed of the SAE initialisation, the shuffle buffer and the embedded corpus."""
    compile: bool = False
    """torch.compile the SAE training step."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise InterpError(
                f"unknown architecture {self.arch!r}; valid: {', '.join(sorted(ARCHITECTURES))}"
            )
        for name in ("expansion", "k", "tokens", "batch_tokens", "ctx_len", "batch_size"):
            if getattr(self, name) < 1:
                raise InterpError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_sae is not None and self.d_sae < 1:
            raise InterpError(f"d_sae must be >= 1, got {self.d_sae}")
        if self.tokens < self.batch_tokens:
            raise InterpError(f"tokens={self.tokens} is less than one batch ({self.batch_tokens})")
        if not self.layers and not self.hooks:
            raise InterpError("nothing to train on: give --layer/--layers or --hook")
        if self.eval_tokens < self.ctx_len:
            raise InterpError(f"eval_tokens must be >= ctx_len ({self.ctx_len})")


class TrainSAEResult(NamedTuple):
    run_dir: Path
    metrics: dict[str, dict[str, Any]]
    """Per hook: the held-out metrics written to its metrics.json."""
    tokens_seen: int


HEADLINE_METRICS = (
    "explained_variance",
    "ce_loss_recovered",
    "delta_lm_loss",
    "kl_div",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "cosine_similarity",
    "l2_ratio",
    "n_tokens",
)
"""The held-out metrics shown by the CLI table and the HTML report, in this order."""

OnStep = Callable[[int, int, dict[str, dict[str, float]]], None]


def hook_names(model: Any, cfg: TrainSAEConfig) -> list[str]:
    names = [site_hook_name(model, layer, cfg.site) for layer in cfg.layers] + list(cfg.hooks)
    return check_hook_names(model, list(dict.fromkeys(names)))


def default_out(cfg: TrainSAEConfig, hooks: list[str]) -> Path:
    """runs/<model>-<arch>-<hooks>, with -2, -3, ... appended when it exists."""
    model = Path(cfg.model).name or "model"
    tag = "+".join(h.replace("blocks.", "L").replace(".hook_", "-") for h in hooks)
    base = Path("runs") / f"{model}-{cfg.arch}-{tag}"
    for i in itertools.count(1):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not path.exists():
            return path
    raise AssertionError("unreachable")


def _check_resume(cfg: TrainSAEConfig) -> Path:
    run = Path(cfg.resume)
    saved_path = run / "train_sae.json"
    if not saved_path.is_file():
        raise InterpError(
            f"cannot resume {str(run)!r}: it has no train_sae.json (not a run folder)"
        )
    saved = TrainSAEConfig.from_dict(json.loads(saved_path.read_text()))
    diff = [
        f"{f}: run has {getattr(saved, f)!r}, asked for {getattr(cfg, f)!r}"
        for f in (x.name for x in dataclasses.fields(cfg))
        if f not in RESUMABLE_CHANGES and getattr(saved, f) != getattr(cfg, f)
    ]
    if diff:
        raise InterpError(
            f"cannot resume {str(run)!r} with different options ({'; '.join(diff)}); "
            "resume with the run's own options or start a new run with --out"
        )
    return run


def _sae_configs(model: Any, cfg: TrainSAEConfig, hooks: list[str]) -> dict[str, SAEConfig]:
    probe = torch.full((1, 2), 0, dtype=torch.long)
    dims = {h: a.shape[-1] for h, a in capture(model, probe, hooks).items()}
    out = {}
    for h in hooks:
        d_sae = cfg.d_sae or cfg.expansion * dims[h]
        if cfg.arch in ("topk", "batchtopk") and cfg.k > d_sae:
            raise InterpError(
                f"k={cfg.k} is more than the SAE width d_sae={d_sae}; use k <= {d_sae}"
            )
        out[h] = SAEConfig(
            arch=cfg.arch,
            d_in=dims[h],
            d_sae=d_sae,
            k=min(cfg.k, d_sae),
            l1_coefficient=cfg.l1_coefficient,
            l0_coefficient=cfg.l0_coefficient,
            device=cfg.device,
            hook_name=h,
            model_name=cfg.model,
            context_size=cfg.ctx_len,
            dataset_path=cfg.dataset,
        )
    return out


def _train_config(cfg: TrainSAEConfig) -> TrainConfig:
    steps = cfg.tokens // cfg.batch_tokens
    return TrainConfig(
        total_tokens=cfg.tokens,
        batch_tokens=cfg.batch_tokens,
        lr=cfg.lr,
        lr_warmup_steps=max(1, steps // 100),
        lr_decay_fraction=0.2,
        sparsity_warmup_steps=steps // 20,
        dead_tokens_window=min(1_000_000, cfg.tokens // 4),
        seed=cfg.seed,
        compile=cfg.compile,
        checkpoint_every=0,
        checkpoint_seconds=CHECKPOINT_SECONDS,
    )


def _contexts(model: Any, cfg: TrainSAEConfig) -> Iterator[torch.Tensor]:
    texts = iter_texts(cfg.dataset, seed=cfg.seed)
    return iter_contexts(texts, model.tokenizer, cfg.ctx_len)


def _train_contexts_used(cfg: TrainSAEConfig) -> int:
    """The contexts a live run reads: just enough for `tokens` rows with BOS left out. The live
    source ends there, so the shuffle buffer is drained at the end instead of being filled with
    activations that are never trained on; the held-out contexts start right after."""
    return math.ceil(cfg.tokens / (cfg.ctx_len - 1))


def batch_source(model: Any, cfg: TrainSAEConfig, hooks: list[str]):
    """make_batches(skip_tokens): the run's activation batches after `skip_tokens` tokens."""

    on_gpu = model_device(model).type == "cuda"

    def live(skip_tokens: int):
        contexts = itertools.islice(_contexts(model, cfg), _train_contexts_used(cfg))
        batches = batched(contexts, cfg.batch_size)
        if on_gpu:  # tokenise the next batches on the CPU while the GPU works
            batches = prefetch(batches)
        stream = activation_stream(model, batches, hooks, cfg.batch_tokens, seed=cfg.seed)
        return itertools.islice(stream, skip_tokens // cfg.batch_tokens, None)

    def cached(skip_tokens: int):
        stream = iter_cache(cfg.from_cache, hooks, cfg.batch_tokens, seed=cfg.seed)
        return itertools.islice(stream, skip_tokens // cfg.batch_tokens, None)

    return cached if cfg.from_cache else live


def eval_batches(model: Any, cfg: TrainSAEConfig, skip_contexts: int) -> list[torch.Tensor]:
    """Held-out contexts: the `eval_tokens` worth of contexts after the first `skip_contexts`."""
    n = math.ceil(cfg.eval_tokens / cfg.ctx_len)
    contexts = list(itertools.islice(_contexts(model, cfg), skip_contexts, skip_contexts + n))
    if len(contexts) < n:
        raise InterpError(
            f"the dataset {cfg.dataset!r} has no {cfg.eval_tokens:,} held-out tokens left after "
            "the training tokens; lower --tokens or --eval-tokens"
        )
    return list(batched(iter(contexts), cfg.batch_size))


def _check_cache(cfg: TrainSAEConfig, hooks: list[str]) -> int:
    """Contexts in the cache (checked against the model, hooks and ctx_len)."""
    info = open_cache(cfg.from_cache, model=model_id(cfg.model), hooks=hooks, ctx_len=cfg.ctx_len)
    usable = info.n_tokens - info.n_tokens // info.ctx_len  # BOS positions are not trained on
    if usable < cfg.tokens:
        raise InterpError(
            f"cache {cfg.from_cache!r} holds {usable:,} trainable tokens but --tokens is "
            f"{cfg.tokens:,}; lower --tokens or capture more"
        )
    return info.n_tokens // info.ctx_len


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def prepare(cfg: TrainSAEConfig) -> tuple[Any, list[str], Path]:
    """Load the model and check every input before anything is written."""
    run = _check_resume(cfg) if cfg.resume else None
    if run is None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and cfg.out is None:
        raise InterpError("a data-parallel run (torchrun) needs an explicit --out for all ranks")
    if run is None and _rank() == 0 and cfg.out is not None and Path(cfg.out).exists():
        raise InterpError(
            f"output folder {cfg.out!r} already exists; pick another --out, or continue it "
            f"with --resume {cfg.out}"
        )
    check_source(cfg.dataset)
    model = load_model(cfg.model, device=cfg.device)
    hooks = hook_names(model, cfg)
    _sae_configs(model, cfg, hooks)  # validates widths and k
    if cfg.from_cache:
        _check_cache(cfg, hooks)
    return model, hooks, run or (Path(cfg.out) if cfg.out else default_out(cfg, hooks))


class _History:
    """Appends every `every`-th step's metrics to history.jsonl, then calls the caller's hook."""

    def __init__(self, path: Path, on_step: OnStep | None, every: int) -> None:
        self.path, self.on_step, self.every = path, on_step, every

    def __call__(self, step: int, tokens: int, metrics: dict[str, dict[str, float]]) -> None:
        if step % self.every == 0 and _rank() == 0:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, "tokens": tokens, "metrics": metrics}) + "\n")
        if self.on_step is not None:
            self.on_step(step, tokens, metrics)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def evaluate_run(model: Any, cfg: TrainSAEConfig, saes: dict[str, Any], run_dir: Path) -> dict:
    """Held-out metrics of each SAE, written to saes/<hook>/metrics.json."""
    from interp.train_sae.evaluate import evaluate_sae

    skip = _check_cache(cfg, list(saes)) if cfg.from_cache else _train_contexts_used(cfg)
    batches = eval_batches(model, cfg, skip)
    out = {}
    for hook, sae in saes.items():
        result = evaluate_sae(model, sae.to(model_device(model)), hook, batches)
        metrics = {
            **result.metrics.scalars(),
            "kl_div": result.kl,
            "hook_name": hook,
            "eval_contexts_start": skip,
        }
        _write_json(run_dir / "saes" / hook / "metrics.json", metrics)
        out[hook] = metrics
    return out


def train_sae_run(cfg: TrainSAEConfig, on_step: OnStep | None = None) -> TrainSAEResult:
    """Train (or resume) the SAEs of `cfg`, evaluate them on held-out tokens, write the report."""
    from interp.train_sae.figures import sae_report
    from sae.training import resume, train

    model, hooks, run_dir = prepare(cfg)
    batches = batch_source(model, cfg, hooks)
    every = max(1, (cfg.tokens // cfg.batch_tokens) // 200)
    if cfg.resume:
        result = resume(
            run_dir, batches, on_step=_History(run_dir / "history.jsonl", on_step, every)
        )
    else:
        if _rank() == 0:  # other ranks write nothing, and must not race rank 0's exists-check
            run_dir.mkdir(parents=True)
            _write_json(run_dir / "train_sae.json", cfg.to_dict())
        history = _History(run_dir / "history.jsonl", on_step, every)
        result = train(
            _sae_configs(model, cfg, hooks),
            _train_config(cfg),
            batches,
            run_dir=run_dir,
            on_step=history,
        )
    if _rank() > 0:
        return TrainSAEResult(run_dir, {}, result.tokens_seen)
    metrics = evaluate_run(model, cfg, result.saes, run_dir)
    densities = {h: result.feature_density[h] for h in hooks}
    sae_report(read_history(run_dir), metrics, densities).write_html(
        run_dir / "report.html", include_plotlyjs=True
    )
    return TrainSAEResult(run_dir, metrics, result.tokens_seen)
