"""`interp steer extract|apply|eval|export`: steering vectors from the command line.

    interp steer extract --concept refusal --layers 13 --out refusal.safetensors
    interp steer apply --vector refusal.safetensors --prompt "User: ...\\nAssistant:" --scale 0.6
    interp steer eval --vector refusal.safetensors --scales 0.2,0.4,0.6 --ablate --out eval.html
    interp steer export --vector refusal.safetensors --format gguf --out refusal.gguf

Options are the fields of the configs in `interp.steering.config`.
"""

import json
from pathlib import Path

import typer

from interp.cli_common import ProgressBar, config_command, stdout
from interp.steering.config import (
    ApplyConfig,
    EvalConfig,
    ExportConfig,
    ExtractConfig,
    parse_layers,
    parse_scales,
)

app = typer.Typer(
    help="Steering vectors: extract, apply, evaluate, export (safetensors, llama.cpp GGUF).",
    no_args_is_help=True,
)


def _say(text: str) -> None:
    stdout().print(text, highlight=False, soft_wrap=True, markup=False)


def _model(cfg):
    from interp.models import load_model, model_id

    return load_model(cfg.model, device=cfg.device, dtype=cfg.dtype), model_id(cfg.model)


def _vector(path: str, layers: str | None):
    from interp.steering.io import load_any

    if not path:
        from interp.steering.vector import SteeringError

        raise SteeringError("--vector is required (a .safetensors from extract, or a .gguf)")
    vector = load_any(path)
    return vector.select(parse_layers(layers)) if layers else vector


def _refuse_overwrite(path: str | None, force: bool) -> None:
    if path is not None and Path(path).exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force to replace it")


def extract(cfg: ExtractConfig) -> None:
    """Extract a steering vector from contrastive pairs, a built-in concept, or an SAE latent."""
    from interp.steering.vector import SteeringError

    sources = [x for x in (cfg.concept, cfg.pairs, cfg.from_sae) if x is not None]
    if len(sources) != 1:
        raise SteeringError(
            "give exactly one source: --concept NAME, --pairs FILE.jsonl, or --from-sae DIR "
            "--feature N"
        )
    if (cfg.from_sae is None) != (cfg.feature is None):
        raise SteeringError("--from-sae DIR and --feature N go together")
    _refuse_overwrite(cfg.out, cfg.force)
    model, mid = _model(cfg)
    if cfg.from_sae is not None:
        from interp.steering.extraction import from_sae

        vector = from_sae(cfg.from_sae, cfg.feature, model=model, model_id=mid)
    else:
        from interp.steering.concepts import concept_pairs, read_pairs
        from interp.steering.extraction import extract as run_extract

        pairs = read_pairs(cfg.pairs) if cfg.pairs else concept_pairs(cfg.concept, cfg.n, cfg.seed)
        vector = run_extract(
            model,
            pairs,
            parse_layers(cfg.layers),
            cfg.method,
            at=cfg.positions,
            convention=cfg.convention,
            model_id=mid,
            concept=cfg.concept,
        )
    from dataclasses import replace

    model_type = getattr(getattr(model, "original_model", None), "config", None)
    model_type = getattr(model_type, "model_type", None)
    if model_type:
        vector = replace(vector, extra={**vector.extra, "model_type": model_type})
    vector.save(cfg.out, overwrite=cfg.force)
    for layer, raw, resid in zip(
        vector.layers, vector.raw_norms, vector.resid_norms or [float("nan")] * 99, strict=False
    ):
        _say(f"blocks.{layer}.{vector.site}: |direction| {raw:.4f}, mean |resid| {resid:.3f}")
    _say(
        f"wrote {cfg.out} ({vector.method}, {vector.convention} scale, {len(vector.layers)} layers)"
    )


def apply(cfg: ApplyConfig) -> None:
    """Continue a prompt with and without steering (or directional ablation)."""
    from interp.generation import generate
    from interp.steering.vector import ablation_hooks

    if not cfg.prompt:
        from interp.steering.vector import SteeringError

        raise SteeringError("--prompt is required")
    vector = _vector(cfg.vector, cfg.layers)
    model, mid = _model(cfg)
    vector.check_model(model, mid)
    positions = None if cfg.positions == "all" else cfg.positions
    if cfg.ablate:
        hooks = ablation_hooks(model, vector.directions[len(vector.layers) // 2], positions)
        label = f"ablated (blocks.{vector.layers[len(vector.layers) // 2]} direction)"
    else:
        hooks = vector.interventions(cfg.scale, positions)
        label = f"steered (scale {cfg.scale:g}, positions {cfg.positions})"
    plain = generate(model, cfg.prompt, (), cfg.max_new_tokens).text[0]
    steered = generate(model, cfg.prompt, hooks, cfg.max_new_tokens).text[0]
    _say(f"prompt:     {cfg.prompt!r}")
    _say(f"unsteered:  {plain!r}")
    _say(f"{label}: {steered!r}")


def evaluate(cfg: EvalConfig) -> None:
    """Sweep a vector's scale on held-out prompts: behaviour, KL and perplexity, one figure."""
    from rich.table import Table

    from interp.steering.evaluate import ablation_eval, sweep

    _refuse_overwrite(cfg.out, cfg.force)
    _refuse_overwrite(cfg.json, cfg.force)
    vector = _vector(cfg.vector, cfg.layers)
    model, mid = _model(cfg)
    positions = None if cfg.positions == "all" else cfg.positions
    with ProgressBar("scales", unit="scale") as bar:
        result = sweep(
            model,
            vector,
            parse_scales(cfg.scales),
            concept=cfg.concept,
            n=cfg.n,
            positions=positions,
            seed=cfg.seed,
            model_id=mid,
            on_scale=lambda done, total: bar.update(done, total),
        )
    table = Table(title=f"{result.behaviour} (n={cfg.n}, held-out)")
    for col in ("scale", "rate", result.score_name, "KL (nats)", "perplexity"):
        table.add_column(col, justify="right")
    for r in result.rows:
        table.add_row(
            f"{r.scale:g}", f"{r.rate:.2f}", f"{r.score:.3f}", f"{r.kl:.4f}", f"{r.ppl:.2f}"
        )
    out = stdout()
    out.print(table)
    data: dict = {
        "sweep": result.table(),
        "behaviour": result.behaviour,
        "score": result.score_name,
    }
    if cfg.ablate:
        ab = ablation_eval(model, vector, n=cfg.n, seed=cfg.seed)
        data["ablation"] = ab.__dict__
        _say(
            f"ablation of blocks.{ab.layer} direction at every layer: harmful refused "
            f"{ab.harmful_refused:.2f} -> {ab.harmful_refused_ablated:.2f}, benign refused "
            f"{ab.benign_refused:.2f} -> {ab.benign_refused_ablated:.2f}, KL {ab.kl:.4f} nats, "
            f"perplexity {ab.ppl_clean:.2f} -> {ab.ppl_ablated:.2f}"
        )
    if cfg.out:
        from interp.viz.html import write_html

        write_html(cfg.out, result.figure(), f"steering {result.concept}")
        _say(f"figure: {cfg.out}")
    if cfg.json:
        from sae.fsutil import write_text_atomically

        write_text_atomically(Path(cfg.json), json.dumps(data, indent=2))
        _say(f"table: {cfg.json}")


def export(cfg: ExportConfig) -> None:
    """Export a vector as a llama.cpp control vector (GGUF) or as safetensors."""
    vector = _vector(cfg.vector, cfg.layers)
    if cfg.format == "gguf":
        from interp.steering.gguf import write_gguf

        write_gguf(cfg.out, vector, cfg.scale, cfg.model_hint, overwrite=cfg.force)
        names = ", ".join(f"direction.{x}" for x in sorted(vector.layers))
        _say(f"wrote {cfg.out}: {names} (F32, scale {cfg.scale:g} baked in)")
    else:
        from dataclasses import replace

        if cfg.scale != 1.0:
            vector = replace(
                vector,
                directions=vector.effective(cfg.scale),
                convention="absolute",
                resid_norms=(),
            )
        vector.save(cfg.out, overwrite=cfg.force)
        _say(f"wrote {cfg.out}")


app.command("extract")(config_command(ExtractConfig, extract))
app.command("apply")(config_command(ApplyConfig, apply))
app.command("eval")(config_command(EvalConfig, evaluate))
app.command("export")(config_command(ExportConfig, export))


def register(root: typer.Typer) -> None:
    """Add `interp steer ...` to the root `interp` app."""
    root.add_typer(app, name="steer")
