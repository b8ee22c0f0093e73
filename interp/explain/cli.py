"""`interp explain`: SHAP, LIME, gradients and attention on one text's next token.

    interp explain --text "When Mary and John went to the store, John gave a drink to" \
        --target " Mary" --contrast " John" --method all

The options are the fields of `interp.explain.config.ExplainConfig`. It writes
`explanation.html` (the figures, offline) and `explanation.json` to `--out` and prints each
method's top tokens.
"""

from pathlib import Path

import typer
from rich.table import Table

from interp.cli_common import ProgressBar, config_command, derived_epilog, stdout
from interp.explain.config import ExplainConfig

FILES = ("explanation.html", "explanation.json")


def _baseline(cfg: ExplainConfig, model) -> int | None:
    if cfg.baseline == "remove":
        return None
    if cfg.baseline == "pad":
        pad = model.tokenizer.pad_token_id
        return pad if pad is not None else model.tokenizer.eos_token_id
    return int(cfg.baseline)


def _check_out(cfg: ExplainConfig) -> Path:
    from interp.explain.errors import ExplainError

    out = Path(cfg.out)
    taken = [f for f in FILES if (out / f).exists()]
    if taken and not cfg.force:
        raise ExplainError(f"{out} already holds {', '.join(taken)}; pass --force to overwrite")
    return out


def _top_table(explanation, k: int) -> Table:
    table = Table(title=f"Top tokens for {explanation.target}")
    table.add_column("method")
    table.add_column("top tokens (position token value)")
    table.add_column("evals", justify="right")
    table.add_column("s", justify="right")
    for a in explanation.attributions:
        top = "  ".join(f"{j}{t!r} {v:+.3g}" for j, t, v in a.top(k))
        table.add_row(a.method, top, str(a.evaluations), f"{a.seconds:.2f}")
    return table


def run(cfg: ExplainConfig) -> None:
    """Explain a text's next token with SHAP, LIME, gradients and attention (HTML + JSON)."""
    from interp.explain.report import explain
    from interp.explain.target import Target
    from interp.models import load_model
    from interp.viz.html import write_html
    from sae.fsutil import dump_json

    out = _check_out(cfg)
    target = Target(cfg.target, cfg.contrast, cfg.kind)
    model = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    with ProgressBar("explaining", unit="steps") as bar:
        explanation = explain(
            model,
            cfg.text,
            target,
            cfg.method,
            _baseline(cfg, model),
            cfg.shap_method,
            cfg.max_evals,
            cfg.num_samples,
            cfg.ig_steps,
            cfg.batch_size,
            cfg.seed,
            progress=lambda done, total, name: bar.update(done, total, name),
        )
    out.mkdir(parents=True, exist_ok=True)
    data = explanation.to_dict() | {"config": cfg.to_dict()}
    dump_json(out / "explanation.json", data)
    write_html(out / "explanation.html", explanation.figures(), f"interp explain: {cfg.text}")
    console = stdout()
    if explanation.attributions:
        console.print(_top_table(explanation, cfg.top))
    if explanation.heads is not None:
        for name, heads in explanation.heads.classes.items():
            shown = ", ".join(f"L{layer}H{head}" for layer, head in heads) or "none"
            console.print(f"{name} heads: {shown}", highlight=False)
    for f in FILES:
        console.print(f"wrote {out / f}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this capability's command(s) to the root `interp` app."""
    app.command("explain", epilog=derived_epilog(ExplainConfig))(config_command(ExplainConfig, run))
